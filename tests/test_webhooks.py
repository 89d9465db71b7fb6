"""3plship webhooks against a real HTTP receiver on loopback: signatures, retries, tenants, hosts, restarts."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from helpers import PL, Server, bearer, fixture

from mockserver.contract import contract, problems
from mockserver.domain.config import Config
from mockserver.live import LiveMock

CREATE = fixture("3plship/create-return.minimal.request.json")
EVENT = contract("3plship").validator("webhook-event.json")


class Receiver:
    """An HTTP endpoint that records what it is sent and answers from a script of (status, delay)."""

    def __init__(self, script: list[tuple[int, float]] | None = None, port: int = 0) -> None:
        self.received: list[dict[str, Any]] = []
        self.script = list(script or [])
        self.in_flight = 0
        self.most_in_flight = 0
        """The most requests it held at once (each counted until just before its answer is sent)."""
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                with receiver._lock:
                    receiver.in_flight += 1
                    receiver.most_in_flight = max(receiver.most_in_flight, receiver.in_flight)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                status, delay = receiver.script.pop(0) if receiver.script else (200, 0.0)
                receiver.received.append({"path": self.path, "headers": dict(self.headers), "body": body,
                                          "at": time.monotonic(), "answered": status})
                time.sleep(delay)
                with receiver._lock:
                    receiver.in_flight -= 1
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def wait_for(self, count: int, seconds: float = 15) -> list[dict[str, Any]]:
        deadline = time.monotonic() + seconds
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(self.received) >= count, f"received {len(self.received)} of {count} in {seconds} s"
        return self.received


def until(check: Callable[[], bool], seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.fixture
def mock() -> Iterator[LiveMock]:
    with LiveMock(Config(webhook_backoff_ms=200, webhook_timeout_ms=300)) as server:
        yield server


def subscribe(base: str, url: str, key: str = "zl_test_hooks", **extra: Any) -> requests.Response:
    return requests.post(f"{base}/webhooks", json={"url": url, "events": ["return.created", "return.received"],
                                                   **extra}, headers=bearer(key), timeout=10)


def test_subscription_answer_and_signed_events(mock: LiveMock) -> None:
    with Receiver() as receiver:
        answer = subscribe(mock.url_3plship, receiver.url, description="ERP")
        assert answer.status_code == 201
        webhook = answer.json()["data"]
        assert webhook["id"].startswith("wh_") and webhook["secret"].startswith("whsec_")
        assert webhook["active"] is True and webhook["description"] == "ERP"
        # The documented answer's meta is the errors' one, not the returns endpoints' request_id.
        meta = answer.json()["meta"]
        assert set(meta) == {"timestamp", "requestId", "version"} and meta["requestId"].startswith("req_")
        assert meta["version"] == "v1"

        created = requests.post(f"{mock.url_3plship}/returns", json=CREATE, headers=bearer("zl_test_hooks"),
                                timeout=10).json()["data"]
        requests.patch(f"{mock.url_3plship}/returns/{created['id']}/status", json={"status": "received"},
                       headers=bearer("zl_test_hooks"), timeout=10)
        # Attempts run side by side: two events queued a moment apart may arrive in either order.
        arrived = {d["headers"]["X-3plship-Event"]: d for d in receiver.wait_for(2)}
        first, second = arrived["return.created"], arrived["return.received"]
        for delivery, event_type, status in ((first, "return.created", "initiated"),
                                             (second, "return.received", "received")):
            expected = hmac.new(webhook["secret"].encode(), delivery["body"], hashlib.sha256).hexdigest()
            assert delivery["headers"]["X-3plship-Signature"] == expected
            event = json.loads(delivery["body"])
            assert problems(EVENT, event) == []
            assert event["type"] == event_type and event["id"].startswith("evt_")
            assert next(iter(event["data"])) == "object" and event["data"]["object"] == "return"
            assert event["data"]["id"] == created["id"] and event["data"]["status"] == status
            assert delivery["headers"]["X-3plship-Event"] == event_type
        assert second["body"] != first["body"]
        # The secret is shown once: the admin API lists deliveries without it. A delivery is marked delivered
        # once the receiver's answer is back, a moment after the receiver saw the request.
        deadline = time.monotonic() + 5
        while True:
            deliveries = requests.get(mock.url + "/__admin/webhooks/deliveries", timeout=10).json()["deliveries"]
            if [d["status"] for d in deliveries] == ["delivered", "delivered"] or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        assert [d["status"] for d in deliveries] == ["delivered", "delivered"]
        assert "secret" not in deliveries[0] and webhook["secret"] not in json.dumps(deliveries)


def test_retry_after_a_500_with_backoff(mock: LiveMock) -> None:
    with Receiver(script=[(500, 0), (503, 0), (200, 0)]) as receiver:
        subscribe(mock.url_3plship, receiver.url)
        requests.post(f"{mock.url_3plship}/returns", json=CREATE, headers=bearer("zl_test_hooks"), timeout=10)
        tries = receiver.wait_for(3)
        assert [t["answered"] for t in tries] == [500, 503, 200]
        assert tries[0]["body"] == tries[1]["body"] == tries[2]["body"]  # the same event, re-sent
        assert tries[1]["at"] - tries[0]["at"] >= 0.2 and tries[2]["at"] - tries[1]["at"] >= 0.4  # doubling
        until(lambda: requests.get(mock.url + "/__admin/webhooks/deliveries?status=delivered", timeout=10)
              .json()["deliveries"] != [])
        (delivery,) = requests.get(mock.url + "/__admin/webhooks/deliveries", timeout=10).json()["deliveries"]
        assert [a["status_code"] for a in delivery["attempts"]] == [500, 503, 200]
        assert [a.get("next_attempt_in_ms") for a in delivery["attempts"]] == [200, 400, None]


def test_retry_after_a_timeout(mock: LiveMock) -> None:
    with Receiver(script=[(200, 1.0)]) as receiver:  # answers after the mock's 300 ms timeout
        subscribe(mock.url_3plship, receiver.url)
        requests.post(f"{mock.url_3plship}/returns", json=CREATE, headers=bearer("zl_test_hooks"), timeout=10)
        receiver.wait_for(2)
        until(lambda: requests.get(mock.url + "/__admin/webhooks/deliveries?status=delivered", timeout=10)
              .json()["deliveries"] != [])
        (delivery,) = requests.get(mock.url + "/__admin/webhooks/deliveries", timeout=10).json()["deliveries"]
        assert delivery["attempts"][0]["error"] == "no complete answer within 300 ms"
        assert delivery["attempts"][1]["status_code"] == 200


@pytest.mark.system
def test_gives_up_after_the_configured_attempts() -> None:
    with LiveMock(Config(webhook_backoff_ms=50, webhook_attempts=3)) as mock, \
            Receiver(script=[(500, 0)] * 10) as receiver:
        subscribe(mock.url_3plship, receiver.url)
        requests.post(f"{mock.url_3plship}/returns", json=CREATE, headers=bearer("zl_test_hooks"), timeout=10)
        until(lambda: requests.get(mock.url + "/__admin/webhooks/deliveries?status=failed", timeout=10)
              .json()["deliveries"] != [])
        time.sleep(0.3)
        assert len(receiver.received) == 3


def test_only_the_tenants_own_active_subscriptions_for_the_event_are_delivered(mock: LiveMock) -> None:
    with Receiver() as mine, Receiver() as theirs, Receiver() as paused, Receiver() as picky:
        subscribe(mock.url_3plship, mine.url, "zl_test_a")
        subscribe(mock.url_3plship, theirs.url, "zl_test_b")
        subscribe(mock.url_3plship, paused.url, "zl_test_a", active=False)
        requests.post(f"{mock.url_3plship}/webhooks", json={"url": picky.url, "events": ["return.received"]},
                      headers=bearer("zl_test_a"), timeout=10)
        requests.post(f"{mock.url_3plship}/returns", json=CREATE, headers=bearer("zl_test_a"), timeout=10)
        mine.wait_for(1)
        time.sleep(0.5)
        assert theirs.received == [] and paused.received == [] and picky.received == []


@pytest.mark.parametrize("url", ["http://example.com/hooks", "https://10.0.0.8/hooks", "http://192.168.1.2:80/x",
                                 "http://127.0.0.1.example.com/x"])
def test_a_host_the_mock_may_not_call_is_subscribed_and_its_deliveries_blocked(mock: LiveMock, url: str) -> None:
    """A schema-valid request is never refused for the mock's own safety: 201, and nothing is sent."""
    answer = subscribe(mock.url_3plship, url)
    assert answer.status_code == 201 and answer.json()["data"]["url"] == url
    requests.post(f"{mock.url_3plship}/returns", json=CREATE, headers=bearer("zl_test_hooks"), timeout=10)

    def blocked() -> list[dict[str, Any]]:
        found = requests.get(mock.url + "/__admin/webhooks/deliveries", timeout=10).json()["deliveries"]
        return [d for d in found if d["status"] == "blocked"]

    until(lambda: len(blocked()) == 1)
    delivery = blocked()[0]
    assert delivery["url"] == url and delivery["event_type"] == "return.created"
    assert [a["status_code"] for a in delivery["attempts"]] == [None]
    assert "not allowed" in delivery["attempts"][0]["error"] and "nothing was sent" in delivery["attempts"][0]["error"]


def test_every_documented_event_type_can_be_subscribed_to(mock: LiveMock) -> None:
    """The documented example subscribes to order, shipment and inventory events; the mock emits only the
    return events, and keeps the rest of the subscription."""
    events = ["order.created", "order.fulfilled", "order.shipped", "order.delivered", "order.cancelled",
              "shipment.created", "shipment.tracking_updated", "inventory.updated", "inventory.low_stock",
              "return.created", "return.received"]
    answer = requests.post(f"{mock.url_3plship}/webhooks", headers=bearer("zl_test_hooks"), timeout=10, json={
        "url": "http://127.0.0.1:9/hooks", "events": events, "description": "ERP", "active": True})
    assert answer.status_code == 201 and answer.json()["data"]["events"] == events
    unknown = {"url": "http://127.0.0.1:9/x", "events": ["return.lost"]}
    assert requests.post(f"{mock.url_3plship}/webhooks", json=unknown, headers=bearer("zl_test_hooks"),
                         timeout=10).status_code == 422


@pytest.mark.system
def test_allowed_hosts_are_accepted() -> None:
    with LiveMock(Config(allow_webhook_hosts=("hooks.internal",))) as mock:
        assert subscribe(mock.url_3plship, "https://hooks.internal/3pl").status_code == 201
        assert subscribe(mock.url_3plship, "https://other.internal/3pl").status_code == 201


@pytest.mark.system
def test_pending_deliveries_survive_a_restart(tmp_path: Path) -> None:
    store = f"sqlite:{tmp_path / 's.db'}"
    # The receiver fails every attempt until the first server is gone (however long stopping it takes), so
    # only the restarted server can deliver the event: 6 attempts, 1.5 s doubling, last well past the stop.
    with Receiver(script=[(500, 0)] * 6) as receiver:
        server = Server("--store", store, "--webhook-backoff-ms", "1500", "--webhook-timeout-ms", "500").start()
        try:
            subscribe(server.url + PL, receiver.url)
            requests.post(server.url + PL + "/returns", json=CREATE, headers=bearer("zl_test_hooks"), timeout=10)
            receiver.wait_for(1)  # the first attempt failed
        finally:
            server.stop()
        failed = len(receiver.received)
        assert all(r["answered"] == 500 for r in receiver.received)
        receiver.script = []  # from now on, 200
        server = Server("--store", store, "--webhook-backoff-ms", "1500", "--webhook-timeout-ms", "500").start()
        try:
            second = receiver.wait_for(failed + 1, seconds=60)[failed]
            assert second["answered"] == 200 and second["body"] == receiver.received[0]["body"]
            until(lambda: requests.get(server.url + "/__admin/webhooks/deliveries?status=delivered", timeout=10)
                  .json()["deliveries"] != [])
        finally:
            server.stop()


class Dripper:
    """A receiver that reads the request, then drips its answer a byte at a time, for ever (until closed)."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/slow"
        self.requests = 0
        self.stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._drip, args=(conn,), daemon=True).start()

    def _drip(self, conn: socket.socket) -> None:
        with conn:
            conn.recv(65536)
            self.requests += 1
            for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok":
                if self.stop.wait(0.2):
                    return
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    return

    def close(self) -> None:
        self.stop.set()
        self.listener.close()


@pytest.mark.system
def test_a_dripping_receiver_neither_holds_its_attempt_past_the_timeout_nor_delays_other_subscribers() -> None:
    dripper = Dripper()
    try:
        with LiveMock(Config(webhook_backoff_ms=100, webhook_timeout_ms=1000, webhook_attempts=2)) as mock, \
                Receiver() as receiver:
            subscribe(mock.url_3plship, dripper.url, key="zl_test_slow")
            for n in range(7):
                subscribe(mock.url_3plship, receiver.url, key=f"zl_test_fast{n}")
            for _ in range(3):  # the slow subscriber's events first, so they are claimed first
                requests.post(f"{mock.url_3plship}/returns", json=CREATE, headers=bearer("zl_test_slow"), timeout=10)
            for n in range(7):
                requests.post(f"{mock.url_3plship}/returns", json=CREATE, headers=bearer(f"zl_test_fast{n}"),
                              timeout=10)
            receiver.wait_for(7, seconds=30)
            # Not queued behind the slow ones: all seven arrived while the slow subscription still had
            # attempts to make (e98ac54 held them 20 s and more; tests/test_webhook_safety.py has 100 of them).
            slow_so_far = requests.get(mock.url + "/__admin/webhooks/deliveries?account=zl_test_slow",
                                       timeout=10).json()["deliveries"]
            assert sum(len(d["attempts"]) for d in slow_so_far) < 6

            def slow_done() -> bool:
                found = requests.get(mock.url + "/__admin/webhooks/deliveries?account=zl_test_slow",
                                     timeout=10).json()["deliveries"]
                return len(found) == 3 and all(d["status"] == "failed" for d in found)

            until(slow_done, seconds=20)
            slow = requests.get(mock.url + "/__admin/webhooks/deliveries?account=zl_test_slow",
                                timeout=10).json()["deliveries"]
            attempts = [a for d in slow for a in d["attempts"]]
            assert len(attempts) == 6
            # Cut at the deadline, not when the drip ends (its 40 bytes take 8 s, and would complete the answer).
            assert all(a["error"] == "no complete answer within 1000 ms" for a in attempts), attempts
            assert dripper.requests == 6  # each attempt sent once, never again by another worker's claim
    finally:
        dripper.close()


def test_attempt_times_are_on_the_mocks_clock_like_the_event() -> None:
    with LiveMock(Config(clock="frozen", clock_start="2026-03-02T09:00:00Z")) as mock, Receiver() as receiver:
        subscribe(mock.url_3plship, receiver.url)
        requests.post(f"{mock.url_3plship}/returns", json=CREATE, headers=bearer("zl_test_hooks"), timeout=10)
        (sent,) = receiver.wait_for(1)
        until(lambda: requests.get(mock.url + "/__admin/webhooks/deliveries?status=delivered", timeout=10)
              .json()["deliveries"] != [])
        (delivery,) = requests.get(mock.url + "/__admin/webhooks/deliveries", timeout=10).json()["deliveries"]
        created_at = json.loads(sent["body"])["created_at"]
        assert created_at == "2026-03-02T09:00:00.000Z" == delivery["attempts"][0]["at"]


@pytest.mark.system
def test_an_answer_with_its_length_ends_the_attempt_though_the_receiver_keeps_the_connection() -> None:
    """A receiver that ignores Connection: close (keeps the socket open after its answer) is delivered to,
    not timed out: the answer is whole when its Content-Length has arrived."""
    listener = socket.create_server(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/keep"
    held: list[socket.socket] = []

    def serve() -> None:
        conn, _ = listener.accept()
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
        held.append(conn)  # and never closed

    threading.Thread(target=serve, daemon=True).start()
    try:
        with LiveMock(Config(webhook_attempts=1, webhook_timeout_ms=3000)) as mock:
            subscribe(mock.url_3plship, url)
            requests.post(f"{mock.url_3plship}/returns", json=CREATE, headers=bearer("zl_test_hooks"), timeout=10)
            until(lambda: requests.get(mock.url + "/__admin/webhooks/deliveries", timeout=10)
                  .json()["deliveries"][0]["status"] != "pending", seconds=10)
            (delivery,) = requests.get(mock.url + "/__admin/webhooks/deliveries", timeout=10).json()["deliveries"]
            # Delivered: a receiver's open socket would have cut the attempt at its deadline, an error.
            assert delivery["status"] == "delivered" and delivery["attempts"][0]["status_code"] == 204
            assert delivery["attempts"][0]["error"] is None
    finally:
        for conn in held:
            conn.close()
        listener.close()
