"""The production server's side of the app: RSGI (granian's native interface) in front of the Flask app.

Why not granian's WSGI: it hands a request to a Python thread before reading its body, and reads the body
on demand with no deadline (emmett-framework/granian#728), so a client that drips its body holds a
thread for as long as it likes; so does a latency fault's sleep. More threads let the others through,
but they contend for the GIL: 64 threads per worker cost 15-40% of the hot path in paired runs.

Here each worker's event loop reads a body (within --body-timeout-ms, else 408) before the mock sees the
request, then runs the mock inline, one request at a time, in the loop's own thread (the mock's work is
CPU-bound under the GIL, and a single thread per worker measured fastest). A latency fault is an
`asyncio.sleep` after the answer was made; the control plane runs on a few threads of its own, so it
answers whatever provider requests are doing. Nothing waits on a shared thread.
"""

from __future__ import annotations

import asyncio
import io
import sys
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from mockserver.domain.faults import ConnectionDropped
from mockserver.web.admin import ADMIN_MAX_BODY
from mockserver.web.admin import PREFIX as ADMIN

BODY_TIMED_OUT = "returns_mock.body_timed_out"
"""Set in the WSGI environ of a request whose body did not arrive in time: the pipeline answers it 408."""
DEFERRED_DELAY = "returns_mock.deferred_delay"
"""Set (to 0.0) by a server that sleeps a latency fault's delay itself, after the answer is made; the
pipeline adds the delay to it instead of sleeping (a sleep would hold the worker's only thread)."""
CONTROL_PLANE_THREADS = 4

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class _Answer:
    __slots__ = ("headers", "status")

    def __init__(self) -> None:
        self.status = 500
        self.headers: list[tuple[str, str]] = []

    def __call__(self, status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        self.status = int(status[:3])
        self.headers = headers


class RsgiServer:
    """An RSGI application (granian Interfaces.RSGI) serving a WSGI app as described above."""

    def __init__(self, app: WsgiApp, *, body_timeout_ms: int, max_body_bytes: int) -> None:
        self.app = app
        self.timeout = body_timeout_ms / 1000
        self.max_body = max_body_bytes
        self.control_plane = ThreadPoolExecutor(CONTROL_PLANE_THREADS, thread_name_prefix="returns-mock-admin")
        self.deadlines = Deadlines(self.timeout)

    async def __rsgi__(self, scope: Any, proto: Any) -> None:
        if scope.proto != "http":
            return
        headers = scope.headers
        environ = _environ(scope)
        length = headers.get("content-length")
        if (length and length != "0") or "transfer-encoding" in headers:
            await self._read_body(environ, proto, length)
        environ[DEFERRED_DELAY] = 0.0
        answer = _Answer()
        if environ["PATH_INFO"].startswith(ADMIN):
            loop = asyncio.get_running_loop()
            body, whole = await loop.run_in_executor(self.control_plane, _run, self.app, environ, answer)
        else:
            body, whole = _run(self.app, environ, answer)
        delay: float = environ[DEFERRED_DELAY]
        if delay:
            await asyncio.sleep(delay)
        if whole:
            proto.response_bytes(answer.status, answer.headers, body)
        else:  # a dropped-connection fault: what was sent, then the declared length unmet; the server cuts it
            transport = proto.response_stream(answer.status, answer.headers)
            await transport.send_bytes(body)

    async def _read_body(self, environ: dict[str, Any], proto: Any, length: str | None) -> None:
        limit = ADMIN_MAX_BODY if environ["PATH_INFO"].startswith(ADMIN) else self.max_body
        try:
            declared = int(length) if length else None
        except ValueError:
            declared = None
        if declared is not None and declared > limit:
            environ["CONTENT_LENGTH"] = str(declared)  # answered 413 without reading it
            return
        task = asyncio.current_task()
        self.deadlines.watch(task)
        try:
            body: bytes = await (proto() if declared is not None else _collect(proto, limit))
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
        if len(body) <= limit:  # past it (a chunked body), 413, and what was read is dropped
            environ["wsgi.input"] = io.BytesIO(body)


async def _collect(proto: Any, limit: int) -> bytes:
    """A body of no declared length (chunked), read until it ends or passes `limit` (then limit + 1 bytes)."""
    parts: list[bytes] = []
    size = 0
    async for chunk in proto:
        parts.append(chunk)
        size += len(chunk)
        if size > limit:
            break
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


def _environ(scope: Any) -> dict[str, Any]:
    server_host, _, server_port = scope.server.rpartition(":")
    path: str = scope.path
    environ: dict[str, Any] = {
        "REQUEST_METHOD": scope.method, "SCRIPT_NAME": "",
        # PEP 3333: the path's bytes, decoded as latin-1 (granian hands it over percent-decoded as UTF-8)
        "PATH_INFO": path if path.isascii() else path.encode("utf-8", "surrogateescape").decode("latin-1"),
        "QUERY_STRING": scope.query_string, "SERVER_NAME": server_host, "SERVER_PORT": server_port,
        "SERVER_PROTOCOL": f"HTTP/{scope.http_version}", "REMOTE_ADDR": scope.client.rpartition(":")[0],
        "wsgi.version": (1, 0), "wsgi.url_scheme": scope.scheme, "wsgi.input": io.BytesIO(),
        "wsgi.errors": sys.stderr, "wsgi.multithread": True, "wsgi.multiprocess": True, "wsgi.run_once": False,
        "wsgi.input_terminated": True,
    }
    for name, value in scope.headers.items():
        if name == "content-type":
            environ["CONTENT_TYPE"] = value
        elif name == "content-length":
            environ["CONTENT_LENGTH"] = value
        else:
            key = "HTTP_" + name.upper().replace("-", "_")
            environ[key] = f"{environ[key]}, {value}" if key in environ else value
    return environ

