"""The door decides on a request's head, before anything reads its body: the admin token, the Host and the
Origin; a control-plane body is bounded. And a Host that is not a host is refused, on the mock and the proxy
alike. Real servers, raw sockets."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from helpers import PL, Server, mock_or_proxy

pytestmark = pytest.mark.system

TOKEN = "door-token"


def head_only(port: int, head: bytes, wait: float) -> tuple[int, bytes]:
    """Send a request's head (its body promised, never sent) and wait `wait` s for an answer: (0, b"") if none."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as conn:
        conn.sendall(head)
        try:
            data = conn.recv(65536)
        except TimeoutError:
            return 0, b""
    if not data.startswith(b"HTTP/"):
        return 0, data
    head_part, _, body = data.partition(b"\r\n\r\n")
    return int(head_part.split(b" ")[1]), body


def vm_hwm_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def worker_of(server: Server) -> int:
    return int(requests.get(server.url + "/__admin/health", headers={"Authorization": f"Bearer {TOKEN}"},
                            timeout=10).json()["pid"])


@pytest.fixture
def guarded() -> Iterator[Server]:
    """A mock whose control plane needs a token, with a body deadline far beyond any wait of these tests."""
    server = Server("--store", "memory", "--admin-token", TOKEN, "--body-timeout-ms", "60000").start()
    yield server
    server.stop()


@pytest.mark.parametrize(("head", "status"), [
    (b"POST /__admin/seed HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
     b"Content-Length: 200000000\r\n\r\n", 401),
    (b"POST /__admin/seed HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer wrong\r\n"
     b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n", 401),
    (b"POST /__admin/clock HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " + TOKEN.encode() + b"\r\n"
     b"Origin: http://evil.example\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n", 403),
    (b"POST /__admin/clock HTTP/1.1\r\nHost: attacker.example\r\nAuthorization: Bearer " + TOKEN.encode() + b"\r\n"
     b"Content-Type: application/json\r\nContent-Length: 1000000\r\n\r\n", 403),
    (b"POST " + PL.encode() + b"/returns HTTP/1.1\r\nHost: attacker.example\r\nContent-Type: application/json\r\n"
     b"Content-Length: 1000000\r\n\r\n", 403),
])
def test_a_refused_request_is_answered_before_its_body_arrives(guarded: Server, head: bytes, status: int) -> None:
    """Without a body (the deadline is a minute away), the refusal comes at once: nothing waited to read it."""
    got, body = head_only(guarded.port, head, wait=10)
    assert got == status, body[:300]
    answer = json.loads(body)
    assert answer["error"]["code"] in ("unauthorized", "cross_site_request", "forbidden_host", "FORBIDDEN")


def test_unauthenticated_bodies_are_never_read_so_memory_stays_flat(guarded: Server) -> None:
    """Eight clients stream 48 MiB each at an admin endpoint without the token: each is refused on its head,
    the worker never holds their bodies (it once read them whole: 162 -> 1,579 MB for four of 200 MB)."""
    assert guarded.proc is not None
    worker = worker_of(guarded)
    before = vm_hwm_kb(worker)
    chunk = b"[" + b" " * (1024 * 1024 - 2) + b"]"

    def stream() -> None:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", guarded.port), timeout=30) as conn:
            conn.sendall(b"POST /__admin/seed HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                         b"Content-Length: " + str(48 * len(chunk)).encode() + b"\r\n\r\n")
            for _ in range(48):
                conn.sendall(chunk)

    clients = [threading.Thread(target=stream, daemon=True) for _ in range(8)]
    for client in clients:
        client.start()
    for client in clients:
        client.join(timeout=60)
    assert vm_hwm_kb(worker) - before < 100_000  # far below the 384 MiB sent
    assert requests.get(guarded.url + "/__admin/health", headers={"Authorization": f"Bearer {TOKEN}"},
                        timeout=10).status_code == 200


def test_a_control_plane_body_has_a_limit_of_its_own() -> None:
    """16 MiB by default (a seed of 10,000 returns is ~2 MB), at most four read at once; larger is 413 unread."""
    plain = Server("--store", "memory").start()
    larger = Server("--store", "memory", "--admin-max-body-bytes", str(40 * 1024 * 1024)).start()
    body = b'{"advance": "P1D"' + b" " * (20 * 1024 * 1024) + b"}"
    try:
        refused = requests.post(plain.url + "/__admin/clock", data=body, timeout=60,
                                headers={"Content-Type": "application/json"})
        assert refused.status_code == 413 and refused.json()["error"]["code"] == "payload_too_large"
        assert "16777216 bytes" in refused.json()["error"]["message"]
        taken = requests.post(larger.url + "/__admin/clock", data=body, timeout=60,
                              headers={"Content-Type": "application/json"})
        assert taken.status_code == 200, taken.text[:300]
    finally:
        plain.stop()
        larger.stop()


MALFORMED = [b"[::1]evil", b"[::1", b"localhost:evil", b"127.0.0.1:99999", b"local host", b"127.0.0.1, 127.0.0.1",
             b"[fe80::1%25eth0]", b""]


@pytest.fixture(params=["serve", "proxy"])
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    with mock_or_proxy(request.param, "--store", "memory") as front:
        yield front


def _get(port: int, path: str, host: bytes | None, target: bytes | None = None) -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(b"GET " + (target or path.encode()) + b" HTTP/1.1\r\n"
                     + (b"Host: " + host + b"\r\n" if host is not None else b"")
                     + b"Authorization: Bearer zl_test_door\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body


@pytest.mark.parametrize("host", [*MALFORMED, None], ids=[*(h.decode() or "empty" for h in MALFORMED), "none"])
def test_a_host_header_that_is_not_a_host_is_refused(server: Server, host: bytes | None) -> None:
    """No browser sends these: refused, in the provider's format on its paths, the control plane's elsewhere."""
    status, body = _get(server.port, "/__admin/health", host)
    assert status == 400 and json.loads(body)["error"]["code"] == "bad_host", body[:300]
    status, body = _get(server.port, f"{PL}/returns", host)
    answer = json.loads(body)
    assert status == 400 and answer["success"] is False and answer["error"]["code"] == "BAD_REQUEST", body[:300]
    assert answer["error"]["details"]["field"] == "Host"
    assert _get(server.port, "/__admin/health", b"127.0.0.1:8080")[0] == 200


def test_an_absolute_form_target_is_judged_by_its_own_authority() -> None:
    """RFC 9112 3.2.2: the target's authority stands for the Host header, whatever that says."""
    mock = Server("--store", "memory").start()
    try:
        for target in (b"http://attacker.example/__admin/journal",
                       b"http://attacker.example" + PL.encode() + b"/returns"):
            status, _ = _get(mock.port, "", b"127.0.0.1", target=target)
            assert status == 403, target
        assert _get(mock.port, "", b"127.0.0.1", target=b"http://localhost/__admin/health")[0] == 200
    finally:
        mock.stop()


def test_startup_prints_no_warnings_that_are_not_ours(tmp_path: Path) -> None:
    """More workers than CPUs (a PostgreSQL store's default, or asked for) and the proxy's own threads are
    choices made on purpose: the server does not warn about them."""
    import os

    serve = Server("--store", f"sqlite:{tmp_path / 'state.db'}", "--workers", str((os.cpu_count() or 1) + 1)).start()
    proxy = Server("--3plship-upstream", "http://127.0.0.1:9/api/v1", command="proxy").start()
    time.sleep(1)
    serve.stop()
    proxy.stop()
    for output in (serve.output, proxy.output):
        assert "[WARNING]" not in output and "Websockets" not in output and "threads" not in output, output
