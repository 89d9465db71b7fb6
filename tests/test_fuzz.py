"""Schemathesis drives the mock in-process (WSGI) against its own OpenAPI documents.

Every check schemathesis has runs (server errors, status codes, content types, response schemas and
headers, negative data rejected, positive data accepted, ignored auth, missing required headers,
unsupported methods, and in the stateful phase use-after-free and resource availability), over the
examples, coverage and fuzzing phases and the stateful phase along the OpenAPI links. On top of that
the app's own self-check validates every response against the contract.

CI budget: FUZZ_EXAMPLES (default 25) examples per operation, derandomized, so every CI run sends the
same requests. `make fuzz` raises the budget, draws a new seed each run (printed first, and passed to
hypothesis as --hypothesis-seed, so FUZZ_SEED=N repeats a run) and shows progress.
"""

from __future__ import annotations

import base64
import os
import sys
import time
from collections import Counter, defaultdict
from typing import Any

import pytest
import schemathesis
from flask import Response, request
from hypothesis import HealthCheck, settings
from schemathesis import Case
from schemathesis.config import SchemathesisConfig

from mockserver.contract import FORMAT_CHECKER, Validator, contract, problems
from mockserver.domain.config import Config
from mockserver.store import MemoryStore
from mockserver.web import create_app, mock_of, served

pytestmark = pytest.mark.system

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))
STEPS = int(os.environ.get("FUZZ_STEPS", "6"))
DERANDOMIZE = os.environ.get("FUZZ_RANDOM", "") == ""

# Registered credentials, so that schemathesis's "ignored auth" check has wrong ones to try.
AUTH = {
    "35up": {"Authorization": "Basic " + base64.b64encode(b"fuzzer:secret").decode()},
    "3plship": {"Authorization": "Bearer zl_test_fuzzer"},
}
APP = create_app(Config(self_check=True, providers={"35up": {"users": {"fuzzer": "secret"}},
                                                   "3plship": {"keys": ["zl_test_fuzzer"]}},
                        webhook_attempts=1, webhook_timeout_ms=200), store=MemoryStore())
APP.testing = True
ANSWERED: defaultdict[str, Counter[int]] = defaultdict(Counter)


PROGRESS = int(os.environ.get("FUZZ_PROGRESS", "0"))
"""make fuzz (which runs pytest -s): a line every PROGRESS requests, for long runs."""
STARTED = time.monotonic()


@APP.after_request
def _tally(response: Response) -> Response:
    if request.url_rule is not None:
        ANSWERED[str(request.url_rule.endpoint)][response.status_code] += 1
    if PROGRESS:
        total = sum(sum(codes.values()) for codes in ANSWERED.values())
        if total % PROGRESS == 0:
            print(f"  fuzz: {total} requests in {time.monotonic() - STARTED:.0f} s", file=sys.__stderr__, flush=True)
    return response


SETTINGS = settings(max_examples=EXAMPLES, derandomize=DERANDOMIZE, deadline=None, database=None,
                    suppress_health_check=list(HealthCheck), stateful_step_count=STEPS)



def load(provider: str) -> Any:
    # Credentials go through schemathesis's own configuration, so that its auth checks know which
    # credentials are the valid ones and which it generated to be wrong.
    config = SchemathesisConfig.from_dict({"headers": AUTH[provider]})
    return schemathesis.openapi.from_wsgi(f"/{provider}/openapi.json", APP, config=config)


schema_35up = load("35up")
schema_3plship = load("3plship")

URL_VALIDATOR = Validator(contract("3plship").schema("webhook-create-request.json")["properties"]["url"],
                          format_checker=FORMAT_CHECKER)


@schema_3plship.hook  # type: ignore[untyped-decorator]
def map_case(context: Any, case: Case[Any]) -> Case[Any]:
    """Generated webhook URLs that the contract accepts keep their scheme and path but get a closed loopback
    port as host: the mock would block other hosts anyway, but a generated localhost URL could reach a real
    service on this machine. Negative cases are untouched."""
    body = case.body
    url = body.get("url") if isinstance(body, dict) else None
    # Only a URL its schema accepts whole (pattern, length, format): rewriting a too-long one would make a
    # negative case valid, and the mock's 201 would then read as "accepted invalid data".
    if case.operation.path == "/webhooks" and isinstance(body, dict) and isinstance(url, str) \
            and not problems(URL_VALIDATOR, url):
        scheme, rest = url.split("://", 1)
        path = rest[len(rest.split("/", 1)[0]):]
        body["url"] = f"{scheme}://127.0.0.1:9{path}"
    return case


@schema_35up.parametrize()  # type: ignore[untyped-decorator]
@SETTINGS
def test_35up_conforms_to_its_contract(case: Case[Any]) -> None:
    case.call_and_validate()


@schema_3plship.parametrize()  # type: ignore[untyped-decorator]
@SETTINGS
def test_3plship_conforms_to_its_contract(case: Case[Any]) -> None:
    case.call_and_validate()


class Stateful35up(schema_35up.as_state_machine()):  # type: ignore[misc]
    def setup(self) -> None:
        # Each generated scenario starts from an empty mock, so hypothesis can replay it exactly.
        mock_of(APP).store.reset(provider="35up")


class Stateful3plship(schema_3plship.as_state_machine()):  # type: ignore[misc]
    def setup(self) -> None:
        mock_of(APP).store.reset(provider="3plship")


def test_35up_stateful_chains_follow_the_links() -> None:
    Stateful35up.run(settings=SETTINGS)


def test_3plship_stateful_chains_follow_the_links() -> None:
    Stateful3plship.run(settings=SETTINGS)


def test_every_operation_was_exercised_and_the_self_check_stayed_clean() -> None:
    """Guards against a fuzz run that silently tests nothing: every operation answered refusals, every
    operation but the refund (which needs two lucky status draws first) answered a success, and the
    stateful chains reached updates and refunds with real ids (409: only a linked id gets past 404)."""
    assert served(APP).self_check_failures == []
    for endpoint in served(APP).operations:
        codes = ANSWERED[endpoint]
        assert any(400 <= c < 500 for c in codes), (endpoint, codes)
        if endpoint != "3plship.processRefund":
            assert any(200 <= c < 300 for c in codes), (endpoint, codes)
    for endpoint in ("35up.updateReturn", "3plship.updateReturnStatus", "3plship.processRefund"):
        assert 409 in ANSWERED[endpoint], (endpoint, ANSWERED[endpoint])
