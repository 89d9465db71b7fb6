"""In-process store: for tests and the in-process mock. One process only."""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from itertools import islice
from typing import Any

import orjson

from mockserver.contract.errors import DuplicateReturn
from mockserver.store.base import Delivery, Page, ReturnRecord, Store, Transaction, Window
from mockserver.store.journal import Journal, MemoryJournal

Key = tuple[str, str, str]


class _MemoryTransaction(Transaction):
    def __init__(self, store: MemoryStore) -> None:
        self._store = store
        self.writes: dict[Key, ReturnRecord] = {}
        self.new_webhooks: list[tuple[str, dict[str, Any]]] = []
        self.new_deliveries: list[Delivery] = []
        self.requeued: list[Delivery] = []
        self.updated: dict[str, Delivery] = {}

    def get(self, provider: str, account: str, id: str) -> ReturnRecord | None:
        record = self.writes.get((provider, account, id)) or self._store._find(provider, account, id)
        return record.copy() if record else None

    def insert(self, record: ReturnRecord) -> ReturnRecord:
        key = (record.provider, record.account, record.id)
        if key in self.writes or self._store._find(*key) is not None:
            raise DuplicateReturn(record.id)
        self._store._seq += 1
        stored = record.copy()
        stored.seq = self._store._seq
        stored.version = 1
        self.writes[key] = stored
        return stored.copy()

    def update(self, record: ReturnRecord) -> ReturnRecord:
        stored = record.copy()
        stored.version += 1
        self.writes[(record.provider, record.account, record.id)] = stored
        return stored.copy()

    def due(self, provider: str, account: str, now_ms: int) -> list[ReturnRecord]:
        due = self._store._due.get((provider, account), {})
        records = self._store._accounts.get((provider, account), {})
        return [records[i].copy() for i, at in due.items() if at <= now_ms]

    def add_webhook(self, account: str, webhook: dict[str, Any]) -> None:
        self.new_webhooks.append((account, copy.deepcopy(webhook)))

    def webhooks(self, account: str) -> list[dict[str, Any]]:
        stored = [w for a, w in self._store._webhooks + self.new_webhooks if a == account]
        return copy.deepcopy(stored)

    def add_delivery(self, delivery: Delivery) -> None:
        self.new_deliveries.append(copy.deepcopy(delivery))

    def due_any(self, now_ms: int, limit: int) -> list[ReturnRecord]:
        found = sorted(((at, self._store._accounts[key][id_].seq, key, id_) for key, due in self._store._due.items()
                        for id_, at in due.items() if at <= now_ms))
        return [self._store._accounts[key][id_].copy() for _, _, key, id_ in found[:limit]]

    def webhook_count(self, account: str) -> int:
        return sum(1 for a, _ in self._store._webhooks + self.new_webhooks if a == account)

    def held(self, group: str) -> list[Delivery]:
        current = [self.updated.get(d.id, d) for d in self._store._deliveries + self.new_deliveries]
        return [copy.deepcopy(d) for d in current if d.group == group and d.status == "held"]

    def update_delivery(self, delivery: Delivery) -> None:
        self.updated[delivery.id] = copy.deepcopy(delivery)

    def requeue(self, deliveries: list[Delivery]) -> None:
        self.requeued += [copy.deepcopy(d) for d in deliveries]


class MemoryStore(Store):
    engine = "memory"
    shown = "memory"
    shared = False

    def journal(self, size: int, *, workers: int = 1) -> Journal:
        return MemoryJournal(size)

    def __init__(self) -> None:
        # Per (provider, account): returns by id in insertion (= seq) order, and the due ones' due_at.
        self._accounts: dict[tuple[str, str], dict[str, ReturnRecord]] = {}
        self._due: dict[tuple[str, str], dict[str, int]] = {}
        self._seq = 0
        self._lock = threading.RLock()
        self._settings: dict[str, str] = {}
        self._counters: dict[tuple[str, int], int] = {}
        self._webhooks: list[tuple[str, dict[str, Any]]] = []
        self._deliveries: list[Delivery] = []
        self._leases: dict[str, int] = {}

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        with self._lock:
            tx = _MemoryTransaction(self)
            seq_before = self._seq
            try:
                yield tx
            except BaseException:
                self._seq = seq_before
                raise
            for (provider, account, id_), record in tx.writes.items():
                self._accounts.setdefault((provider, account), {})[id_] = record
                due = self._due.setdefault((provider, account), {})
                if record.due_at is None:
                    due.pop(id_, None)
                else:
                    due[id_] = record.due_at
            self._webhooks.extend(tx.new_webhooks)
            self._deliveries.extend(tx.new_deliveries)
            for changed in tx.updated.values():
                self.save_delivery(changed)
            self._requeue(tx.requeued)

    def _find(self, provider: str, account: str, id: str) -> ReturnRecord | None:
        return self._accounts.get((provider, account), {}).get(id)

    def _scan(self, provider: str | None, account: str | None) -> list[ReturnRecord]:
        return [r for (p, a), records in self._accounts.items()
                if (provider is None or p == provider) and (account is None or a == account)
                for r in records.values()]

    def get(self, provider: str, account: str, id: str) -> ReturnRecord | None:
        with self._lock:
            record = self._find(provider, account, id)
            return record.copy() if record else None

    def has_due(self, provider: str, account: str, now_ms: int) -> bool:
        with self._lock:
            return any(at <= now_ms for at in self._due.get((provider, account), {}).values())

    def has_due_any(self, now_ms: int) -> bool:
        with self._lock:
            return any(at <= now_ms for due in self._due.values() for at in due.values())

    def page(self, provider: str, account: str, *, status: str | None, order_id: str | None,
             offset: int, limit: int, created: tuple[str | None, str | None] | None = None,
             due_by: int | None = None) -> Page:
        low, high = created or (None, None)
        due = due_by is not None and self.has_due(provider, account, due_by)
        with self._lock:
            records = self._accounts.get((provider, account), {}).values()
            if status is None and order_id is None and created is None:  # the page alone, not a copy of them all
                chosen, total = list(islice(reversed(records), offset, offset + limit)), len(records)
            else:
                matching = [r for r in reversed(records) if (status is None or r.status == status)
                            and (order_id is None or r.order_id == order_id)
                            and (low is None or r.resource["created_at"] >= low)
                            and (high is None or r.resource["created_at"] <= high)]
                chosen, total = matching[offset:offset + limit], len(matching)
            # Serialised here, under the lock: the page is a snapshot, without copying each return's history.
            return Page([orjson.Fragment(orjson.dumps(r.resource)) for r in chosen], total, due)

    def all(self, provider: str | None = None, account: str | None = None) -> Iterator[ReturnRecord]:
        with self._lock:
            records = sorted(self._scan(provider, account), key=lambda r: r.seq)
        return iter([r.copy() for r in records])

    def find(self, provider: str | None, account: str | None, search: str | None, offset: int,
             limit: int) -> tuple[list[ReturnRecord], int]:
        with self._lock:
            matching = [r for r in self._scan(provider, account)
                        if search is None or search in r.id or search in r.order_id]
            matching.sort(key=lambda r: r.seq, reverse=True)
            return [r.copy() for r in matching[offset:offset + limit]], len(matching)

    def reset(self, provider: str | None = None, account: str | None = None) -> int:
        with self._lock:
            if provider is None and account is None:
                self._counters.clear()
                self._webhooks.clear()
                self._deliveries.clear()
            removed = 0
            for key in [k for k in self._accounts
                        if (provider is None or k[0] == provider) and (account is None or k[1] == account)]:
                removed += len(self._accounts.pop(key))
                self._due.pop(key, None)
            return removed

    def forget(self, provider: str, account: str, id: str) -> None:
        """Drop one return, or one webhook subscription and its deliveries (a mirror's bound: the shadow's)."""
        with self._lock:
            key = (provider, account)
            if self._accounts.get(key, {}).pop(id, None) is not None and not self._accounts[key]:
                del self._accounts[key]
            if self._due.get(key, {}).pop(id, None) is not None and not self._due[key]:
                del self._due[key]
            if any(w.get("id") == id for _, w in self._webhooks):
                self._webhooks = [(a, w) for a, w in self._webhooks if w.get("id") != id]
                self._deliveries = [d for d in self._deliveries if d.webhook_id != id]

    def forget_deliveries(self, keep: int) -> None:
        """Keep the newest `keep` deliveries only (a store whose deliveries are never sent: a mirror's)."""
        with self._lock:
            if len(self._deliveries) > keep:
                del self._deliveries[:len(self._deliveries) - keep]

    def get_setting(self, key: str) -> str | None:
        return self._settings.get(key)

    def set_setting(self, key: str, value: str) -> None:
        self._settings[key] = value

    def count_requests(self, windows: Sequence[Window]) -> tuple[list[tuple[int, int]], bool]:
        with self._lock:
            counts = [(self._counters.get((w.key, w.bucket - 1), 0), self._counters.get((w.key, w.bucket), 0))
                      for w in windows]
            admitted = all(w.limit is None or previous * w.overlap + current < w.limit
                           for w, (previous, current) in zip(windows, counts, strict=True))
            if not admitted:
                return counts, False
            for w in windows:
                if (w.key, w.bucket) not in self._counters:  # a new bucket: forget the ones before the previous
                    for old in [k for k in self._counters if k[0] == w.key and k[1] < w.bucket - 1]:
                        del self._counters[old]
                self._counters[(w.key, w.bucket)] = self._counters.get((w.key, w.bucket), 0) + 1
            return [(previous, current + 1) for previous, current in counts], True

    def update_setting(self, key: str, change: Callable[[str | None], str]) -> str:
        with self._lock:
            self._settings[key] = change(self._settings.get(key))
            return self._settings[key]

    def claim_delivery(self, now_ms: int, lease_ms: int) -> Delivery | None:
        with self._lock:
            in_flight = {d.webhook_id for d in self._deliveries
                         if d.status == "pending" and self._leases.get(d.id, 0) >= now_ms}
            for delivery in self._deliveries:  # in the order they were queued
                if delivery.status == "pending" and delivery.next_at <= now_ms and \
                        delivery.webhook_id not in in_flight and self._leases.get(delivery.id, 0) < now_ms:
                    self._leases[delivery.id] = now_ms + lease_ms
                    return copy.deepcopy(delivery)
            return None

    def release_held(self, clock_ms: int, now_ms: int,
                     order: Callable[[list[Delivery]], list[Delivery]]) -> list[Delivery]:
        with self._lock:
            released = order([copy.deepcopy(d) for d in self._deliveries
                              if d.status == "held" and d.next_at <= clock_ms])
            for delivery in released:
                delivery.status, delivery.next_at = "pending", now_ms
            self._requeue(released)
            return released

    def _requeue(self, deliveries: list[Delivery]) -> None:
        moved = {d.id for d in deliveries}
        for delivery_id in moved:
            self._leases.pop(delivery_id, None)
        self._deliveries = [d for d in self._deliveries if d.id not in moved] + [copy.deepcopy(d) for d in deliveries]

    def has_held(self, clock_ms: int) -> bool:
        with self._lock:
            return any(d.status == "held" and d.next_at <= clock_ms for d in self._deliveries)

    def delivery(self, delivery_id: str) -> Delivery | None:
        with self._lock:
            return next((copy.deepcopy(d) for d in self._deliveries if d.id == delivery_id), None)

    def save_delivery(self, delivery: Delivery) -> None:
        with self._lock:
            self._deliveries = [copy.deepcopy(delivery) if d.id == delivery.id else d for d in self._deliveries]
            self._leases.pop(delivery.id, None)

    def deliveries(self, account: str | None = None, status: str | None = None) -> list[Delivery]:
        with self._lock:
            return [copy.deepcopy(d) for d in self._deliveries
                    if (account is None or d.account == account) and (status is None or d.status == status)]

    def has_pending_deliveries(self) -> bool:
        with self._lock:
            return any(d.status == "pending" for d in self._deliveries)
