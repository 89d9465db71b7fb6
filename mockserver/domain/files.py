"""Reading a file a user names (a flag's, a recording): a regular file of bounded size, or why not."""

from __future__ import annotations

import os
import stat


class FileRefused(Exception):
    """The file cannot be read whole: its reason, worded to follow the file's name."""


def read_regular(path: str | os.PathLike[str], limit: int) -> bytes:
    """The file's bytes: a regular file of at most `limit` bytes, else FileRefused. Opened without blocking,
    so that a FIFO (nobody writing) or a device is refused rather than read for ever (/dev/zero until
    memory runs out)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise FileRefused(str(exc.strerror)) from None
    found = os.fstat(fd)  # before fdopen, which raises on a directory (a traceback, not a refusal)
    if not stat.S_ISREG(found.st_mode):
        os.close(fd)
        kind = "a FIFO" if stat.S_ISFIFO(found.st_mode) else "a directory" if stat.S_ISDIR(found.st_mode) \
            else "a device" if stat.S_ISCHR(found.st_mode) or stat.S_ISBLK(found.st_mode) else "not a regular file"
        raise FileRefused(f"{kind}; give a regular file")
    with os.fdopen(fd, "rb") as fh:
        if found.st_size > limit:  # refused before anything is read (a 2 GB recording)
            raise FileRefused(f"larger than {limit} bytes")
        try:
            data = fh.read(limit + 1)
        except OSError as exc:
            raise FileRefused(str(exc.strerror)) from None
    if len(data) > limit:
        raise FileRefused(f"larger than {limit} bytes")
    return data
