"""A mirror: a mock whose state mirrors another implementation's (the proxy's upstream, a `verify` target,
a recording), answering every request that one answered, so that the two answers can be compared
(mockserver.contract.drift).

The mirror adopts the upstream's identifiers: before a request is applied to it, every `x-identifier`
value of the upstream's answer is queued in the mock's id generator, so a 3plship create the upstream
answered with `ret_abc` creates `ret_abc` in the mock too (a 35up return's id is its order id already),
and later requests address the same return in both. Requests are applied one at a time, in the order
the upstream answered them.

A write the mock did not answer as the upstream did (a create refused, another status reached) leaves the
resource in another state in each: it is a root cause, and every later difference on that resource says so
(`cause`). The mirror keeps as many resources as its bound (the proxy's --journal-size); the oldest go
first, with their drift entries. An account that lost a resource that way is then compared where that
cannot matter only: its lists, and answers where one side found nothing (404) or a conflict (409) the
other did not, are counted as not compared rather than reported.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from mockserver.contract import Contract, DeclaredResponse, schemas
from mockserver.contract.drift import (
    DRIFT_SIZE,
    REFUSALS,
    Answered,
    DriftEntry,
    DriftLog,
    Expected,
    compare,
    parsed,
)
from mockserver.domain.config import Config
from mockserver.store import MemoryStore
from mockserver.web.app import create_app, mock_of, served
from mockserver.web.direct import call

READS = frozenset({"GET", "HEAD"})
CREDENTIALS_REFUSED = frozenset({401, 403})

MIRROR_SEED = 37
"""The mirror mints the ids it does not adopt from this seed: a recording replays to the same ids."""

Resource = tuple[str, str, str]
"""(provider, account, identifier): a return or a subscription in the mirror."""


class Mirror:
    def __init__(self, ignore: Sequence[str] = (), size: int = 1000, max_bytes: int = DRIFT_SIZE) -> None:
        # Its journal is not shown (what it answers is compared, not kept), and it sends no webhooks: the
        # provider sends them. Its clock is moved to each exchange's instant and its ids are seeded, so that
        # the same exchanges give the same answers live and replayed from a recording.
        self.store = MemoryStore()
        self.app = create_app(Config(journal_size=1, clock="frozen", seed=MIRROR_SEED, send_webhooks=False),
                              store=self.store)
        self.mock = mock_of(self.app)
        self.clock: Any = self.mock.clock
        self.faces = served(self.app).faces
        self.ignore = tuple(ignore)
        self.size = max(size, 1)
        self.log = DriftLog(self.size, max_bytes)
        self._lock = threading.Lock()
        self._sequence = 0
        self._resources: OrderedDict[Resource, None] = OrderedDict()
        """The resources the mirror holds, oldest first (at most `size`)."""
        self._roots: OrderedDict[Resource, int] = OrderedDict()
        """Resources whose state went its own way in the mock, and the entry where it did."""
        self._unfollowed: OrderedDict[Resource, None] = OrderedDict()
        """Resources of forgetful accounts the mock made anew: their exchanges are not compared."""
        self._forgetful = _Seen()
        """Accounts that lost resources to the bound."""
        self._members: OrderedDict[tuple[str, str], int] = OrderedDict()
        """Accounts whose resources differ in number (a create one side refused), and the entry where they did."""
        self._refused: OrderedDict[tuple[str, str], int] = OrderedDict()
        """Accounts whose credentials the upstream refused and the mock took, and the entry where it did."""

    def apply(self, provider: str, method: str, path: str, query: str, headers: list[tuple[str, str]], body: bytes,
              upstream_status: int, upstream_headers: Sequence[tuple[str, str]], upstream_body: bytes,
              account: str | None, at: datetime | None = None) -> DriftEntry:
        """Apply the request the upstream answered to the mirror, and record how the answers differ (or that
        they could not be compared: `compared`). `path` is under the mock's prefix; `account` is the
        account as reports show it; `at`: the instant the request was made (now, if not given): the mock
        answers at it, or at the last one if it is earlier (what the mock decided stays decided)."""
        c = self.mock.providers[provider].contract
        relative = path[len(c.mock_prefix):] or "/"
        found = c.match("GET" if method == "HEAD" else method, relative)
        op, values = found if found is not None else (None, {})
        upstream = Answered(upstream_status, upstream_headers, parsed(upstream_body))
        declared = op.declared.get(upstream_status) if op is not None else None
        if declared is None:
            declared = c.common_response(upstream_status)
        write = method not in READS
        # Ids are minted by writes only; a read's answer (a page of returns) is not searched for them. A success
        # the operation does not declare (200 for a 201) is read as the one it declares.
        minted = declared
        if minted is None and op is not None:
            minted = next((d for code, d in sorted(op.declared.items()) if 200 <= code < 300), None)
        adopted = _identifiers(minted, c, upstream.body) if write and 200 <= upstream_status < 300 else []
        owner = self.faces[provider].rate_key(next((v for k, v in headers if k.lower() == "authorization"), None))
        with self._lock:
            self._sequence += 1
            sequence = self._sequence
            moment = at or datetime.now(UTC)
            if sequence == 1 or moment > self.clock.now():
                self.clock.set(moment)
            self.mock.ids.adopt(adopted)
            try:
                status, mock_headers, mock_body = call(self.app, method, path, query, headers, body)
            finally:
                self.mock.ids.adopt([])
            mock = Answered(status, mock_headers, parsed(mock_body))
            ours = (op.declared.get(status) if op is not None else None) or c.common_response(status)
            made = _identifiers(ours, c, mock.body) if write and 200 <= status < 300 else []
            answered = {*values.values(), *adopted, *made}
            keys = [(provider, owner or "", r) for r in sorted(answered) if isinstance(r, str)]
            owned = (provider, owner or "")
            collection = op is not None and not values and not write
            if self._uncompared(provider, owner or "", collection, upstream, mock, keys):
                if write and 200 <= mock.status < 300:
                    for key in keys:
                        _bounded(self._unfollowed, key, None, self.size)
                entry = DriftEntry(sequence, provider, method, path, account, upstream_status, status, (),
                                   op.operation_id if op is not None else None, compared=False)
                self.log.record(entry)
                self._keep(owned, made)
                return entry
        # The comparison (what costs: the schema walks) runs beside other accounts' exchanges; one account's
        # come one at a time (the proxy's turns), so what it finds about that account is kept in order.
        differences = compare(upstream, mock, Expected(c, declared, op.where + "/responses" if op is not None
                                                       else f"{c.base_uri}openapi.json#/paths"),
                              self.ignore, _sent(body))
        with self._lock:
            keys += [(provider, owner or "", d.resource) for d in differences
                     if d.resource is not None and d.resource not in answered]
            causes = [self._roots[key] for key in keys if key in self._roots]
            if collection and differences and owned in self._members:
                causes.append(self._members[owned])
            if differences and owned in self._refused:
                causes.append(self._refused[owned])
            cause = min(causes) if causes else None
            entry = DriftEntry(sequence, provider, method, path, account, upstream_status, status, tuple(differences),
                               op.operation_id if op is not None else None, cause,
                               tuple(_name(key) for key in keys))
            changed = 200 <= upstream_status < 300 or 200 <= status < 300
            if cause is None and write and changed and any(d.kind != "header" for d in differences):
                for key in keys:  # a write one side made and the other did not, or made otherwise: from here
                    # the resource's state in the mock went its own way
                    _bounded(self._roots, key, sequence, self.size)
                if not values and any(d.kind in REFUSALS for d in differences):  # a resource made on one side
                    self._members.setdefault(owned, sequence)  # only: the account's lists differ from here
                    _trim(self._members, self.size)
            if cause is None and owner is not None and upstream_status in CREDENTIALS_REFUSED \
                    and status not in CREDENTIALS_REFUSED:  # the provider refuses the account the mock serves
                self._refused.setdefault(owned, sequence)
                _trim(self._refused, self.size)
            self.log.record(entry)
            self._keep(owned, made)
            return entry

    def _uncompared(self, provider: str, owner: str, collection: bool, upstream: Answered, mock: Answered,
                    keys: list[Resource]) -> bool:
        """Whether the exchange may differ only because the mirror forgot what it was about."""
        if any(key in self._unfollowed for key in keys):
            return True
        if (provider, owner) not in self._forgetful:
            return False
        statuses = {upstream.status, mock.status}
        return collection or (len(statuses) == 2 and bool(statuses & {404, 409}))

    def _keep(self, account: tuple[str, str], made: list[str]) -> None:
        """Remember what the mock made; beyond the bound, forget the oldest, and its drift entries with it."""
        for identifier in made:
            key = (*account, identifier)
            self._resources[key] = None
            self._resources.move_to_end(key)
        while len(self._resources) > self.size:
            key, _ = self._resources.popitem(last=False)
            self.store.forget(*key)
            self.log.forget([_name(key)])
            self._roots.pop(key, None)
            self._forgetful.add(key[:2])
        self.store.forget_deliveries(self.size)  # never sent: the provider sends its own

    def clear(self) -> None:
        """Forget the drift found so far (DELETE /__admin/drift): the entries and the root causes they name."""
        with self._lock:
            self.log.clear()
            self._roots.clear()
            self._members.clear()
            self._refused.clear()


def _bounded(table: OrderedDict[Resource, Any], key: Resource, value: Any, size: int) -> None:
    table[key] = value
    table.move_to_end(key)
    while len(table) > size:
        table.popitem(last=False)


def _trim(table: OrderedDict[Any, Any], size: int) -> None:
    while len(table) > size:
        table.popitem(last=False)


def _name(key: Resource) -> str:
    return "\0".join(key)


def _sent(body: bytes) -> Any:
    value = parsed(body)
    return value if isinstance(value, (dict, list)) else None


def _identifiers(declared: DeclaredResponse | None, c: Contract, body: Any) -> list[str]:
    if declared is None or declared.validator is None or not isinstance(body, (dict, list)):
        return []
    resolver = schemas.resolver_for(declared.validator, c.registry)
    try:
        return [value for schema, value in schemas.parts(declared.validator.schema, resolver, body)
                if schema.get("x-identifier") and isinstance(value, str)]
    except RecursionError:  # a body nested deeper than any contract: it names no resource
        return []


class _Seen:
    """A set in fixed memory that may say yes for a member never added (a Bloom filter of 2^20 bits): the
    accounts the mirror forgot resources of. A wrong yes leaves an exchange uncompared; it reports nothing."""

    BITS = 1 << 20

    def __init__(self) -> None:
        self._bits = bytearray(self.BITS // 8)

    def _spots(self, key: tuple[str, str]) -> list[int]:
        digest = hashlib.blake2b("\0".join(key).encode("utf-8", "surrogatepass"), digest_size=12).digest()
        return [int.from_bytes(digest[i:i + 4], "big") % self.BITS for i in (0, 4, 8)]

    def add(self, key: tuple[str, str]) -> None:
        for spot in self._spots(key):
            self._bits[spot >> 3] |= 1 << (spot & 7)

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, tuple):
            return False
        return all(self._bits[spot >> 3] & (1 << (spot & 7)) for spot in self._spots(key))
