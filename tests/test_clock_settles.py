"""State follows the clock: what the clock passes happens then, on every store and replica, exactly once,
without waiting for a read (issue 38, item 9); on a real clock, as time passes (a tick in each process)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from helpers import FIXTURES, PL, WORKER, Server, bearer, fixture
from test_webhooks import Receiver, until

from mockserver.domain.config import Config
from mockserver.live import LiveMock

SCENARIO = json.loads((FIXTURES / "scenarios" / "example.json").read_text())
CREATE = fixture("3plship/create-return.minimal.request.json")
MONDAY = "2026-01-05T10:00:00Z"


def clock(url: str, body: dict[str, Any]) -> requests.Response:
    answer = requests.post(f"{url}/__admin/clock", json=body, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer


def there_and_back(one: str, two: str) -> None:
    """Seed through `one`, move the clock 31 days on and back again through `one`, nobody reading in between;
    then read through `two`: the expiry and the refund's completion happened when the clock passed them."""
    clock(one, {"set": MONDAY})
    assert requests.post(f"{one}/__admin/seed", json=SCENARIO, timeout=10).status_code == 201
    clock(one, {"advance": "P31D"})
    clock(one, {"advance": "-P31D"})
    expired = requests.get(f"{two}/__admin/returns/35up/1002?account=shop-a", timeout=10).json()
    assert expired["status"] == "expired" and expired["history"][-1]["at"] == "2026-02-04T10:00:00.000Z"
    refunded = requests.get(f"{two}/__admin/returns/3plship/ret_seedrefunding", timeout=10).json()
    assert refunded["status"] == "completed" and refunded["resource"]["refund_status"] == "completed"
    assert refunded["resource"]["refund"]["completed_at"] == "2026-01-12T10:00:00.000Z"
    # ...and the provider's list says so too, though the clock stands a month before.
    listed = requests.get(f"{two}{PL}/returns?status=completed", headers=bearer("zl_test_demo"), timeout=10).json()
    assert [r["id"] for r in listed["data"]] == ["ret_seedrefunding"]
    entries = requests.get(f"{two}/__admin/journal", timeout=10).json()["entries"]
    provider_moves = sorted((e["path"], json.loads(e["request_body"])["to"]) for e in entries
                            if e["origin"] == "provider")
    assert provider_moves == [("/35up/v1/returns/1002", "expired"), (f"{PL}/returns/ret_seedrefunding", "completed")]


def test_in_process_the_clock_moved_there_and_back_leaves_the_moves_it_passed() -> None:
    with LiveMock(Config(clock="frozen")) as mock:
        there_and_back(mock.url, mock.url)


@pytest.mark.system
def test_on_sqlite_with_two_workers(tmp_path: Path) -> None:
    server = Server("--store", f"sqlite:{tmp_path / 'm.db'}", "--workers", "2", "--clock", "frozen").start()
    try:
        there_and_back(server.url, server.url)
    finally:
        server.stop()


@pytest.mark.system
def test_on_two_postgresql_replicas_each_move_once(postgres_url: str) -> None:
    one, two = (Server("--store", postgres_url, "--workers", "1", "--clock", "frozen").start() for _ in range(2))
    try:
        there_and_back(one.url, two.url)
        workers = {requests.get(f"{s.url}/__admin/health", timeout=10).headers[WORKER] for s in (one, two)}
        assert len(workers) == 2  # both replicas answered
    finally:
        one.stop()
        two.stop()


def autopilot_in(seconds: int) -> list[dict[str, Any]]:
    return [{"provider": "3plship", "moves": [{"to": "received", "after": f"PT{seconds}S"}]}]


@pytest.mark.system
def test_on_a_real_clock_a_due_move_happens_as_time_passes_without_a_request(tmp_path: Path) -> None:
    path = tmp_path / "autopilot.json"
    path.write_text(json.dumps(autopilot_in(1)))
    server = Server("--store", f"sqlite:{tmp_path / 'm.db'}", "--workers", "2", "--autopilot", str(path)).start()
    try:
        with Receiver() as receiver:
            requests.post(f"{server.url}{PL}/webhooks", json={"url": receiver.url, "events": ["return.received"]},
                          headers=bearer(), timeout=10)
            created = requests.post(f"{server.url}{PL}/returns", json=CREATE, headers=bearer(), timeout=10).json()
            (delivery,) = receiver.wait_for(1, seconds=20)  # nobody asks the mock anything meanwhile
            assert json.loads(delivery["body"])["data"]["id"] == created["data"]["id"]
            time.sleep(1.5)  # a second worker's tick would have sent it again by now
            assert len(receiver.received) == 1
    finally:
        server.stop()


@pytest.mark.system
def test_on_two_postgresql_replicas_ticking_a_move_is_made_and_sent_once(postgres_url: str, tmp_path: Path) -> None:
    path = tmp_path / "autopilot.json"
    path.write_text(json.dumps(autopilot_in(2)))
    one, two = (Server("--store", postgres_url, "--workers", "2", "--autopilot", str(path)).start() for _ in range(2))
    try:
        with Receiver() as receiver:
            requests.post(f"{one.url}{PL}/webhooks", json={"url": receiver.url, "events": ["return.received"]},
                          headers=bearer(), timeout=10)
            made = [requests.post(f"{s.url}{PL}/returns", json=CREATE, headers=bearer(), timeout=10)
                    for s in (one, two)]
            assert made[0].headers[WORKER] != made[1].headers[WORKER]  # both replicas answered
            receiver.wait_for(2, seconds=20)
            time.sleep(1.5)  # four workers tick: any second move or delivery would be here by now
            events = [json.loads(r["body"]) for r in receiver.received]
            assert sorted(e["data"]["id"] for e in events) == sorted(m.json()["data"]["id"] for m in made)
            entries = requests.get(f"{two.url}/__admin/journal", timeout=10).json()["entries"]
            assert len([e for e in entries if e["origin"] == "provider"]) == 2
    finally:
        one.stop()
        two.stop()


@pytest.fixture
def frozen() -> Iterator[LiveMock]:
    with LiveMock(Config(clock="frozen", clock_start=MONDAY)) as mock:
        yield mock


def test_a_clock_moved_in_code_is_followed_by_the_tick(frozen: LiveMock) -> None:
    """A clock moved without the mock knowing (a test's own FrozenClock, StoreClock.advance): the tick of
    each process makes what fell due, within its period."""
    requests.post(f"{frozen.url}/__admin/seed", json=SCENARIO, timeout=10)
    frozen.state.clock.advance(timedelta(days=31))  # type: ignore[attr-defined]

    def expired() -> bool:
        found = frozen.state.store.get("35up", "shop-a", "1002")
        return found is not None and found.status == "expired"

    until(expired, seconds=10)
