"""mockserver.domain.outbound, the proxy's and the webhooks' HTTP client, against servers on loopback that answer
with exact bytes: each way an answer can be framed, encoded, cut short or not be HTTP at all."""

from __future__ import annotations

import gzip
import socket
import threading
import time
import zlib
from collections.abc import Iterator

import pytest

from mockserver.domain.outbound import AnswerTooLarge, ExchangeFailed, exchange


class Canned:
    """Accepts one connection at a time, reads the request head, sends `parts` (sleeping `gap` between)."""

    def __init__(self, parts: list[bytes], gap: float = 0.0) -> None:
        self.parts = parts
        self.gap = gap
        self.requests: list[bytes] = []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                self.requests.append(data)
                try:
                    for part in self.parts:
                        conn.sendall(part)
                        time.sleep(self.gap)
                except OSError:
                    pass

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def canned() -> Iterator[list[Canned]]:
    made: list[Canned] = []
    yield made
    for server in made:
        server.close()


def serve(made: list[Canned], *parts: bytes, gap: float = 0.0) -> Canned:
    server = Canned(list(parts), gap)
    made.append(server)
    return server


def get(server: Canned, *, limit: int = 1 << 20, timeout: float = 5, method: str = "GET") -> tuple[int, bytes]:
    answer = exchange(method, server.url + "/x?y=1", [("X-Test", "1")], b"", timeout=timeout, limit=limit)
    return answer.status, answer.body


def test_content_length_chunked_and_close_delimited_bodies(canned: list[Canned]) -> None:
    assert get(serve(canned, b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")) == (200, b"hello")
    chunked = serve(canned, b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n",
                    b"5;ext=1\r\nhello\r\n", b"6\r\n world\r\n", b"0\r\n\r\n")
    assert get(chunked) == (201, b"hello world")
    assert get(serve(canned, b"HTTP/1.0 200 OK\r\n\r\nuntil", b" close")) == (200, b"until close")
    first = serve(canned, b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n")
    assert get(first) == (204, b"")  # the interim answer is skipped
    request = first.requests[0].decode()
    assert request.startswith("GET /x?y=1 HTTP/1.1\r\n") and "X-Test: 1\r\n" in request
    assert "Connection: close\r\n" in request and "Content-Length" not in request  # a GET without a body


def test_gzip_and_deflate_are_decoded_and_the_cap_counts_decoded_bytes(canned: list[Canned]) -> None:
    packed = gzip.compress(b"x" * 1000)
    head = f"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: {len(packed)}\r\n\r\n".encode()
    assert get(serve(canned, head + packed)) == (200, b"x" * 1000)
    deflated = zlib.compress(b"y" * 100)
    head = f"HTTP/1.1 200 OK\r\nContent-Encoding: deflate\r\nContent-Length: {len(deflated)}\r\n\r\n".encode()
    assert get(serve(canned, head + deflated)) == (200, b"y" * 100)
    bomb = gzip.compress(b"\0" * (8 * 1024 * 1024))
    head = f"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: {len(bomb)}\r\n\r\n".encode()
    with pytest.raises(AnswerTooLarge):
        get(serve(canned, head + bomb), limit=1000)
    exact = serve(canned, b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"z" * 1000)
    assert get(exact, limit=1000) == (200, b"z" * 1000)  # the cap itself is allowed


@pytest.mark.parametrize(("parts", "reason"), [
    ([b"SSH-2.0-OpenSSH\r\n"], "not HTTP"),
    ([b""], "closed the connection without answering"),
    ([b"HTTP/1.1 200 OK\r\nContent-"], "closed the connection mid-answer"),
    ([b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort"], "before the whole answer"),
    ([b"HTTP/1.1 200 OK\r\nContent-Length: ten\r\n\r\n"], "not a number"),
    ([b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"], "malformed"),
    ([b"HTTP/1.1 200 OK\r\nContent-Encoding: br\r\n\r\n"], "cannot read: br"),
    ([b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 4\r\n\r\nnope"], "corrupt"),
    ([b"HTTP/1.1 200 OK\r\nX: " + b"a" * 70000], "longer than 64 KB"),
])
def test_an_unusable_answer_is_a_failure_naming_why(canned: list[Canned], parts: list[bytes], reason: str) -> None:
    with pytest.raises(ExchangeFailed, match=reason) as failed:
        get(serve(canned, *parts))
    assert not failed.value.timed_out


def test_the_deadline_bounds_the_whole_exchange_not_each_read(canned: list[Canned]) -> None:
    drip = serve(canned, *[bytes([b]) for b in b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"], gap=0.2)
    started = time.monotonic()
    with pytest.raises(ExchangeFailed, match="within 1000 ms") as failed:
        get(drip, timeout=1.0)
    assert failed.value.timed_out and time.monotonic() - started < 1.5
    with pytest.raises(ExchangeFailed, match="cannot connect") as refused:
        exchange("GET", "http://127.0.0.1:9/", [], b"", timeout=1.0, limit=100)  # nothing listens on port 9
    assert not refused.value.timed_out


def test_a_cut_answer_keeps_what_came_when_the_caller_allows(canned: list[Canned]) -> None:
    server = serve(canned, b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"a" * 100000)
    answer = exchange("POST", server.url, [], b"{}", timeout=5, limit=10, cut=True)
    assert answer.status == 200 and answer.body == b"a" * 10 and not answer.complete
    assert b"Content-Length: 2\r\n" in server.requests[0]


def test_url_credentials_become_basic_auth_unless_the_request_has_its_own(canned: list[Canned]) -> None:
    server = serve(canned, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    with_userinfo = server.url.replace("http://", "http://us%40er:p%3Aw@")
    exchange("GET", with_userinfo, [], b"", timeout=5, limit=10)
    exchange("GET", with_userinfo, [("Authorization", "Bearer own")], b"", timeout=5, limit=10)
    assert b"Authorization: Basic dXNAZXI6cDp3\r\n" in server.requests[0]  # us@er:p:w
    assert b"Authorization: Bearer own\r\n" in server.requests[1] and b"Basic" not in server.requests[1]
