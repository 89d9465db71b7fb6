"""This process's id, read without a system call.

glibc no longer caches getpid(), and the hot path asks several times a request (is this connection,
lock or mapping this process's, or one inherited across the server's fork?)."""

from __future__ import annotations

import os

_pid = os.getpid()


def _forked() -> None:
    global _pid
    _pid = os.getpid()


os.register_at_fork(after_in_child=_forked)


def pid() -> int:
    return _pid
