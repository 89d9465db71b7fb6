"""The files that command-line flags name, checked before anything starts: each mistake is one line on
stderr and exit code 2 (UsageError), never a traceback, a hang or a worker that dies later.

A file to read is a regular file of sane size (mockserver.domain.files: a FIFO with no writer, a device such
as /dev/zero, or a directory is refused, not read for ever or until memory runs out). A file to write is a
regular file, or a new one in an existing folder, that this process can open for writing: tried, not
guessed from its mode bits (root passes every mode check; a read-only file system does not care).
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from mockserver.domain.files import FileRefused, read_regular


class UsageError(Exception):
    """A bad flag or a file it names: one line, exit code 2."""


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def read_file(path: str, flag: str, limit: int, *, secret: bool = False) -> bytes:
    """A file a flag names, read whole: a regular file of at most `limit` bytes. `secret`: it holds a
    credential, so a file other users can read (or anyone but its owner can change) is refused, with the fix."""
    if secret:
        with contextlib.suppress(OSError):  # a file that cannot be read says so below
            mode = os.stat(path).st_mode
            if stat.S_ISREG(mode):
                _private(path, flag, mode)
    try:
        return read_regular(path, limit)
    except FileRefused as exc:
        raise UsageError(f"{flag} {path}: {exc}") from None


def _private(path: str, flag: str, mode: int) -> None:
    """Refuse a credential's file that other users can read, or that anyone but its owner can change (they
    could set the token to one they know). Group read is allowed: a group is given it on purpose."""
    if mode & (stat.S_IROTH | stat.S_IWOTH | stat.S_IWGRP):
        who = "readable by other users" if mode & stat.S_IROTH else "writable by other users"
        raise UsageError(f"{flag} {path}: {who} (mode {stat.S_IMODE(mode):04o}), so anyone on this machine "
                         f"could {'read' if mode & stat.S_IROTH else 'change'} the admin token: chmod 600 {path}")


def check_writable(path: str, flag: str) -> str:
    """The absolute path of a file a flag names for writing: an existing regular file, or a new one in an
    existing folder, that this process can open for writing. Tried: nothing is truncated, and a file made
    for the try is removed."""
    target = Path(path).absolute()
    try:
        mode: int | None = os.stat(target).st_mode
    except FileNotFoundError:
        mode = None
    except OSError as exc:
        raise UsageError(f"{flag} {path}: {exc.strerror}") from None
    if mode is not None and not stat.S_ISREG(mode):
        raise UsageError(f"{flag} {path}: {_kind(mode)}; give the path of a file to write")
    if mode is None and not target.parent.is_dir():
        raise UsageError(f"{flag} {path}: folder {target.parent} does not exist")
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_NONBLOCK, 0o600)
    except OSError as exc:
        raise UsageError(f"{flag} {path}: cannot write it: {exc.strerror}") from None
    os.close(fd)
    if mode is None:
        target.unlink(missing_ok=True)
    return str(target)
