"""A shop's consumer of 3plship webhook deliveries (return.created, return.received).

One core, `WebhookConsumer.handle(raw_body, headers) -> status`, in three forms: `make_handler` (the plain
callable), `make_wsgi_app` and `make_asgi_app`. Each takes the subscription's secret, the `Shop` whose state
it keeps, and `bug=None` (correct) or the name of a planted-bug variant in `BUGS`. `check_invariants(shop)`
raises AssertionError when the shop's books are wrong, whatever the deliveries were.

Correct behaviour: the signature (X-3plship-Signature, hex HMAC-SHA256 of the raw body with the secret) is
checked over the raw bytes (401 otherwise); a delivery of an event id already applied changes nothing and
answers 200; return.received may come before return.created (the record is made from the event's data);
older events never undo newer ones; nullable and optional fields are read with care; each return of one of
the shop's orders gets exactly one refund credit, when it is received; returns of other orders are kept
aside, and event types the shop does not handle are acknowledged (202) and ignored. Malformed events: 400.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import MAX_EMAX, MIN_EMIN, Decimal, localcontext
from http import HTTPStatus
from typing import Any, ClassVar
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

SIGNATURE_HEADER = "X-3plship-Signature"
TIMESTAMP = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z")
SUBSCRIBED = frozenset({"return.created", "return.received"})
STATUS_RANK = {"initiated": 0, "received": 1, "inspected": 2, "completed": 3}
# The keys of the documented Create Return response (the strict_fields variant knows only these).
DOCUMENTED_KEYS = frozenset({"object", "id", "order_id", "status", "reason", "items", "return_shipping",
                             "refund_amount", "refund_shipping", "restocking_fee", "refund_status",
                             "customer_email", "created_at", "updated_at"})
DOCUMENTED_SHIPPING_KEYS = frozenset({"carrier", "tracking_number", "tracking_url", "status"})

Handler = Callable[[bytes, Mapping[str, str]], int]
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]],
                   Coroutine[Any, Any, None]]


@dataclass
class Order:
    order_id: str
    total: Decimal = Decimal(0)


@dataclass
class ReturnRecord:
    return_id: str
    order_id: str
    status: str
    refund_amount: Decimal
    restocking_fee: Decimal
    tracking_url: str | None
    customer_email: str | None
    as_of: str  # created_at (instant_key) of the event whose data this is


@dataclass(frozen=True)
class LedgerEntry:
    event_id: str
    return_id: str
    order_id: str
    amount: Decimal
    kind: str = "refund_credit"


@dataclass(frozen=True)
class Delivery:
    """A delivery the shop acknowledged with a 2xx (duplicates included)."""

    event_id: str
    type: str
    return_id: str | None
    order_id: str | None


@dataclass
class Shop:
    orders: dict[str, Order] = field(default_factory=dict)
    returns: dict[str, ReturnRecord] = field(default_factory=dict)
    refunds: dict[str, Decimal] = field(default_factory=dict)  # return id -> amount credited
    ledger: list[LedgerEntry] = field(default_factory=list)
    processed: set[str] = field(default_factory=set)  # event ids applied
    inbox: list[Delivery] = field(default_factory=list)
    unmatched: set[str] = field(default_factory=set)  # return ids of orders the shop does not know
    ignored: list[str] = field(default_factory=list)  # event ids of types the shop does not handle
    errors: list[str] = field(default_factory=list)  # what made a delivery fail with 500

    @classmethod
    def with_orders(cls, *order_ids: str) -> Shop:
        return cls(orders={order_id: Order(order_id) for order_id in order_ids})


class BadEvent(ValueError):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Event:
    id: str
    type: str
    created_at: str  # instant_key: sorts as the instants do
    data: dict[str, Any]


@dataclass(frozen=True)
class ReturnData:
    return_id: str
    order_id: str
    status: str
    refund_amount: Decimal
    restocking_fee: Decimal
    tracking_url: str | None
    customer_email: str | None


def header(headers: Mapping[str, str], name: str) -> str | None:
    return next((v for k, v in headers.items() if k.lower() == name.lower()), None)


def sign(secret: str, raw_body: bytes) -> str:
    return hmac.new(secret.encode(), raw_body, hashlib.sha256).hexdigest()


def _no_constant(name: str) -> Any:
    raise BadEvent(f"{name} is not a JSON number")


def _text(data: Mapping[str, Any], key: str, *, empty: bool = False) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not (value or empty):
        raise BadEvent(f"{key} must be a {'' if empty else 'non-empty '}string")
    return value


def instant_key(value: str) -> str:
    """Sorts as the instants do: the contract's fixed-width UTC form as it is, other ISO-8601 forms normalized."""
    if TIMESTAMP.fullmatch(value):
        return value
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise BadEvent(f"not an ISO-8601 instant: {value!r}") from None
    if moment.tzinfo is None:
        raise BadEvent(f"no time zone: {value!r}")
    u = moment.astimezone(UTC)
    return f"{u.year:04d}-{u:%m-%dT%H:%M:%S}.{u.microsecond // 1000:03d}Z"


def _money(data: Mapping[str, Any], key: str) -> Decimal:
    value = data.get(key)
    if not isinstance(value, Decimal):  # numbers are parsed as Decimal (parse_float, parse_int)
        raise BadEvent(f"{key} must be a number")
    amount = Decimal(value)
    if not amount.is_finite() or amount < 0:
        raise BadEvent(f"{key} must be a finite amount, not negative")
    return amount


def parse_event(raw_body: bytes) -> Event:
    try:
        body = json.loads(raw_body, parse_float=Decimal, parse_int=Decimal, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        raise BadEvent(f"not a JSON event: {exc}") from None
    if not isinstance(body, dict) or not isinstance(body.get("data"), dict):
        raise BadEvent("an event is an object with an object data")
    return Event(_text(body, "id"), _text(body, "type"), instant_key(_text(body, "created_at")), body["data"])


class WebhookConsumer:
    name: ClassVar[str | None] = None
    bug: ClassVar[str] = ""

    def __init__(self, secret: str, shop: Shop) -> None:
        self.secret = secret
        self.shop = shop
        self._lock = threading.Lock()

    def handle(self, raw_body: bytes, headers: Mapping[str, str]) -> int:
        """The status to answer the delivery with."""
        with self._lock:
            try:
                return self._handle(bytes(raw_body), headers)
            except Exception as exc:  # what a web framework turns into a 500
                self.shop.errors.append(f"{type(exc).__name__}: {exc}")
                return 500

    def _handle(self, raw: bytes, headers: Mapping[str, str]) -> int:
        signature = header(headers, SIGNATURE_HEADER)
        if signature is None or not self._signature_ok(raw, signature):
            return 401
        try:
            event = parse_event(raw)
            status = self._dispatch(event)
        except BadEvent as exc:
            return exc.status
        if 200 <= status < 300:
            return_id, order_id = (event.data.get(k) for k in ("id", "order_id"))
            self.shop.inbox.append(Delivery(event.id, event.type, return_id if isinstance(return_id, str) else None,
                                            order_id if isinstance(order_id, str) else None))
        return status

    def _signed_bytes(self, raw: bytes) -> bytes:
        return raw

    def _signature_ok(self, raw: bytes, signature: str) -> bool:
        expected = sign(self.secret, self._signed_bytes(raw)).encode()
        return hmac.compare_digest(expected, signature.strip().lower().encode("utf-8", "replace"))

    def _duplicate(self, event: Event) -> bool:
        return event.id in self.shop.processed

    def _other(self, event: Event) -> int:
        self.shop.ignored.append(event.id)
        self.shop.processed.add(event.id)
        return 202

    def _dispatch(self, event: Event) -> int:
        if self._duplicate(event):
            return 200
        if event.type not in SUBSCRIBED:
            return self._other(event)
        ret = self._parse_return(event.data)
        if event.type == "return.created":
            self._upsert(event, ret, "initiated")
        else:
            self._credit(event, self._record_for_received(event, ret))
        self.shop.processed.add(event.id)
        return 200

    def _check_fields(self, data: Mapping[str, Any]) -> None:
        """Fields the shop does not know are ignored (the tolerant reader)."""

    def _tracking_url(self, data: Mapping[str, Any]) -> str | None:
        shipping = data.get("return_shipping")  # nullable, and tracking_url in it too
        url = shipping.get("tracking_url") if isinstance(shipping, dict) else None
        return url.strip() if isinstance(url, str) else None

    def _parse_return(self, data: Mapping[str, Any]) -> ReturnData:
        self._check_fields(data)
        email = data.get("customer_email")
        return ReturnData(_text(data, "id"), _text(data, "order_id", empty=True), _text(data, "status"),
                          _money(data, "refund_amount"), _money(data, "restocking_fee"),
                          self._tracking_url(data), email if isinstance(email, str) else None)

    def _upsert(self, event: Event, ret: ReturnData, at_least: str) -> ReturnRecord:
        record = self.shop.returns.get(ret.return_id)
        candidates = [ret.status, at_least] + ([record.status] if record else [])
        status = max(candidates, key=lambda s: STATUS_RANK.get(s, -1))
        if record is None or event.created_at >= record.as_of:  # an older event never undoes a newer one
            record = ReturnRecord(ret.return_id, record.order_id if record else ret.order_id, status,
                                  ret.refund_amount, ret.restocking_fee, ret.tracking_url, ret.customer_email,
                                  event.created_at)
        record.status = status
        self.shop.returns[ret.return_id] = record
        if record.order_id not in self.shop.orders:
            self.shop.unmatched.add(ret.return_id)
        return record

    def _record_for_received(self, event: Event, ret: ReturnData) -> ReturnRecord:
        return self._upsert(event, ret, "received")  # also when return.created has not arrived (yet)

    def _order_of(self, order_id: str) -> Order | None:
        return self.shop.orders.get(order_id)

    def _already_credited(self, return_id: str) -> bool:
        return return_id in self.shop.refunds

    def _credit(self, event: Event, record: ReturnRecord) -> None:
        if self._already_credited(record.return_id):
            return
        order = self._order_of(record.order_id)
        if order is None:
            return  # not one of the shop's orders: kept aside in shop.unmatched
        with localcontext() as exact:  # amounts of any size, exactly (up to 100 digits)
            exact.prec, exact.Emax, exact.Emin = 100, MAX_EMAX, MIN_EMIN
            amount = max(Decimal(0), record.refund_amount - record.restocking_fee)
        self.shop.refunds[record.return_id] = amount
        self.shop.ledger.append(LedgerEntry(event.id, record.return_id, order.order_id, amount))


# -- planted bugs: each overrides one thing ------------------------------------------------------------
class NotIdempotent(WebhookConsumer):
    bug = "no dedupe by event id or return: a duplicate delivery books the refund again"

    def _duplicate(self, event: Event) -> bool:
        return False

    def _already_credited(self, return_id: str) -> bool:
        return False


class NeedsCreatedFirst(WebhookConsumer):
    bug = "return.received for a return it has not seen created fails (KeyError: 500)"

    def _record_for_received(self, event: Event, ret: ReturnData) -> ReturnRecord:
        record = self.shop.returns[ret.return_id]  # "return.created always comes first"
        if STATUS_RANK.get(record.status, -1) < STATUS_RANK["received"]:
            record.status = "received"
        return record


class OptionalField(WebhookConsumer):
    bug = "reads data.return_shipping.tracking_url (both nullable) without a check"

    def _tracking_url(self, data: Mapping[str, Any]) -> str | None:
        url: str = data["return_shipping"]["tracking_url"].strip()
        return url


class ReserializedSignature(WebhookConsumer):
    bug = "verifies the signature over json.dumps(json.loads(body)) instead of the raw body"

    def _signed_bytes(self, raw: bytes) -> bytes:
        return json.dumps(json.loads(raw)).encode()


class InOrder(WebhookConsumer):
    bug = "assumes deliveries arrive in created_at order: an older event after a newer one is dropped (200)"
    _newest: str | None = None

    def _dispatch(self, event: Event) -> int:
        if self._newest is not None and event.created_at < self._newest:
            return 200  # "stale"
        self._newest = event.created_at
        return super()._dispatch(event)


class StrictFields(WebhookConsumer):
    bug = "rejects (422) data with fields beyond the documented example's (refund, return_shipping.label_url)"

    def _check_fields(self, data: Mapping[str, Any]) -> None:
        shipping = data.get("return_shipping")
        extra = set(data) - DOCUMENTED_KEYS | (set(shipping) - DOCUMENTED_SHIPPING_KEYS if shipping else set())
        if extra:
            raise BadEvent(f"unknown fields {sorted(extra)}", 422)


class UnknownOrder(WebhookConsumer):
    bug = "assumes every received return belongs to one of the shop's orders (KeyError: 500)"

    def _order_of(self, order_id: str) -> Order | None:
        return self.shop.orders[order_id]


class UnsubscribedType(WebhookConsumer):
    bug = "an event type it does not handle (order.*, shipment.*, inventory.*) raises: 500"

    def _other(self, event: Event) -> int:
        raise ValueError(f"unexpected event type {event.type}")


BUGS: dict[str, type[WebhookConsumer]] = {
    "not_idempotent": NotIdempotent, "needs_created_first": NeedsCreatedFirst, "optional_field": OptionalField,
    "reserialized_signature": ReserializedSignature, "in_order": InOrder, "strict_fields": StrictFields,
    "unknown_order": UnknownOrder, "unsubscribed_type": UnsubscribedType,
}
for _name, _cls in BUGS.items():
    _cls.name = _name


def make_consumer(secret: str, shop: Shop, bug: str | None = None) -> WebhookConsumer:
    if bug is not None and bug not in BUGS:
        raise ValueError(f"unknown bug {bug!r}; known: {', '.join(BUGS)}")
    return (BUGS[bug] if bug else WebhookConsumer)(secret, shop)


def make_handler(secret: str, shop: Shop, bug: str | None = None) -> Handler:
    """The plain callable: handle(raw_body, headers) -> HTTP status."""
    return make_consumer(secret, shop, bug).handle


def _answer(status: int) -> tuple[str, list[tuple[str, str]], bytes]:
    body = json.dumps({"status": status}).encode()
    return (f"{status} {HTTPStatus(status).phrase}",
            [("Content-Type", "application/json"), ("Content-Length", str(len(body)))], body)


def make_wsgi_app(secret: str, shop: Shop, bug: str | None = None) -> WSGIApplication:
    handle = make_handler(secret, shop, bug)

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") != "POST":
            status = 405
        else:
            length = str(environ.get("CONTENT_LENGTH") or "")
            stream = environ["wsgi.input"]
            raw = stream.read(int(length)) if length.isdigit() else stream.read() if environ.get(
                "wsgi.input_terminated") else b""
            headers = {k[5:].replace("_", "-"): str(v) for k, v in environ.items() if k.startswith("HTTP_")}
            status = handle(raw, headers)
        line, headers_out, body = _answer(status)
        start_response(line, headers_out)
        return [body]

    return app


def make_asgi_app(secret: str, shop: Shop, bug: str | None = None) -> ASGIApp:
    handle = make_handler(secret, shop, bug)

    async def app(scope: Scope, receive: Callable[[], Awaitable[Message]],
                  send: Callable[[Message], Awaitable[None]]) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(bytes(message.get("body", b"")))
            if not message.get("more_body", False):
                break
        headers = {bytes(k).decode("latin-1"): bytes(v).decode("latin-1") for k, v in scope.get("headers", [])}
        status = handle(b"".join(chunks), headers) if scope.get("method") == "POST" else 405
        _, headers_out, body = _answer(status)
        await send({"type": "http.response.start", "status": status,
                    "headers": [(k.lower().encode(), v.encode()) for k, v in headers_out]})
        await send({"type": "http.response.body", "body": body})

    return app


def invariant_problems(shop: Shop) -> list[str]:
    problems: list[str] = []
    credits: dict[str, list[LedgerEntry]] = {}
    for entry in shop.ledger:
        credits.setdefault(entry.return_id, []).append(entry)
    for return_id, entries in credits.items():
        if len(entries) > 1:
            problems.append(f"{return_id} credited {len(entries)} times (events {[e.event_id for e in entries]})")
        for entry in entries:
            record = shop.returns.get(return_id)
            if entry.amount < 0:
                problems.append(f"{return_id} credited a negative amount {entry.amount}")
            if entry.order_id not in shop.orders:
                problems.append(f"{return_id} credited for {entry.order_id!r}, not one of the shop's orders")
            if record is None or STATUS_RANK.get(record.status, -1) < STATUS_RANK["received"]:
                problems.append(f"{return_id} credited but not known as received")
    if shop.refunds != {e.return_id: e.amount for e in shop.ledger}:
        problems.append(f"refunds {shop.refunds} disagree with the ledger {shop.ledger}")
    acknowledged: set[str] = set()
    for delivery in shop.inbox:  # the first acknowledgment of each event id: later ones are redeliveries
        if delivery.event_id in acknowledged or delivery.type not in SUBSCRIBED or delivery.return_id is None:
            continue
        acknowledged.add(delivery.event_id)
        record = shop.returns.get(delivery.return_id)
        if record is None:
            problems.append(f"{delivery.event_id} ({delivery.type}) acknowledged but {delivery.return_id} unknown")
        elif delivery.type == "return.received" and record.order_id in shop.orders:
            if delivery.return_id not in shop.refunds:
                problems.append(f"{delivery.return_id} received ({delivery.event_id} acknowledged) but not credited")
            if STATUS_RANK.get(record.status, -1) < STATUS_RANK["received"]:
                problems.append(f"{delivery.return_id} received but recorded as {record.status}")
    return problems


def check_invariants(shop: Shop) -> None:
    """Raises AssertionError naming every broken rule of the shop's books."""
    problems = invariant_problems(shop)
    if problems:
        raise AssertionError("; ".join(problems))
