"""The production servers' side of the apps: granian in front of the WSGI app of `serve` and of `proxy`.

Why not granian's WSGI: it hands a request to a Python thread before reading its body, and reads the body
on demand with no deadline (emmett-framework/granian#728), so a client that drips its body holds a
thread for as long as it likes; so does a latency fault's sleep, or a slow upstream. More threads let the
others through, but they contend for the GIL: 64 threads per worker cost 15-40% of the hot path in
paired runs.

Here each worker's event loop reads a body (within --body-timeout-ms, else 408) before the app sees the
request, after the door's checks (Host, Origin, the admin token: `Gate`), so that a refused request never
has its body read. The mock then runs inline, one request at a time, in the loop's own thread (its work
is CPU-bound under the GIL, and a single thread per worker measured fastest); the proxy, which waits on
its upstreams, runs each exchange on a bounded pool of threads of its own, one account's exchanges in
turn when shadowing. A latency fault is an `asyncio.sleep` after the answer was made; the control plane
runs on a few threads of its own, so it answers whatever provider requests are doing. Nothing waits on a
shared thread. Connections that carry no request are closed by the worker's watch
(mockserver.web.connections).

Two faces of one server: granian's RSGI for the mock (its fastest interface: on the floor, three
alternating pairs, 10-30% more GETs and 13-45% more POSTs a second than through a minimal ASGI adapter),
ASGI for the proxy, the one interface that hands over header values and the path as their bytes (RSGI
drops a header value that is not ASCII, and decodes the path lossily): a proxy forwards them as sent.
ASGI does not hand over an absolute-form target's authority, which RSGI does (mockserver.web.guard judges
the Host by it).
"""

from __future__ import annotations

import asyncio
import io
import sys
from collections.abc import Awaitable, Callable, Hashable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import unquote_to_bytes

from mockserver import process
from mockserver.domain.config import Limits
from mockserver.domain.faults import ConnectionDropped
from mockserver.web.admin import MAX_BODY
from mockserver.web.connections import Connections, Watch
from mockserver.web.guard import ADMIN, REFUSED, BrowserGuard

BODY_TIMED_OUT = "returns_mock.body_timed_out"
"""Set in the WSGI environ of a request whose body did not arrive in time: the pipeline answers it 408."""
DEFERRED_DELAY = "returns_mock.deferred_delay"
"""Set (to 0.0) by a server that sleeps a latency fault's delay itself, after the answer is made; the
pipeline adds the delay to it instead of sleeping (a sleep would hold the worker's only thread)."""
RAW_PATH = "RAW_URI"
"""The path as the client sent it, still percent-encoded (the name gunicorn and werkzeug's server use)."""
CONTROL_PLANE_THREADS = 4
FORWARD_THREADS = 64
"""Exchanges a proxy has under way with its upstreams at once (each bounded by --upstream-timeout-ms);
more wait their turn in the event loop, holding no thread."""

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]
Refusal = tuple[int, list[tuple[str, str]], bytes]
Gate = Callable[[dict[str, Any]], Refusal | None]
"""The door's checks of a request's head (mockserver.web.guard): an answer that refuses it, or None."""


class _Answer:
    __slots__ = ("headers", "status")

    def __init__(self) -> None:
        self.status = 500
        self.headers: list[tuple[str, str]] = []

    def __call__(self, status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        self.status = int(status[:3])
        self.headers = headers


Reader = Callable[[Any, int | None, int], Awaitable[bytes]]
"""Reads a request's body from an interface's source (RSGI's protocol, ASGI's receive): (source, its
declared length or None when chunked, the limit) -> the body (for a chunked body, at most limit + 1 bytes)."""


class Server:
    """The app as granian serves it: `__rsgi__` (Interfaces.RSGI) or `__call__` (Interfaces.ASGINL).

    `gate`: the door's checks, made before a body is read. `turn`: the proxy's exchanges run on threads
    of their own; with a turn, a request's key (None: no turn) makes exchanges of the same key wait for each
    other, in their order of arrival."""

    def __init__(self, app: WsgiApp, limits: Limits, *, gate: Gate | None = None, forwards: bool = False,
                 turn: Callable[[dict[str, Any]], Hashable | None] | None = None) -> None:
        self.app = app
        self.limits = limits
        self.gate = gate
        self.timeout = limits.body_timeout_ms / 1000
        self.control_plane = ThreadPoolExecutor(CONTROL_PLANE_THREADS, thread_name_prefix="returns-mock-admin")
        self.forwarding = ThreadPoolExecutor(FORWARD_THREADS, thread_name_prefix="returns-mock-forward") \
            if forwards else None
        self.turn = turn
        self._turns: dict[Hashable, tuple[asyncio.Lock, list[int]]] = {}
        """A turn's lock and how many exchanges hold or wait for it (gone when none do)."""
        self._forward_slots: asyncio.Semaphore | None = None
        self._admin_reads: asyncio.Semaphore | None = None
        self.deadlines = Deadlines(self.timeout)
        # The watch reads the kernel's TCP_INFO and /proc: Linux only (elsewhere hyper's header deadline alone).
        watched = bool(limits.max_connections and limits.port and sys.platform.startswith("linux"))
        self.connections = Connections(tracked=watched)
        self.watch = Watch(self.connections, limits) if watched else None
        if self.watch is not None:
            self.watch.start()

    # --- the two interfaces ---------------------------------------------------------------------------

    async def __rsgi__(self, scope: Any, proto: Any) -> None:
        if scope.proto != "http":
            return
        environ = _rsgi_environ(scope)
        peer = scope.client
        self.connections.begin(peer)
        try:
            refusal = self._refusal(environ)
            if refusal is not None:
                proto.response_bytes(*refusal)
                return
            headers = scope.headers
            length = headers.get("content-length")
            if (length and length != "0") or "transfer-encoding" in headers:
                await self._read(environ, _rsgi_body, proto, length)
            answer = _Answer()
            body, whole = self._run_here(environ, answer) if self._here(environ) else \
                await self._run_elsewhere(environ, answer)
            delay: float = environ[DEFERRED_DELAY]
            if delay:
                await asyncio.sleep(delay)
            if whole:
                proto.response_bytes(answer.status, answer.headers, body)
            else:  # a dropped-connection fault: what was sent, then the declared length unmet; the server cuts it
                transport = proto.response_stream(answer.status, answer.headers)
                await transport.send_bytes(body)
        finally:
            self.connections.end(peer)

    async def __call__(self, scope: dict[str, Any], receive: Callable[[], Awaitable[dict[str, Any]]],
                       send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            return
        environ = _asgi_environ(scope)
        client = scope["client"]
        peer = f"[{client[0]}]:{client[1]}" if ":" in client[0] else f"{client[0]}:{client[1]}"
        self.connections.begin(peer)
        try:
            answer = _Answer()
            whole = True
            refusal = self._refusal(environ)
            if refusal is not None:
                answer.status, answer.headers, body = refusal
            else:
                length = environ.get("CONTENT_LENGTH")
                if (length and length != "0") or "HTTP_TRANSFER_ENCODING" in environ:
                    await self._read(environ, _asgi_body, receive, length)
                body, whole = self._run_here(environ, answer) if self._here(environ) else \
                    await self._run_elsewhere(environ, answer)
                delay: float = environ[DEFERRED_DELAY]
                if delay:
                    await asyncio.sleep(delay)
            headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in answer.headers]
            await send({"type": "http.response.start", "status": answer.status, "headers": headers})
            # A dropped-connection fault ends short of its declared length: the server cuts the connection.
            await send({"type": "http.response.body", "body": body, "more_body": not whole})
        finally:
            self.connections.end(peer)

    # --- what both do --------------------------------------------------------------------------------

    def _refusal(self, environ: dict[str, Any]) -> Refusal | None:
        """The door's answer to a request refused on its head: its body is never read."""
        return self.gate(environ) if self.gate is not None else None

    async def _read(self, environ: dict[str, Any], read: Reader, source: Any, length: str | None) -> None:
        if REFUSED in environ:  # refused on a provider's path: its pipeline answers, the body unread
            return
        if environ["PATH_INFO"].startswith(ADMIN):
            await self._read_admin_body(environ, read, source, length)
        else:
            await self._read_body(environ, read, source, length, self.limits.max_body_bytes)

    def _here(self, environ: dict[str, Any]) -> bool:
        """Whether the request runs in the loop's own thread (the mock's provider paths), not on threads."""
        return self.forwarding is None and not environ["PATH_INFO"].startswith(ADMIN)

    def _run_here(self, environ: dict[str, Any], answer: _Answer) -> tuple[bytes, bool]:
        environ[DEFERRED_DELAY] = 0.0
        return _run(self.app, environ, answer)

    async def _run_elsewhere(self, environ: dict[str, Any], answer: _Answer) -> tuple[bytes, bool]:
        environ[DEFERRED_DELAY] = 0.0
        loop = asyncio.get_running_loop()
        if environ["PATH_INFO"].startswith(ADMIN):
            return await loop.run_in_executor(self.control_plane, _run, self.app, environ, answer)
        return await self._forward(loop, environ, answer)

    async def _forward(self, loop: asyncio.AbstractEventLoop, environ: dict[str, Any],
                       answer: _Answer) -> tuple[bytes, bool]:
        """A proxy's exchange on its threads: at most FORWARD_THREADS at once, the others waiting here (not
        on a thread); exchanges of one turn one at a time, in their order of arrival (asyncio's locks are
        fair), each applied to the shadow before the next reaches the upstream; other turns go on meanwhile."""
        if self._forward_slots is None:
            self._forward_slots = asyncio.Semaphore(FORWARD_THREADS)
        key = self.turn(environ) if self.turn is not None else None
        if key is None:
            async with self._forward_slots:
                return await loop.run_in_executor(self.forwarding, _run, self.app, environ, answer)
        lock, users = self._turns.setdefault(key, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock, self._forward_slots:
                return await loop.run_in_executor(self.forwarding, _run, self.app, environ, answer)
        finally:
            users[0] -= 1
            if not users[0]:
                del self._turns[key]

    async def _read_admin_body(self, environ: dict[str, Any], read: Reader, source: Any, length: str | None) -> None:
        """A control-plane body, read by at most CONTROL_PLANE_THREADS requests at once: whatever the number of
        requests, the bodies held in memory are bounded by that many times --admin-max-body-bytes."""
        if self._admin_reads is None:
            self._admin_reads = asyncio.Semaphore(CONTROL_PLANE_THREADS)
        async with self._admin_reads:
            await self._read_body(environ, read, source, length, self.limits.admin_max_body_bytes)

    async def _read_body(self, environ: dict[str, Any], read: Reader, source: Any, length: str | None,
                         limit: int) -> None:
        try:
            declared = int(length) if length else None
        except ValueError:
            declared = None
        if declared is not None and declared > limit:
            environ["CONTENT_LENGTH"] = str(declared)  # answered 413 without reading it
            environ[MAX_BODY] = limit
            return
        task = asyncio.current_task()
        self.deadlines.watch(task)
        try:
            body = await read(source, declared, limit)
        except asyncio.CancelledError:
            if not self.deadlines.expired(task):
                raise
            environ[BODY_TIMED_OUT] = True
            body = b""
        except Exception:  # the client went away mid-body: what there is, is nothing
            body = b""
        finally:
            self.deadlines.forget(task)
        environ.pop("HTTP_TRANSFER_ENCODING", None)  # read whole: the app sees a body of known length
        environ["CONTENT_LENGTH"] = str(len(body))
        environ[MAX_BODY] = limit
        if len(body) <= limit:  # past it (a chunked body), 413, and what was read is dropped
            environ["wsgi.input"] = io.BytesIO(body)


def in_worker(app: WsgiApp, *, forwards: bool = False,
              turn: Callable[[dict[str, Any]], Hashable | None] | None = None) -> Server:
    """A server worker's Server for `app` (configured through RETURNS_MOCK_SERVING), the door's checks of
    its guard made before any body is read; the worker dies with the main process."""
    process.die_with_main()
    gate = app.refusal if isinstance(app, BrowserGuard) else None
    return Server(app, Limits.from_env(), gate=gate, forwards=forwards, turn=turn)


async def _rsgi_body(proto: Any, declared: int | None, limit: int) -> bytes:
    if declared is not None:
        whole: bytes = await proto()
        return whole
    parts: list[bytes] = []  # no declared length (chunked): read until it ends or passes `limit`
    size = 0
    async for chunk in proto:
        parts.append(chunk)
        size += len(chunk)
        if size > limit:
            break
    return b"".join(parts)[:limit + 1]


async def _asgi_body(receive: Callable[[], Awaitable[dict[str, Any]]], declared: int | None, limit: int) -> bytes:
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise ConnectionError("the client went away mid-body")
        chunk = message.get("body", b"")
        parts.append(chunk)
        size += len(chunk)
        if size > limit or not message.get("more_body"):
            return b"".join(parts)[:limit + 1]


class Deadlines:
    """Body reads past their deadline, cancelled by one sweep every SWEEP_SECONDS while any read is under
    way. A timer per read (asyncio.timeout) cost ~11 us a request, 7% of the floor's POSTs, in paired runs;
    watching a read here is a dict entry."""

    SWEEP_SECONDS = 0.1

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._reading: dict[asyncio.Task[Any], float] = {}
        self._expired: set[asyncio.Task[Any]] = set()
        self._sweeping = False

    def watch(self, task: asyncio.Task[Any] | None) -> None:
        if task is None:
            return
        loop = task.get_loop()
        self._reading[task] = loop.time() + self.timeout
        if not self._sweeping:
            self._sweeping = True
            loop.call_later(self.SWEEP_SECONDS, self._sweep, loop)

    def forget(self, task: asyncio.Task[Any] | None) -> None:
        if task is not None:
            self._reading.pop(task, None)
            self._expired.discard(task)

    def expired(self, task: asyncio.Task[Any] | None) -> bool:
        """Whether the read was cancelled for its deadline (then the cancellation is taken back)."""
        if task is None or task not in self._expired:
            return False
        task.uncancel()
        return True

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        for task, deadline in list(self._reading.items()):
            if deadline <= now and task not in self._expired:
                self._expired.add(task)
                task.cancel()
        if self._reading:
            loop.call_later(self.SWEEP_SECONDS, self._sweep, loop)
        else:
            self._sweeping = False


def _run(app: WsgiApp, environ: dict[str, Any], answer: _Answer) -> tuple[bytes, bool]:
    """Call the WSGI app: its answer's body, and whether it is whole (False: a fault broke it off)."""
    chunks = app(environ, answer)
    parts: list[bytes] = []
    try:
        for chunk in chunks:
            parts.append(chunk)
    except ConnectionDropped:
        return b"".join(parts), False
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
    return b"".join(parts), True


def _base_environ(method: str, path: str, query: str, server: tuple[str, str], client: str, version: str,
                  scheme: str) -> dict[str, Any]:
    return {
        "REQUEST_METHOD": method, "SCRIPT_NAME": "", "PATH_INFO": path, "QUERY_STRING": query,
        "SERVER_NAME": server[0], "SERVER_PORT": server[1],
        "SERVER_PROTOCOL": "HTTP/1.0" if version == "1" else f"HTTP/{version}",  # granian says "1" for 1.0
        "REMOTE_ADDR": client, "wsgi.version": (1, 0), "wsgi.url_scheme": scheme, "wsgi.input": io.BytesIO(),
        "wsgi.errors": sys.stderr, "wsgi.multithread": True, "wsgi.multiprocess": True, "wsgi.run_once": False,
        "wsgi.input_terminated": True,
    }


def _latin1(text: str) -> str:
    """PEP 3333: what the client sent as bytes, each byte one character (granian hands over UTF-8 text)."""
    return text.encode("utf-8", "surrogateescape").decode("latin-1")


def _rsgi_environ(scope: Any) -> dict[str, Any]:
    server_host, _, server_port = scope.server.rpartition(":")
    path: str = scope.path
    query: str = scope.query_string
    environ = _base_environ(scope.method, path if path.isascii() else _latin1(path),
                            query if query.isascii() else _latin1(query),
                            (server_host, server_port), scope.client.rpartition(":")[0].strip("[]"),
                            scope.http_version, scope.scheme)
    for name, value in scope.headers.items():
        if name == "content-type":
            environ["CONTENT_TYPE"] = value
        elif name == "content-length":
            environ["CONTENT_LENGTH"] = value
        else:
            key = "HTTP_" + name.upper().replace("-", "_")
            environ[key] = f"{environ[key]}, {value}" if key in environ else value
    authority = scope.authority
    if authority is not None:  # RFC 9112 3.2.2: an absolute-form target's authority replaces the Host header
        environ["HTTP_HOST"] = authority
    return environ


def _asgi_environ(scope: dict[str, Any]) -> dict[str, Any]:
    raw: bytes = scope["raw_path"]
    path = (unquote_to_bytes(raw) if b"%" in raw else raw).decode("latin-1")
    client = scope["client"]
    environ = _base_environ(scope["method"], path, scope["query_string"].decode("latin-1"), scope["server"],
                            client[0], scope["http_version"], scope["scheme"])
    environ[RAW_PATH] = raw.decode("latin-1")
    for name, value in scope["headers"]:
        text = value.decode("latin-1")  # PEP 3333: each byte one character; sent on as the same bytes
        if name == b"content-type":
            environ["CONTENT_TYPE"] = text
        elif name == b"content-length":
            environ["CONTENT_LENGTH"] = text
        else:
            key = "HTTP_" + name.decode("latin-1").upper().replace("-", "_")
            environ[key] = f"{environ[key]}, {text}" if key in environ else text
    if not environ.get("HTTP_HOST"):  # granian puts an empty Host where the request had none
        environ.pop("HTTP_HOST", None)
    return environ
