"""How `serve` and `proxy` (and the bench's floor) start granian: one way for every server.

- The port is claimed first, by a lock every returns-mock server takes (an abstract socket named after the
  port), then checked free: granian binds with SO_REUSEPORT, so two servers started together (within
  milliseconds, before either has bound) would otherwise both run, each with half the traffic.
- Each worker dies with the main process, whatever ends it (mockserver.process.die_with_main), so that a
  restart right after `kill -9` finds the port free.
- A signal that stops the server (SIGINT, SIGTERM) lets requests under way finish for SHUTDOWN_GRACE_S at
  most, then the workers are killed: a latency fault's sleep, or an upstream the proxy waits on, would
  otherwise hold the stop for as long as it lasts (a minute and more). A recording loses nothing by it: each
  entry is written by one system call.
- The open-file limit is raised to its hard limit: each connection is a descriptor, and a worker holds
  many (mockserver.web.connections closes those that carry no request).
- granian's own warnings that this configuration makes on purpose (more workers than CPUs: a PostgreSQL
  store runs two per CPU) are not shown: they would read as something wrong.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import resource
import socket
import sys
import tempfile
import time
from typing import Any, cast

from mockserver.domain.config import CONNECTIONS_CAP, SERVING_ENV_VAR, Limits
from mockserver.process import MAIN_ENV

BACKLOG = 4096
"""Connections the kernel queues for a worker before it accepts them (capped by net.core.somaxconn)."""
RESERVED_FILES = 256
"""Descriptors a worker keeps for anything but connections: its store, journal, upstreams, webhooks."""
SHUTDOWN_GRACE_S = 5
"""How long a stopping server's requests under way may take to finish (a mock's answer takes milliseconds,
a proxy's exchange --upstream-timeout-ms, 5 s by default) before its workers are killed."""
CLAIM_WAIT_S = 2.0
"""How long a start waits for a port claimed by a server that is going away (its workers after kill -9)."""


class PortTaken(Exception):
    pass


_claims: list[Any] = []
"""The claims this process holds, for as long as it lives (its workers inherit them)."""


def claim(host: str, port: int) -> None:
    """Claim `port` for this server, or raise PortTaken naming why. Two starts racing for one port: one wins."""
    deadline = time.monotonic() + CLAIM_WAIT_S
    while True:
        try:
            _claims.append(_lock(port))
            break
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise PortTaken("another returns-mock server is there") from None
            time.sleep(0.05)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # As the server binds: connections of an earlier run still in TIME_WAIT do not hold the port.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise PortTaken(f"{exc.strerror or exc} (is another server there?)") from None


def _lock(port: int) -> Any:
    """The port's lock: held while the returned object (and any copy a child inherited) lives."""
    name = f"returns-mock-port-{port}"
    if sys.platform.startswith("linux"):  # an abstract socket: no file, gone with its last holder
        lock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            lock.bind(f"\0{name}")
        except OSError as exc:
            lock.close()
            raise BlockingIOError(str(exc)) from None
        return lock
    import fcntl

    handle = open(os.path.join(tempfile.gettempdir(), f"{name}.lock"), "w")  # noqa: SIM115 - held open on purpose
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise BlockingIOError(name) from None
    return handle


def connections_per_worker(total: int | None, workers: int) -> int:
    """The connections each worker holds: `total` shared out, else what the open-file limit allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    room = max(64, (soft if soft != resource.RLIM_INFINITY else 1 << 20) - RESERVED_FILES)
    if total is not None:
        return min(room, max(1, -(-total // workers)))
    return min(room, CONNECTIONS_CAP)


class _Quiet(logging.Filter):
    """granian's warnings about choices made here on purpose."""

    ON_PURPOSE = ("Configured number of workers appears to be higher than the amount of CPU cores",)

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.ON_PURPOSE)


def _logging() -> dict[str, Any]:
    from granian.log import LOGGING_CONFIG

    config: dict[str, Any] = {**LOGGING_CONFIG, "filters": {"on_purpose": {"()": _Quiet}}}
    loggers = cast(dict[str, Any], LOGGING_CONFIG["loggers"])
    config["loggers"] = {**loggers, "_granian": {**loggers["_granian"], "filters": ["on_purpose"]}}
    return config


def run(target: str, *, asgi: bool, workers: int, address: str, port: int, limits: Limits) -> None:
    """Serve `target` (a factory of mockserver.web.serving.Server, called in each worker) until stopped."""
    from granian import Granian
    from granian.constants import Interfaces
    from granian.http import HTTP1Settings

    os.environ[SERVING_ENV_VAR] = limits.to_env()
    os.environ[MAIN_ENV] = str(os.getpid())
    if sys.platform.startswith("linux"):  # the workers forked from this process, as granian does by default
        multiprocessing.set_start_method("fork", force=True)
    Granian(target, factory=True, address=address, port=port, interface=Interfaces.ASGINL if asgi else Interfaces.RSGI,
            workers=workers, websockets=False, log_access=False, log_dictconfig=_logging(), backlog=BACKLOG,
            backpressure=limits.max_connections, workers_kill_timeout=SHUTDOWN_GRACE_S,
            http1_settings=HTTP1Settings(header_read_timeout=limits.header_timeout_ms)).serve()
