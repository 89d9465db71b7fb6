"""Drives handlers.py in its three forms (the callable, WSGI through werkzeug's test Client, ASGI called
with a minimal scope/receive/send) with hand-made, hmac-signed 3plship events, and shows each planted bug
misbehaving on the sequence that exposes it while the correct consumer does not.

    /work/main/.venv/bin/python selftest_handlers.py          # exit 0 when every expectation holds
    /work/main/.venv/bin/python selftest_handlers.py --live   # also: real deliveries from returns-mock serve

A variant misbehaves on a sequence when it answers a validly signed delivery with anything but 2xx, or when
check_invariants(shop) fails after the sequence; a forged delivery must be answered 401 and change nothing.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from werkzeug.test import Client

from handlers import (
    BUGS,
    SIGNATURE_HEADER,
    Handler,
    Message,
    Shop,
    invariant_problems,
    make_asgi_app,
    make_handler,
    make_wsgi_app,
    sign,
)

SECRET = "whsec_selftest0123456789"
ORDERS = ("ord_1001", "ord_1002", "ord_1003")


@dataclass(frozen=True)
class Delivery:
    raw: bytes
    headers: dict[str, str]
    genuine: bool = True


def at(minute: int) -> str:
    return f"2026-01-05T10:{minute:02d}:00.000Z"


def return_data(rid: str, order_id: str, status: str, minute: int, **changes: Any) -> dict[str, Any]:
    """A return as the documented example shows it (no refund, no label_url), with "object" first."""
    data: dict[str, Any] = {
        "object": "return", "id": rid, "order_id": order_id, "status": status, "reason": "defective",
        "items": [{"sku": "MUG-RED", "quantity": 1}],
        "return_shipping": {"carrier": "usps", "tracking_number": "9400111899562712345678",
                            "tracking_url": "https://tools.usps.com/go/TrackConfirmAction?tLabels=9400111899562712345678",
                            "status": "delivered" if status == "received" else "in_transit"},
        "refund_amount": 49.99, "refund_shipping": False, "restocking_fee": 5.0, "refund_status": "pending",
        "customer_email": "customer@example.com", "created_at": at(0), "updated_at": at(minute),
    }
    data.update(changes)
    return data


def event(eid: str, kind: str, minute: int, data: dict[str, Any]) -> dict[str, Any]:
    return {"id": eid, "type": kind, "created_at": at(minute), "data": data}


def deliver(evt: dict[str, Any], *, compact: bool = False, secret: str = SECRET) -> Delivery:
    """json.dumps' default form unless compact (what a provider's serializer may well send)."""
    raw = (json.dumps(evt, separators=(",", ":"), ensure_ascii=False).encode() if compact
           else json.dumps(evt).encode())
    return Delivery(raw, {SIGNATURE_HEADER: sign(secret, raw), "Content-Type": "application/json"},
                    genuine=secret == SECRET)


def created(rid: str, order_id: str, minute: int, eid: str | None = None, **changes: Any) -> dict[str, Any]:
    return event(eid or f"evt_c{rid[4:]}", "return.created", minute,
                 return_data(rid, order_id, "initiated", minute, **changes))


def received(rid: str, order_id: str, minute: int, eid: str | None = None, **changes: Any) -> dict[str, Any]:
    return event(eid or f"evt_r{rid[4:]}", "return.received", minute,
                 return_data(rid, order_id, "received", minute, **changes))


no_shipping = {"return_shipping": None}
SCENARIOS: dict[str, list[Delivery]] = {
    "ordinary": [deliver(created("ret_A", "ord_1001", 1)), deliver(received("ret_A", "ord_1001", 2)),
                 deliver(created("ret_B", "ord_1002", 3))],
    "duplicate delivery": [deliver(created("ret_A", "ord_1001", 1)), deliver(received("ret_A", "ord_1001", 2)),
                           deliver(received("ret_A", "ord_1001", 2))],
    "received before created": [deliver(received("ret_A", "ord_1001", 2)),
                                deliver(created("ret_A", "ord_1001", 1))],
    "null return_shipping / tracking_url": [
        deliver(created("ret_C", "ord_1003", 1, **no_shipping)),
        deliver(received("ret_C", "ord_1003", 2, return_shipping={
            "carrier": "acme-post", "tracking_number": None, "tracking_url": None, "status": "pending"}))],
    "compact non-ASCII body": [deliver(created("ret_A", "ord_1001", 1, customer_email="jürgen@例え.jp"),
                                       compact=True)],
    "late retried delivery": [deliver(created("ret_A", "ord_1001", 1)), deliver(created("ret_B", "ord_1002", 2)),
                              deliver(received("ret_B", "ord_1002", 4)), deliver(received("ret_A", "ord_1001", 3))],
    "refund and label_url present": [
        deliver(created("ret_A", "ord_1001", 1, refund=None, return_shipping={
            "carrier": "ups", "tracking_number": "1Z999", "tracking_url": "https://www.ups.com/track?tracknum=1Z999",
            "label_url": "https://labels.example/1Z999.pdf", "status": "in_transit"}))],
    "return of another order": [deliver(created("ret_X", "pos_77", 1)), deliver(received("ret_X", "pos_77", 2))],
    "event type not handled": [deliver(event("evt_o1", "order.shipped", 1, {"object": "order", "id": "ord_1001"})),
                               deliver(created("ret_A", "ord_1001", 2))],
}
FORGED = [deliver(created("ret_A", "ord_1001", 1), secret="whsec_not_the_one"),
          Delivery(b'{"id": "evt_x"}', {SIGNATURE_HEADER: "0" * 64}, genuine=False),
          Delivery(deliver(created("ret_A", "ord_1001", 1)).raw, {}, genuine=False)]
EXPOSES = {
    "not_idempotent": "duplicate delivery", "needs_created_first": "received before created",
    "optional_field": "null return_shipping / tracking_url", "reserialized_signature": "compact non-ASCII body",
    "in_order": "late retried delivery", "strict_fields": "refund and label_url present",
    "unknown_order": "return of another order", "unsubscribed_type": "event type not handled",
}


# -- the three forms -----------------------------------------------------------------------------------
def via_callable(secret: str, shop: Shop, bug: str | None) -> Handler:
    return make_handler(secret, shop, bug)


def via_wsgi(secret: str, shop: Shop, bug: str | None) -> Handler:
    client = Client(make_wsgi_app(secret, shop, bug))

    def post(raw: bytes, headers: Mapping[str, str]) -> int:
        return client.post("/webhooks/3plship", data=raw, headers=dict(headers)).status_code
    return post


def via_asgi(secret: str, shop: Shop, bug: str | None) -> Handler:
    app = make_asgi_app(secret, shop, bug)

    def post(raw: bytes, headers: Mapping[str, str]) -> int:
        sent: list[Message] = []
        incoming = [{"type": "http.request", "body": raw[:10], "more_body": True},
                    {"type": "http.request", "body": raw[10:], "more_body": False}]

        async def receive() -> Message:
            return incoming.pop(0) if incoming else {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            sent.append(message)

        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                 "path": "/webhooks/3plship", "raw_path": b"/webhooks/3plship", "query_string": b"",
                 "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]}
        asyncio.run(app(scope, receive, send))
        start = next(m for m in sent if m["type"] == "http.response.start")
        return int(start["status"])
    return post


FORMS: dict[str, Callable[[str, Shop, str | None], Handler]] = {
    "callable": via_callable, "wsgi": via_wsgi, "asgi": via_asgi}


def run(form: str, bug: str | None, deliveries: list[Delivery]) -> tuple[list[int], list[str], Shop]:
    shop = Shop.with_orders(*ORDERS)
    handle = FORMS[form](SECRET, shop, bug)
    statuses = [handle(d.raw, d.headers) for d in deliveries]
    problems = [f"answered {s} to a valid delivery" for d, s in zip(deliveries, statuses, strict=True)
                if d.genuine and not 200 <= s < 300]
    return statuses, problems + invariant_problems(shop), shop


def main() -> int:
    failures: list[str] = []
    for form in FORMS:
        for bug in [None, *BUGS]:
            label = f"{form:8} {bug or 'correct':22}"
            statuses, problems, _ = run(form, bug, SCENARIOS["ordinary"])
            if problems:
                failures.append(f"{label} misbehaves on ordinary deliveries: {problems}")
            statuses, problems, shop = run(form, bug, FORGED)
            if statuses != [401] * len(FORGED) or shop.returns or shop.inbox:
                failures.append(f"{label} accepts a forged delivery: {statuses}")
            if bug is None:
                for name, deliveries in SCENARIOS.items():
                    statuses, problems, _ = run(form, bug, deliveries)
                    print(f"{label} {name:36} {statuses} {'; '.join(problems) or 'ok'}")
                    failures += [f"{label} on {name}: {p}" for p in problems]
            else:
                statuses, problems, _ = run(form, bug, SCENARIOS[EXPOSES[bug]])
                print(f"{label} {EXPOSES[bug]:36} {statuses} {'; '.join(problems)[:110] or 'NOT EXPOSED'}")
                if not problems:
                    failures.append(f"{label} survives {EXPOSES[bug]}")
    if "--live" in sys.argv:
        failures += live_check()
    print("\n".join(failures) or "every expectation holds")
    return 1 if failures else 0


def live_check() -> list[str]:
    """Real deliveries: returns-mock serve (loopback) POSTs its events to the correct WSGI app (loopback)."""
    import os
    import socket
    import subprocess
    import threading
    import time
    from collections.abc import Iterable
    from wsgiref.simple_server import WSGIRequestHandler, make_server
    from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

    import requests

    class Quiet(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    def free_port() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])

    port = free_port()
    mock = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "returns-mock"), "serve", "--store",
                             "memory", "--port", str(port), "--webhook-backoff-ms", "100"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base, key = f"http://127.0.0.1:{port}/3plship/api/v1", {"Authorization": "Bearer zl_test_live"}
    servers: list[Any] = []
    try:
        for _ in range(100):
            try:
                requests.get(f"{base}/returns", headers=key, timeout=1)
                break
            except requests.ConnectionError:
                time.sleep(0.1)
        hooked: dict[str, Shop] = {}
        for bug in [None, "reserialized_signature", "strict_fields"]:
            shop = hooked.setdefault(bug or "correct", Shop.with_orders("ord_live"))
            holder: dict[str, WSGIApplication] = {}  # the app, once the subscription's secret is known

            def hook(environ: WSGIEnvironment, start: StartResponse,
                     holder: dict[str, WSGIApplication] = holder) -> Iterable[bytes]:
                return holder["app"](environ, start)
            server = make_server("127.0.0.1", 0, hook, handler_class=Quiet)
            threading.Thread(target=server.serve_forever, daemon=True).start()
            servers.append(server)
            sub = requests.post(f"{base}/webhooks", headers=key, timeout=10, json={
                "url": f"http://127.0.0.1:{server.server_port}/hook", "events": ["return.created", "return.received"],
                "description": f"selftest {bug}", "active": True}).json()["data"]
            holder["app"] = make_wsgi_app(sub["secret"], shop, bug)
        created = requests.post(f"{base}/returns", headers=key, timeout=10, json={
            "order_id": "ord_live", "reason": "defective", "items": [{"sku": "MUG", "quantity": 1}],
            "refund_amount": 19.5, "customer_email": "kunde@example.de",
            "return_shipping": {"carrier": "dhl", "tracking_number": "JD0001"}}).json()["data"]
        requests.patch(f"{base}/returns/{created['id']}/status", headers=key, json={"status": "received"},
                       timeout=10).raise_for_status()
        time.sleep(3)
        correct = hooked["correct"]
        print(f"live: correct inbox {[d.type for d in correct.inbox]}, refunds {correct.refunds}")
        for name, shop in hooked.items():
            print(f"live: {name:22} inbox {len(shop.inbox)} refunds {dict(shop.refunds)} errors {shop.errors}")
        problems = invariant_problems(correct)
        if [d.type for d in correct.inbox] != ["return.created", "return.received"] or problems:
            return [f"live: correct consumer got {correct.inbox}: {problems}"]
        return []
    finally:
        for server in servers:
            server.shutdown()
        mock.terminate()
        mock.wait(10)


if __name__ == "__main__":
    sys.exit(main())
