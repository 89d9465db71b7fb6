"""35up returns: state and rules, no HTTP."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from mockserver.contract import contract
from mockserver.contract.errors import DuplicateReturn, ProviderError
from mockserver.domain.autopilot import Autopilot
from mockserver.domain.backend import Due, LifecycleBackend, entered_at
from mockserver.domain.clock import Clock, from_millis, isoformat, to_millis
from mockserver.domain.lifecycle import Lifecycle, Mode
from mockserver.providers.thirtyfiveup import PROVIDER
from mockserver.store import ReturnRecord, ReturnStore, Transaction


def _duration_days(iso: str) -> int:
    if not (iso.startswith("P") and iso.endswith("D") and iso[1:-1].isascii() and iso[1:-1].isdigit()):
        raise ValueError(f"lifecycle.json: expected a duration like P30D, got {iso!r}")
    return int(iso[1:-1])


class Returns35up(LifecycleBackend):
    """The 35up returns of every account, over a ReturnStore (the only capability it uses) and a Clock."""

    provider = PROVIDER
    lifecycle: Lifecycle

    def __init__(self, store: ReturnStore, clock: Clock, *, mode: Mode = "strict",
                 return_window_days: int | None = None, autopilot: Autopilot | None = None) -> None:
        c = contract(PROVIDER)
        self.store = store
        self.clock = clock
        self.autopilot = autopilot
        self.lifecycle = Lifecycle(c.lifecycle, c.enum("status.json"), mode)
        (expiry,) = [rule for rule in c.lifecycle["automatic"] if rule["to"] == "expired"]
        self._expiry_from: str = expiry["from"]
        self._expiry_to: str = expiry["to"]
        days = return_window_days if return_window_days is not None else _duration_days(expiry["after"])
        self.return_window = timedelta(days=days)

    # --- operations ------------------------------------------------------------------------------

    def new_record(self, account: str, body: dict[str, Any], at: datetime) -> ReturnRecord:
        """A new return in the initial status, not yet stored."""
        now = isoformat(at)
        order_id = body["orderId"]
        initial = self.lifecycle.initial
        history = [{"status": initial, "at": now}]
        resource = {"id": order_id, "orderId": order_id, "items": body["items"], "status": initial,
                    "createdAt": now, "updatedAt": now, "history": history}
        record = ReturnRecord(provider=PROVIDER, account=account, id=order_id, order_id=order_id,
                              status=initial, resource=resource, history=history)
        self.plan(record)
        return record

    def route(self, target: str) -> list[str] | None:
        """The shortest chain of moves from the initial status to `target` (strict graph), or None."""
        paths: dict[str, list[str]] = {self.lifecycle.initial: []}
        frontier = [self.lifecycle.initial]
        while frontier:
            current = frontier.pop(0)
            for nxt in self.lifecycle.allowed(current):
                if nxt not in paths:
                    paths[nxt] = [*paths[current], nxt]
                    frontier.append(nxt)
        return paths.get(target)

    def seed_record(self, item: dict[str, Any], now: datetime) -> ReturnRecord:
        record = self.new_record(item["account"], item["return"], now)
        target = item.get("status", self.lifecycle.initial)
        route = self.route(target)
        if route is None:
            raise ProviderError(422, "unreachable", f"status {target} cannot be reached from {self.lifecycle.initial}")
        for status in route:
            self.move_record(record, status, now)
        self.plan(record)
        return record

    def move(self, account: str, return_id: str, status: str) -> dict[str, Any]:
        return self.update_return(account, return_id, status)

    def create_return(self, account: str, body: dict[str, Any]) -> dict[str, Any]:
        record = self.new_record(account, body, self.clock.now())
        order_id = record.id
        try:
            self.store.insert(record)
        except DuplicateReturn:
            raise ProviderError(409, "duplicate_return",
                                f"A return for order {order_id} already exists.",
                                [{"field": "orderId", "location": "body",
                                  "message": f"order {order_id} already has a return"}]) from None
        return record.resource

    def update_return(self, account: str, order_id: str, status: str) -> dict[str, Any]:
        return self.change(account, order_id, lambda tx, record, now: self.step(record, status, now))

    def get_return(self, account: str, order_id: str) -> dict[str, Any]:
        return self.get_record(account, order_id).resource

    def get_record(self, account: str, order_id: str) -> ReturnRecord:
        """The stored return with its time-based moves applied (and saved) as of the clock."""
        record = self.store.get(PROVIDER, account, order_id)
        if record is None:
            raise self._not_found(order_id)
        now = self.clock.now()
        if record.due_at is not None and record.due_at <= to_millis(now):
            record = self.settle_stored(account, order_id, now) or record
        return record

    # --- rules -----------------------------------------------------------------------------------

    def _enter(self, record: ReturnRecord, status: str, at: datetime) -> None:
        stamp = isoformat(at)
        record.status = status
        record.reads = 0
        record.history.append({"status": status, "at": stamp})
        record.resource.update(status=status, updatedAt=stamp, history=record.history)

    def _own_due(self, record: ReturnRecord) -> Due | None:
        """The expiry, once the return window has passed in awaiting_return; the history records the deadline."""
        if record.status != self._expiry_from or not self.lifecycle.can_move(record.status, self._expiry_to):
            return None
        at = to_millis(from_millis(entered_at(record)) + self.return_window)
        return Due(at, self._expiry_to, None, f"return window of {self.return_window.days} days passed")

    def _make_own(self, tx: Transaction, record: ReturnRecord, due: Due) -> None:
        self._enter(record, due.to, from_millis(due.at))

    def _refuse(self, current: str, target: str) -> ProviderError:
        allowed = self.lifecycle.allowed(current)
        if not allowed:
            message = f"The return is {current}, which is final: it cannot change any more."
        elif target == current:
            message = f"The return is already {current}. Allowed next statuses: {', '.join(allowed)}."
        else:
            message = (f"A return cannot move from {current} to {target}. "
                       f"Allowed next statuses: {', '.join(allowed)}.")
        return ProviderError(409, "invalid_transition", message,
                             [{"field": "status", "location": "body", "message": message,
                               "allowed": allowed}])

    @staticmethod
    def _not_found(order_id: str) -> ProviderError:
        return ProviderError(404, "not_found", f"No return for order {order_id}.",
                             [{"field": "orderId", "location": "path",
                               "message": f"no return for order {order_id}"}])
