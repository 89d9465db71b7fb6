"""This process's id, read without a system call; and a server worker's tie to its main process.

glibc no longer caches getpid(), and the hot path asks several times a request (is this connection,
lock or mapping this process's, or one inherited across the server's fork?)."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

MAIN_ENV = "RETURNS_MOCK_MAIN"
"""The server's main process id, set for its workers (mockserver.web.launch)."""
_PR_SET_PDEATHSIG = 1

_pid = os.getpid()


def _forked() -> None:
    global _pid
    _pid = os.getpid()


os.register_at_fork(after_in_child=_forked)


def pid() -> int:
    return _pid


def die_with_main() -> None:
    """In a server's worker: end when the main process ends, whatever ends it (`kill -9` included), so that
    no worker goes on serving, and holding the port, as an orphan. Linux: the kernel sends SIGKILL when the
    parent dies (PR_SET_PDEATHSIG); elsewhere a thread watches for the parent to change."""
    main = os.environ.get(MAIN_ENV)
    if not main or os.getpid() == int(main):
        return
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    else:
        threading.Thread(target=_watch_parent, args=(int(main),), name="returns-mock-parent", daemon=True).start()
    if os.getppid() != int(main):  # it died before the tie was made
        os._exit(1)


def _watch_parent(main: int) -> None:
    while os.getppid() == main:
        time.sleep(0.2)
    os._exit(1)
