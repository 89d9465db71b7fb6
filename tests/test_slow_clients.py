"""Slow clients, stalled sockets, idle connections and sleeping requests never stall anyone else, on a real
server with real sockets: the mock (`serve`) and the proxy in front of it (`proxy`, plain and shadowing) meet
every one of them alike, being one serving stack. Each loop is bounded in count and time; traffic goes to
loopback only."""

from __future__ import annotations

import contextlib
import json
import resource
import socket
import struct
import threading
import time
from collections.abc import Iterator

import pytest
import requests
from helpers import PL, UP35, Server, basic, bearer, fixture

pytestmark = pytest.mark.system

CREATE = fixture("3plship/create-return.request.json")
TIMEOUTS = ("--body-timeout-ms", "2000", "--header-timeout-ms", "2000")
SERVERS = ["serve", "proxy"]
EVERY_SERVER = pytest.mark.parametrize("server", [*SERVERS, "proxy --shadow"], indirect=True)
"""Where a shadowing proxy (one account's exchanges in turn) differs: requests under way."""


@pytest.fixture(scope="module")
def upstream() -> Iterator[Server]:
    """What the proxy forwards to: the mock itself."""
    mock = Server("--store", "memory").start()
    yield mock
    mock.stop()


def start(kind: str, *args: str, upstream: Server | None = None) -> Server:
    """A `serve` on a memory store, or a proxy (maybe shadowing) in front of `upstream`."""
    if kind == "serve":
        return Server("--store", "memory", *args).start()
    assert upstream is not None
    assert requests.post(upstream.url + "/__admin/reset", timeout=10).status_code == 200  # shared by the tests
    return Server("--3plship-upstream", upstream.url + PL, "--35up-upstream", upstream.url + UP35,
                  *kind.split()[1:], *args, command="proxy").start()


@pytest.fixture(params=SERVERS)
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    kind: str = request.param
    front = start(kind, *TIMEOUTS, upstream=request.getfixturevalue("upstream") if kind != "serve" else None)
    yield front
    front.stop()


def is_proxy(server: Server) -> bool:
    return server.command == "proxy"


def _timed(call: object) -> tuple[float, requests.Response]:
    started = time.monotonic()
    answer = call()  # type: ignore[operator]
    return time.monotonic() - started, answer


def ended(conn: socket.socket, wait: float) -> bool:
    """Whether the server ended the connection (closed or reset it, maybe after an answer) within `wait` s."""
    conn.settimeout(wait)
    try:
        while conn.recv(65536):
            pass
        return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


def reset(conn: socket.socket) -> None:
    """Close from the client's side with a reset: no TIME_WAIT left on the machine's ephemeral ports."""
    with contextlib.suppress(OSError):
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


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
            reset(conn)


@EVERY_SERVER
def test_eighty_dripping_bodies_leave_others_answered_and_are_answered_408(server: Server) -> None:
    """More than the 64 threads the proxy once had: 64 such clients stalled it whole, health included."""
    drips = Drips(server.port, 80)
    try:
        time.sleep(0.5)  # they are all mid-body now
        for _ in range(5):  # answered while they drip (for 30 s; once nothing was, health included)
            answer = requests.post(f"{server.url}{PL}/returns", json=CREATE, headers=bearer(), timeout=10)
            assert answer.status_code == 201
            assert requests.get(f"{server.url}/__admin/journal?limit=5", timeout=10).status_code == 200
        deadline = time.monotonic() + 10
        while len(drips.answers) < 80 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(drips.answers) == 80
        first = next(iter(drips.answers.values()))
        assert first.startswith(b"HTTP/1.1 408"), first[:80]
        assert b'"REQUEST_TIMEOUT"' in first and b'"success":false' in first  # the provider's own format
        if not is_proxy(server):  # as on every answer of the mock's 3plship (the contract's 408)
            assert b"\r\nx-ratelimit-limit: " in first.lower()
    finally:
        drips.close()
    journal = requests.get(f"{server.url}/__admin/journal?status=408", timeout=10).json()["entries"]
    # The proxy shows a 3plship account (its API key) masked.
    assert len(journal) == 80 and journal[0]["account"] == ("zl_test_***drip" if is_proxy(server) else "zl_test_drip")


def test_1500_half_sent_headers_leave_others_answered_and_are_closed(server: Server) -> None:
    half = []
    try:
        for n in range(1500):  # more than granian's default connections per worker (backlog 1024)
            conn = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            conn.sendall(f"GET {PL}/returns HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Half-{n}: ".encode())
            half.append(conn)
        for _ in range(5):
            assert requests.get(f"{server.url}{PL}/returns", headers=bearer(), timeout=10).status_code == 200
        time.sleep(2.5)  # past --header-timeout-ms: each was closed
        assert all(ended(conn, 2) for conn in half[:20])
    finally:
        for conn in half:
            reset(conn)


def test_idle_connections_are_closed_at_the_header_deadline_whatever_they_send(server: Server) -> None:
    """Nothing counts as activity but bytes of a request: a connection that never sends one, one kept alive
    after its answer, and one that sends empty lines (which precede no request) are all closed."""
    silent = [socket.create_connection(("127.0.0.1", server.port), timeout=10) for _ in range(20)]
    kept = []
    for _ in range(5):
        conn = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        conn.sendall(b"GET /__admin/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert conn.recv(65536).startswith(b"HTTP/1.1 200")
        kept.append(conn)
    blank = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    try:
        started = time.monotonic()
        while time.monotonic() - started < 4.5:  # past the 2 s deadline, and a watch's sweep more
            with contextlib.suppress(OSError):
                blank.sendall(b"\r\n")
            time.sleep(0.3)
        assert all(ended(conn, 3) for conn in silent + kept + [blank])
        assert requests.get(f"{server.url}/__admin/health", timeout=10).status_code == 200
    finally:
        for conn in [*silent, *kept, blank]:
            reset(conn)


def _open(port: int, count: int) -> list[socket.socket]:
    """`count` connections to the server, opened without waiting on each (bounded: 60 s at most)."""
    opened: list[socket.socket] = []
    deadline = time.monotonic() + 60
    while len(opened) < count and time.monotonic() < deadline:
        conn = socket.socket()
        conn.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            conn.connect(("127.0.0.1", port))
        opened.append(conn)
    return opened


@pytest.mark.parametrize("kind", SERVERS)
def test_ten_thousand_idle_connections_leave_health_answering(kind: str, request: pytest.FixtureRequest) -> None:
    """10,000 connections that never send a byte (a worker once held 4,096, then stalled everyone for good):
    /__admin/health answers while they are held (in well under a second), and the provider paths do."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 10_500:
        pytest.skip(f"the open-file limit ({hard}) cannot hold 10,000 connections")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    front = start(kind, upstream=request.getfixturevalue("upstream") if kind != "serve" else None)
    idle: list[socket.socket] = []
    try:
        idle = _open(front.port, 10_000)
        assert len(idle) == 10_000
        time.sleep(1)  # each connected and accepted (or waiting to be)
        took = []
        for _ in range(5):  # each answered (none was, with 8,300 held): how fast is measured, not asserted
            spent, answer = _timed(lambda: requests.get(f"{front.url}/__admin/health", timeout=20))
            assert answer.status_code == 200
            took.append(round(spent, 3))
        print(f"health with 10,000 idle connections held ({kind}): {took} s")
        assert requests.get(f"{front.url}{PL}/returns", headers=bearer(), timeout=20).status_code == 200
    finally:
        for conn in idle:
            reset(conn)
        front.stop()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.parametrize("kind", SERVERS)
def test_past_the_connection_limit_idle_ones_make_room_and_busy_ones_refuse_new_ones(
        kind: str, request: pytest.FixtureRequest) -> None:
    front = start(kind, "--max-connections", "40", "--body-timeout-ms", "30000",
                  upstream=request.getfixturevalue("upstream") if kind != "serve" else None)
    idle: list[socket.socket] = []
    drips: Drips | None = None
    try:
        idle = [socket.create_connection(("127.0.0.1", front.port), timeout=10) for _ in range(40)]
        time.sleep(0.5)
        # The limit is reached by connections that carry nothing: the longest idle make room at once.
        assert requests.get(f"{front.url}/__admin/health", timeout=10).status_code == 200
        assert any(ended(conn, 0.5) for conn in idle)
        for conn in idle:
            reset(conn)
        idle = []
        drips = Drips(front.port, 40, every=1)  # 40 requests under way for 30 s: none can be closed
        time.sleep(1.5)
        try:
            late = socket.create_connection(("127.0.0.1", front.port), timeout=10)
        except (ConnectionResetError, ConnectionRefusedError):
            pass  # reset before connect() even returned: refused at once
        else:
            with contextlib.suppress(OSError):
                late.sendall(b"GET /__admin/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert ended(late, 10)  # refused at once rather than queued behind 30 s of dripping bodies
            reset(late)
    finally:
        if drips is not None:
            drips.close()
        for conn in idle:
            reset(conn)
        front.stop()


@EVERY_SERVER
def test_requests_sleeping_in_latency_faults_hold_up_no_one(server: Server, request: pytest.FixtureRequest) -> None:
    """Eight requests asleep: in the mock's latency faults, or behind the proxy in its upstream's."""
    proxied = is_proxy(server)
    mock = request.getfixturevalue("upstream") if proxied else server
    if proxied:  # the proxy waits for its upstream as long as the faults last
        server.stop()
        server.args += ["--upstream-timeout-ms", "70000"]
        server.start()
    rule = {"provider": "3plship", "account": "zl_test_slow", "latency_ms": 60000}
    assert requests.post(f"{mock.url}/__admin/faults", json=[rule, rule, rule], timeout=10).status_code == 201
    slow: list[float] = []

    def sleeper() -> None:
        with requests.Session() as session, contextlib.suppress(requests.ConnectionError):  # the server stops
            took, _ = _timed(lambda: session.get(f"{server.url}{PL}/returns", headers=bearer("zl_test_slow"),
                                                 timeout=70))
            slow.append(took)

    threads = [threading.Thread(target=sleeper, daemon=True) for _ in range(8)]
    try:
        for thread in threads:
            thread.start()
        time.sleep(0.5)  # eight requests are asleep in their faults
        # Each answered in a sixth of the sleepers' minute: none waited on them.
        answer = requests.post(f"{server.url}{UP35}/returns", headers=basic(),
                               json=fixture("35up/create-return.request.json"), timeout=10)
        assert answer.status_code == 201
        assert requests.get(f"{server.url}{PL}/returns", headers=bearer(), timeout=10).status_code == 200
        assert requests.get(f"{server.url}/__admin/journal?limit=5", timeout=10).status_code == 200
        assert slow == []  # still asleep: three 60 s rules are one 60 s delay, not 180 s; nobody waited on them
    finally:
        assert requests.delete(f"{mock.url}/__admin/faults", timeout=10).status_code == 204


def test_several_latency_rules_delay_by_the_longest_not_the_sum() -> None:
    mock = start("serve", *TIMEOUTS)
    try:
        rules = [{"provider": "3plship", "latency_ms": ms} for ms in (2000, 1900, 1800)]
        assert requests.post(f"{mock.url}/__admin/faults", json=rules, timeout=10).status_code == 201
        took, answer = _timed(lambda: requests.get(f"{mock.url}{PL}/returns", headers=bearer(), timeout=10))
        assert answer.status_code == 200
        assert 2.0 <= took < 5.7, took  # the sum would be 5.7 s: a margin no load on a shared machine eats
        (entry,) = requests.get(f"{mock.url}/__admin/journal", timeout=10).json()["entries"]
        assert entry["duration_ms"] >= 2000 and entry["fault"] == "latency (f1, f2, f3)"
    finally:
        mock.stop()


def test_bodies_up_to_each_limit_are_read_whole_chunked_or_not(server: Server) -> None:
    """The server reads bodies itself: the control plane's limit (a seed of 10,000 returns is ~2 MB) is not
    the providers' (1 MiB), and a chunked body is bounded like a declared one."""
    if not is_proxy(server):
        pl = {"order_id": "ord_seed", "reason": "defective", "items": [{"sku": "P", "quantity": 1}],
              "refund_amount": 1}
        scenario = {"returns": [{"provider": "3plship", "account": "zl_test_seed", "return": pl}
                                for _ in range(10_000)]}
        seeded = requests.post(f"{server.url}/__admin/seed", json=scenario, timeout=60)
        assert seeded.status_code == 201 and seeded.json()["seeded"] == 10_000

    def chunks(total: int) -> Iterator[bytes]:
        raw = json.dumps(fixture("3plship/create-return.request.json")).encode()
        yield raw[:10]
        yield raw[10:] + b" " * max(0, total - len(raw))

    whole = requests.post(f"{server.url}{PL}/returns", data=chunks(0), timeout=10,
                          headers={**bearer(), "Content-Type": "application/json"})
    assert whole.status_code == 201, whole.text
    # The mock's limit is 1 MiB (the providers'); the proxy's 16 MiB, answered by the mock behind it.
    over = requests.post(f"{server.url}{PL}/returns", data=chunks(2 * 1024 * 1024), timeout=30,
                         headers={**bearer(), "Content-Type": "application/json"})
    assert over.status_code == 413 and over.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"
    if is_proxy(server):
        beyond = requests.post(f"{server.url}{PL}/returns", data=chunks(17 * 1024 * 1024), timeout=60,
                               headers={**bearer(), "Content-Type": "application/json"})
        assert beyond.status_code == 413 and "16777216 bytes" in beyond.json()["error"]["message"]
