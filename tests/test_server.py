"""The real server: `returns-mock serve` under granian on a loopback port, and the CLI around it."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import requests
from helpers import PL, UP35, WORKER, Server, basic, bearer, cli, fixture

from mockserver import __version__


@pytest.mark.system
def test_state_survives_a_restart_with_the_sqlite_store(tmp_path: Path) -> None:
    store = f"sqlite:{tmp_path / 'state.db'}"
    server = Server("--store", store, "--workers", "2").start()
    try:
        created = requests.post(server.url + UP35 + "/returns", json=fixture("35up/create-return.request.json"),
                                auth=("shop-a", "pw"), timeout=10)
        assert created.status_code == 201
        moved = requests.patch(server.url + UP35 + "/returns/42346434", json={"status": "awaiting_return"},
                               auth=("shop-a", "pw"), timeout=10)
        assert moved.status_code == 200
        ret = requests.post(server.url + PL + "/returns", json=fixture("3plship/create-return.request.json"),
                            headers=bearer(), timeout=10).json()["data"]
    finally:
        server.stop()

    server = Server("--store", store).start()
    try:
        response = requests.patch(server.url + UP35 + "/returns/42346434", json={"status": "customer_shipped"},
                                  auth=("shop-a", "pw"), timeout=10)
        assert response.status_code == 200
        assert [h["status"] for h in response.json()["history"]] == ["created", "awaiting_return",
                                                                     "customer_shipped"]
        assert requests.post(server.url + UP35 + "/returns", json=fixture("35up/create-return.request.json"),
                             auth=("shop-a", "pw"), timeout=10).status_code == 409
        listed = requests.get(server.url + PL + "/returns", headers=bearer(), timeout=10).json()
        assert [r["id"] for r in listed["data"]] == [ret["id"]]
        assert listed["data"][0] == ret
    finally:
        server.stop()


@pytest.mark.system
def test_workers_share_one_state(tmp_path: Path) -> None:
    server = Server("--store", f"sqlite:{tmp_path / 's.db'}", "--workers", "2", "--self-check").start()
    try:
        with requests.Session() as one, requests.Session() as two:
            ids = [(one if n % 2 else two).post(
                server.url + PL + "/returns", json=fixture("3plship/create-return.minimal.request.json"),
                headers=bearer(), timeout=10).json()["data"]["id"] for n in range(30)]
            workers = set()
            for rid in ids:
                moved = requests.patch(server.url + PL + f"/returns/{rid}/status", json={"status": "received"},
                                       headers=bearer(), timeout=10)
                assert moved.status_code == 200
                workers.add(moved.headers[WORKER])
            assert len(workers) == 2, workers  # returns created by one worker were moved by the other
            page = requests.get(server.url + PL + "/returns?status=received&limit=100", headers=bearer(),
                                timeout=10).json()
        assert page["meta"]["pagination"]["total"] == 30
        assert [r["id"] for r in page["data"]] == list(reversed(ids))
    finally:
        server.stop()


@pytest.mark.system
def test_openapi_documents_are_served_with_the_mock_first(tmp_path: Path) -> None:
    server = Server("--store", "memory", "--35up-user", "shop-a:secret").start()
    try:
        for provider, first, second in (("35up", "/35up/v1", "https://api.35up.io/v1"),
                                        ("3plship", "/3plship/api/v1", "https://app.3plship.com/api/v1")):
            doc = requests.get(f"{server.url}/{provider}/openapi.json", timeout=10).json()
            assert doc["openapi"] == "3.1.0"
            assert [s["url"] for s in doc["servers"]] == [first, second]
        index = requests.get(server.url + "/", timeout=10).json()
        assert index["store"] == "memory" and index["version"] == __version__
        unauth = requests.post(server.url + UP35 + "/returns", json={}, timeout=10)
        assert unauth.status_code == 401 and unauth.headers["WWW-Authenticate"].startswith("Basic")
        assert requests.post(server.url + UP35 + "/returns", json={}, headers=basic("shop-a", "secret"),
                             timeout=10).status_code == 422
        assert requests.post(server.url + UP35 + "/returns", json={}, headers=basic("shop-a", "wrong"),
                             timeout=10).status_code == 401
    finally:
        server.stop()


@pytest.mark.system
def test_version_and_help() -> None:
    version = cli("--version")
    assert version.returncode == 0 and version.stdout.strip() == f"returns-mock {__version__}"
    helped = cli("serve", "--help")
    assert helped.returncode == 0
    for flag in ("--host", "--port", "--store", "--workers"):
        assert flag in helped.stdout


@pytest.mark.system
@pytest.mark.parametrize(("args", "message"), [
    (["serve", "--bogus"], "unrecognized arguments: --bogus"),
    (["serve", "--port", "http"], "--port"),
    (["serve", "--port", "70000"], "at most 65535"),
    (["serve", "--workers", "0"], "--workers"),
    (["serve", "--store", "memory", "--workers", "2"], "--workers 1"),
    (["serve", "--store", "sqlite:/nonexistent/dir/state.db"], "unable to open database file"),
    (["serve", "--store", "redis://x"], "use 'memory', 'sqlite:PATH' or 'postgresql://"),
    (["serve", "--lifecycle", "lax"], "invalid choice"),
    (["fly"], "invalid choice"),
    (["serve", "--35up-user", "nocolon"], "expected USER:PASSWORD"),
    (["serve", "--3plship-key", "sk_live_x"], "zl_live_"),
    (["serve", "--refund-business-days", "8"], "expected 5 to 7 business days"),
    (["serve", "--refund-business-days", "four"], "--refund-business-days"),
])
def test_bad_flags_and_unusable_stores_are_one_line_and_exit_2(args: list[str], message: str) -> None:
    result = cli(*args)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("returns-mock: error: ")
    assert message in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.system
def test_an_unusable_journal_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    (tmp_path / "state.db-requests").mkdir()  # where the journal's own file goes
    result = cli("serve", "--store", f"sqlite:{tmp_path / 'state.db'}")
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "state.db-requests: it is a directory" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.system
def test_openapi_command_prints_the_bundled_document() -> None:
    import json

    result = cli("openapi", "3plship")
    assert result.returncode == 0
    assert json.loads(result.stdout)["components"]["schemas"]["ReturnEnvelope"]["title"] == "ReturnEnvelope"


@pytest.mark.system
def test_journal_of_a_two_worker_server_holds_every_request_at_once(tmp_path: Path) -> None:
    """Workers store the journal in batches off the request path; a read right after must still see it all."""
    server = Server("--store", f"sqlite:{tmp_path / 's.db'}", "--workers", "2").start()
    try:
        sent, workers = [], set()
        for n in range(30):
            with requests.Session() as s:  # a new connection each time: both workers answer
                quantity = 0 if n % 3 == 0 else 1  # every third one breaks the contract
                body = {"order_id": f"o{n}", "reason": "defective", "items": [{"sku": "S", "quantity": quantity}],
                        "refund_amount": 1}
                answer = s.post(server.url + PL + "/returns", json=body, headers=bearer(), timeout=10)
                sent.append(answer.status_code)
                workers.add(answer.headers[WORKER])
        assert sent.count(201) == 20 and sent.count(422) == 10 and len(workers) == 2, workers
        entries = requests.get(server.url + "/__admin/journal", timeout=10).json()["entries"]
        assert sorted(e["status"] for e in entries) == sorted(sent)
        assert len({e["id"] for e in entries}) == 30
        violations = requests.get(server.url + "/__admin/violations", timeout=10).json()["violations"]
        assert len(violations) == 10 and {v["field"] for v in violations} == {"items[0].quantity"}
    finally:
        server.stop()


@pytest.mark.system
def test_a_port_already_served_is_one_line_and_exit_2(tmp_path: Path) -> None:
    first = Server("--store", "memory").start()
    try:
        for command in ("serve", "proxy"):
            args = ["--3plship-upstream", "http://127.0.0.1:9/api/v1"] if command == "proxy" else ["--store", "memory"]
            result = cli(command, "--port", str(first.port), *args)
            assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
            assert f"cannot listen on 127.0.0.1:{first.port}" in result.stderr
        assert requests.get(first.url + "/", timeout=5).status_code == 200  # the first server keeps it all
    finally:
        first.stop()
    with socket.socket() as other:  # a port held by another program
        other.bind(("127.0.0.1", 0))
        other.listen()
        result = cli("serve", "--store", "memory", "--port", str(other.getsockname()[1]))
        assert result.returncode == 2 and result.stderr.count("\n") == 1 and "cannot listen" in result.stderr

