"""Fuzzing the shop's webhook consumer: the events of real flows on the mock, delivered as they really arrive.

The `returns_mock_webhooks` fixture (mockserver.pytest_plugin) subscribes an account to every event the
provider sends, makes returns move through the provider's own rules (`create`), so that the mock builds and
queues their events as it does for any subscription, and `deliver`s them to the shop's consumer: a plain
callable taking the raw body and the headers, a WSGI app, an ASGI app, or a URL on loopback. Each event is
signed with the subscription's secret over the exact bytes sent.

Unvaried (a test run without --returns-mock-fuzz), each event is delivered once, in the order it was
emitted. In a fuzzed run the same variation that varies the answers (mockserver.domain.variation) drives
the deliveries: an event's data varied within the event's schema (`/data/return_shipping/tracking_url:
null`), an event delivered twice (at-least-once, the same id and bytes), delivered later than events
emitted after it (a retry's backoff, a slow queue: `return.received` before `return.created`), a return of
another order (another sales channel on the same account) among the flows; every non-2xx answer retried,
as the provider documents, up to its attempts. A delivery the consumer answers 5xx, or never acknowledges,
fails the run, and so does the consumer raising or the test's own assertion about the shop's state; the
note names the delivery sequence that did it, shrunk by hypothesis.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import io
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol
from urllib.parse import urlsplit

import orjson

from mockserver.contract import contract, valid
from mockserver.domain.drawing import instance
from mockserver.domain.mock import Mock
from mockserver.domain.variation import Chooser, Variation, escaped
from mockserver.store import Delivery

SUBSCRIPTION_URL = "https://consumer.invalid/returns-mock-webhooks"
"""Where the fixture's subscription points: a host the mock may not call, so its own deliverer sends
nothing (each delivery is recorded blocked) and every event reaches the consumer through `deliver` only."""
ATTEMPTS = 6
"""Attempts per delivery before it counts as never acknowledged (the mock's default, serve
--webhook-attempts: 3plship documents retries with exponential backoff, not how many)."""
DUPLICATE_KEEP_ODDS = 0.8
DELAY_KEEP_ODDS = 0.7
OTHER_ORDER_KEEP_ODDS = 0.7

Handler = Callable[[bytes, Mapping[str, str]], int]
"""A consumer as a callable: the raw body and the headers in, the HTTP status it answers out."""


class ConsumerFailed(AssertionError):
    """The consumer answered a genuine delivery with a 5xx, or never acknowledged it."""


class Creating(Protocol):
    def create_return(self, account: str, body: dict[str, Any]) -> dict[str, Any]: ...

    def move(self, account: str, return_id: str, status: str) -> dict[str, Any]: ...

    def subscribe(self, account: str, body: dict[str, Any]) -> dict[str, Any]: ...


@dataclasses.dataclass
class Sent:
    """One delivery of one event, as the consumer is to get it."""

    event: Delivery
    body: bytes
    copy: int = 1
    attempt: int = 1

    @property
    def label(self) -> str:
        subject = orjson.loads(self.body).get("data", {}).get("id", "?")
        return f"{self.event.event_type} {self.event.event_id} ({subject})"


class Webhooks:
    """A provider's webhooks, for one test: a subscription, flows, and their deliveries to a consumer."""

    def __init__(self, mock: Mock, notes: list[str], provider: str = "3plship",
                 account: str = "zl_test_webhooks") -> None:
        backend = mock.backends.get(provider)
        if backend is None or not all(hasattr(backend, name) for name in ("create_return", "move", "subscribe")):
            raise ValueError(f"{provider} sends no webhooks in this mock")
        self.mock = mock
        self.notes = notes
        """What a fuzzed run drew for the deliveries, for its failure note."""
        self.provider = provider
        self.account = account
        self.backend: Creating = backend  # type: ignore[assignment]
        self.contract = contract(provider)
        events = sorted(self.contract.openapi.get("webhooks", {}))
        webhook = self.backend.subscribe(account, {"url": SUBSCRIPTION_URL, "events": events})
        self.secret: str = webhook["secret"]
        """The subscription's signing secret: give it to the consumer."""
        self._delivered: set[str] = set()

    @property
    def variation(self) -> Variation | None:
        return self.mock.varying.current()

    # --- flows -------------------------------------------------------------------------------------

    def create(self, order_id: str, status: str | None = None, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """A return for `order_id` (the provider's documented create example, or `body`), moved through the
        provider's own rules to `status`, each step raising the events it raises; the return as it is then."""
        request = {**(body or self._example()), "order_id": order_id}
        created = self.backend.create_return(self.account, request)
        lifecycle = self.mock.backends[self.provider].lifecycle
        if status is None or lifecycle is None:
            return created
        current = created
        for step in lifecycle.statuses[1:lifecycle.statuses.index(status) + 1]:
            current = self.backend.move(self.account, created["id"], step)
        return current

    def _example(self) -> dict[str, Any]:
        for op in self.contract.operations:
            if op.method == "POST" and op.operation_id == "createReturn":
                item = self.contract.openapi["paths"][op.path]["post"]["requestBody"]["content"]["application/json"]
                examples = item.get("examples", {})
                if examples:
                    return dict(next(iter(examples.values()))["value"])
        raise ValueError(f"{self.provider}: no documented create example; pass body=")

    # --- deliveries --------------------------------------------------------------------------------

    def deliver(self, handler: Handler | None = None, *, wsgi: Any = None, asgi: Any = None,
                url: str | None = None) -> list[int]:
        """Deliver every event queued since the last call to the consumer (one of handler, wsgi, asgi or
        url), as the provider would: in a fuzzed run varied, duplicated, delayed and retried. Answers the
        status of each attempt, in order; raises ConsumerFailed for a 5xx or an event never acknowledged."""
        send = _sender(handler, wsgi, asgi, url)
        variation = self.variation
        if variation is not None and not self._delivered:
            self._other_order(variation.chooser)
        events = [d for d in self.mock.store.deliveries(self.account) if d.event_id not in self._delivered]
        self._delivered |= {d.event_id for d in events}
        queue = self._plan(events, variation)
        statuses: list[int] = []
        while queue:
            sent = queue.pop(0)
            status = send(sent.body, self._headers(sent))
            statuses.append(status)
            if 200 <= status < 300:
                continue
            if status >= 500:
                raise ConsumerFailed(f"the consumer answered {status} to {sent.label} (attempt {sent.attempt})")
            if sent.attempt >= ATTEMPTS:
                why = (": its signature is the HMAC of the exact bytes sent, with the subscription's secret (check "
                       "it over the raw body, not over JSON parsed and written again)") if status in (401, 403) else ""
                raise ConsumerFailed(f"the consumer never acknowledged {sent.label}: {status} to each of "
                                     f"{ATTEMPTS} attempts of a genuine, signed delivery{why}")
            # A retry comes after at least one other queued delivery, as the provider's backoff lets others
            # go first: retried at once, a correct handler's 409 to received-before-created would be called
            # "never acknowledged".
            later = variation.chooser.index(None, len(queue) + 1, keep=DELAY_KEEP_ODDS) if variation else 0
            later = max(later, min(1, len(queue)))
            queue.insert(later, dataclasses.replace(sent, attempt=sent.attempt + 1))
            if later:
                self.notes.append(f"  webhooks: {sent.label} answered {status}: retried after {later} "
                                  f"other deliveries")
        return statuses

    def _headers(self, sent: Sent) -> dict[str, str]:
        deliverer = getattr(getattr(self.backend, "webhooks", None), "deliverer", None)
        signed = dataclasses.replace(sent.event, body=sent.body)
        own: dict[str, str] = deliverer.headers(signed) if deliverer is not None else {}
        return {"Content-Type": "application/json", **own}

    def _plan(self, events: list[Delivery], variation: Variation | None) -> list[Sent]:
        """The deliveries in the order the consumer gets them: as emitted, each once, when unvaried."""
        if variation is None:
            return [Sent(event, event.body) for event in events]
        chooser = variation.chooser
        keyed: list[tuple[int, int, Sent]] = []
        for position, event in enumerate(events):
            body = self._varied(variation, event)
            copies, delays = chooser.group(functools.partial(_shape, later_events=len(events) - position - 1))
            for copy, delay in zip(range(1, copies + 1), delays, strict=True):
                keyed.append((position + delay, len(keyed), Sent(event, body, copy)))
        ordered = [sent for _, _, sent in sorted(keyed, key=lambda k: (k[0], k[1]))]
        self._describe(ordered, {event.event_id: n for n, event in enumerate(events)})
        return ordered

    def _varied(self, variation: Variation, event: Delivery) -> bytes:
        """The event's body varied within its schema (once per event: a copy or a retry is the same bytes)."""
        validator = self._event_validator(event.event_type)
        if validator is None:
            return event.body
        body, changes = variation.answer(validator, self.contract.registry, orjson.loads(event.body), None)
        if not changes:
            return event.body
        label = Sent(event, event.body).label
        self.notes += [f"  webhooks: {label}: {change.describe()}" for change in changes]
        return orjson.dumps(body)

    def _event_validator(self, event_type: str) -> Any:
        item = self.contract.openapi.get("webhooks", {}).get(event_type, {})
        schema = item.get("post", {}).get("requestBody", {}).get("content", {}).get("application/json", {})
        ref = schema.get("schema", {}).get("$ref")
        return self.contract.validator(ref) if ref in self.contract.documents else None

    def _describe(self, ordered: list[Sent], emitted: dict[str, int]) -> None:
        """Notes naming what the plan did: a duplicate, an event before one emitted earlier for its return."""
        seen: dict[str, int] = {}
        for sent in ordered:
            seen[sent.event.event_id] = seen.get(sent.event.event_id, 0) + 1
        for event_id, count in seen.items():
            if count > 1:
                sent = next(s for s in ordered if s.event.event_id == event_id)
                self.notes.append(f"  webhooks: {sent.label} delivered {_times(count)}")
        by_subject: dict[str, list[Sent]] = {}
        for sent in ordered:
            if sent.copy == 1:
                by_subject.setdefault(sent.label.rpartition("(")[2], []).append(sent)
        for sents in by_subject.values():
            for n, later in enumerate(sents):
                for earlier in sents[n + 1:]:
                    if emitted[earlier.event.event_id] < emitted[later.event.event_id]:
                        self.notes.append(f"  webhooks: {later.label} before {earlier.event.event_type} "
                                          f"{earlier.event.event_id}")

    def _other_order(self, chooser: Chooser) -> None:
        """Maybe a return of an order the shop does not know (another sales channel on the same account),
        received, among the flows: drawn within the create request's schema."""
        if not chooser.index(None, 2, keep=OTHER_ORDER_KEEP_ODDS):
            return
        op = next(op for op in self.contract.operations if op.operation_id == "createReturn")
        assert op.body_validator is not None
        resolver = self.contract.registry.resolver(base_uri=str(op.body_validator.schema["$id"]))
        for _ in range(3):
            body = chooser.group(lambda c: instance(c, op.body_validator.schema, resolver))  # type: ignore[union-attr]
            if valid(op.body_validator, body):
                break
        else:
            return
        lifecycle = self.mock.backends[self.provider].lifecycle
        target = lifecycle.statuses[1] if lifecycle is not None else None
        made = self.create(body["order_id"], target, body)
        shown = escaped(orjson.dumps(body).decode())
        self.notes.append(f"  webhooks: state: a return of another order (another sales channel), {made['status']}: "
                          f"{made['id']} {shown if len(shown) <= 160 else shown[:157] + '...'}")


def _shape(chooser: Chooser, later_events: int) -> tuple[int, list[int]]:
    """How many times an event is delivered, and how many later-emitted events each copy comes after."""
    copies = 1 + chooser.index(None, 2, keep=DUPLICATE_KEEP_ODDS)
    return copies, [chooser.index(None, later_events + 1, keep=DELAY_KEEP_ODDS) for _ in range(copies)]


def _times(count: int) -> str:
    return {2: "twice", 3: "three times"}.get(count, f"{count} times")


# --- the consumer's forms ------------------------------------------------------------------------------


def _sender(handler: Handler | None, wsgi: Any, asgi: Any, url: str | None) -> Handler:
    given = [form for form in (handler, wsgi, asgi, url) if form is not None]
    if len(given) != 1:
        raise TypeError("deliver(...) takes one consumer: handler=, wsgi=, asgi= or url=")
    if handler is not None:
        return handler
    if wsgi is not None:
        return lambda body, headers: _wsgi(wsgi, body, headers)
    if asgi is not None:
        return lambda body, headers: asyncio.run(_asgi(asgi, body, headers))
    assert url is not None
    host = (urlsplit(url).hostname or "").lower()
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise ValueError(f"deliver(url=...) delivers to loopback only, not {host!r}")
    return lambda body, headers: _post(url, body, headers)


def _wsgi(app: Any, body: bytes, headers: Mapping[str, str]) -> int:
    from mockserver.web.direct import wsgi_environ

    environ = wsgi_environ("POST", "http", "127.0.0.1", "/webhooks", "", list(headers.items()), body)
    environ["wsgi.errors"] = io.StringIO()
    answer: list[int] = []

    def start_response(status: str, response_headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        if exc_info is not None:
            raise exc_info[1].with_traceback(exc_info[2])
        answer[:] = [int(status.split(" ", 1)[0])]
        return lambda data: None

    chunks: Iterable[bytes] = app(environ, start_response)
    try:
        for _ in chunks:
            pass
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
    return answer[0]


async def _asgi(app: Any, body: bytes, headers: Mapping[str, str]) -> int:
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/webhooks", "raw_path": b"/webhooks", "query_string": b"", "root_path": "",
             "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()],
             "server": ("127.0.0.1", 80), "client": ("127.0.0.1", 1)}
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    answer: list[int] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            answer[:] = [int(message["status"])]

    await app(scope, receive, send)
    return answer[0]


def _post(url: str, body: bytes, headers: Mapping[str, str]) -> int:
    from mockserver.domain.outbound import exchange

    return exchange("POST", url, list(headers.items()), body, timeout=10, limit=64 * 1024, cut=True).status


__all__ = ["ATTEMPTS", "ConsumerFailed", "Handler", "Webhooks"]
