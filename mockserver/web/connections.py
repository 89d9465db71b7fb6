"""A worker's connections watched: a connection that carries no request is closed at the header deadline,
and past the worker's limit the longest idle make room (or, all busy, a new one is refused at once).

granian (hyper) closes a connection whose request line and headers take longer than --header-timeout-ms,
but only once a first byte has arrived: a connection that never sends one, or a kept-alive one between two
requests, is held for ever, and with it one of the worker's slots (8,300 such connections stalled every
request of a two-worker serve for good). The kernel knows when each connection last received a byte
(TCP_INFO); the server knows which carry a request under way (`Connections`). A thread in each worker looks
over the worker's sockets every so often and shuts down each connection of its port that has received
nothing, had no answer and made no progress sending one for longer than the header deadline. Only these
count as activity: a request under way, bytes of a request, an answer being read.

A sweep costs a few system calls a connection (~7 us: 10,000 held cost ~7% of a core), so it runs every
quarter of the deadline (at most once a second, and never more than a fifth of the time); it is the only
cost, and only while connections are held, never per request.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import socket
import struct
import termios
import threading
import time
from dataclasses import dataclass

from mockserver.domain.config import Limits

LOG = logging.getLogger("mockserver")

_TCP_LISTEN = 10
_TCP_ESTABLISHED = 1
_INFO = struct.Struct("=B7x16xI24xII")
"""tcp_info (linux/tcp.h): the state, tcpi_unacked (offset 24), tcpi_last_data_recv (52), tcpi_last_ack_recv (56)."""
_INFO_SIZE = 120 + 8
_ACKED = struct.Struct("=Q")
"""tcpi_bytes_acked, at offset 120: an answer being read makes progress."""
_RST = struct.pack("ii", 1, 0)
"""SO_LINGER on, 0 s: close with a reset, a refusal the client sees at once."""


class Connections:
    """Which peers have a request under way, and when each was last answered: written by the event loop,
    read by the watch (single dictionary operations, atomic under the GIL)."""

    __slots__ = ("answered", "busy", "tracked")

    def __init__(self, tracked: bool = True) -> None:
        self.busy: dict[str, int] = {}
        self.answered: dict[str, float] = {}
        self.tracked = tracked
        """False where no watch reads them (nothing would ever forget a peer)."""

    def begin(self, peer: str) -> None:
        if self.tracked:
            self.busy[peer] = self.busy.get(peer, 0) + 1

    def end(self, peer: str) -> None:
        if not self.tracked:
            return
        left = self.busy.pop(peer, 1) - 1
        if left > 0:
            self.busy[peer] = left
        self.answered[peer] = time.monotonic()


@dataclass
class _Known:
    peer: str
    family: int
    acked: int = 0
    progress: float = 0.0
    """When the bytes the client acknowledged last grew (an answer being read)."""


class Watch(threading.Thread):
    def __init__(self, connections: Connections, limits: Limits) -> None:
        super().__init__(name="returns-mock-connections", daemon=True)
        self.connections = connections
        self.idle_s = limits.header_timeout_ms / 1000
        self.limit = limits.max_connections
        self.port = limits.port
        self.period = min(1.0, max(0.05, self.idle_s / 4))
        self._known: dict[int, _Known] = {}
        """Socket inode -> one of this port's connections."""
        self._others: set[int] = set()
        """Socket inodes that are not (the process's store, upstream and webhook sockets, pipes)."""
        self._listeners: dict[int, int] = {}
        """Socket inode -> family, of this port's listening sockets in this process."""
        self.closed = 0
        self.refused = 0

    def run(self) -> None:
        while True:
            started = time.monotonic()
            try:
                crowded = self.sweep()
            except Exception:  # a sweep that fails is tried again; the server goes on regardless
                LOG.exception("the connection watch failed")
                crowded = False
            took = time.monotonic() - started
            time.sleep(max(0.05 if crowded else self.period, took * 4))

    def sweep(self) -> bool:
        """Close what is idle (and, past the limit, what is idle longest); answers whether the worker is
        still at its limit."""
        now = time.monotonic()
        seen: set[int] = set()
        idle: list[tuple[float, int, int]] = []  # (idle for, fd, inode): what may make room
        listeners: list[tuple[int, int]] = []
        count = 0
        for name in os.listdir("/proc/self/fd"):
            try:
                link = os.readlink(f"/proc/self/fd/{name}")
            except OSError:
                continue
            if not link.startswith("socket:["):
                continue
            inode = int(link[8:-1])
            if inode in self._others:
                continue
            fd = int(name)
            if inode in self._listeners:
                listeners.append((fd, self._listeners[inode]))
                continue
            known = self._known.get(inode) or self._classify(fd, inode)
            if known is None:
                continue
            seen.add(inode)
            count += 1
            quiet = self._quiet_for(fd, inode, known, now)
            if quiet is None:
                continue
            if quiet >= self.idle_s:
                self._close(fd, inode)
                count -= 1
            else:
                idle.append((quiet, fd, inode))
        for gone in self._known.keys() - seen:
            self.connections.answered.pop(self._known.pop(gone).peer, None)
        # A connection that lived less than a sweep was never known: its peer's answer time would stay for
        # good (every request of a client without keep-alive is a new peer). Past the idle deadline an
        # answer time decides nothing (the bytes received then say as much), so it is forgotten.
        busy, answered = self.connections.busy, self.connections.answered
        for peer, at in answered.copy().items():
            if now - at > self.idle_s and peer not in busy:
                answered.pop(peer, None)
        if not self.limit or count < self.limit:
            return False
        room = max(1, self.limit // 100)
        for _, fd, inode in sorted(idle, reverse=True)[:count - self.limit + room]:
            self._close(fd, inode)
            count -= 1
        if count >= self.limit:  # every connection is busy: a new one is refused, not queued
            for fd, family in listeners:
                self._refuse(fd, family)
        return count >= self.limit - room

    def _classify(self, fd: int, inode: int) -> _Known | None:
        try:
            with socket.socket(fileno=os.dup(fd)) as sock:
                if sock.family not in (socket.AF_INET, socket.AF_INET6) or sock.type != socket.SOCK_STREAM \
                        or sock.getsockname()[1] != self.port:
                    self._others.add(inode)
                    return None
                if sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0] == _TCP_LISTEN:
                    self._listeners[inode] = sock.family
                    return None
                host, port = sock.getpeername()[:2]
        except OSError:  # gone meanwhile, or not a socket this process may look at
            return None
        known = _Known(f"[{host}]:{port}" if sock.family == socket.AF_INET6 else f"{host}:{port}", sock.family)
        self._known[inode] = known
        return known

    def _quiet_for(self, fd: int, inode: int, known: _Known, now: float) -> float | None:
        """How long the connection has carried nothing (None: a request is under way on it)."""
        if self.connections.busy.get(known.peer):
            return None
        try:
            with socket.socket(known.family, socket.SOCK_STREAM, 0, os.dup(fd)) as sock:
                if os.fstat(sock.fileno()).st_ino != inode:
                    return None  # the descriptor was reused meanwhile: the next sweep sees it
                info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _INFO_SIZE)
                state, _, received_ms, _ = _INFO.unpack_from(info)
                if state != _TCP_ESTABLISHED:
                    return 0.0  # closing already
                quiet: float = min(received_ms / 1000, now - self.connections.answered.get(known.peer, 0.0))
                if quiet < self.idle_s:
                    return quiet
                pending = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
                if struct.unpack("i", pending)[0] == 0:
                    return quiet
                acked: int = _ACKED.unpack_from(info, 120)[0]  # an answer still being sent: is it being read?
                if acked != known.acked or not known.progress:
                    known.acked, known.progress = acked, now
                return min(quiet, now - known.progress)
        except OSError:
            return None

    def _close(self, fd: int, inode: int) -> None:
        """Shut the connection down (the server then sees it end and lets it go); the descriptor stays the
        server's to close."""
        with contextlib.suppress(OSError), socket.socket(fileno=os.dup(fd)) as sock:
            if os.fstat(sock.fileno()).st_ino == inode:
                sock.shutdown(socket.SHUT_RDWR)
                self.closed += 1

    def _refuse(self, fd: int, family: int) -> None:
        """Take the connections waiting on this worker's listening socket and reset them: refused at once."""
        with contextlib.suppress(OSError), socket.socket(family, socket.SOCK_STREAM, 0, os.dup(fd)) as listener:
            listener.setblocking(False)
            while True:
                try:
                    conn, _ = listener.accept()
                except (BlockingIOError, InterruptedError):
                    return
                with conn:
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RST)
                self.refused += 1
