"""Autopilot: the provider's own moves on the mock's clock, made when the clock passes them, through the same
lifecycle as a client's move (validated, journaled as the provider's, sending its events)."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from helpers import FIXTURES, PL, UP35, Server, basic, bearer, cli, doc_blocks, fixture
from test_webhooks import Receiver

from mockserver.contract import contract, problems
from mockserver.domain.config import Config
from mockserver.live import LiveMock

CREATE = fixture("3plship/create-return.minimal.request.json")
CREATE_35UP = fixture("35up/create-return.request.json")
EVENT = contract("3plship").validator("webhook-event.json")
KEY = "zl_test_shop"
THURSDAY = "2026-01-08T10:00:00Z"


@pytest.fixture
def mock() -> Iterator[LiveMock]:
    with LiveMock(Config(clock="frozen", clock_start=THURSDAY, webhook_backoff_ms=100)) as server:
        yield server


def admin(mock: Any, method: str, path: str, **kwargs: Any) -> requests.Response:
    return requests.request(method, f"{mock.url}/__admin{path}", timeout=10, **kwargs)


def create(mock: Any, key: str = KEY) -> str:
    answer = requests.post(f"{mock.url}{PL}/returns", json=CREATE, headers=bearer(key), timeout=10)
    assert answer.status_code == 201, answer.text
    return str(answer.json()["data"]["id"])


def stored(mock: Any, return_id: str, provider: str = "3plship") -> dict[str, Any]:
    answer: dict[str, Any] = admin(mock, "GET", f"/returns/{provider}/{return_id}").json()
    return answer


def subscribe(mock: Any, url: str, key: str = KEY, events: tuple[str, ...] = ("return.received",)) -> str:
    answer = requests.post(f"{mock.url}{PL}/webhooks", json={"url": url, "events": list(events)}, headers=bearer(key),
                           timeout=10)
    assert answer.status_code == 201, answer.text
    return str(answer.json()["data"]["secret"])


def moves(mock: Any) -> list[dict[str, Any]]:
    entries = admin(mock, "GET", "/journal").json()["entries"]
    return [e for e in entries if e["origin"] == "provider"]


@pytest.mark.system
def test_the_warehouse_receives_the_return_3_business_days_after_it_was_created(tmp_path: Path) -> None:
    """The shop's test: a served mock (SQLite, two workers), the warehouse preset, the clock moved through the
    control plane: the status, the provider's journal entry and the signed return.received at a receiver."""
    server = Server("--store", f"sqlite:{tmp_path / 'm.db'}", "--workers", "2", "--clock", "frozen",
                    "--autopilot", "warehouse").start()
    try:
        with Receiver() as receiver:
            requests.post(f"{server.url}/__admin/clock", json={"set": THURSDAY}, timeout=10)
            secret = subscribe(server, receiver.url)
            return_id = create(server)
            # Thursday + 3 business days is Tuesday: Monday evening nothing has happened yet.
            requests.post(f"{server.url}/__admin/clock", json={"advance": "P4DT12H"}, timeout=10)
            assert stored(server, return_id)["status"] == "initiated" and receiver.received == []
            requests.post(f"{server.url}/__admin/clock", json={"advance": "PT12H"}, timeout=10)  # Tuesday 10:00

            record = stored(server, return_id)  # settled by the clock's move, not by this read
            assert record["status"] == "received"
            assert record["history"][-1] == {"status": "received", "at": "2026-01-13T10:00:00.000Z"}
            assert record["resource"]["return_shipping"] is None or \
                record["resource"]["return_shipping"]["status"] == "delivered"
            (move,) = moves(server)
            assert move["method"] == "MOVE" and move["path"] == f"{PL}/returns/{return_id}"
            assert move["at"] == "2026-01-13T10:00:00.000Z" and move["account"] == KEY
            assert json.loads(move["request_body"])["from"] == "initiated"
            assert json.loads(move["request_body"])["to"] == "received"
            assert "P3D (business days)" in json.loads(move["request_body"])["by"]

            (delivery,) = receiver.wait_for(1)
            signature = hmac.new(secret.encode(), delivery["body"], hashlib.sha256).hexdigest()
            assert delivery["headers"]["X-3plship-Signature"] == signature
            event = json.loads(delivery["body"])
            assert problems(EVENT, event) == []
            assert event["type"] == "return.received" and event["created_at"] == "2026-01-13T10:00:00.000Z"
            assert event["data"]["id"] == return_id and event["data"]["status"] == "received"
            # The client's own requests are journaled as the client's, and the move only once.
            origins = [e["origin"] for e in requests.get(f"{server.url}/__admin/journal", timeout=10).json()["entries"]]
            assert origins.count("provider") == 1 and origins.count("client") == 2
    finally:
        server.stop()


@pytest.mark.system
def test_on_two_postgresql_replicas_the_warehouse_moves_once_and_sends_once(postgres_url: str) -> None:
    """The same shop test on two replicas of one database, each with two workers (every one of them ticks):
    created through one, the clock moved through the other; one move, one journal entry, one delivery."""
    from helpers import WORKER

    one, two = (Server("--store", postgres_url, "--workers", "2", "--clock", "frozen", "--autopilot",
                       "warehouse").start() for _ in range(2))
    try:
        with Receiver() as receiver:
            requests.post(f"{one.url}/__admin/clock", json={"set": THURSDAY}, timeout=10)
            secret = subscribe(one, receiver.url)
            created = requests.post(f"{one.url}{PL}/returns", json=CREATE, headers=bearer(KEY), timeout=10)
            return_id = created.json()["data"]["id"]
            moved = requests.post(f"{two.url}/__admin/clock", json={"advance": "P5D"}, timeout=10)
            assert created.headers[WORKER] != moved.headers[WORKER]  # both replicas answered
            assert stored(one, return_id)["status"] == "received"
            (delivery,) = receiver.wait_for(1)
            assert delivery["headers"]["X-3plship-Signature"] == hmac.new(secret.encode(), delivery["body"],
                                                                          hashlib.sha256).hexdigest()
            assert json.loads(delivery["body"])["created_at"] == "2026-01-13T10:00:00.000Z"
            time.sleep(1.5)  # four workers tick every second: a second move or delivery would be here by now
            assert len(receiver.received) == 1
            assert len(moves(two)) == 1 and len(moves(one)) == 1
    finally:
        one.stop()
        two.stop()


def test_moves_follow_one_another_each_at_its_own_moment(mock: LiveMock) -> None:
    assert admin(mock, "PUT", "/autopilot", json={"provider": "3plship", "preset": "warehouse"}).status_code == 200
    return_id = create(mock)
    admin(mock, "POST", "/clock", json={"advance": "P30D"})
    history = stored(mock, return_id)["history"]
    assert history == [{"status": "initiated", "at": "2026-01-08T10:00:00.000Z"},
                       {"status": "received", "at": "2026-01-13T10:00:00.000Z"},
                       {"status": "inspected", "at": "2026-01-14T10:00:00.000Z"}]
    assert [(m["at"], json.loads(m["request_body"])["to"]) for m in moves(mock)] == [
        ("2026-01-13T10:00:00.000Z", "received"), ("2026-01-14T10:00:00.000Z", "inspected")]


def test_the_client_reading_n_times_moves_it_after_the_nth_read(mock: LiveMock) -> None:
    with Receiver() as receiver:
        subscribe(mock, receiver.url)
        admin(mock, "PUT", "/autopilot", json={"provider": "3plship", "moves": [{"to": "received", "after_reads": 2}]})
        return_id = create(mock)

        def read() -> str:
            page = requests.get(f"{mock.url}{PL}/returns", headers=bearer(KEY), timeout=10).json()["data"]
            return str(page[0]["status"])

        assert read() == "initiated"
        assert stored(mock, return_id)["status"] == "initiated"  # the control plane's reads are not the client's
        assert read() == "initiated"  # the second read still shows it as it was; the move follows it
        assert receiver.wait_for(1)[0]["headers"]["X-3plship-Event"] == "return.received"
        assert read() == "received"
        assert [json.loads(m["request_body"])["by"] for m in moves(mock)] == [
            "autopilot moves[0]: to received after 2 reads"]


def test_a_schedule_applies_to_stored_returns_counted_from_when_they_entered_their_status(mock: LiveMock) -> None:
    return_id = create(mock)
    admin(mock, "POST", "/clock", json={"advance": "P1D"})  # Friday
    assert stored(mock, return_id)["status"] == "initiated"
    admin(mock, "PUT", "/autopilot", json={"provider": "3plship", "moves": [{"to": "received", "after": "PT36H"}]})
    assert stored(mock, return_id)["status"] == "initiated"
    admin(mock, "POST", "/clock", json={"advance": "PT12H"})  # 36 h after it was created
    assert stored(mock, return_id)["history"][-1] == {"status": "received", "at": "2026-01-09T22:00:00.000Z"}


def test_an_accounts_schedule_replaces_the_providers_for_it_and_delete_stops_the_moves(mock: LiveMock) -> None:
    admin(mock, "PUT", "/autopilot", json={"provider": "3plship", "moves": [{"to": "received", "after": "P1D"}]})
    admin(mock, "PUT", "/autopilot", json={"provider": "3plship", "account": "zl_test_slow",
                                           "moves": [{"to": "received", "after": "P5D"}]})
    assert [s.get("account") for s in admin(mock, "GET", "/autopilot").json()["schedules"]] == [None, "zl_test_slow"]
    fast, slow, stopped = create(mock), create(mock, "zl_test_slow"), create(mock, "zl_test_other")
    assert admin(mock, "DELETE", "/autopilot?account=zl_test_slow").status_code == 204
    admin(mock, "PUT", "/autopilot", json={"provider": "3plship", "account": "zl_test_other",
                                           "moves": [{"to": "received", "after": "P9D"}]})
    admin(mock, "POST", "/clock", json={"advance": "P2D"})
    assert [stored(mock, r)["status"] for r in (fast, slow, stopped)] == ["received", "received", "initiated"]
    assert admin(mock, "DELETE", "/autopilot").status_code == 204
    later = create(mock)
    admin(mock, "POST", "/clock", json={"advance": "P30D"})
    assert stored(mock, later)["status"] == "initiated" and stored(mock, stopped)["status"] == "initiated"
    assert admin(mock, "GET", "/autopilot").json() == {"schedules": []}


def test_35up_moves_of_its_lifecycle_and_its_own_expiry_whichever_comes_first(mock: LiveMock) -> None:
    admin(mock, "PUT", "/autopilot", json={"provider": "35up", "moves": [
        {"to": "awaiting_return", "after": "PT1H"},
        {"from": "awaiting_return", "to": "customer_shipped", "after": "P40D"}]})
    shipped = {**CREATE_35UP, "orderId": "A1"}
    assert requests.post(f"{mock.url}{UP35}/returns", json=shipped, headers=basic(), timeout=10).status_code == 201
    admin(mock, "POST", "/clock", json={"advance": "P60D"})
    history = stored(mock, "A1", "35up")["history"]
    # awaiting_return 1 h after creation; the 30-day return window ends before the customer ships (40 days).
    assert [(h["status"], h["at"]) for h in history] == [("created", "2026-01-08T10:00:00.000Z"),
                                                         ("awaiting_return", "2026-01-08T11:00:00.000Z"),
                                                         ("expired", "2026-02-07T11:00:00.000Z")]
    assert [json.loads(m["request_body"])["by"] for m in moves(mock)] == [
        "autopilot moves[0]: to awaiting_return after PT1H", "return window of 30 days passed"]


@pytest.mark.parametrize(("body", "field", "words"), [
    ({"provider": "3plship", "moves": [{"to": "completed", "after": "P1D"}]}, "moves[0].to", "leads to completed"),
    ({"provider": "3plship", "moves": [{"to": "lost", "after": "P1D"}]}, "moves[0].to", "valid values"),
    ({"provider": "3plship", "moves": [{"from": "initiated", "to": "inspected", "after": "P1D"}]}, "moves[0].from",
     "no move from initiated to inspected"),
    ({"provider": "3plship", "moves": [{"to": "received", "after": "PT5H", "days": "business"}]}, "moves[0].after",
     "counted whole"),
    ({"provider": "3plship", "moves": [{"to": "received", "after": "P0D"}]}, "moves[0].after", "positive"),
    ({"provider": "3plship", "moves": [{"to": "received", "after": "3 days"}]}, "moves[0].after", "ISO-8601"),
    ({"provider": "3plship", "moves": [{"to": "received"}]}, "moves[0]", "after, after_reads"),
    ({"provider": "3plship", "moves": [{"to": "received", "after_reads": 0}]}, "moves[0].after_reads", "at least 1"),
    ({"provider": "35up", "moves": [{"to": "awaiting_return", "after_reads": 2}]}, "moves[0].after_reads",
     "no read"),
    ({"provider": "3plship", "preset": "factory"}, "preset", "warehouse"),
    ({"provider": "acme", "preset": "warehouse"}, "provider", "3plship"),
    ({"provider": "3plship"}, "", "moves, preset"),
])
def test_a_schedule_the_lifecycle_refuses_is_a_422_naming_the_field(mock: LiveMock, body: dict[str, Any],
                                                                     field: str, words: str) -> None:
    answer = admin(mock, "PUT", "/autopilot", json=body)
    assert answer.status_code == 422, answer.text
    detail = answer.json()["error"]["details"][0]
    assert detail.get("field", "") == field and words in detail["message"], detail
    assert admin(mock, "GET", "/autopilot").json() == {"schedules": []}


def test_a_scenario_file_sets_the_autopilot_with_its_returns(mock: LiveMock) -> None:
    scenario = json.loads((FIXTURES / "scenarios" / "warehouse.json").read_text())
    assert admin(mock, "POST", "/seed", json=scenario).status_code == 201
    assert admin(mock, "GET", "/autopilot").json()["schedules"][0]["preset"] == "warehouse"
    admin(mock, "POST", "/clock", json={"advance": "P7D"})
    statuses = {r["id"]: r["status"] for r in admin(mock, "GET", "/returns?provider=3plship").json()["returns"]}
    assert set(statuses.values()) == {"inspected"}, statuses
    bad = {**scenario, "autopilot": [{"provider": "3plship", "preset": "factory"}]}
    answer = admin(mock, "POST", "/seed", json=bad)
    assert answer.status_code == 422 and answer.json()["error"]["details"][0]["field"] == "autopilot[0].preset"


def test_the_pytest_marker_sets_the_autopilot(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
        import pytest, requests

        KEY = {"Authorization": "Bearer zl_test_shop"}
        BODY = {"order_id": "o1", "reason": "defective", "items": [{"sku": "P-1", "quantity": 1}], "refund_amount": 5}

        @pytest.mark.returns_mock(autopilot="warehouse")
        def test_in_process(returns_mock):
            created = requests.post("https://app.3plship.com/api/v1/returns", headers=KEY, json=BODY).json()["data"]
            returns_mock.advance("P7D")
            listed = requests.get("https://app.3plship.com/api/v1/returns", headers=KEY).json()["data"]
            assert [r["status"] for r in listed] == ["inspected"]
            assert [e.origin for e in returns_mock.journal].count("provider") == 2

        @pytest.mark.returns_mock(autopilot=[{"provider": "3plship", "moves": [{"to": "received", "after": "PT1H"}]}])
        def test_over_http(returns_mock_server):
            base = returns_mock_server.url_3plship
            requests.post(base + "/returns", headers=KEY, json=BODY)
            returns_mock_server.advance("PT1H")
            assert requests.get(base + "/returns", headers=KEY).json()["data"][0]["status"] == "received"
    """)
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=2)


@pytest.mark.system
@pytest.mark.parametrize(("value", "words"), [("factory", "no preset 'factory' (known: 3plship:warehouse)"),
                                              ("35up:warehouse", "no preset"),
                                              ("BAD_FILE", "moves[0].to: 'lost' is not one of the valid values")])
def test_a_bad_autopilot_flag_is_one_line_and_exit_2(tmp_path: Path, value: str, words: str) -> None:
    if value == "BAD_FILE":
        value = str(tmp_path / "autopilot.json")
        Path(value).write_text(json.dumps({"provider": "3plship", "moves": [{"to": "lost", "after": "P1D"}]}))
    result = cli("serve", "--store", "memory", "--port", "1", "--autopilot", value)
    assert result.returncode == 2 and words in result.stderr and len(result.stderr.strip().splitlines()) == 1, \
        result.stderr


@pytest.mark.system
def test_serve_takes_schedule_files_and_presets_together(tmp_path: Path) -> None:
    path = tmp_path / "autopilot.json"
    path.write_text(json.dumps([{"provider": "35up", "moves": [{"to": "awaiting_return", "after": "P1D"}]},
                                {"provider": "3plship", "account": "zl_test_a", "moves": [
                                    {"to": "received", "after_reads": 1}]}]))
    server = Server("--store", "memory", "--autopilot", str(path), "--autopilot", "3plship:warehouse").start()
    try:
        schedules = requests.get(f"{server.url}/__admin/autopilot", timeout=10).json()["schedules"]
        assert [(s["provider"], s.get("account"), s.get("preset")) for s in schedules] == [
            ("35up", None, None), ("3plship", "zl_test_a", None), ("3plship", None, "warehouse")]
    finally:
        server.stop()


def test_the_guides_shop_tests_pass(pytester: pytest.Pytester) -> None:
    """The webhooks guide's shop tests, as written: the warehouse's move, and a duplicate booked once."""
    (source,) = doc_blocks("The provider's own moves: autopilot", "python")
    pytester.makepyfile(test_guide=source)
    pytester.runpytest("-p", "no:cacheprovider", "--returns-mock-strict").assert_outcomes(passed=2)
