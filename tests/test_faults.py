"""Fault injection: every kind, matching, counting, no state change, start-up files and chaos profiles."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from flask.testing import FlaskClient
from helpers import PL, UP35, Server, basic, bearer, cli, fixture

from mockserver import mock_providers
from mockserver.domain.config import Config
from mockserver.store import MemoryStore
from mockserver.web import create_app, mock_of

CREATE = fixture("3plship/create-return.minimal.request.json")


@pytest.fixture
def client() -> FlaskClient:
    return create_app(Config(seed=1), store=MemoryStore()).test_client()


def add(client: Any, rule: Any) -> Any:
    response = client.post("/__admin/faults", json=rule)
    assert response.status_code == 201, response.get_json()
    return response.get_json()["rules"]


def test_an_injected_status_uses_the_provider_format_and_stores_nothing(client: FlaskClient) -> None:
    add(client, {"provider": "3plship", "method": "POST", "path": "/returns", "status": 503, "times": 1})
    faulted = client.post(f"{PL}/returns", json=CREATE, headers=bearer())
    assert faulted.status_code == 503
    body = faulted.get_json()
    assert body["success"] is False and body["error"]["code"] == "SERVICE_UNAVAILABLE"
    assert body["meta"]["version"] == "v1"
    assert client.get(f"{PL}/returns", headers=bearer()).get_json()["data"] == []  # GET is not matched
    assert client.post(f"{PL}/returns", json=CREATE, headers=bearer()).status_code == 201  # times: 1 is spent
    assert len(client.get(f"{PL}/returns", headers=bearer()).get_json()["data"]) == 1
    assert client.get("/__admin/faults").get_json()["rules"] == []
    journal = client.get("/__admin/journal").get_json()["entries"]
    assert [e["fault"] for e in journal] == ["status 503 (f1)", "", "", ""]


def test_35up_status_and_account_matching(client: FlaskClient) -> None:
    add(client, {"provider": "35up", "account": "shop-a", "status": 500})
    a = client.post(f"{UP35}/returns", json=fixture("35up/create-return.request.json"), headers=basic("shop-a"))
    assert a.status_code == 500 and a.get_json()["error"]["code"] == "internal_error"
    b = client.post(f"{UP35}/returns", json=fixture("35up/create-return.request.json"), headers=basic("shop-b"))
    assert b.status_code == 201
    assert [r["account"] for r in client.get("/__admin/returns").get_json()["returns"]] == ["shop-b"]


def test_injected_429_carries_retry_after(client: FlaskClient) -> None:
    add(client, {"provider": "3plship", "status": 429, "times": 1})
    response = client.get(f"{PL}/returns", headers=bearer())
    assert response.status_code == 429 and response.headers["Retry-After"] == "1"
    assert response.get_json()["error"]["code"] == "RATE_LIMIT_EXCEEDED"


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_an_injected_3plship_error_carries_the_rate_limit_headers_and_counts_nowhere(
        client: FlaskClient, status: int) -> None:
    """3plship puts X-RateLimit-* on every answer (the contract requires them on its errors), so a client
    reading them must not break on an injected error; the faulted request itself is not counted."""
    before = client.get(f"{PL}/returns", headers=bearer())
    add(client, {"provider": "3plship", "status": status, "times": 1})
    faulted = client.get(f"{PL}/returns", headers=bearer())
    after = client.get(f"{PL}/returns", headers=bearer())
    assert faulted.status_code == status
    assert faulted.headers["X-RateLimit-Limit"] == before.headers["X-RateLimit-Limit"]
    assert faulted.headers["X-RateLimit-Reset"] == before.headers["X-RateLimit-Reset"]
    remaining = int(before.headers["X-RateLimit-Remaining"])
    assert int(after.headers["X-RateLimit-Remaining"]) == remaining - 1  # the fault took no request
    assert faulted.headers["X-RateLimit-Remaining"] == ("0" if status == 429 else str(remaining))
    assert ("Retry-After" in faulted.headers) == (status in (429, 503))


def test_latency_delays_but_answers_normally(client: FlaskClient) -> None:
    before = int(client.get(f"{PL}/returns", headers=bearer()).headers["X-RateLimit-Remaining"])
    add(client, {"latency_ms": 300, "times": 1})
    started = time.perf_counter()
    response = client.post(f"{PL}/returns", json=CREATE, headers=bearer())
    assert time.perf_counter() - started >= 0.3
    assert response.status_code == 201  # a slow answer is still an answer: the return exists
    # and it counts, as any answered request does
    assert int(response.headers["X-RateLimit-Remaining"]) == before - 1
    listed = client.get(f"{PL}/returns", headers=bearer())
    assert len(listed.get_json()["data"]) == 1 and int(listed.headers["X-RateLimit-Remaining"]) == before - 2


def test_dropped_connection_in_process_is_a_connection_error_and_stores_nothing() -> None:
    with mock_providers() as mock:
        mock.state.faults.add([{"provider": "3plship", "drop_connection": True, "times": 1}])
        with pytest.raises(requests.ConnectionError, match="connection dropped"):
            requests.post("https://app.3plship.com/api/v1/returns", json=CREATE, headers=bearer())
        listed = requests.get("https://app.3plship.com/api/v1/returns", headers=bearer()).json()
        assert listed["data"] == []


@pytest.mark.system
def test_dropped_connection_over_http(tmp_path: Path) -> None:
    server = Server("--store", f"sqlite:{tmp_path / 's.db'}").start()
    try:
        requests.post(server.url + "/__admin/faults", timeout=10,
                      json={"provider": "3plship", "method": "POST", "drop_connection": True, "times": 1})
        # The server aborts the connection after starting the answer; whether the client has read the status
        # line by then depends on socket timing, so it sees either a reset request or a truncated body.
        with pytest.raises((requests.ConnectionError, requests.exceptions.ChunkedEncodingError)):
            requests.post(server.url + PL + "/returns", json=CREATE, headers=bearer(), timeout=10)
        assert requests.get(server.url + PL + "/returns", headers=bearer(), timeout=10).json()["data"] == []
        assert requests.post(server.url + PL + "/returns", json=CREATE, headers=bearer(),
                             timeout=10).status_code == 201
        # The journal says what the client got: no status at all (0), and which rule dropped it.
        entries = requests.get(server.url + "/__admin/journal", timeout=10).json()["entries"]
        faulted = [(e["method"], e["status"], e["fault"]) for e in entries if e["fault"]]  # workers batch apart
        assert faulted == [("POST", 0, "drop_connection (f1)")]
    finally:
        server.stop()


def test_fault_rule_ids_are_never_given_twice(client: FlaskClient) -> None:
    first = add(client, [{"status": 500}, {"status": 503}])
    assert client.delete("/__admin/faults/" + first[1]["id"]).status_code == 204
    assert client.delete("/__admin/faults").status_code == 204
    again = add(client, {"status": 502})
    assert [r["id"] for r in first] == ["f1", "f2"] and again[0]["id"] == "f3"


def test_probability_is_reproducible_with_a_seed() -> None:
    def run() -> list[int]:
        app = create_app(Config(seed=99), store=MemoryStore())
        c = app.test_client()
        add(c, {"provider": "3plship", "status": 503, "probability": 0.3})
        return [c.get(f"{PL}/returns", headers=bearer()).status_code for _ in range(300)]

    first, second = run(), run()
    assert first == second
    assert 60 <= first.count(503) <= 120  # about 30 % of 300
    assert set(first) == {200, 503}


def test_list_remove_and_clear(client: FlaskClient) -> None:
    rules = add(client, [{"status": 500, "times": 3}, {"latency_ms": 1}])
    assert [r["id"] for r in rules] == ["f1", "f2"]
    client.get(f"{PL}/returns", headers=bearer())
    assert client.get("/__admin/faults").get_json()["rules"][0]["times"] == 2
    assert client.delete("/__admin/faults/f1").status_code == 204
    assert client.delete("/__admin/faults/f1").status_code == 404
    assert [r["id"] for r in client.get("/__admin/faults").get_json()["rules"]] == ["f2"]
    assert add(client, {"status": 502})[0]["id"] == "f3"
    assert client.delete("/__admin/faults").status_code == 204
    assert client.get("/__admin/faults").get_json()["rules"] == []


@pytest.mark.parametrize("rule", [{}, {"probability": 0.5}, {"status": 200}, {"status": 503, "drop_connection": True},
                                  {"latency_ms": -1}, {"status": 503, "path": "returns"}, {"status": 503, "x": 1}])
def test_bad_rules_are_422(client: FlaskClient, rule: Any) -> None:
    assert client.post("/__admin/faults", json=rule).status_code == 422


def test_only_the_rule_that_answers_a_request_counts_it(client: FlaskClient) -> None:
    """First a 503, then a 500: each rule is used up only by the request it answers."""
    add(client, [{"provider": "3plship", "status": 503, "times": 1}, {"provider": "3plship", "status": 500, "times": 1},
                 {"provider": "3plship", "latency_ms": 1, "times": 2}])
    codes = [client.post(f"{PL}/returns", json=fixture("3plship/create-return.minimal.request.json"),
                         headers=bearer()).status_code for _ in range(3)]
    assert codes == [503, 500, 201]
    entries = mock_of(client.application).journal.entries()
    assert [e.fault.split(" (")[1].rstrip(")") for e in entries[:2]] == ["f3, f1", "f3, f2"]
    assert client.get("/__admin/faults").get_json()["rules"] == []


@pytest.mark.parametrize(("body", "field"), [({"provider": "acme", "status": 503}, "provider"),
                                             ([{"status": 503}, {"provider": "", "status": 503}], "[1].provider"),
                                             ([{"status": 503}, {"provider": "nope", "status": 503}], "[1].provider")])
def test_a_rule_for_a_provider_not_served_is_422_naming_it(client: FlaskClient, body: Any, field: str) -> None:
    response = client.post("/__admin/faults", json=body)
    assert response.status_code == 422
    assert field in [d.get("field") for d in response.get_json()["error"]["details"]]
    assert client.get("/__admin/faults").get_json()["rules"] == []


def test_a_rule_whose_path_starts_no_route_is_422_naming_the_paths(client: FlaskClient) -> None:
    """Paths are relative to the provider's base URL: /api/v1/returns would never fire."""
    response = client.post("/__admin/faults", json={"provider": "3plship", "path": "/api/v1/returns", "status": 503})
    assert response.status_code == 422
    detail = response.get_json()["error"]["details"][0]
    assert detail["field"] == "path" and "/returns/{id}/refund" in detail["message"]
    assert "/webhooks" in detail["allowed"] and client.get("/__admin/faults").get_json()["rules"] == []
    for path in ("/returns", "/returns/ret_1/refund", "/ret", "/webhooks"):
        add(client, {"provider": "3plship", "path": path, "status": 503})
    add(client, {"path": "/returns/42", "status": 503})  # 35up's path without a provider: still a route
    assert client.post("/__admin/faults", json={"provider": "35up", "path": "/webhooks", "status": 503}
                       ).status_code == 422


def serve(*args: str) -> subprocess.CompletedProcess[str]:
    return cli("serve", *args)


@pytest.mark.system
def test_faults_file_at_start(tmp_path: Path) -> None:
    (tmp_path / "faults.json").write_text(json.dumps([{"provider": "35up", "status": 503}]))
    server = Server("--store", "memory", "--faults", str(tmp_path / "faults.json")).start()
    try:
        response = requests.post(server.url + UP35 + "/returns", json=fixture("35up/create-return.request.json"),
                                 headers=basic(), timeout=10)
        assert response.status_code == 503 and response.json()["error"]["code"] == "service_unavailable"
    finally:
        server.stop()
    for bad in ([{"status": 200}], [{"provider": "acme", "status": 503}]):
        (tmp_path / "bad.json").write_text(json.dumps(bad))
        result = serve("--faults", str(tmp_path / "bad.json"))
        assert result.returncode == 2 and result.stderr.count("\n") == 1 and "--faults" in result.stderr


def _chaos_run(url: str) -> list[str]:
    outcomes = []
    for _ in range(150):
        try:
            outcomes.append(str(requests.get(url + PL + "/returns", headers=bearer(), timeout=10).status_code))
        except requests.RequestException:
            outcomes.append("dropped")
    return outcomes


@pytest.mark.system
def test_chaos_heavy_is_a_reproducible_mix_with_deterministic(tmp_path: Path) -> None:
    runs = []
    for n in range(2):
        server = Server("--store", f"sqlite:{tmp_path / f'c{n}.db'}", "--chaos", "heavy", "--deterministic",
                        "5").start()
        try:
            # latency rules sleep for real: keep the run short by dropping them for this test
            rules = requests.get(server.url + "/__admin/faults", timeout=10).json()["rules"]
            for rule in rules:
                if "latency_ms" in rule:
                    requests.delete(f"{server.url}/__admin/faults/{rule['id']}", timeout=10)
            runs.append(_chaos_run(server.url))
        finally:
            server.stop()
    assert runs[0] == runs[1]
    assert {"200", "429", "503", "dropped"} <= set(runs[0])
    assert runs[0].count("200") > 90


def _raw_post(port: int, path: str, body: bytes, authorization: str) -> bytes:
    """A request over a raw socket, and every byte the server sent before it closed the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {authorization}\r\n"
                     f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
        received = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := conn.recv(65536):
                received += chunk
    return received


@pytest.mark.system
def test_answers_made_before_authentication_are_journaled_under_the_credentials_account(tmp_path: Path) -> None:
    """A fault's status, the rate limit's 429 and a dropped connection are what someone debugging an account
    looks for: `?account=` finds each, `?status=0` finds the drop, and a dropped 35up answer starts as a
    35up answer does (its bare resource), not in 3plship's envelope."""
    server = Server("--store", f"sqlite:{tmp_path / 's.db'}", "--rate-limit", "1/minute").start()
    try:
        url = server.url
        requests.post(url + "/__admin/faults", timeout=10, json=[
            {"provider": "35up", "account": "shop-a", "status": 503, "times": 1},
            {"provider": "35up", "account": "shop-b", "method": "POST", "drop_connection": True, "times": 1}])
        up35 = fixture("35up/create-return.request.json")
        assert requests.post(url + UP35 + "/returns", json=up35, headers=basic("shop-a"), timeout=10).status_code == 503
        assert requests.get(url + PL + "/returns", headers=bearer("zl_test_limited"), timeout=10).status_code == 200
        assert requests.get(url + PL + "/returns", headers=bearer("zl_test_limited"), timeout=10).status_code == 429
        dropped = _raw_post(server.port, UP35 + "/returns", json.dumps(up35).encode(), basic("shop-b")["Authorization"])
        head, _, sent = dropped.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 201") and sent == b'{"id":', dropped  # then the connection breaks

        def journal(**query: str) -> list[dict[str, Any]]:
            answer = requests.get(url + "/__admin/journal", params=query, timeout=10)
            assert answer.status_code == 200, answer.text
            return list(answer.json()["entries"])

        assert [(e["status"], e["fault"]) for e in journal(account="shop-a")] == [(503, "status 503 (f1)")]
        assert sorted(e["status"] for e in journal(account="zl_test_limited")) == [200, 429]  # workers batch apart
        drops = journal(status="0")
        assert [(e["account"], e["method"], e["fault"]) for e in drops] == [("shop-b", "POST", "drop_connection (f2)")]
        assert drops[0]["response_body"] == '{"id":'  # what the client got before the connection broke
        assert journal(account="shop-b") == drops
        assert requests.get(url + "/__admin/journal?status=42", timeout=10).status_code == 422
    finally:
        server.stop()
