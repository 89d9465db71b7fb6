"""Webhooks as they really arrive: duplicates, out of order, late, replayed, reproducible by seed; events
triggered from live state and old deliveries sent again. Real HTTP receivers on loopback, and the Python
step a fuzzer drives (`Mock.deliver`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from helpers import PL, Server, bearer, cli, doc_blocks, fixture
from test_webhooks import Receiver, until

from mockserver.contract import contract, problems
from mockserver.domain.clock import FrozenClock
from mockserver.domain.config import Config
from mockserver.domain.delivery_faults import chaos_profile
from mockserver.live import LiveMock
from mockserver.providers.registry import build_mock
from mockserver.store import MemoryStore

CREATE = fixture("3plship/create-return.minimal.request.json")
EVENT = contract("3plship").validator("webhook-event.json")
KEY = "zl_test_shop"
EVENTS = ["return.created", "return.received"]


@pytest.fixture
def mock() -> Iterator[LiveMock]:
    with LiveMock(Config(clock="frozen", clock_start="2026-01-05T10:00:00Z", webhook_backoff_ms=100)) as server:
        yield server


def admin(mock: Any, method: str, path: str, **kwargs: Any) -> requests.Response:
    return requests.request(method, f"{mock.url}/__admin{path}", timeout=10, **kwargs)


def subscribe(mock: Any, url: str, key: str = KEY) -> dict[str, Any]:
    answer = requests.post(f"{mock.url}{PL}/webhooks", json={"url": url, "events": EVENTS}, headers=bearer(key),
                           timeout=10)
    assert answer.status_code == 201, answer.text
    data: dict[str, Any] = answer.json()["data"]
    return data


def create(mock: Any, key: str = KEY) -> str:
    return str(requests.post(f"{mock.url}{PL}/returns", json=CREATE, headers=bearer(key), timeout=10)
               .json()["data"]["id"])


def receive(mock: Any, return_id: str, key: str = KEY) -> None:
    answer = requests.patch(f"{mock.url}{PL}/returns/{return_id}/status", json={"status": "received"},
                            headers=bearer(key), timeout=10)
    assert answer.status_code == 200


def events(receiver: Receiver) -> list[dict[str, Any]]:
    return [json.loads(r["body"]) for r in receiver.received]


def settled(mock: Any) -> list[dict[str, Any]]:
    """Every delivery, once none is pending any more."""
    until(lambda: all(d["status"] != "pending" for d in admin(mock, "GET", "/webhooks/deliveries").json()[
        "deliveries"]))
    found: list[dict[str, Any]] = admin(mock, "GET", "/webhooks/deliveries").json()["deliveries"]
    return found


def test_twice_a_receiver_sees_the_same_event_id_twice(mock: LiveMock) -> None:
    with Receiver() as receiver:
        subscribe(mock, receiver.url)
        rule = admin(mock, "POST", "/webhooks/faults", json={"event": "return.received", "duplicate": 2}).json()
        return_id = create(mock)
        receive(mock, return_id)
        receiver.wait_for(3)
        seen = events(receiver)
        received = [e for e in seen if e["type"] == "return.received"]
        assert len(received) == 2 and received[0] == received[1]  # the same event: id, body and all
        first, second = (r for r in receiver.received if r["headers"]["X-3plship-Event"] == "return.received")
        assert first["body"] == second["body"]
        assert first["headers"]["X-3plship-Signature"] == second["headers"]["X-3plship-Signature"]
        assert len([e for e in seen if e["type"] == "return.created"]) == 1  # the rule was for received only
        faults = sorted(d["fault"] for d in settled(mock))
        rule_id = rule["rules"][0]["id"]
        assert faults == ["", f"duplicate x2 ({rule_id}): copy 1 of 2", f"duplicate x2 ({rule_id}): copy 2 of 2"]
        attempts = [a for d in settled(mock) for a in d["attempts"]]
        assert sorted(a.get("fault", "") for a in attempts) == faults  # each attempt names its fault


def test_out_of_order_a_created_received_pair_arrives_received_first(mock: LiveMock) -> None:
    with Receiver() as receiver:
        subscribe(mock, receiver.url)
        admin(mock, "POST", "/webhooks/faults", json={"out_of_order": True})
        return_id = create(mock)
        assert [d["status"] for d in admin(mock, "GET", "/webhooks/deliveries").json()["deliveries"]] == ["held"]
        receive(mock, return_id)  # the pair is complete: released newest first
        receiver.wait_for(2)
        assert [e["type"] for e in events(receiver)] == ["return.received", "return.created"]
        assert {d["fault"].rsplit(", ", 1)[1] for d in settled(mock)} == {"released 1 of 2", "released 2 of 2"}


def test_a_lone_out_of_order_event_is_released_when_its_window_passes(mock: LiveMock) -> None:
    with Receiver() as receiver:
        subscribe(mock, receiver.url)
        admin(mock, "POST", "/webhooks/faults", json={"out_of_order": "shuffle", "window": "PT10M"})
        create(mock)
        (held,) = admin(mock, "GET", "/webhooks/deliveries").json()["deliveries"]
        assert held["status"] == "held" and held["held_until"] == "2026-01-05T10:10:00.000Z"
        admin(mock, "POST", "/clock", json={"advance": "PT9M"})
        assert admin(mock, "GET", "/webhooks/deliveries").json()["deliveries"][0]["status"] == "held"
        admin(mock, "POST", "/clock", json={"advance": "PT1M"})
        receiver.wait_for(1)
        assert [d["status"] for d in settled(mock)] == ["delivered"]


def test_a_delayed_event_waits_for_the_mocks_clock(mock: LiveMock) -> None:
    with Receiver() as receiver:
        subscribe(mock, receiver.url)
        admin(mock, "POST", "/webhooks/faults", json={"event": "return.created", "delay": "PT1H"})
        return_id = create(mock)
        receive(mock, return_id)
        receiver.wait_for(1)
        assert [e["type"] for e in events(receiver)] == ["return.received"]  # the created event is held back
        admin(mock, "POST", "/clock", json={"advance": "PT59M"})
        assert len(receiver.received) == 1
        admin(mock, "POST", "/clock", json={"advance": "PT1M"})
        receiver.wait_for(2)
        assert [e["type"] for e in events(receiver)] == ["return.received", "return.created"]


def test_a_replay_resends_an_acknowledged_event_later(mock: LiveMock) -> None:
    with Receiver() as receiver:
        subscribe(mock, receiver.url)
        admin(mock, "POST", "/webhooks/faults", json={"replay_after": "PT2H", "times": 1})
        create(mock)
        receiver.wait_for(1)
        until(lambda: any(d["status"] == "held" for d in admin(mock, "GET", "/webhooks/deliveries").json()[
            "deliveries"]))
        admin(mock, "POST", "/clock", json={"advance": "PT2H"})
        first, replay = receiver.wait_for(2)
        assert first["body"] == replay["body"]
        assert first["headers"]["X-3plship-Delivery"] != replay["headers"]["X-3plship-Delivery"]
        faults = [d["fault"] for d in settled(mock)]
        assert faults[1].startswith(f"replay of {first['headers']['X-3plship-Delivery']}")
        create(mock)  # times: 1 — the rule is spent
        receiver.wait_for(3)
        assert admin(mock, "GET", "/webhooks/faults").json() == {"rules": []}


def test_no_rule_no_duplicate(mock: LiveMock) -> None:
    with Receiver() as receiver, Receiver() as other:
        subscribe(mock, receiver.url)
        subscribe(mock, other.url)
        for _ in range(10):
            receive(mock, create(mock))
        receiver.wait_for(20)
        other.wait_for(20)
        settled(mock)
        for seen in (events(receiver), events(other)):
            assert len(seen) == 20 == len({e["id"] for e in seen})
            by_return: dict[str, list[str]] = {}
            for event in seen:
                by_return.setdefault(event["data"]["id"], []).append(event["type"])
            assert all(types == EVENTS for types in by_return.values())  # one subscription: in order


def run_with_chaos(seed: int) -> list[tuple[str, str, str]]:
    """Twenty returns created and received on a fresh mock with the heavy delivery chaos and a seed; every
    delivery made to a function (the fuzzer's way, no sockets), with the clock moved past every hold."""
    mock = build_mock(Config(seed=seed, send_webhooks=False, webhook_faults=chaos_profile("heavy")),
                      store=MemoryStore(), clock=FrozenClock(datetime(2026, 1, 5, 10, tzinfo=UTC)))
    arrived: list[tuple[str, str, str]] = []

    def handler(url: str, headers: dict[str, str], body: bytes) -> int:
        event = json.loads(body)
        arrived.append((event["id"], event["type"], event["data"]["order_id"]))
        return 200

    try:
        backend = mock.backends["3plship"]
        backend.subscribe(KEY, {"url": "http://127.0.0.1:9/hooks", "events": EVENTS})  # type: ignore[attr-defined]
        for n in range(20):
            created = backend.create_return(KEY, {**CREATE, "order_id": f"ord_{n}"})  # type: ignore[attr-defined]
            backend.update_status(KEY, created["id"], "received")  # type: ignore[attr-defined]
            mock.deliver(handler)
        for _ in range(3):
            mock.advance("PT2H")
            mock.deliver(handler)
    finally:
        mock.close()
    return arrived


def test_delivery_chaos_is_reproducible_by_seed() -> None:
    first, again, other = run_with_chaos(7), run_with_chaos(7), run_with_chaos(8)
    assert first == again
    assert first != other
    ids = [event_id for event_id, _, _ in first]
    assert len(ids) > len(set(ids)) == 40  # duplicates and replays, and every event arrived
    orders = [order for _, _, order in first]
    pairs = {order: [kind for _, kind, o in first if o == order] for order in orders}
    assert any(kinds.index("return.received") < kinds.index("return.created") for kinds in pairs.values())


@pytest.mark.system
def test_serve_starts_with_a_rules_file_and_a_delivery_chaos_profile(tmp_path: Path) -> None:
    rules = tmp_path / "webhook-faults.json"
    rules.write_text(json.dumps({"event": "return.created", "duplicate": 2, "times": 1}))
    server = Server("--store", "memory", "--webhook-faults", str(rules), "--webhook-chaos", "light",
                    "--deterministic", "7").start()
    try:
        shown = admin(server, "GET", "/webhooks/faults").json()["rules"]
        assert [{k: v for k, v in r.items() if k != "id"} for r in shown] == [
            {"event": "return.created", "duplicate": 2, "times": 1}, *chaos_profile("light")]
        for rule in shown[1:]:  # the chaos draws aside, the file's rule alone shapes the next event
            assert admin(server, "DELETE", f"/webhooks/faults/{rule['id']}").status_code == 204
        with Receiver() as receiver:
            subscribe(server, receiver.url)
            create(server)
            first, second = (json.loads(r["body"]) for r in receiver.wait_for(2))
            assert first == second  # the file's rule: the same event twice
    finally:
        server.stop()


@pytest.mark.system
@pytest.mark.parametrize(("flags", "words"), [
    (["--webhook-faults", "FILE"], "--webhook-faults FILE: event: 'order.created' is not an event this mock sends"),
    (["--webhook-chaos", "wild"], "invalid choice: 'wild'"),
])
def test_a_bad_webhook_faults_flag_is_one_line_and_exit_2(tmp_path: Path, flags: list[str], words: str) -> None:
    path = tmp_path / "faults.json"
    path.write_text(json.dumps({"event": "order.created", "duplicate": 2}))
    flags = [str(path) if flag == "FILE" else flag for flag in flags]
    result = cli("serve", "--store", "memory", "--port", "1", *flags)
    words = words.replace("FILE", str(path))
    assert result.returncode == 2 and words in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


@pytest.mark.parametrize(("body", "field", "words"), [
    ({"event": "order.created", "duplicate": 2}, "event", "not an event this mock sends"),
    ({"event": "return.received"}, "", "needs one of duplicate, delay, out_of_order, replay_after"),
    ({"duplicate": 1}, "duplicate", "at least 2"),
    ({"delay": "1 hour"}, "delay", "ISO-8601"),
    ({"out_of_order": "sideways"}, "out_of_order", "valid values"),
    ({"duplicate": 2, "events": 3}, "", "out_of_order"),
    ({"out_of_order": True, "window": "PT0S"}, "window", "positive"),
    ([{"duplicate": 2}, {"event": "inventory.updated", "delay": "PT1H"}], "[1].event", "not an event"),
])
def test_a_rule_that_could_never_fire_is_a_422_naming_the_field(mock: LiveMock, body: Any, field: str,
                                                                 words: str) -> None:
    answer = admin(mock, "POST", "/webhooks/faults", json=body)
    assert answer.status_code == 422, answer.text
    detail = answer.json()["error"]["details"][0]
    assert detail.get("field", "") == field and words in detail["message"], detail
    assert admin(mock, "GET", "/webhooks/faults").json() == {"rules": []}


def test_rules_are_listed_removed_and_their_chaos_profiles_shown(mock: LiveMock) -> None:
    added = admin(mock, "POST", "/webhooks/faults", json=[{"duplicate": 2}, {"delay": "PT1H", "account": "x"}])
    assert added.status_code == 201
    first, second = (r["id"] for r in added.json()["rules"])
    assert admin(mock, "DELETE", f"/webhooks/faults/{first}").status_code == 204
    assert [r["id"] for r in admin(mock, "GET", "/webhooks/faults").json()["rules"]] == [second]
    assert admin(mock, "DELETE", f"/webhooks/faults/{first}").status_code == 404
    assert admin(mock, "DELETE", "/webhooks/faults").status_code == 204
    assert set(admin(mock, "GET", "/webhooks/faults/chaos").json()["profiles"]) == {"light", "heavy"}


# --- trigger and redeliver ---------------------------------------------------------------------------------


def test_a_triggered_event_equals_the_one_the_move_sent_but_its_id(mock: LiveMock) -> None:
    with Receiver() as receiver:
        subscribe(mock, receiver.url)
        admin(mock, "PUT", "/autopilot", json={"provider": "3plship", "preset": "warehouse"})
        return_id = create(mock)
        admin(mock, "POST", "/clock", json={"advance": "P3D"})
        sent = next(e for e in (json.loads(r["body"]) for r in receiver.wait_for(2))
                    if e["type"] == "return.received")
        admin(mock, "POST", "/clock", json={"advance": "PT1H"})  # later: still dated when it was received
        answer = admin(mock, "POST", "/webhooks/trigger", json={"event": "return.received", "return": return_id})
        assert answer.status_code == 202, answer.text
        (queued,) = answer.json()["deliveries"]
        triggered = json.loads(receiver.wait_for(3)[2]["body"])
        assert triggered["id"] != sent["id"] and queued["event_id"] == triggered["id"]
        assert {**triggered, "id": None} == {**sent, "id": None}
        assert problems(EVENT, triggered) == []


def test_a_bad_override_is_a_422_naming_the_field_and_queues_nothing(mock: LiveMock) -> None:
    with Receiver() as receiver:
        subscribe(mock, receiver.url)
        return_id = create(mock)
        receiver.wait_for(1)
        for override, field in (({"data": {"status": "lost"}}, "override.data.status"),
                                ({"data": {"refund_amount": -1}}, "override.data.refund_amount"),
                                ({"data": {"order_id": None}}, "override.data.order_id"),
                                ({"surprise": 1}, "override.surprise")):
            answer = admin(mock, "POST", "/webhooks/trigger", json={"event": "return.created", "return": return_id,
                                                                    "override": override})
            assert answer.status_code == 422, answer.text
            assert answer.json()["error"]["details"][0]["field"] == field
        good = admin(mock, "POST", "/webhooks/trigger", json={"event": "return.created", "return": return_id,
                                                              "override": {"data": {"customer_email": "a@b.co"}}})
        assert good.status_code == 202
        assert json.loads(receiver.wait_for(2)[1]["body"])["data"]["customer_email"] == "a@b.co"
        assert len(settled(mock)) == 2


def test_trigger_refusals_name_what_is_wrong(mock: LiveMock) -> None:
    return_id = create(mock)
    assert admin(mock, "POST", "/webhooks/trigger", json={"event": "order.shipped", "return": return_id}
                 ).json()["error"]["details"][0]["field"] == "event"
    assert admin(mock, "POST", "/webhooks/trigger", json={"event": "return.created", "return": "ret_nope"}
                 ).status_code == 404
    answer = admin(mock, "POST", "/webhooks/trigger", json={"event": "return.created", "return": return_id})
    assert answer.status_code == 202 and answer.json()["deliveries"] == [] and "nothing" in answer.json()["note"]


def test_redeliver_sends_the_same_event_id_and_body_again(mock: LiveMock) -> None:
    with Receiver() as receiver:
        subscribe(mock, receiver.url)
        create(mock)
        (first,) = receiver.wait_for(1)
        (delivery,) = settled(mock)
        answer = admin(mock, "POST", f"/webhooks/deliveries/{delivery['id']}/redeliver")
        assert answer.status_code == 202 and answer.json()["delivery"]["fault"] == f"redelivery of {delivery['id']}"
        second = receiver.wait_for(2)[1]
        assert second["body"] == first["body"]
        assert second["headers"]["X-3plship-Signature"] == first["headers"]["X-3plship-Signature"]
        assert admin(mock, "POST", "/webhooks/deliveries/dlv_nope/redeliver").status_code == 404


@pytest.mark.system
def test_returns_mock_trigger_against_a_running_mock() -> None:
    server = Server("--store", "memory", "--clock", "frozen").start()
    try:
        with Receiver() as receiver:
            subscribe(server, receiver.url)
            return_id = create(server)
            receiver.wait_for(1)
            done = cli("trigger", "return.created", return_id, "--url", server.url, "--override",
                       '{"data": {"notes": null}}')
            assert done.returncode == 0, done.stderr
            assert json.loads(done.stdout)["deliveries"][0]["event_type"] == "return.created"
            receiver.wait_for(2)
            refused = cli("trigger", "return.created", return_id, "--url", server.url, "--override",
                          '{"data": {"status": "lost"}}')
            assert refused.returncode == 1 and "override.data.status" in refused.stderr
            assert cli("trigger", "return.created", return_id, "--override", "[1]").returncode == 2
    finally:
        server.stop()
    gone = cli("trigger", "return.created", "ret_x", "--url", server.url)
    assert gone.returncode == 2 and "no mock answered" in gone.stderr


@pytest.mark.system
def test_the_guides_commands_work(tmp_path: Path) -> None:
    """The webhooks guide's commands, as written, against a served mock and a receiver in 9000's place:
    the warehouse's move sent twice (one event id), then the same event built again by returns-mock trigger."""
    (block,) = doc_blocks("Webhooks as they really arrive")
    server = Server("--store", f"sqlite:{tmp_path / 'state.db'}").start()
    try:
        with Receiver() as receiver:
            script = block.replace("http://127.0.0.1:8080", server.url).replace("http://127.0.0.1:9000/hooks",
                                                                                receiver.url)
            env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
            result = subprocess.run(["bash", "-euo", "pipefail", "-c", script], capture_output=True, text=True,
                                    timeout=120, env=env, cwd=tmp_path)
            assert result.returncode == 0, result.stderr
            first, second, triggered = (json.loads(r["body"]) for r in receiver.wait_for(3))
            assert first == second and first["type"] == triggered["type"] == "return.received"
            assert first["data"]["status"] == "received" and triggered["data"]["status"] == "inspected"  # live state
            assert triggered["id"] != first["id"] and triggered["created_at"] == first["created_at"]
            time.sleep(0.5)  # nothing more comes: the rule was spent by the warehouse's event
            assert len(receiver.received) == 3
    finally:
        server.stop()


@pytest.mark.system
def test_on_two_postgresql_replicas_each_event_is_shaped_once(postgres_url: str) -> None:
    """Faults set on one replica shape the events of both, once each: a pair reversed, a duplicate made once
    (times: 1; its second copy opens a group of its own, released when its window passes), a delayed event
    released by the other replica's clock move, each sent once."""
    from helpers import WORKER

    one, two = (Server("--store", postgres_url, "--workers", "1", "--clock", "frozen").start() for _ in range(2))
    try:
        with Receiver() as receiver:
            subscribe(one, receiver.url)
            admin(one, "POST", "/webhooks/faults", json=[{"out_of_order": True, "account": KEY},
                                                         {"event": "return.received", "duplicate": 2, "times": 1},
                                                         {"account": "zl_test_late", "delay": "PT1H"}])
            return_id = create(one)
            answer = requests.patch(f"{two.url}{PL}/returns/{return_id}/status", json={"status": "received"},
                                    headers=bearer(KEY), timeout=10)
            assert answer.headers[WORKER] != requests.get(f"{one.url}/__admin/health", timeout=10).headers[WORKER]
            receiver.wait_for(2)
            assert [e["type"] for e in events(receiver)] == ["return.received", "return.created"]
            admin(two, "POST", "/clock", json={"advance": "PT1M"})  # the late copy's window
            receiver.wait_for(3)
            assert events(receiver)[2] == events(receiver)[0]
            subscribe(two, receiver.url, "zl_test_late")
            create(two, "zl_test_late")
            until(lambda: any(d["status"] == "held" for d in admin(one, "GET", "/webhooks/deliveries").json()[
                "deliveries"]))
            admin(two, "POST", "/clock", json={"advance": "PT1H"})
            receiver.wait_for(4)
            time.sleep(1.0)  # both replicas deliver: anything sent twice would be here by now
            assert len(receiver.received) == 4
    finally:
        one.stop()
        two.stop()
