"""3plship rate limits: headers on every response, per key, sliding window on the mock's clock, shared."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import requests
from helpers import PL, START, UP35, WORKER, Server, basic, bearer, cli, fixture

from mockserver.domain.clock import FrozenClock
from mockserver.domain.config import Config
from mockserver.store import MemoryStore
from mockserver.web import create_app


def app_with(limit: str | None, clock: FrozenClock) -> object:
    return create_app(Config(rate_limit=limit, self_check=True), store=MemoryStore(), clock=clock)


def test_every_3plship_response_carries_the_headers_counted_per_key() -> None:
    clock = FrozenClock(START)
    client = app_with(None, clock).test_client()  # type: ignore[attr-defined]
    answers = [client.get(f"{PL}/returns", headers=bearer("zl_test_a")) for _ in range(3)]
    answers.append(client.post(f"{PL}/returns", json={}, headers=bearer("zl_test_a")))  # 422
    answers.append(client.put(f"{PL}/returns", headers=bearer("zl_test_a")))  # 405
    assert [a.headers["X-RateLimit-Remaining"] for a in answers] == ["999", "998", "997", "996", "995"]
    assert {a.headers["X-RateLimit-Limit"] for a in answers} == {"1000"}
    reset = int(answers[0].headers["X-RateLimit-Reset"])
    assert reset == int(START.timestamp()) // 3600 * 3600 + 3600  # the end of the current hour bucket
    other = client.get(f"{PL}/returns", headers=bearer("zl_test_b"))
    assert other.headers["X-RateLimit-Remaining"] == "999"
    unauthenticated = client.get(f"{PL}/returns")
    assert unauthenticated.status_code == 401 and "X-RateLimit-Limit" in unauthenticated.headers
    assert "X-RateLimit-Limit" not in client.post(f"{UP35}/returns", json={}, headers=basic()).headers
    # Not enforced by default: far past the limit, still answered.
    for _ in range(1000):
        client.get(f"{PL}/returns", headers=bearer("zl_test_c"))
    last = client.get(f"{PL}/returns", headers=bearer("zl_test_c"))
    assert last.status_code == 200 and last.headers["X-RateLimit-Remaining"] == "0"


def test_enforced_limit_refuses_with_429_and_retry_after_on_a_sliding_window() -> None:
    clock = FrozenClock(START)
    client = app_with("3/minute", clock).test_client()  # type: ignore[attr-defined]
    assert [client.get(f"{PL}/returns", headers=bearer()).status_code for _ in range(3)] == [200, 200, 200]
    refused = client.get(f"{PL}/returns", headers=bearer())
    assert refused.status_code == 429
    body = refused.get_json()
    assert body["success"] is False and body["error"]["code"] == "RATE_LIMIT_EXCEEDED"
    assert body["meta"]["version"] == "v1"
    assert refused.headers["X-RateLimit-Remaining"] == "0"
    # START is on a minute boundary: at the next boundary the 3 still count in full, a moment later they
    # begin to fade. Retry-After is that moment in whole seconds.
    assert refused.headers["Retry-After"] == "61"
    assert client.get(f"{PL}/returns", headers=bearer("zl_test_other")).status_code == 200  # per key

    clock.advance(timedelta(seconds=60))
    assert client.get(f"{PL}/returns", headers=bearer()).status_code == 429  # just before
    clock.advance(timedelta(milliseconds=1))
    assert client.get(f"{PL}/returns", headers=bearer()).status_code == 200  # just after

    # Sliding: 30 s later half of the previous bucket's 3 still count, plus the 1 of this bucket.
    clock.advance(timedelta(seconds=30))
    answers = [client.get(f"{PL}/returns", headers=bearer()) for _ in range(2)]
    assert [a.status_code for a in answers] == [200, 429]
    # 3 * (1 - x/60) + 2 < 3 from x = 40 s into the bucket: 10 s from now.
    assert answers[1].headers["Retry-After"] == "10"
    clock.advance(timedelta(seconds=10))
    assert client.get(f"{PL}/returns", headers=bearer()).status_code == 200


def test_a_refused_request_changes_nothing() -> None:
    clock = FrozenClock(START)
    client = app_with("1/hour", clock).test_client()  # type: ignore[attr-defined]
    assert client.get(f"{PL}/returns", headers=bearer()).status_code == 200
    refused = client.post(f"{PL}/returns", json=fixture("3plship/create-return.minimal.request.json"),
                          headers=bearer())
    assert refused.status_code == 429
    clock.advance(timedelta(hours=2))
    assert client.get(f"{PL}/returns", headers=bearer()).get_json()["data"] == []


def test_limits_are_set_at_run_time_through_the_admin_api() -> None:
    clock = FrozenClock(START)
    client = app_with(None, clock).test_client()  # type: ignore[attr-defined]
    assert client.get("/__admin/rate-limits").get_json() == {"windows": [{"limit": 1000, "period": "hour"}],
                                                             "enforce": False}
    assert client.put("/__admin/rate-limits", json={"limit": 2, "period": "second"}).status_code == 200
    codes = [client.get(f"{PL}/returns", headers=bearer()).status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    assert client.put("/__admin/rate-limits", json={"limit": 0, "period": "hour"}).status_code == 422
    assert client.put("/__admin/rate-limits", json={"limit": 5, "period": "fortnight"}).status_code == 422


def test_several_windows_at_once_refuse_when_any_is_full_and_count_in_none() -> None:
    """3plship tracks per minute, per hour and per day at once. The headers describe the window closest to
    its limit; a request refused by one window is counted in none (else the hour would fill up early)."""
    clock = FrozenClock(START)  # on the hour
    client = app_with("3/minute,5/hour", clock).test_client()  # type: ignore[attr-defined]

    def call() -> tuple[int, str, str, str | None]:
        answer = client.get(f"{PL}/returns", headers=bearer())
        return (answer.status_code, answer.headers["X-RateLimit-Limit"], answer.headers["X-RateLimit-Remaining"],
                answer.headers.get("Retry-After"))

    assert [call() for _ in range(3)] == [(200, "3", "2", None), (200, "3", "1", None), (200, "3", "0", None)]
    status, limit, remaining, retry = call()
    assert (status, limit, remaining) == (429, "3", "0") and retry is not None and int(retry) <= 61
    clock.advance(timedelta(minutes=2))  # the minute window is empty again; the hour holds 3, not 4
    assert [call() for _ in range(2)] == [(200, "5", "1", None), (200, "5", "0", None)]
    status, limit, remaining, retry = call()
    assert (status, limit, remaining) == (429, "5", "0") and retry is not None and int(retry) > 3000
    clock.advance(timedelta(hours=2))
    assert call()[0] == 200


def test_admin_api_takes_several_windows() -> None:
    client = app_with(None, FrozenClock(START)).test_client()  # type: ignore[attr-defined]
    policy = {"windows": [{"limit": 10000, "period": "day"}, {"limit": 2, "period": "second"}], "enforce": True}
    assert client.put("/__admin/rate-limits", json=policy).status_code == 200
    assert client.get("/__admin/rate-limits").get_json()["windows"] == [{"limit": 2, "period": "second"},
                                                                        {"limit": 10000, "period": "day"}]
    assert [client.get(f"{PL}/returns", headers=bearer()).status_code for _ in range(3)] == [200, 200, 429]
    twice = {"windows": [{"limit": 1, "period": "hour"}, {"limit": 2, "period": "hour"}]}
    refused = client.put("/__admin/rate-limits", json=twice)
    assert refused.status_code == 422 and "one limit per period" in refused.get_json()["error"]["message"]
    assert client.put("/__admin/rate-limits", json={"windows": []}).status_code == 422


@pytest.mark.system
def test_workers_share_the_counts(tmp_path: Path) -> None:
    server = Server("--store", f"sqlite:{tmp_path / 's.db'}", "--workers", "2", "--rate-limit", "5/hour").start()
    try:
        codes: list[int] = []
        workers: set[str] = set()
        while len(codes) < 8 or (len(workers) < 2 and len(codes) < 40):
            with requests.Session() as s:  # a new connection each time: both workers answer
                answer = s.get(server.url + PL + "/returns", headers=bearer(), timeout=10)
                codes.append(answer.status_code)
                workers.add(answer.headers[WORKER])
        assert len(workers) == 2, workers
        assert codes == [200] * 5 + [429] * (len(codes) - 5)
    finally:
        server.stop()


@pytest.mark.system
@pytest.mark.parametrize(("values", "message"), [(["1000"], "N/PERIOD"), (["1000/fortnight"], "N/PERIOD"),
                                                 (["0/hour"], "N/PERIOD"), (["many/hour"], "N/PERIOD"),
                                                 (["5/minute", "9/minute"], "one limit per period"),
                                                 (["5/minute,9/minute"], "one limit per period")])
def test_bad_rate_limit_flag_is_exit_2(values: list[str], message: str) -> None:
    result = cli("serve", *[arg for value in values for arg in ("--rate-limit", value)])
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and message in result.stderr
