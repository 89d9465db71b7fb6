"""Slow clients, stalled sockets and sleeping requests never stall anyone else, on a real server with
real sockets. Each loop is bounded in count and time; traffic goes to loopback only."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import requests
from helpers import PL, UP35, Server, basic, bearer, fixture

pytestmark = pytest.mark.system

CREATE = fixture("3plship/create-return.request.json")


@pytest.fixture
def server() -> Iterator[Server]:
    mock = Server("--store", "memory", "--body-timeout-ms", "2000", "--header-timeout-ms", "2000").start()
    yield mock
    mock.stop()


def _timed(call: object) -> tuple[float, requests.Response]:
    started = time.monotonic()
    answer = call()  # type: ignore[operator]
    return time.monotonic() - started, answer


class Drips:
    """`count` connections that each send headers promising a 100 kB body, then a byte every `every` s."""

    def __init__(self, port: int, count: int, every: float = 0.5, path: str = f"{PL}/returns") -> None:
        self.sockets = []
        self.answers: dict[int, bytes] = {}
        self.stop = threading.Event()
        for _ in range(count):
            conn = socket.create_connection(("127.0.0.1", port), timeout=10)
            conn.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer zl_test_drip\r\n"
                         "Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{".encode())
            self.sockets.append(conn)
        self.thread = threading.Thread(target=self._drip, args=(every,), daemon=True)
        self.thread.start()

    def _drip(self, every: float) -> None:
        deadline = time.monotonic() + 30
        while not self.stop.wait(every) and time.monotonic() < deadline:
            for index, conn in enumerate(self.sockets):
                if index not in self.answers:
                    self._step(index, conn)

    def _step(self, index: int, conn: socket.socket) -> None:
        conn.setblocking(False)
        try:
            got = conn.recv(65536)  # an answer first: the server may have answered and closed
            self.answers[index] = got
            return
        except BlockingIOError:
            pass
        except OSError:
            self.answers[index] = b""
            return
        finally:
            conn.setblocking(True)
        try:
            conn.sendall(b" ")
        except OSError:
            self.answers[index] = b""

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        for conn in self.sockets:
            conn.close()


def test_fifty_dripping_bodies_leave_others_answered_and_are_answered_408(server: Server) -> None:
    drips = Drips(server.port, 50)
    try:
        time.sleep(0.5)  # they are all mid-body now
        for _ in range(5):
            took, answer = _timed(lambda: requests.post(f"{server.url}{PL}/returns", json=CREATE, headers=bearer(),
                                                        timeout=10))
            assert answer.status_code == 201 and took < 1.0, took
            took, answer = _timed(lambda: requests.get(f"{server.url}/__admin/journal?limit=5", timeout=10))
            assert answer.status_code == 200 and took < 1.0, took
        deadline = time.monotonic() + 10
        while len(drips.answers) < 50 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(drips.answers) == 50
        first = next(iter(drips.answers.values()))
        assert first.startswith(b"HTTP/1.1 408"), first[:80]
        assert b'"REQUEST_TIMEOUT"' in first and b'"success":false' in first  # the provider's own format
        assert b"\r\nx-ratelimit-limit: " in first.lower()  # as on every 3plship answer (the contract's 408)
    finally:
        drips.close()
    journal = requests.get(f"{server.url}/__admin/journal?status=408", timeout=10).json()["entries"]
    assert len(journal) == 50 and journal[0]["account"] == "zl_test_drip"


def test_1500_half_sent_headers_leave_others_answered_and_are_closed(server: Server) -> None:
    half = []
    try:
        for n in range(1500):  # more than granian's default connections per worker (backlog 1024)
            conn = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            conn.sendall(f"GET {PL}/returns HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Half-{n}: ".encode())
            half.append(conn)
        for _ in range(5):
            took, answer = _timed(lambda: requests.get(f"{server.url}{PL}/returns", headers=bearer(), timeout=10))
            assert answer.status_code == 200 and took < 1.0, took
        time.sleep(2.5)  # past --header-timeout-ms: each was closed
        ended = 0
        for conn in half[:20]:
            conn.settimeout(2)
            try:
                conn.recv(1024)  # the end of the connection (or a 408 before it), not a wait
                ended += 1
            except ConnectionResetError:
                ended += 1
            except TimeoutError:
                pass
        assert ended == 20
    finally:
        for conn in half:
            conn.close()


def test_requests_sleeping_in_latency_faults_hold_up_no_one(server: Server) -> None:
    rule = {"provider": "3plship", "account": "zl_test_slow", "latency_ms": 60000}
    assert requests.post(f"{server.url}/__admin/faults", json=[rule, rule, rule], timeout=10).status_code == 201
    slow: list[float] = []

    def sleeper() -> None:
        with requests.Session() as session, contextlib.suppress(requests.ConnectionError):  # the server stops
            took, _ = _timed(lambda: session.get(f"{server.url}{PL}/returns", headers=bearer("zl_test_slow"),
                                                 timeout=70))
            slow.append(took)

    threads = [threading.Thread(target=sleeper, daemon=True) for _ in range(8)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)  # eight requests are asleep in their faults
    took, answer = _timed(lambda: requests.post(f"{server.url}{UP35}/returns", headers=basic(),
                                                json=fixture("35up/create-return.request.json"), timeout=10))
    assert answer.status_code == 201 and took < 1.0, took
    took, answer = _timed(lambda: requests.get(f"{server.url}{PL}/returns", headers=bearer(), timeout=10))
    assert answer.status_code == 200 and took < 1.0, took
    took, answer = _timed(lambda: requests.delete(f"{server.url}/__admin/faults", timeout=10))
    assert answer.status_code == 204 and took < 1.0, took
    assert slow == []  # still asleep: three 60 s rules are one 60 s delay, not 180 s; nobody waited on them


def test_several_latency_rules_delay_by_the_longest_not_the_sum(server: Server) -> None:
    rules = [{"provider": "3plship", "latency_ms": ms} for ms in (600, 500, 400)]
    assert requests.post(f"{server.url}/__admin/faults", json=rules, timeout=10).status_code == 201
    took, answer = _timed(lambda: requests.get(f"{server.url}{PL}/returns", headers=bearer(), timeout=10))
    assert answer.status_code == 200
    assert 0.6 <= took < 1.3, took  # the sum would be 1.5 s
    (entry,) = requests.get(f"{server.url}/__admin/journal", timeout=10).json()["entries"]
    assert entry["duration_ms"] >= 600 and entry["fault"] == "latency (f1, f2, f3)"


def test_bodies_up_to_each_limit_are_read_whole_chunked_or_not(server: Server) -> None:
    """The server reads bodies itself now: the control plane's limit (a seed of 10,000 returns is ~2 MB)
    is not the providers' (1 MiB), and a chunked body is bounded like a declared one."""
    pl = {"order_id": "ord_seed", "reason": "defective", "items": [{"sku": "P", "quantity": 1}], "refund_amount": 1}
    scenario = {"returns": [{"provider": "3plship", "account": "zl_test_seed", "return": pl} for _ in range(10_000)]}
    seeded = requests.post(f"{server.url}/__admin/seed", json=scenario, timeout=60)
    assert seeded.status_code == 201 and seeded.json()["seeded"] == 10_000

    def chunks(total: int) -> Iterator[bytes]:
        raw = json.dumps(fixture("3plship/create-return.request.json")).encode()
        yield raw[:10]
        yield raw[10:] + b" " * max(0, total - len(raw))

    whole = requests.post(f"{server.url}{PL}/returns", data=chunks(0), timeout=10,
                          headers={**bearer(), "Content-Type": "application/json"})
    assert whole.status_code == 201, whole.text
    over = requests.post(f"{server.url}{PL}/returns", data=chunks(2 * 1024 * 1024), timeout=30,
                         headers={**bearer(), "Content-Type": "application/json"})
    assert over.status_code == 413 and over.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"
