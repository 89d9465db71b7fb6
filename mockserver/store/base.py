"""The store's capabilities (returns, settings, the webhook delivery queue, rate counters, the journal),
each an interface of its own, and `Store`: what an engine provides."""

from __future__ import annotations

import dataclasses
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from mockserver.store.journal import Journal


@dataclass
class ReturnRecord:
    """A stored return.

    `resource` is the return exactly as its provider answers it; `history` is every status it has been
    in ({status, at, ...}); `due_at` (epoch milliseconds on the mock's clock) is when its next time-based
    move (the provider's own: an expiry, a refund's completion, an autopilot move) falls due, so that due
    returns are found by an indexed query instead of a scan; `reads` counts the provider reads that showed
    it since its status last changed (an autopilot move may wait for them).
    """

    provider: str
    account: str
    id: str
    order_id: str
    status: str
    resource: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    due_at: int | None = None
    version: int = 0
    seq: int = 0
    reads: int = 0

    def copy(self) -> ReturnRecord:
        # A JSON round trip: the record is JSON data, and this is several times faster than deepcopy.
        return ReturnRecord(self.provider, self.account, self.id, self.order_id, self.status,
                            orjson.loads(orjson.dumps(self.resource)), orjson.loads(orjson.dumps(self.history)),
                            self.due_at, self.version, self.seq, self.reads)


@dataclass
class Delivery:
    """One webhook event on its way to one subscription, with every attempt made so far."""

    id: str
    webhook_id: str
    account: str
    event_id: str
    event_type: str
    url: str
    secret: str
    body: bytes
    status: str = "pending"
    """pending (waiting for its next attempt), held (a delivery fault holds it until the mock's clock passes
    `next_at`), delivered, failed (out of attempts) or blocked (a target the mock may not call)."""
    attempts: list[dict[str, Any]] = field(default_factory=list)
    next_at: int = 0
    """Pending: the real time (epoch ms) of its next attempt. Held: the moment on the mock's clock (epoch ms)
    it is released at."""
    created_at: str = ""
    fault: str = ""
    """What shaped this delivery, if anything did: the delivery fault rule (duplicate, delay, out of order,
    replay) or the control plane (a redelivery)."""
    group: str = ""
    """Held out of order: the subscription and resource whose events are released together, reordered."""
    rank: float = 0.0
    """Held out of order: its place in its group's release order (lowest first)."""
    replay_after_ms: int = 0
    """Once acknowledged, the same event is delivered again this long after, on the mock's clock (0: never)."""
    shaped: bool = False
    """The delivery fault rules were applied to it (when it was first claimed; copies, replays and
    redeliveries are born shaped)."""

    def as_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["body"] = self.body.decode("utf-8")
        for internal in ("secret", "rank", "replay_after_ms", "shaped"):
            del data[internal]
        if self.status == "held":  # next_at is a moment of the mock's clock: said as the clock says it
            moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=self.next_at)
            data["held_until"] = moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        return data

    def encode(self) -> str:
        data = dataclasses.asdict(self)
        data["body"] = self.body.decode("utf-8")
        return json.dumps(data)

    @classmethod
    def decode(cls, raw: str) -> Delivery:
        data = json.loads(raw)
        data["body"] = data["body"].encode("utf-8")
        return cls(**data)


@dataclass(frozen=True)
class Page:
    resources: list[Any]
    """The returns as their provider answers them: dicts, or orjson.Fragment (JSON text as stored, which
    goes into an answer without being parsed and written again)."""
    total: int
    due: bool = False
    """Whether a return of the account had a deadline at or before `due_by` (read before the page, or with
    it): its time-based move is yet to be made, so the page may show it in its old status."""


class Transaction(ABC):
    """A write transaction: everything in it is applied together or not at all."""

    @abstractmethod
    def get(self, provider: str, account: str, id: str) -> ReturnRecord | None: ...

    @abstractmethod
    def insert(self, record: ReturnRecord) -> ReturnRecord:
        """Store a new return; raises DuplicateReturn if the id exists for this account."""

    @abstractmethod
    def update(self, record: ReturnRecord) -> ReturnRecord: ...

    @abstractmethod
    def due(self, provider: str, account: str, now_ms: int) -> list[ReturnRecord]:
        """Returns of this account whose next time-based transition is due at `now_ms`."""

    @abstractmethod
    def add_webhook(self, account: str, webhook: dict[str, Any]) -> None: ...

    @abstractmethod
    def webhooks(self, account: str) -> list[dict[str, Any]]: ...

    @abstractmethod
    def add_delivery(self, delivery: Delivery) -> None: ...

    @abstractmethod
    def due_any(self, now_ms: int, limit: int) -> list[ReturnRecord]:
        """Returns of any provider and account whose next time-based move is due at `now_ms`, earliest first, at
        most `limit`; on an engine shared by several servers, ones another transaction is settling are skipped."""

    @abstractmethod
    def webhook_count(self, account: str) -> int:
        """How many webhook subscriptions the account has; until the transaction ends, no other one adds any."""

    @abstractmethod
    def held(self, group: str) -> list[Delivery]:
        """The held deliveries of an out-of-order group (Delivery.group), in the order they were queued."""

    @abstractmethod
    def update_delivery(self, delivery: Delivery) -> None:
        """Store a changed delivery (its status, when it is due, its fault) in place, lease released, as part of
        this transaction."""

    @abstractmethod
    def requeue(self, deliveries: list[Delivery]) -> None:
        """Queue these deliveries (new ones, or held ones released) at the end of the queue, in this order, as
        they are now: due deliveries are claimed in the order they were queued."""


class ReturnStore(ABC):
    """Where returns live, per provider and account, with the write transaction that changes them."""

    @abstractmethod
    def transaction(self) -> AbstractContextManager[Transaction]:
        """A write transaction, serialised against every other writer (threads and processes)."""

    def has_webhooks(self, account: str) -> bool | None:
        """Whether the account has webhook subscriptions, if the engine knows without a query of its own
        (None: ask, in the transaction)."""
        return None

    def insert(self, record: ReturnRecord) -> ReturnRecord:
        """A new return on its own (Transaction.insert in a transaction of its own); an engine may do it in
        one statement where that is as atomic (PostgreSQL: no BEGIN and COMMIT round trips)."""
        with self.transaction() as tx:
            return tx.insert(record)

    @abstractmethod
    def get(self, provider: str, account: str, id: str) -> ReturnRecord | None: ...

    @abstractmethod
    def has_due(self, provider: str, account: str, now_ms: int) -> bool: ...

    @abstractmethod
    def has_due_any(self, now_ms: int) -> bool:
        """Whether any return of any provider and account has a time-based move due at `now_ms`."""

    @abstractmethod
    def page(self, provider: str, account: str, *, status: str | None, order_id: str | None,
             offset: int, limit: int, created: tuple[str | None, str | None] | None = None,
             due_by: int | None = None) -> Page:
        """Returns of one account, newest first (stable: by insertion order), filtered; `created` bounds the
        resource's `created_at` (both inclusive, ISO-8601 as the mock writes it: UTC, milliseconds, Z).
        With `due_by`, the page also says whether any of the account's returns is due by then (has_due)."""

    @abstractmethod
    def all(self, provider: str | None = None, account: str | None = None) -> Iterator[ReturnRecord]: ...

    @abstractmethod
    def find(self, provider: str | None, account: str | None, search: str | None, offset: int,
             limit: int) -> tuple[list[ReturnRecord], int]:
        """One page of returns, newest first, optionally those whose id or order id contains `search`;
        with the number of all that match. For the control plane: a page, never a dump."""

    @abstractmethod
    def reset(self, provider: str | None = None, account: str | None = None) -> int:
        """Delete returns (all, or of one provider and/or account); answers how many."""


class DeliveryQueue(ABC):
    """Webhook deliveries waiting for their next attempt (queued by Transaction.add_delivery)."""

    @abstractmethod
    def claim_delivery(self, now_ms: int, lease_ms: int) -> Delivery | None:
        """A pending delivery whose attempt is due, leased to the caller for `lease_ms` (other workers
        skip it meanwhile); None if there is none. One subscription has one attempt in flight at a time,
        whatever the process: a delivery of a subscription with a leased one is not claimed, and a
        subscription's deliveries are claimed in the order they are due (then queued)."""

    @abstractmethod
    def release_held(self, clock_ms: int, now_ms: int,
                     order: Callable[[list[Delivery]], list[Delivery]]) -> list[Delivery]:
        """Atomically: every held delivery whose moment on the mock's clock has come (`next_at <= clock_ms`)
        becomes pending, due at real time `now_ms`, and is queued again in the order `order` gives them;
        answers them."""

    @abstractmethod
    def has_held(self, clock_ms: int) -> bool:
        """Whether a held delivery is due for release at `clock_ms` on the mock's clock."""

    @abstractmethod
    def delivery(self, delivery_id: str) -> Delivery | None: ...

    @abstractmethod
    def save_delivery(self, delivery: Delivery) -> None:
        """Store an attempt's outcome and release the lease."""

    @abstractmethod
    def deliveries(self, account: str | None = None, status: str | None = None) -> list[Delivery]: ...

    @abstractmethod
    def has_pending_deliveries(self) -> bool: ...


@dataclass(frozen=True)
class Window:
    """One sliding window to count a request in: its counter key, the fixed bucket the request falls in,
    how much of the previous bucket still overlaps the window, and the limit (None: count, never refuse)."""

    key: str
    bucket: int
    overlap: float
    limit: int | None
    period_ms: int = 0
    """The length of a bucket (ms on the mock's clock), so that a store may tell when a key's counts stop
    mattering; 0: never (a store keeps them until a reset)."""


class RateCounters(ABC):
    @abstractmethod
    def count_requests(self, windows: Sequence[Window]) -> tuple[list[tuple[int, int]], bool]:
        """Rate counting, atomically across workers and across the windows: one more request is counted in
        every window, or in none if any window's limit is given and `previous * overlap + current < limit`
        does not hold for it (previous and current: the counts of `bucket - 1` and `bucket`). Answers each
        window's (previous, current after counting) and whether the request was admitted."""

    def count_request(self, key: str, bucket: int, overlap: float, limit: int | None) -> tuple[int, int, bool]:
        """count_requests for one window: (previous, current after counting, admitted)."""
        (counts,), admitted = self.count_requests([Window(key, bucket, overlap, limit)])
        return counts[0], counts[1], admitted


class Settings(ABC):
    """Small pieces of shared state (the clock, fault rules, the rate policy), visible to every worker."""

    @abstractmethod
    def get_setting(self, key: str) -> str | None: ...

    @abstractmethod
    def set_setting(self, key: str, value: str) -> None: ...

    def pin_settings(self, pinned: bool, *, confirm_later: bool = False) -> None:  # noqa: B027 - engines without a cache have nothing to pin
        """While pinned (one request), this thread reads the settings as they were when pinning: one
        freshness check per request instead of one per read. Its own writes stay visible.

        confirm_later: the engine may pin a copy it holds and confirm it is current later in the request
        (along its first statement, or `confirm_settings`); a copy found out of date raises SettingsChanged
        before anything the request did is kept, and the request is answered again (the pipeline does)."""

    def confirm_settings(self) -> None:  # noqa: B027 - engines that pin what is current have nothing to confirm
        """Confirm this request's settings now if nothing confirmed them yet (SettingsChanged if changed)."""

    @abstractmethod
    def update_setting(self, key: str, change: Callable[[str | None], str]) -> str:
        """Read-modify-write of a setting, atomically across workers."""


class Store(ReturnStore, DeliveryQueue, RateCounters, Settings):
    """An engine: every capability above, over one place (a process's memory, a file, a database)."""

    engine: str
    shown: str
    """The store as it may be shown (`/`, `/__admin/health`, banners): its string, any password masked."""
    shared: bool
    """Whether other processes see this store (False: each worker would have a store of its own)."""
    replicated = False
    """Whether other servers (replicas, maybe on other hosts) serve from this store while this one starts:
    then a start sets only the settings it was given flags for, and keeps the rest as the others use it."""
    workers_per_cpu = 1
    """`serve`'s default workers per CPU. A worker serves one request at a time, so a store a request waits
    on (a database across a network, its commits flushed to disk) leaves CPUs idle with one per CPU."""

    @abstractmethod
    def journal(self, size: int, *, workers: int = 1) -> Journal:
        """The journal kept with this engine's data, so that every worker process writes to the same one."""

    def check(self, within_s: float = 0.0) -> None:
        """Raise StoreUnavailable if what the store is kept in is gone (a SQLite file deleted while serving);
        a check made less than `within_s` ago may be trusted."""

    def close(self) -> None:
        pass
