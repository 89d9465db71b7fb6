"""The shadow: a mock inside the proxy whose state mirrors the upstream's, answering every request the
upstream answered, so that the two answers can be compared (mockserver.drift).

The mirror adopts the upstream's identifiers: before a request is applied to it, every `x-identifier`
value of the upstream's answer is queued in the mock's id generator, so a 3plship create the upstream
answered with `ret_abc` creates `ret_abc` in the mock too (a 35up return's id is its order id already),
and later requests address the same return in both. Requests are applied one at a time, in the order
the upstream answered them.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from .. import masking, schemas
from ..clock import parse_instant
from ..config import Config
from ..contracts import Operation
from ..drift import MISSING, DriftEntry, DriftLog, compare
from ..http import ProviderApi
from ..provider import Credentials, Provider
from ..store import MemoryStore
from ..verify.har import recorded_exchange
from ..web import create_app, mock_of
from ..web.direct import call


class Shadow:
    def __init__(self, ignore: Sequence[str] = (), size: int = 1000, clock: str = "real") -> None:
        self.app = create_app(Config(journal_size=size, clock=clock), store=MemoryStore())
        self.mock = mock_of(self.app)
        self.ignore = tuple(ignore)
        self.log = DriftLog(size)
        self._lock = threading.Lock()

    def apply(self, api: ProviderApi, op: Operation | None, method: str, path: str, query: str,
              headers: list[tuple[str, str]], body: bytes, upstream_status: int, upstream_body: bytes,
              account: str | None) -> DriftEntry:
        """Apply the request the upstream answered to the mirror, and record how the answers differ."""
        upstream = _parsed(upstream_body)
        validator = op.responses.get(upstream_status) if op is not None else None
        adopted = _identifiers(validator, api, upstream) if 200 <= upstream_status < 300 else []
        with self._lock:
            self.mock.ids.adopt(adopted)
            try:
                mock_status, _, mock_body = call(self.app, method, path, query, headers, body)
            finally:
                self.mock.ids.adopt([])
        differences = compare(upstream_status, upstream, mock_status, _parsed(mock_body),
                              (validator, api.contract.registry) if validator is not None else None, self.ignore)
        entry = DriftEntry(api.name, method, path, account, upstream_status, mock_status, tuple(differences))
        self.log.record(entry)
        return entry

    def close(self) -> None:
        self.mock.close()


def _move(clock: Any, instant: str, start: bool = False) -> None:
    try:
        moment = parse_instant(instant)
    except ValueError:
        return
    if start or moment > clock.now():  # then never backwards: what the mock decided stays decided
        clock.set(moment)


def _parsed(body: bytes) -> Any:
    if not body:
        return MISSING
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return body.decode("utf-8", "replace")


def _identifiers(validator: Any, api: ProviderApi, body: Any) -> list[str]:
    if validator is None or body is MISSING:
        return []
    resolver = schemas.resolver_for(validator, api.contract.registry)
    found = []
    for pointer, schema in schemas.parts(validator.schema, resolver, body):
        if schema.get("x-identifier"):
            value = _at(body, pointer)
            if isinstance(value, str):
                found.append(value)
    return found


def _at(body: Any, pointer: str) -> Any:
    for part in pointer.split("/")[1:]:
        part = part.replace("~1", "/").replace("~0", "~")
        body = body[int(part)] if isinstance(body, list) else body[part]
    return body


REPLAY_ACCOUNTS = {"api_key": "zl_test_replayed", "username": "replayed", "password": "replayed"}
"""The credentials a replayed request is sent with where the recording does not name its account (a
recording never holds credentials: they are masked)."""


def replay(entries: list[Any], providers: Mapping[str, Provider], accounts: Mapping[str, str],
           ignore: Sequence[str] = (), seed: Any = None) -> Shadow:
    """A recording's exchanges applied, in order, to a fresh mock (seeded with `seed`, a scenario, first):
    the shadow whose log says where the mock's answers differ from the recorded ones. Raises HarError
    for an entry that is not an exchange."""
    shadow = Shadow(ignore, size=max(len(entries), 1), clock="frozen")
    clock: Any = shadow.mock.clock
    first = next((e.get("startedDateTime") for e in entries if isinstance(e, dict)), None)
    if isinstance(first, str):
        _move(clock, first, start=True)
    if seed is not None:
        shadow.mock.seed(seed)
    for index, entry in enumerate(entries):
        recorded = recorded_exchange(entry, f"log.entries[{index}]")
        if recorded is None:
            continue
        if isinstance(entry.get("startedDateTime"), str):  # the mock answers at the instant the provider did
            _move(clock, entry["startedDateTime"])
        provider, api = providers.get(recorded.provider), shadow.mock.apis.get(recorded.provider)
        if provider is None or api is None:
            continue
        account = accounts.get(provider.name) or entry.get("_account")
        given = {"api_key": account, "username": account} if account else {}
        credentials = Credentials(**{**REPLAY_ACCOUNTS, **given})
        headers = [(k, v) for k, v in recorded.headers if k.lower() not in ("authorization", "content-length", "host")]
        headers += list(provider.auth_headers(credentials).items())
        found = api.contract.match(recorded.method, recorded.path)
        shown = (masking.account_hint(credentials.api_key or "") if provider.secret_accounts
                 else credentials.username)
        shadow.apply(api, found[0] if found else None, recorded.method, api.contract.mock_prefix + recorded.path,
                     recorded.query, headers, recorded.request_body or b"", recorded.status,
                     recorded.response_body or b"", shown)
    return shadow
