"""`returns-mock proxy`: live traffic forwarded unchanged, checked in both directions, recorded."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from helpers import PL, UP35, Server, ThreadedServer, basic, bearer, cli, fixture

from mockserver.verify.har import validate_har

pytestmark = pytest.mark.system

CREATE = fixture("3plship/create-return.minimal.request.json")
KEY = "zl_test_proxy"
REC_KEY = "zl_test_recorded"


@pytest.fixture(scope="module")
def upstream() -> Iterator[Server]:
    """A faithful provider: the mock itself, as a real server."""
    server = Server("--store", "memory", "--35up-user", "shop:pw").start()
    yield server
    server.stop()


def proxy(*args: str) -> Server:
    return Server(*args, command="proxy").start()


class Broken:
    """A deliberately wrong 3plship: wrong types on create, an undocumented status on list."""

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if environ["REQUEST_METHOD"] == "POST":
            body = {"success": True, "data": {"id": 42, "status": "initiated"}, "meta": {}}
            start_response("201 Created", [("Content-Type", "application/json"), ("X-Upstream", "broken")])
        else:
            body = {"ok": True}
            start_response("202 Accepted", [("Content-Type", "application/json")])
        return [json.dumps(body).encode()]


class Slow:
    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        time.sleep(3)
        start_response("200 OK", [("Content-Type", "application/json")])
        return [b"{}"]


def violations(server: Server) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = requests.get(server.url + "/__admin/violations", timeout=10).json()["violations"]
    return found


def test_answers_come_back_unchanged_and_both_sides_are_checked(upstream: Server) -> None:
    front = proxy("--3plship-upstream", upstream.url + PL, "--35up-upstream", upstream.url + UP35)
    try:
        through = requests.post(front.url + PL + "/returns", json=CREATE, headers=bearer(KEY), timeout=10)
        assert through.status_code == 201
        rid = through.json()["data"]["id"]
        direct = requests.get(upstream.url + PL + "/returns", headers=bearer(KEY), timeout=10).json()
        assert [r["id"] for r in direct["data"]] == [rid]  # it reached the upstream, with the client's key
        listed = requests.get(front.url + PL + "/returns?limit=5", headers=bearer(KEY), timeout=10)
        assert listed.json()["data"] == direct["data"]
        assert listed.headers["X-RateLimit-Limit"] == "1000" and int(listed.headers["X-RateLimit-Remaining"]) < 1000
        # The client's mistake is forwarded (the provider answers it) and recorded as the client's.
        bad = requests.post(front.url + PL + "/returns", json={**CREATE, "reason": "broken"}, headers=bearer(KEY),
                            timeout=10)
        assert bad.status_code == 422 and bad.json()["error"]["details"]["field"] == "reason"
        up35 = requests.post(front.url + UP35 + "/returns", json=fixture("35up/create-return.request.json"),
                             auth=("shop", "pw"), timeout=10)
        assert up35.status_code == 201
        found = violations(front)
        assert [(v["source"], v["field"], v["provider"]) for v in found] == [("request", "reason", "3plship")]
        journal = requests.get(front.url + "/__admin/journal", timeout=10).json()["entries"]
        shown = "zl_test_***roxy"  # a 3plship account is its API key: told apart, not shown whole
        assert [(e["provider"], e["status"], e["account"]) for e in journal] == [
            ("3plship", 201, shown), ("3plship", 200, shown), ("3plship", 422, shown), ("35up", 201, "shop")]
        assert "returns-mock dashboard" in requests.get(front.url + "/__admin/", timeout=10).text
    finally:
        front.stop()


def test_a_provider_breaking_its_contract_is_caught_and_passed_on_unchanged() -> None:
    with ThreadedServer(Broken()) as broken:
        front = proxy("--3plship-upstream", broken.url + "/api/v1")
        try:
            created = requests.post(front.url + PL + "/returns", json=CREATE, headers=bearer(KEY), timeout=10)
            assert created.status_code == 201 and created.json()["data"]["id"] == 42  # never "fixed"
            assert created.headers["X-Upstream"] == "broken"
            assert requests.get(front.url + PL + "/returns", headers=bearer(KEY), timeout=10).status_code == 202
            found = violations(front)
            assert {v["source"] for v in found} == {"response"}
            assert any(v["field"] == "data.id" for v in found)
            assert any("status 202 is not documented for listReturns" in v["message"] for v in found)
        finally:
            front.stop()


def test_strict_mode_refuses_a_bad_request_without_forwarding_it(upstream: Server) -> None:
    front = proxy("--3plship-upstream", upstream.url + PL, "--strict")
    key = "zl_test_strict"
    try:
        refused = requests.post(front.url + PL + "/returns", json={**CREATE, "refund_amount": -1},
                                headers=bearer(key), timeout=10)
        assert refused.status_code == 422 and refused.json()["error"]["code"] == "VALIDATION_ERROR"
        assert "not forwarded" in refused.json()["error"]["message"]
        assert refused.json()["error"]["details"]["field"] == "refund_amount"
        assert requests.get(upstream.url + PL + "/returns", headers=bearer(key), timeout=10).json()["data"] == []
    finally:
        front.stop()


def test_an_upstream_down_or_slow_is_a_prompt_502_or_504_in_the_provider_format() -> None:
    with ThreadedServer(Slow()) as slow:
        front = proxy("--3plship-upstream", "http://127.0.0.1:9/api/v1", "--35up-upstream", slow.url + "/v1",
                      "--upstream-timeout-ms", "500")
        try:
            started = time.monotonic()
            down = requests.get(front.url + PL + "/returns", headers=bearer(KEY), timeout=10)
            assert down.status_code == 502 and down.json()["error"]["code"] == "BAD_GATEWAY"
            late = requests.patch(front.url + UP35 + "/returns/1", json={"status": "closed"}, headers=basic(),
                                  timeout=10)
            assert late.status_code == 504 and late.json()["error"]["code"] == "gateway_timeout"
            assert time.monotonic() - started < 5
            journal = requests.get(front.url + "/__admin/journal", timeout=10).json()["entries"]
            assert [e["status"] for e in journal] == [502, 504]
        finally:
            front.stop()


def test_the_recording_is_a_valid_har_without_secrets_even_after_kill_9(upstream: Server, tmp_path: Path) -> None:
    record = tmp_path / "live.har"
    front = proxy("--3plship-upstream", upstream.url + PL, "--35up-upstream", upstream.url + UP35,
                  "--record", str(record))
    try:
        rid = requests.post(front.url + PL + "/returns", json=CREATE, headers=bearer(REC_KEY), timeout=10).json()[
            "data"]["id"]
        requests.patch(f"{front.url}{PL}/returns/{rid}/status", json={"status": "received"}, headers=bearer(REC_KEY),
                       timeout=10)
        hook = requests.post(front.url + PL + "/webhooks", json={"url": "http://127.0.0.1:9/h", "events": [
            "return.created"]}, headers=bearer(REC_KEY), timeout=10).json()["data"]
        requests.post(front.url + UP35 + "/returns", json={**fixture("35up/create-return.request.json"),
                                                           "orderId": "rec-1"}, auth=("shop", "pw"), timeout=10)
        assert front.proc is not None
        os.kill(front.proc.pid, signal.SIGKILL)
        front.proc.wait(timeout=10)
    finally:
        front.stop()
    text = record.read_text()
    assert REC_KEY not in text and hook["secret"] not in text and "c2hvcDpwdw" not in text  # base64 of shop:pw
    report = validate_har(record)
    assert (report.entries, report.checked, report.ok) == (4, 4, True), report.summary()
    assert cli("validate-har", str(record)).returncode == 0

    # The recording seeds a mock in the state the provider last reported.
    assert "--har-account 3plship=ACCOUNT" in cli("serve", "--seed-file", str(record)).stderr
    seeded = Server("--store", "memory", "--seed-file", str(record), "--har-account", "3plship=zl_test_mine").start()
    try:
        mine = requests.get(seeded.url + PL + "/returns", headers=bearer("zl_test_mine"), timeout=10).json()["data"]
        assert [(r["id"], r["status"], r["order_id"]) for r in mine] == [(rid, "received", CREATE["order_id"])]
        up35 = requests.get(seeded.url + "/__admin/returns?provider=35up&account=shop", timeout=10).json()["returns"]
        assert [(r["id"], r["status"]) for r in up35] == [("rec-1", "created")]
    finally:
        seeded.stop()


def test_bad_proxy_flags_are_one_line_and_exit_2(tmp_path: Path) -> None:
    for args, message in ((["proxy"], "give at least one upstream"),
                          (["proxy", "--3plship-upstream", "ftp://x"], "http(s) URL"),
                          (["proxy", "--3plship-upstream", "http://x", "--host", "0.0.0.0"], "--admin-token"),
                          (["proxy", "--3plship-upstream", "http://x", "--record", str(tmp_path / "no/x.har")],
                           "does not exist")):
        result = cli(*args)
        assert result.returncode == 2 and result.stderr.count("\n") == 1 and message in result.stderr, result.stderr


@pytest.mark.parametrize(("body", "content_type"), [(b'{"order_id": "o"}', "text/plain"),
                                                     (b'{"order_id": "\\ud800"}', "application/json"),
                                                     (b"", "application/json")])
def test_the_proxy_finds_in_a_request_what_the_mock_refuses_it_for(upstream: Server, body: bytes,
                                                                   content_type: str) -> None:
    """One request check for both: what the mock (as the upstream) answers 400 for, the proxy records as
    the client's violation, in the same words."""
    front = proxy("--3plship-upstream", upstream.url + PL)
    try:
        answer = requests.post(front.url + PL + "/returns", data=body, timeout=10,
                               headers={**bearer(KEY), "Content-Type": content_type})
        assert answer.status_code == 400
        refused_for = answer.json()["error"]["details"]["issue"]
        found = [v for v in violations(front) if v["source"] == "request"]
        assert [v["message"] for v in found] == [refused_for]
    finally:
        front.stop()
