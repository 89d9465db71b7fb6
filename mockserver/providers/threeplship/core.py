"""3plship returns: state and rules, no HTTP."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import orjson

from mockserver.contract import contract
from mockserver.contract.errors import ProviderError
from mockserver.domain.autopilot import Autopilot, ProviderMove
from mockserver.domain.backend import Due, LifecycleBackend
from mockserver.domain.clock import Clock, add_business_days, from_millis, isoformat, parse_instant, to_millis
from mockserver.domain.ids import IdGenerator
from mockserver.domain.lifecycle import Lifecycle
from mockserver.providers.threeplship import PROVIDER
from mockserver.providers.threeplship.webhooks import Webhooks
from mockserver.store import Page, ReturnRecord, ReturnStore, Transaction


def _bound(value: str | None, *, end: bool, name: str) -> str | None:
    """A date range bound as the instant it stands for, written as created_at is: a date is its first
    instant (start) or its last millisecond (end, inclusive), in UTC. RFC 3339 allows years 0000 to 9999;
    a bound beyond what the clock can hold (year 0000, the last day of 9999 as an end) is the earliest or
    latest instant there is, so it selects what such a bound means: everything on that side."""
    if value is None:
        return None
    try:
        if "T" not in value and "t" not in value:
            day = datetime.fromisoformat(value).replace(tzinfo=UTC)
            return isoformat(day + timedelta(days=1) - timedelta(milliseconds=1) if end else day)
        return isoformat(parse_instant(value))
    except (ValueError, OverflowError):
        year = value[:4]
        if year.isascii() and year.isdigit() and len(value) >= 10 and value[4] == "-":
            return isoformat(_EARLIEST if int(year) < 5000 else _LATEST)
        message = f"{name} must be an ISO-8601 date or date-time, not {value!r}"
        raise ProviderError(422, "VALIDATION_ERROR", f"Request does not match the contract: {message}.",
                            [{"field": name, "location": "query", "message": message}]) from None


_EARLIEST = datetime.min.replace(tzinfo=UTC)
_LATEST = datetime.max.replace(tzinfo=UTC)


class Returns3plship(LifecycleBackend):
    """The 3plship returns of every API key, over a ReturnStore (the only capability it uses) and a Clock."""

    provider = PROVIDER
    lifecycle: Lifecycle
    webhooks: Webhooks | None

    def __init__(self, store: ReturnStore, clock: Clock, ids: IdGenerator | None = None,
                 webhooks: Webhooks | None = None, refund_business_days: int | None = None,
                 autopilot: Autopilot | None = None) -> None:
        c = contract(PROVIDER)
        self.store = store
        self.clock = clock
        self.autopilot = autopilot
        self.ids = ids or IdGenerator()
        self.lifecycle = Lifecycle(c.lifecycle, c.enum("status.json"))
        self.shipping_rules: dict[str, Any] = c.lifecycle["shipping_status"]
        self.refund_rules: dict[str, Any] = c.lifecycle["refund"]
        low, high = self.refund_rules["business_days_documented"]
        days = refund_business_days if refund_business_days is not None else int(self.refund_rules["business_days"])
        if not low <= days <= high:
            raise ValueError(f"refunds take {low} to {high} business days, not {days}")
        self.refund_business_days = days
        self.tracking_urls: dict[str, str] = c.documents["carriers.json"]["tracking_url"]
        self.event_names: dict[str, Any] = c.lifecycle["events"]
        self.webhooks = webhooks

    def subscribe(self, account: str, body: dict[str, Any]) -> dict[str, Any]:
        """A webhook subscription (POST /webhooks)."""
        if self.webhooks is None:
            raise NotImplementedError("this 3plship backend was built without webhooks")
        return self.webhooks.subscribe(account, body)

    def start(self) -> None:
        if self.webhooks is not None and self.webhooks.queue.has_pending_deliveries():  # left from before a restart
            self.webhooks.deliverer.start()

    def close(self) -> None:
        if self.webhooks is not None:
            self.webhooks.deliverer.stop()

    # --- operations ------------------------------------------------------------------------------

    def new_record(self, account: str, body: dict[str, Any], at: datetime,
                   return_id: str | None = None) -> ReturnRecord:
        """A new return in the initial status, not yet stored."""
        now = isoformat(at)
        status = self.lifecycle.initial
        resource: dict[str, Any] = {
            "id": return_id or self.ids.new("ret"),
            "order_id": body["order_id"],
            "status": status,
            "reason": body["reason"],
            "items": body["items"],
            "return_shipping": self._shipping(body.get("return_shipping")),
            "refund_amount": body["refund_amount"],
            "refund_shipping": body.get("refund_shipping", False),
            "restocking_fee": body.get("restocking_fee", 0),
            "refund_status": self.refund_rules["refund_status_before"],
            "refund": None,
            "customer_email": body.get("customer_email"),
            "created_at": now,
            "updated_at": now,
        }
        record = ReturnRecord(provider=PROVIDER, account=account, id=resource["id"],
                              order_id=resource["order_id"], status=status, resource=resource,
                              history=[{"status": status, "at": now}])
        self.plan(record)
        return record

    @property
    def counts_reads(self) -> bool:
        return True

    def create_return(self, account: str, body: dict[str, Any]) -> dict[str, Any]:
        now = self.clock.now()
        record = self.new_record(account, body, now)
        if self.store.has_webhooks(account) is False:  # no one to tell: the return alone (one statement)
            self.store.insert(record)
            return record.resource
        with self.store.transaction() as tx:
            tx.insert(record)
            self._emit(tx, account, self.event_names["on_create"], record.resource, now)
        return record.resource

    def seed_record(self, item: dict[str, Any], now: datetime) -> ReturnRecord:
        record = self.new_record(item["account"], item["return"], now, item.get("id"))
        target = item.get("status", self.lifecycle.initial)
        refund = item.get("refund")
        if target == self.refund_rules["status_after"]:
            refund = refund if refund is not None else {}
            target = self.refund_rules["allowed_from"][0]
        for status in self.lifecycle.statuses[1:self.lifecycle.statuses.index(target) + 1]:
            self.move_record(record, status, now)
        if refund is not None:
            self.refund(record, refund.get("amount"), now)
            if item.get("status") == self.refund_rules["status_after"]:
                self.complete_refund(record)
        self.plan(record)
        return record

    def move(self, account: str, return_id: str, status: str) -> dict[str, Any]:
        return self.update_status(account, return_id, status)

    def refund(self, record: ReturnRecord, amount: float | None, at: datetime) -> None:
        """Start the refund of a record (the caller stores it)."""
        refusal = self._refund_refusal(record, amount)
        if refusal is not None:
            raise refusal
        self._start_refund(record, amount, at)

    def complete_refund(self, record: ReturnRecord) -> None:
        """Complete a processing refund now, as if its business days had passed."""
        due = self._own_due(record)
        if due is not None:
            self._complete(record, due.at)

    def list_returns(self, account: str, *, status: str | None, order_id: str | None, page: int, limit: int,
                     start_date: str | None = None, end_date: str | None = None,
                     ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        created = (_bound(start_date, end=False, name="start_date"), _bound(end_date, end=True, name="end_date"))

        def read(due_by: int | None = None) -> Page:
            return self.store.page(PROVIDER, account, status=status, order_id=order_id, offset=(page - 1) * limit,
                                   limit=limit, created=None if created == (None, None) else created, due_by=due_by)

        now = self.clock.now()
        result = read(due_by=to_millis(now))
        if result.due:  # a deadline passed (refunds' business days): its moves first, then the page they change
            self._settle_due(account, now)
            result = read()
        if self.autopilot is not None and result.resources and any(s.after_reads for s in self.steps(account)):
            self.count_reads(account, [orjson.loads(orjson.dumps(r))["id"] for r in result.resources])
        total_pages = math.ceil(result.total / limit)
        pagination = {"page": page, "limit": limit, "total": result.total, "total_pages": total_pages,
                      "has_more": page < total_pages}
        return result.resources, pagination

    def update_status(self, account: str, return_id: str, status: str,
                      notes: str | None = None) -> dict[str, Any]:
        def move(tx: Transaction, record: ReturnRecord, now: datetime) -> ProviderError | None:
            if not self.lifecycle.can_move(record.status, status):
                return self._refuse(record.status, status)
            self._moved(tx, record, status, now, notes)
            return None

        return self.change(account, return_id, move)

    def process_refund(self, account: str, return_id: str, amount: float | None = None) -> dict[str, Any]:
        def start(tx: Transaction, record: ReturnRecord, now: datetime) -> ProviderError | None:
            refusal = self._refund_refusal(record, amount)
            if refusal is None:
                self._start_refund(record, amount, now)
            return refusal

        return self.change(account, return_id, start)

    def get_return(self, account: str, return_id: str) -> dict[str, Any]:
        return self.get_record(account, return_id).resource

    def get_record(self, account: str, return_id: str) -> ReturnRecord:
        """The stored return with its time-based moves applied (and saved) as of the clock."""
        self._settle_account(account)
        record = self.store.get(PROVIDER, account, return_id)
        if record is None:
            raise self._not_found(return_id)
        return record

    def _emit(self, tx: Transaction, account: str, event: str, resource: dict[str, Any], at: datetime) -> None:
        if self.webhooks is not None:
            self.webhooks.emit(tx, account, event, resource, at)

    def _moved(self, tx: Transaction, record: ReturnRecord, status: str, at: datetime,
               notes: str | None = None) -> None:
        self._enter(record, status, at, notes)
        event = self.event_names["on_status"].get(status)
        if event is not None:
            self._emit(tx, record.account, event, record.resource, at)

    # --- rules -----------------------------------------------------------------------------------

    @staticmethod
    def refundable(resource: dict[str, Any]) -> float:
        """refund_amount - restocking_fee, never below zero. The documents give no shipping cost, so
        refund_shipping is recorded but adds nothing."""
        return round(max(0.0, float(resource["refund_amount"]) - float(resource["restocking_fee"])), 2)

    def _shipping(self, given: dict[str, Any] | None) -> dict[str, Any] | None:
        if given is None:
            return None
        carrier = given.get("carrier")
        number = given.get("tracking_number")
        template = self.tracking_urls.get(carrier.lower()) if carrier else None
        shipping: dict[str, Any] = {
            "carrier": carrier,
            "tracking_number": number,
            "tracking_url": template.replace("{tracking_number}", quote(number, safe=""))
            if template and number else None,
            "status": self.shipping_rules["with_tracking_number" if number else "without_tracking_number"],
        }
        if "label_url" in given:
            shipping["label_url"] = given["label_url"]
        return shipping

    def _enter(self, record: ReturnRecord, status: str, at: datetime, notes: str | None = None) -> None:
        stamp = isoformat(at)
        record.status = status
        record.reads = 0
        entry: dict[str, Any] = {"status": status, "at": stamp}
        if notes is not None:
            entry["notes"] = notes
        record.history.append(entry)
        record.resource.update(status=status, updated_at=stamp)
        shipping = record.resource.get("return_shipping")
        shipping_status = self.shipping_rules["when_status"].get(status)
        if shipping is not None and shipping_status is not None:
            shipping["status"] = shipping_status

    def _refund_refusal(self, record: ReturnRecord, amount: float | None) -> ProviderError | None:
        resource = record.resource
        if resource.get("refund") is not None:
            return ProviderError(409, "REFUND_ALREADY_PROCESSED",
                                 f"Return {record.id} already has a refund ({resource['refund_status']}).")
        allowed_from: list[str] = self.refund_rules["allowed_from"]
        if record.status not in allowed_from:
            message = (f"Return {record.id} is {record.status}; a refund needs a return that was received"
                       f" and inspected (status {', '.join(allowed_from)}).")
            return ProviderError(409, "REFUND_NOT_ALLOWED", message,
                                 [{"field": "status", "message": message, "allowed": allowed_from}])
        refundable = self.refundable(resource)
        if amount is not None and amount > refundable + 1e-9:
            message = (f"amount {amount} is more than the refundable {refundable}"
                       " (refund_amount - restocking_fee).")
            return ProviderError(409, "REFUND_EXCEEDS_REFUNDABLE", message,
                                 [{"field": "amount", "location": "body", "message": message}])
        return None

    def _start_refund(self, record: ReturnRecord, amount: float | None, now: datetime) -> None:
        expected = add_business_days(now, self.refund_business_days)
        stamp = isoformat(now)
        record.resource.update(
            refund_status=self.refund_rules["refund_status_while_processing"],
            refund={"amount": self.refundable(record.resource) if amount is None else amount,
                    "requested_at": stamp, "expected_at": isoformat(expected), "completed_at": None},
            updated_at=stamp)
        record.history.append({"status": record.status, "at": stamp,
                               "refund_status": record.resource["refund_status"]})

    def _own_due(self, record: ReturnRecord) -> Due | None:
        """A processing refund completes when its business days have passed (refund.expected_at)."""
        refund = record.resource.get("refund")
        processing = self.refund_rules["refund_status_while_processing"]
        if refund is None or record.resource.get("refund_status") != processing:
            return None
        return Due(to_millis(parse_instant(refund["expected_at"])), self.refund_rules["status_after"], None,
                   f"refund completed after {self.refund_business_days} business days")

    def _make_own(self, tx: Transaction, record: ReturnRecord, due: Due) -> None:
        self._complete(record, due.at)

    def _complete(self, record: ReturnRecord, at_ms: int) -> None:
        """Complete a processing refund as of its due moment."""
        at = from_millis(at_ms)
        record.resource["refund"]["completed_at"] = isoformat(at)
        record.resource["refund_status"] = self.refund_rules["refund_status_after"]
        self._enter(record, self.refund_rules["status_after"], at)
        record.history[-1]["refund_status"] = record.resource["refund_status"]

    def _settle_account(self, account: str) -> None:
        now = self.clock.now()
        if self.store.has_due(PROVIDER, account, to_millis(now)):
            self._settle_due(account, now)

    def _settle_due(self, account: str, now: datetime) -> None:
        """The account's time-based moves as of `now` (a refund's business days, the autopilot's), in one
        transaction."""
        made: list[ProviderMove] = []
        with self.store.transaction() as tx:
            for record in tx.due(PROVIDER, account, to_millis(now)):
                made += self.settle_in(tx, record, now)
                tx.update(record)
        self.on_moves(made)

    def _refuse(self, current: str, target: str) -> ProviderError:
        allowed = self.lifecycle.allowed(current)
        if allowed:
            message = (f"A return cannot move from {current} to {target}: statuses go one step at a time;"
                       f" next allowed: {', '.join(allowed)}.")
        elif current == self.refund_rules["allowed_from"][0]:
            message = f"The return is {current}: process its refund (POST /returns/{{id}}/refund) next."
        else:
            message = f"The return is {current}: its status cannot change any more."
        return ProviderError(409, "INVALID_STATUS_TRANSITION", message,
                             [{"field": "status", "location": "body", "message": message,
                               "allowed": allowed}])

    @staticmethod
    def _not_found(return_id: str) -> ProviderError:
        return ProviderError(404, "NOT_FOUND", f"Return {return_id} not found.",
                             [{"field": "id", "location": "path", "message": f"no return {return_id}"}])
