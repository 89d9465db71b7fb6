"""Background work that belongs to a process, not to a request: one daemon thread per process and job.

Worker processes are forked by the server, and threads do not survive a fork, so each job starts its
thread in the first process that needs it, and again in every forked child.
"""

from __future__ import annotations

import contextlib
import os
import threading
import weakref
from collections.abc import Callable
from typing import Any


class Every:
    """Calls `job(member)` for every watched member every `period` seconds, or sooner when woken.

    Members are held weakly: a store or journal nobody uses any more drops out by itself. A failing call
    is retried at the next round; background work never takes the server down.
    """

    def __init__(self, name: str, period: float, job: Callable[[Any], None]) -> None:
        self.name = name
        self.period = period
        self.job = job
        self._members: weakref.WeakSet[Any] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._pid = 0

    def watch(self, member: Any) -> None:
        with self._lock:
            self._members.add(member)
            if self._pid != os.getpid():
                self._pid = os.getpid()
                self._wake = threading.Event()
                threading.Thread(target=self._run, name=self.name, daemon=True).start()

    def forget(self, member: Any) -> None:
        with self._lock:
            self._members.discard(member)

    def wake(self) -> None:
        self._wake.set()

    def run_once(self) -> None:
        for member in list(self._members):
            with contextlib.suppress(Exception):
                self.job(member)

    def _run(self) -> None:
        while True:
            self._wake.wait(self.period)
            self._wake.clear()
            self.run_once()
