"""A mirror: a mock whose state mirrors another implementation's (the proxy's upstream, a `verify` target,
a recording), answering every request that one answered, so that the two answers can be compared
(mockserver.contract.drift).

The mirror adopts the upstream's identifiers: before a request is applied to it, every `x-identifier`
value of the upstream's answer is queued in the mock's id generator, so a 3plship create the upstream
answered with `ret_abc` creates `ret_abc` in the mock too (a 35up return's id is its order id already),
and later requests address the same return in both. Requests are applied one at a time, in the order
the upstream answered them.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import orjson

from mockserver.contract import Contract, Operation, schemas
from mockserver.contract.drift import MISSING, DriftEntry, DriftLog, compare
from mockserver.domain.config import Config
from mockserver.store import MemoryStore
from mockserver.web.app import create_app, mock_of, served
from mockserver.web.direct import call


class Mirror:
    def __init__(self, ignore: Sequence[str] = (), size: int = 1000, clock: str = "real") -> None:
        # Its journal is not shown (what it answers is compared, not kept), and it sends no webhooks: the
        # provider sends them.
        self.app = create_app(Config(journal_size=1, clock=clock, send_webhooks=False), store=MemoryStore())
        self.mock = mock_of(self.app)
        self.faces = served(self.app).faces
        self.ignore = tuple(ignore)
        self.log = DriftLog(size)
        self._lock = threading.Lock()

    def apply(self, provider: str, op: Operation | None, method: str, path: str, query: str,
              headers: list[tuple[str, str]], body: bytes, upstream_status: int, upstream_body: bytes,
              account: str | None) -> DriftEntry:
        """Apply the request the upstream answered to the mirror, and record how the answers differ."""
        c = self.mock.providers[provider].contract
        upstream = _parsed(upstream_body)
        validator = op.responses.get(upstream_status) if op is not None else None
        # Ids are minted by writes only; a read's answer (a page of returns) is not searched for them.
        minting = method not in ("GET", "HEAD") and 200 <= upstream_status < 300
        adopted = _identifiers(validator, c, upstream) if minting else []
        with self._lock:
            self.mock.ids.adopt(adopted)
            try:
                mock_status, _, mock_body = call(self.app, method, path, query, headers, body)
            finally:
                self.mock.ids.adopt([])
        differences = compare(upstream_status, upstream, mock_status, _parsed(mock_body),
                              (validator, c.registry) if validator is not None else None, self.ignore)
        entry = DriftEntry(provider, method, path, account, upstream_status, mock_status, tuple(differences))
        self.log.record(entry)
        return entry


def _parsed(body: bytes) -> Any:
    if not body:
        return MISSING
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return body.decode("utf-8", "replace")


def _identifiers(validator: Any, c: Contract, body: Any) -> list[str]:
    if validator is None or body is MISSING:
        return []
    resolver = schemas.resolver_for(validator, c.registry)
    return [value for schema, value in schemas.parts(validator.schema, resolver, body)
            if schema.get("x-identifier") and isinstance(value, str)]
