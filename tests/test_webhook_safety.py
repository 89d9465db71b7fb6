"""Webhook neighbours and targets (issue 38, items 2 and 3): one subscription's slow receiver holds up only
itself; an account holds a bounded number of subscriptions, so an event's attempts are bounded; the mock
never posts to a control plane, a link-local address, or (listening beyond loopback) loopback unless told.
Real receivers on loopback, real sockets that never answer."""

from __future__ import annotations

import json
import socket
import threading
import time
from typing import Any

import pytest
import requests
from helpers import PL, Server, bearer, cli, fixture
from test_webhooks import Receiver, until

from mockserver.domain.config import Config
from mockserver.live import LiveMock

CREATE = fixture("3plship/create-return.minimal.request.json")


class Hanger:
    """A receiver that accepts, reads the request and never answers: each attempt hangs until the mock's
    timeout. Counts the connections it holds."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=256)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/hang"
        self.held: list[socket.socket] = []
        self.closed_by_mock = 0
        self._lock = threading.Lock()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            conn.recv(65536)
            with self._lock:
                self.held.append(conn)

    def still_hanging(self) -> int:
        """Connections held whose other side has not given up (the mock's attempt still waits)."""
        with self._lock:
            held = list(self.held)
        hanging = 0
        for conn in held:
            conn.setblocking(False)
            try:
                gone = conn.recv(1) == b""
            except BlockingIOError:
                gone = False
            except OSError:
                gone = True
            hanging += not gone
        return hanging

    def close(self) -> None:
        self.listener.close()
        with self._lock:
            for conn in self.held:
                conn.close()


def subscribe(mock: Any, url: str, key: str) -> requests.Response:
    return requests.post(f"{mock.url_3plship}/webhooks", json={"url": url, "events": ["return.created"]},
                         headers=bearer(key), timeout=10)


def deliveries(mock: Any, **query: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = requests.get(f"{mock.url}/__admin/webhooks/deliveries", params=query,
                                               timeout=10).json()["deliveries"]
    return found


@pytest.mark.system
def test_a_hundred_hanging_subscriptions_do_not_delay_other_accounts_fast_receivers() -> None:
    """100 subscriptions of one account whose receiver never answers, then 41 events for fast receivers of
    other accounts: the fast ones get theirs while every slow attempt is still hanging (e98ac54: the process's
    16 delivery slots were all hanging, and the fast events waited behind them)."""
    hanger = Hanger()
    config = Config(webhook_timeout_ms=60_000, webhook_attempts=1, webhook_subscriptions_per_account=100)
    try:
        with LiveMock(config) as mock, Receiver() as fast:
            for _ in range(100):
                assert subscribe(mock, hanger.url, "zl_test_slow").status_code == 201
            for n in range(41):
                subscribe(mock, fast.url, f"zl_test_fast{n}")
            requests.post(f"{mock.url_3plship}/returns", json=CREATE, headers=bearer("zl_test_slow"), timeout=10)
            until(lambda: len(hanger.held) == 100, seconds=30)  # every slow attempt in flight at once
            for n in range(41):
                requests.post(f"{mock.url_3plship}/returns", json=CREATE, headers=bearer(f"zl_test_fast{n}"),
                              timeout=10)
            fast.wait_for(41, seconds=30)
            assert hanger.still_hanging() == 100  # not one slow attempt had ended when the fast ones arrived
            assert {json.loads(r["body"])["type"] for r in fast.received} == {"return.created"}
    finally:
        hanger.close()


def test_a_subscription_gets_its_events_one_at_a_time_in_the_order_they_happened() -> None:
    """A slow receiver is sent one attempt at a time (e98ac54: two at once), so its events arrive in order."""
    with LiveMock(Config(webhook_timeout_ms=5000)) as mock, Receiver(script=[(200, 0.3)] * 5) as slow:
        subscribe(mock, slow.url, "zl_test_a")
        made = [requests.post(f"{mock.url_3plship}/returns", json={**CREATE, "order_id": f"ord_{n}"},
                              headers=bearer("zl_test_a"), timeout=10).json()["data"]["id"] for n in range(5)]
        slow.wait_for(5, seconds=20)
        assert [json.loads(r["body"])["data"]["id"] for r in slow.received] == made
        assert slow.most_in_flight == 1  # each attempt answered before the next was sent


def test_a_failed_events_retry_waits_its_backoff_while_the_subscriptions_later_events_go_ahead() -> None:
    """As from any at-least-once sender: the order holds while each event is acknowledged; a retry does not
    hold up what came after it (the webhooks guide says so)."""
    with LiveMock(Config(webhook_backoff_ms=600_000)) as mock, Receiver(script=[(500, 0.0)]) as receiver:
        subscribe(mock, receiver.url, "zl_test_a")
        first = requests.post(f"{mock.url_3plship}/returns", json={**CREATE, "order_id": "ord_1"},
                              headers=bearer("zl_test_a"), timeout=10).json()["data"]["id"]
        receiver.wait_for(1)
        later = requests.post(f"{mock.url_3plship}/returns", json={**CREATE, "order_id": "ord_2"},
                              headers=bearer("zl_test_a"), timeout=10).json()["data"]["id"]
        receiver.wait_for(2)
        assert [(json.loads(r["body"])["data"]["id"], r["answered"]) for r in receiver.received] == [
            (first, 500), (later, 200)]
        (waiting,) = deliveries(mock, status="pending")
        assert [a["status_code"] for a in waiting["attempts"]] == [500]  # its retry still to come


def test_subscriptions_past_the_cap_are_refused_and_an_events_attempts_are_bounded() -> None:
    """3,000 subscriptions in one account turned 5 creates into 15,000 POSTs (e98ac54): now an account holds
    at most the cap, and an event is at most cap x attempts POSTs."""
    config = Config(webhook_subscriptions_per_account=5, webhook_attempts=2, webhook_backoff_ms=50)
    with LiveMock(config) as mock, Receiver(script=[(500, 0.0)] * 100) as failing:
        for _ in range(5):
            assert subscribe(mock, failing.url, "zl_test_a").status_code == 201
        refused = subscribe(mock, failing.url, "zl_test_a")
        assert refused.status_code == 409, refused.text  # a reason of state, as the mock's other refusals
        error = refused.json()["error"]
        assert error["code"] == "WEBHOOK_LIMIT_REACHED" and "5 webhook subscriptions" in error["message"]
        assert error["details"]["issue"] == error["message"]
        assert subscribe(mock, failing.url, "zl_test_b").status_code == 201  # the cap is per account
        requests.post(f"{mock.url_3plship}/returns", json=CREATE, headers=bearer("zl_test_a"), timeout=10)
        until(lambda: len(deliveries(mock, status="failed")) == 5, seconds=20)
        time.sleep(0.3)  # any attempt past the bound would have come by now
        assert len(failing.received) == 10


@pytest.mark.system
def test_the_cap_flag_is_checked() -> None:
    result = cli("serve", "--store", "memory", "--webhook-subscriptions-per-account", "0")
    assert result.returncode == 2 and "--webhook-subscriptions-per-account" in result.stderr


# --- targets ---------------------------------------------------------------------------------------------

SEED = {"returns": [{"provider": "35up", "account": "victim", "status": "created", "return": fixture(
    "35up/create-return.request.json")}]}


def blocked_and_unsent(mock: Any, url: str, key: str = "zl_test_x") -> dict[str, Any]:
    """Subscribe `url`, create a return, and answer the delivery once it is settled."""
    assert subscribe(mock, url, key).status_code == 201  # subscribed all the same, as the provider would
    requests.post(f"{mock.url_3plship}/returns", json=CREATE, headers=bearer(key), timeout=10)
    until(lambda: all(d["status"] != "pending" for d in deliveries(mock, account=key)) and
          bool(deliveries(mock, account=key)))
    (delivery,) = deliveries(mock, account=key)
    return delivery


@pytest.mark.parametrize("path", ["/__admin/reset", "/%5F%5Fadmin/reset", "//__admin/reset", "/x/../__admin/reset",
                                  "/./__admin/reset", "/__ADMIN/reset"])
def test_no_loopback_port_s_admin_is_ever_a_target(path: str) -> None:
    with LiveMock() as victim, LiveMock() as mock:
        requests.post(f"{victim.url}/__admin/seed", json=SEED, timeout=10)
        port = victim.url.rsplit(":", 1)[1]
        delivery = blocked_and_unsent(mock, f"http://127.0.0.1:{port}{path}")
        assert delivery["status"] == "blocked" and "control plane" in delivery["attempts"][0]["error"]
        assert len(requests.get(f"{victim.url}/__admin/returns", timeout=10).json()["returns"]) == 1


@pytest.mark.parametrize("url", ["http://169.254.169.254/latest/meta-data", "http://[fe80::1]/hooks",
                                 "http://[::ffff:169.254.169.254]/x"])
def test_a_link_local_address_is_never_a_target_even_allowed(url: str) -> None:
    host = url.split("//", 1)[1].split("/", 1)[0].strip("[]")
    with LiveMock(Config(allow_webhook_hosts=(host,))) as mock:
        delivery = blocked_and_unsent(mock, url)
        assert delivery["status"] == "blocked" and "link-local" in delivery["attempts"][0]["error"]


def test_listening_beyond_loopback_loopback_targets_need_allowing() -> None:
    with Receiver() as receiver, LiveMock(Config(exposed=True)) as exposed:
        delivery = blocked_and_unsent(exposed, receiver.url)
        assert delivery["status"] == "blocked" and "listens beyond loopback" in delivery["attempts"][0]["error"]
        localhost = blocked_and_unsent(exposed, receiver.url.replace("127.0.0.1", "localhost"), "zl_test_y")
        assert localhost["status"] == "blocked"
        assert receiver.received == []
    with Receiver() as receiver, LiveMock(Config(exposed=True, allow_webhook_hosts=("127.0.0.1",))) as allowed:
        assert blocked_and_unsent(allowed, receiver.url)["status"] == "delivered"
        assert len(receiver.received) == 1


def test_a_name_allowed_is_resolved_and_its_address_checked() -> None:
    with Receiver() as receiver, LiveMock(Config(exposed=True, allow_webhook_hosts=("localhost",))) as mock:
        assert blocked_and_unsent(mock, receiver.url.replace("127.0.0.1", "localhost"))["status"] == "delivered"


@pytest.mark.system
def test_a_mock_bound_beyond_loopback_cannot_be_made_to_reset_another_mock() -> None:
    """The red team's case (e98ac54): a mock on 0.0.0.0 with an admin token; a client without the token
    subscribes http://127.0.0.1:<another mock>/__admin/reset and creates a return: the other mock was reset."""
    server = Server("--host", "0.0.0.0", "--admin-token", "t0ken-for-tests", "--store", "memory").start()
    token = {"Authorization": "Bearer t0ken-for-tests"}
    try:
        with LiveMock() as victim, Receiver() as receiver:
            requests.post(f"{victim.url}/__admin/seed", json=SEED, timeout=10)
            base = server.url + PL
            for url in (f"{victim.url}/__admin/reset", receiver.url):
                assert requests.post(f"{base}/webhooks", json={"url": url, "events": ["return.created"]},
                                     headers=bearer(), timeout=10).status_code == 201
            requests.post(f"{base}/returns", json=CREATE, headers=bearer(), timeout=10)

            def settled() -> list[dict[str, Any]]:
                found: list[dict[str, Any]] = requests.get(f"{server.url}/__admin/webhooks/deliveries",
                                                           headers=token, timeout=10).json()["deliveries"]
                return found if len(found) == 2 and all(d["status"] != "pending" for d in found) else []

            until(lambda: bool(settled()))
            assert [d["status"] for d in settled()] == ["blocked", "blocked"]
            assert len(requests.get(f"{victim.url}/__admin/returns", timeout=10).json()["returns"]) == 1
            assert receiver.received == []
    finally:
        server.stop()
