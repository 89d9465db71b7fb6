"""HTTP/1.1 requests to other servers (the proxy's upstream, webhook receivers) bounded as a whole.

HTTP client libraries offer per-read timeouts: an upstream that drips its answer a byte at a time holds
the request for ever, and a gzip body is decoded whole before anyone looks at its size. Here one deadline
bounds the exchange from connecting to the answer's last byte, and the decoded body is cut off at a cap
while it streams, so neither time nor memory depends on what the other side sends.
"""

from __future__ import annotations

import base64
import os
import select
import socket
import ssl
import time
import zlib
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import certifi

READ_SIZE = 65536
SEND_SIZE = 262144
"""A large request body is sent in pieces of this size, looking for an early answer between them."""


class ExchangeFailed(Exception):
    """No usable answer; `timed_out` tells a deadline (504 for a proxy) from anything else (502)."""

    def __init__(self, reason: str, timed_out: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.timed_out = timed_out


class AnswerTooLarge(ExchangeFailed):
    """The answer's decoded body passed the cap; reading stopped there."""


@dataclass(frozen=True)
class Answer:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes
    """Decoded (gzip and deflate undone); at most the cap, or less when the caller allowed a cut."""
    complete: bool = True


class _Reader:
    def __init__(self, sock: socket.socket, deadline: float, timeout: float) -> None:
        self.sock = sock
        self.deadline = deadline
        self.timeout = timeout
        self.buffer = b""
        self.closed = False
        self.received = 0

    def fill(self) -> bool:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise ExchangeFailed(f"no complete answer within {round(self.timeout * 1000)} ms", timed_out=True)
        self.sock.settimeout(left)
        try:
            chunk = self.sock.recv(READ_SIZE)
        except TimeoutError:
            raise ExchangeFailed(f"no complete answer within {round(self.timeout * 1000)} ms",
                                 timed_out=True) from None
        if not chunk:
            self.closed = True
            return False
        self.buffer += chunk
        self.received += len(chunk)
        return True

    def line(self, limit: int = 65536) -> bytes:
        while b"\r\n" not in self.buffer:
            if len(self.buffer) > limit:
                raise ExchangeFailed("the upstream's answer has a header line longer than 64 KB")
            if not self.fill():
                raise ExchangeFailed("the upstream closed the connection " +
                                     ("mid-answer" if self.received else "without answering"))
        line, _, self.buffer = self.buffer.partition(b"\r\n")
        return line

    def take(self, size: int) -> bytes:
        while len(self.buffer) < size:
            if not self.fill():
                raise ExchangeFailed("the upstream closed the connection mid-answer")
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def some(self) -> bytes:
        if not self.buffer and not self.fill():
            return b""
        data, self.buffer = self.buffer, b""
        return data


class _Body:
    """The decoded body, cut off at `limit` (AnswerTooLarge, or a cut answer when `cut` is allowed)."""

    def __init__(self, encoding: str, limit: int, cut: bool) -> None:
        self.limit = limit
        self.cut = cut
        self.parts: list[bytes] = []
        self.size = 0
        self.full = False
        encoding = encoding.strip().lower()
        wbits = {"gzip": 31, "x-gzip": 31, "deflate": 15}.get(encoding)
        self.decoder = zlib.decompressobj(wbits) if wbits is not None else None
        if encoding not in ("", "identity") and self.decoder is None:
            raise ExchangeFailed(f"the upstream's answer has a Content-Encoding the proxy cannot read: {encoding}")

    def add(self, data: bytes) -> None:
        if self.full:
            return
        room = self.limit - self.size + 1  # one byte past the cap tells "larger" from "exactly the cap"
        try:
            decoded = self.decoder.decompress(data, room) if self.decoder is not None else data[:room]
        except zlib.error as exc:
            raise ExchangeFailed(f"the upstream's compressed answer is corrupt: {exc}") from None
        self.parts.append(decoded)
        self.size += len(decoded)
        if self.size > self.limit:
            if not self.cut:
                raise AnswerTooLarge(f"the upstream's answer is larger than {self.limit} bytes once decoded")
            self.full = True

    def value(self) -> bytes:
        return b"".join(self.parts)[:self.limit]


def _tls() -> ssl.SSLContext:
    """Certificates checked as `requests` checks them: against SSL_CERT_FILE or REQUESTS_CA_BUNDLE when
    set, else certifi's bundle (a Python without the system's authorities still reaches a real provider)."""
    cafile = os.environ.get("SSL_CERT_FILE") or os.environ.get("REQUESTS_CA_BUNDLE") or certifi.where()
    return ssl.create_default_context(cafile=cafile)


def exchange(method: str, url: str, headers: list[tuple[str, str]], body: bytes, *, timeout: float,
             limit: int, cut: bool = False, address: str | None = None) -> Answer:
    """Send one request and read its answer, all of it within `timeout` seconds, the decoded body at most
    `limit` bytes (more: AnswerTooLarge, or with `cut` the answer so far, `complete=False`). `address`: the
    IP address to connect to, when the caller resolved (and checked) the URL's host itself."""
    parts = urlsplit(url)
    secure = parts.scheme == "https"
    deadline = time.monotonic() + timeout
    try:
        sock = socket.create_connection((address or parts.hostname or "", parts.port or (443 if secure else 80)),
                                        timeout=timeout)
    except TimeoutError:
        raise ExchangeFailed(f"no connection within {round(timeout * 1000)} ms", timed_out=True) from None
    except OSError as exc:
        raise ExchangeFailed(f"cannot connect: {type(exc).__name__}: {exc.strerror or exc}"[:300]) from None
    try:
        if secure:
            sock.settimeout(max(0.001, deadline - time.monotonic()))
            sock = _tls().wrap_socket(sock, server_hostname=parts.hostname)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        lines = [f"{method} {target} HTTP/1.1", f"Host: {parts.hostname}{f':{parts.port}' if parts.port else ''}",
                 "Connection: close", "Accept-Encoding: gzip, deflate"]
        names = {name.lower() for name, _ in headers}
        if parts.username is not None and "authorization" not in names:
            credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            lines.append("Authorization: Basic " + base64.b64encode(credentials.encode()).decode())
        lines += [f"{name}: {value}" for name, value in headers if name.lower() != "accept-encoding"]
        if body or method not in ("GET", "HEAD", "DELETE", "OPTIONS"):
            lines.append(f"Content-Length: {len(body)}")
        _send(sock, ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body, deadline)
        return _answer(_Reader(sock, deadline, timeout), method, limit, cut)
    except (TimeoutError, ssl.SSLError, OSError) as exc:
        if isinstance(exc, TimeoutError):
            raise ExchangeFailed(f"no complete answer within {round(timeout * 1000)} ms", timed_out=True) from None
        raise ExchangeFailed(f"{type(exc).__name__}: {exc}"[:300]) from None
    finally:
        sock.close()


def _send(sock: socket.socket, data: bytes, deadline: float) -> None:
    """Send the request. An upstream may answer before it has taken all of it (a 413 to a large body) and
    stop reading, or close: sending stops there, and its answer is read all the same (a request it refused
    is not a gateway error)."""
    view = memoryview(data)
    while view:
        sock.settimeout(max(0.001, deadline - time.monotonic()))
        try:
            view = view[sock.send(view[:SEND_SIZE]):]
        except (BrokenPipeError, ConnectionResetError):
            return
        if view and select.select([sock], [], [], 0)[0]:
            return


def _answer(reader: _Reader, method: str, limit: int, cut: bool) -> Answer:
    while True:
        status_line = reader.line()
        version, _, rest = status_line.partition(b" ")
        code, _, reason = rest.partition(b" ")
        if not version.startswith(b"HTTP/") or not code.isdigit() or len(code) != 3:
            raise ExchangeFailed("the upstream's answer is not HTTP")
        headers: list[tuple[str, str]] = []
        while line := reader.line():
            name, _, value = line.decode("latin-1").partition(":")
            headers.append((name.strip(), value.strip()))
            if len(headers) > 200:
                raise ExchangeFailed("the upstream's answer has more than 200 headers")
        status = int(code)
        if status >= 200 or status == 101:
            break  # 1xx interim answers are skipped
    fields = {name.lower(): value for name, value in headers}
    decoded = _Body(fields.get("content-encoding", ""), limit, cut)
    if method == "HEAD" or status in (204, 304):
        pass
    elif "chunked" in fields.get("transfer-encoding", "").lower():
        while not decoded.full:
            size_line = reader.line().split(b";", 1)[0].strip()
            try:
                size = int(size_line, 16)
            except ValueError:
                raise ExchangeFailed("the upstream's chunked answer is malformed") from None
            if size == 0:
                break
            decoded.add(reader.take(size))
            reader.take(2)
    elif "content-length" in fields:
        if not fields["content-length"].isdigit():
            raise ExchangeFailed("the upstream's Content-Length is not a number")
        left = int(fields["content-length"])
        while left > 0 and not decoded.full:
            data = reader.some()
            if not data:
                raise ExchangeFailed("the upstream closed the connection before the whole answer")
            data = data[:left]
            left -= len(data)
            decoded.add(data)
    else:
        while not decoded.full and (data := reader.some()):
            decoded.add(data)
    kept = [(n, v) for n, v in headers if n.lower() not in ("content-encoding", "transfer-encoding", "content-length")]
    return Answer(status, reason.decode("latin-1"), kept, decoded.value(), complete=not decoded.full)
