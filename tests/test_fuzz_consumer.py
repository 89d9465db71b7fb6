"""The webhook-consumer fuzzer (mockserver.consumer, the returns_mock_webhooks fixture) measured on a shop's
consumer written outside the project (tests/independent/shop/handlers.py): the correct consumer passes 200
fuzzed runs; a consumer that is not idempotent, that needs return.created before return.received, that
reads an optional field without a check, or that checks the signature over re-serialized JSON is found in
under 50 runs, and the note names what did it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import doc_blocks

# pytest in subprocesses: the system tier.
pytestmark = pytest.mark.system

FILE = Path(__file__).parent / "fuzz_consumers" / "shop_consumer.py"
RUNS = 50
BUGS = {
    "not_idempotent": r"webhooks: return\.received evt_\w+ \(ret_\w+\) delivered twice",
    "needs_created_first": r"webhooks: return\.received evt_\w+ \(ret_\w+\) before return\.created evt_\w+",
    # tracking_url null, or a return of another order made without return_shipping (null in its events)
    "optional_field": r"webhooks: return\.\w+ evt_\w+ \(ret_\w+\): /data/return_shipping/tracking_url: null|"
                      r"webhooks: state: a return of another order [^\n]*ret_\w+ \{(?![^\n]*return_shipping)",
    "reserialized_signature": r"never acknowledged return\.created evt_\w+ \(ret_\w+\): 401 to each of 6 attempts",
}


def fuzz(*args: str, bug: str | None = None, form: str = "handler") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("HANDLER_BUG", "CONSUMER_FORM")}
    env |= {"CONSUMER_FORM": form, **({"HANDLER_BUG": bug} if bug else {})}
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:randomly", str(FILE),
                           *args], env=env, capture_output=True, text=True, timeout=900, cwd=FILE.parent)


def test_the_correct_consumer_passes_200_fuzzed_runs() -> None:
    run = fuzz("--returns-mock-fuzz=200", "--returns-mock-fuzz-seed=3")
    assert run.returncode == 0 and "1 passed" in run.stdout, run.stdout[-3000:]


@pytest.mark.parametrize("form", ["wsgi", "asgi", "url"])
def test_each_form_of_the_consumer_is_delivered_to(form: str) -> None:
    assert fuzz("--returns-mock-fuzz=10", "--returns-mock-fuzz-seed=4", form=form).returncode == 0
    broken = fuzz("--returns-mock-fuzz=30", "--returns-mock-fuzz-seed=4", "--returns-mock-fuzz-shrink-seconds=0",
                  bug="not_idempotent", form=form)
    assert broken.returncode == 1 and "delivered twice" in broken.stdout, broken.stdout[-3000:]


@pytest.mark.parametrize("bug", BUGS)
def test_each_consumer_bug_is_found_in_under_50_runs_and_named(bug: str) -> None:
    run = fuzz(f"--returns-mock-fuzz={RUNS}", "--returns-mock-fuzz-seed=1", "--returns-mock-fuzz-shrink-seconds=10",
               bug=bug)
    assert run.returncode == 1, run.stdout[-3000:]
    first = re.search(r"runs: the first failure was run (\d+) \(of up to 50\)", run.stdout)
    assert first and int(first[1]) < RUNS, run.stdout[-3000:]
    assert re.search(BUGS[bug], run.stdout), run.stdout[-3000:]


def test_the_guides_consumer_example_passes_fuzzed_runs(tmp_path: Path) -> None:
    (source,) = doc_blocks("The webhook consumer, fuzzed", "python")
    (tmp_path / "test_consumer.py").write_text(source)
    run = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "test_consumer.py",
                          "--returns-mock-fuzz=50", "--returns-mock-fuzz-seed=5"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0 and "1 passed" in run.stdout, run.stdout[-3000:]
    # Without its dedupe it books a duplicate twice: the fuzzer says so.
    (tmp_path / "test_consumer.py").write_text(source.replace("        if event[\"id\"] in seen:", "        if False:"))
    run = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "test_consumer.py",
                          "--returns-mock-fuzz=50", "--returns-mock-fuzz-seed=5"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 1 and "delivered twice" in run.stdout, run.stdout[-3000:]


AUTOPILOT = '''
import hashlib, hmac, json
import pytest


@pytest.mark.returns_mock(autopilot="warehouse")
def test_the_warehouse_receives_it(returns_mock, returns_mock_webhooks):
    hooks = returns_mock_webhooks
    credits, seen = [], set()

    def consumer(body, headers):
        expected = hmac.new(hooks.secret.encode(), body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, headers.get("X-3plship-Signature", "")):
            return 401
        event = json.loads(body)
        if event["id"] in seen:
            return 200
        seen.add(event["id"])
        if event["type"] == "return.received" and event["data"]["order_id"] == "ord_1001":
            credits.append(event["data"]["id"])
        return 200

    made = hooks.create("ord_1001")  # only created: the autopilot's warehouse receives it
    returns_mock.advance("P7D")
    hooks.deliver(handler=consumer)
    assert credits == [made["id"]]
'''


def test_the_autopilots_moves_are_delivered_and_fuzzed(pytester: pytest.Pytester) -> None:
    """The provider's own moves (issue 40's autopilot, on the mock's clock) raise events the fixture delivers."""
    pytester.makepyfile(test_consumer_on_autopilot=AUTOPILOT)
    assert pytester.runpytest("-p", "no:cacheprovider", "-p", "no:randomly").ret == 0  # received only by the autopilot
    fuzzed = pytester.runpytest("-p", "no:cacheprovider", "-p", "no:randomly", "--returns-mock-fuzz=50",
                                "--returns-mock-fuzz-seed=1")
    assert fuzzed.ret == 0, str(fuzzed.stdout)
    without_dedupe = AUTOPILOT.replace('        if event["id"] in seen:', "        if False:")
    pytester.makepyfile(test_consumer_on_autopilot=without_dedupe)
    broken = pytester.runpytest("-p", "no:cacheprovider", "-p", "no:randomly", "--returns-mock-fuzz=50",
                                "--returns-mock-fuzz-seed=1", "--returns-mock-fuzz-shrink-seconds=10")
    assert broken.ret == 1
    broken.stdout.re_match_lines([r".*webhooks: return\.received evt_\w+ \(ret_\w+\) delivered twice"])
