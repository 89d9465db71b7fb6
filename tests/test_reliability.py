"""Concurrency, crash safety, hostile input and a long run: the mock never loses or corrupts state."""

from __future__ import annotations

import contextlib
import gc
import io
import json
import os
import signal
import socket
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from helpers import PL, UP35, Server, basic, bearer, fixture

from mockserver.domain.config import Config
from mockserver.store import MemoryStore
from mockserver.web import create_app, mock_of

pytestmark = pytest.mark.system

CREATE_3PL = fixture("3plship/create-return.minimal.request.json")


def _parallel(count: int, call: Any) -> list[Any]:
    barrier = threading.Barrier(count)

    def run(n: int) -> Any:
        barrier.wait(timeout=30)
        return call(n)

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(run, range(count)))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    path = tmp_path_factory.mktemp("reliability") / "state.db"
    running = Server("--store", f"sqlite:{path}", "--workers", "2").start()
    yield running
    running.stop()


def test_64_concurrent_35up_transitions_exactly_one_wins(server: Server) -> None:
    auth = basic("race")
    requests.post(server.url + UP35 + "/returns", json=fixture("35up/create-return.request.json"), headers=auth,
                  timeout=10)

    def move(_: int) -> int:
        return requests.patch(server.url + UP35 + "/returns/42346434", json={"status": "awaiting_return"},
                              headers=auth, timeout=30).status_code

    codes = _parallel(64, move)
    assert sorted(codes) == [200] + [409] * 63
    history = requests.get(server.url + "/__admin/returns/35up/42346434?account=race", timeout=10).json()["history"]
    assert [h["status"] for h in history] == ["created", "awaiting_return"]


def test_64_concurrent_refunds_exactly_one_is_processed(server: Server) -> None:
    key = bearer("zl_test_race")
    rid = requests.post(server.url + PL + "/returns", json=CREATE_3PL, headers=key, timeout=10).json()["data"]["id"]
    for status in ("received", "inspected"):
        requests.patch(server.url + PL + f"/returns/{rid}/status", json={"status": status}, headers=key, timeout=10)

    def refund(_: int) -> tuple[int, str]:
        answer = requests.post(server.url + PL + f"/returns/{rid}/refund", headers=key, timeout=30)
        return answer.status_code, answer.json()["error"]["code"] if answer.status_code != 200 else ""

    outcomes = _parallel(64, refund)
    assert sorted(outcomes) == [(200, "")] + [(409, "REFUND_ALREADY_PROCESSED")] * 63
    history = requests.get(server.url + f"/__admin/returns/3plship/{rid}", timeout=10).json()["history"]
    assert [h.get("refund_status") for h in history].count("processing") == 1


def test_kill_9_under_concurrent_creates_loses_no_answered_create(tmp_path: Path) -> None:
    path = tmp_path / "crash.db"
    server = Server("--store", f"sqlite:{path}", "--workers", "2").start()
    answered: list[str] = []
    stop = threading.Event()

    def writer(n: int) -> None:
        with requests.Session() as s:
            i = 0
            while not stop.is_set() and i < 5000:
                i += 1
                order = f"c{n}x{i}"
                try:
                    r = s.post(server.url + UP35 + "/returns", headers=basic("crash"), timeout=5,
                               json={**fixture("35up/create-return.request.json"), "orderId": order})
                except requests.RequestException:
                    return
                if r.status_code == 201:
                    answered.append(order)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 20
    while len(answered) < 300 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.proc is not None
    _kill_tree(server.proc.pid)
    stop.set()
    for t in threads:
        t.join(timeout=30)
    server.proc.wait(timeout=10)
    assert len(answered) >= 300

    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    restarted = Server("--store", f"sqlite:{path}").start()
    try:
        stored = {r["id"] for r in requests.get(restarted.url + "/__admin/returns?provider=35up&account=crash",
                                                 timeout=30).json()["returns"]}
    finally:
        restarted.stop()
    assert set(answered) <= stored


def _kill_tree(pid: int) -> None:
    """SIGKILL the server and its worker processes, as a crash would."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    kids = [int(c) for c in children.read_text().split()] if children.exists() else []
    for victim in [pid, *kids]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(victim, signal.SIGKILL)


def raw_request(server: Server, data: bytes, timeout: float = 30) -> tuple[int, bytes]:
    """Send bytes as they are (no client library fixing them up) and read the answer, reading while
    sending: a server may answer a body it will not take (413) before it arrived and close, which
    breaks the rest of the send; the answer is what counts."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as conn:

        def send() -> None:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                conn.sendall(data)

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        chunks = []
        with contextlib.suppress(ConnectionResetError):
            while chunk := conn.recv(65536):
                chunks.append(chunk)
        sender.join(timeout)
    answer = b"".join(chunks)
    status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else 0
    return status, answer.split(b"\r\n\r\n", 1)[-1]


def http(method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close",
             f"Content-Length: {len(body)}", *(f"{k}: {v}" for k, v in (headers or {}).items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


KEY = {"Authorization": "Bearer zl_test_hostile", "Content-Type": "application/json"}
HOSTILE = [
    ("3 MiB body", http("POST", PL + "/returns", b"[" + b"1," * (3 * 1024 * 1024 // 2) + b"1]", KEY), 413),
    ("nested 100,000 deep", http("POST", PL + "/returns", b"[" * 100_000 + b"]" * 100_000, KEY), 400),
    ("nested 100,000 deep, unclosed", http("POST", PL + "/returns", b"{\"a\":" * 100_000, KEY), 400),
    ("invalid UTF-8", http("POST", PL + "/returns", b'{"order_id": "\xff\xfe"}', KEY), 400),
    ("5,000-digit integer", http("POST", PL + "/returns", b'{"refund_amount": ' + b"9" * 5000 + b"}", KEY), 400),
    ("form-encoded", http("POST", PL + "/returns", b"order_id=1&reason=other",
                          {**KEY, "Content-Type": "application/x-www-form-urlencoded"}), 400),
    ("null", http("POST", PL + "/returns", b"null", KEY), 422),
    ("empty body", http("POST", PL + "/returns", b"", KEY), 400),
    ("huge query string", http("GET", PL + "/returns?order_id=" + "x" * 60_000, b"", KEY), 422),
    ("unknown method", http("BREW", PL + "/returns", b"", KEY), 405),
    ("unknown method on 35up", http("PURGE", UP35 + "/returns/1", b"", {"Authorization": "Basic YTpi"}), 405),
]


@pytest.mark.parametrize(("name", "data", "status"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_input_gets_the_provider_error_format_and_the_server_stays_healthy(
        server: Server, name: str, data: bytes, status: int) -> None:
    got, body = raw_request(server, data)
    assert got == status, body[:300]
    error = json.loads(body)
    if b"/35up/" in data.split(b"\r\n", 1)[0]:
        assert set(error) == {"error"} and error["error"]["message"]
    else:
        assert error["success"] is False and error["meta"]["version"] == "v1" and error["error"]["message"]
    assert requests.get(server.url + "/__admin/health", timeout=10).status_code == 200
    assert requests.get(server.url + PL + "/returns", headers=bearer(), timeout=10).status_code == 200


def _rss_mb() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def test_200000_requests_in_process_leave_memory_flat() -> None:
    """Straight into the WSGI app (the in-process mock's code path) with prebuilt environs, so that the
    run measures the mock, not a test client."""
    from werkzeug.test import EnvironBuilder

    app = create_app(Config(journal_size=1000), store=MemoryStore())
    key = list(bearer("zl_test_long").items())
    client = app.test_client()
    for _ in range(5):
        client.post(PL + "/returns", json=CREATE_3PL, headers=key)
    templates = [
        EnvironBuilder(path=PL + "/returns", query_string="limit=5", headers=key).get_environ(),
        EnvironBuilder(path=PL + "/returns", query_string="limit=0", headers=key).get_environ(),  # a violation
        EnvironBuilder(path=PL + "/returns/ret_nope/status", method="PATCH", json={"status": "received"},
                       headers=key).get_environ(),
        EnvironBuilder(path=UP35 + "/returns", method="POST", json={"orderId": "x"},
                       headers=list(basic().items())).get_environ(),
    ]
    bodies = [t["wsgi.input"].read() for t in templates]
    statuses: dict[str, int] = {}

    def start_response(status: str, headers: Any, exc_info: Any = None) -> Callable[[bytes], object]:
        statuses[status] = statuses.get(status, 0) + 1
        return lambda _: None

    checkpoints = []
    for n in range(200_000):
        kind = n % 4
        environ = dict(templates[kind])
        environ["wsgi.input"] = io.BytesIO(bodies[kind])
        for _ in app(environ, start_response):
            pass
        if n in (40_000, 199_999):
            gc.collect()
            checkpoints.append(_rss_mb())
    assert statuses == {"200 OK": 50_000, "422 UNPROCESSABLE ENTITY": 100_000, "404 NOT FOUND": 50_000}
    state = mock_of(app)
    assert len(state.journal.entries()) == 1000 and len(state.journal.violations()) <= 1000
    assert checkpoints[1] - checkpoints[0] < 8, checkpoints  # MB, between request 40,000 and 200,000
