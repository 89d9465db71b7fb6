"""Rate counters shared by every worker process: a small memory-mapped file beside the SQLite database.
Its header also holds the settings' change counter (see `changes`).

Every 3plship request is counted. Kept in SQLite, each count was a write transaction of its own: a page
read became a write, and every commit made the other connections drop their page caches. Here a count
is a lock and a few bytes. Counts are not records anyone keeps: a kill -9 in the middle of one can at
worst leave that key's counts wrong until its window moves on, and a file this version cannot read is
started afresh.

Each key has one slot: the bucket it was last counted in, that bucket's count and the previous one's,
which is all a sliding window needs. Slots are found by open addressing over a short probe window; a
full window gives up the slot that was counted longest ago.
"""

from __future__ import annotations

import fcntl
import hashlib
import mmap
import os
import struct
import threading
from collections.abc import Sequence
from pathlib import Path

from mockserver import process
from mockserver.store.base import Window
from mockserver.store.sqlite_file import PRIVATE

MAGIC = b"returns-mock rate counters 1\n"
HEADER = 64
SLOT = struct.Struct("<16sqqq")
"""Key digest, the bucket last counted in, its count, the count of the bucket before it."""
CHANGES = struct.Struct("<q")
CHANGES_AT = 32
"""Where the header keeps the settings' change counter (after MAGIC)."""
SLOTS = 8192
PROBES = 32
SIZE = HEADER + SLOTS * SLOT.size
EMPTY = bytes(16)


class SharedRateCounters:
    """Sliding-window counts per key, atomic across threads (a lock) and processes (an flock)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._pid = 0
        self._fd = -1
        self._map: mmap.mmap | None = None

    def count(self, windows: Sequence[Window]) -> tuple[list[tuple[int, int]], bool]:
        """See Store.count_requests."""
        digests = [hashlib.blake2b(w.key.encode(), digest_size=16).digest() for w in windows]
        with self._lock:
            counters = self._open()
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                slots = []
                for window, digest in zip(windows, digests, strict=True):
                    offset = _slot(counters, digest, int.from_bytes(digest[:8], "little") % SLOTS)
                    found, last, current, previous = SLOT.unpack_from(counters, offset)
                    if found != digest or not window.bucket - 1 <= last <= window.bucket:  # new, or too long ago
                        previous = current = 0
                    elif last == window.bucket - 1:
                        previous, current = current, 0
                    slots.append((offset, previous, current))
                admitted = all(w.limit is None or previous * w.overlap + current < w.limit
                               for w, (_, previous, current) in zip(windows, slots, strict=True))
                counts = []
                for window, digest, (offset, previous, current) in zip(windows, digests, slots, strict=True):
                    current += 1 if admitted else 0
                    SLOT.pack_into(counters, offset, digest, window.bucket, current, previous)
                    counts.append((previous, current))
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        return counts, admitted

    def changes(self) -> int:
        """How many times the settings changed: a memory read, where asking SQLite whether anything changed
        (PRAGMA data_version) was a statement per request, answered "yes" after every other worker's write."""
        counters = self._map
        if counters is None or self._pid != process.pid():
            with self._lock:
                counters = self._open()
        return int(CHANGES.unpack_from(counters, CHANGES_AT)[0])

    def changed(self) -> None:
        """Count a change of the settings (after it is committed: a reader that sees the new count must
        find the new value)."""
        with self._lock:
            counters = self._open()
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                CHANGES.pack_into(counters, CHANGES_AT, CHANGES.unpack_from(counters, CHANGES_AT)[0] + 1)
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def open(self) -> None:
        """Create or check the file now: a store that cannot count fails when it opens, not per request."""
        with self._lock:
            self._open()

    def clear(self) -> None:
        with self._lock:
            counters = self._open()
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                counters[HEADER:] = bytes(SIZE - HEADER)
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        with self._lock:
            if self._pid == process.pid() and self._map is not None:
                self._map.close()
                os.close(self._fd)
            self._map, self._fd, self._pid = None, -1, 0

    def _open(self) -> mmap.mmap:
        """The mapping of this process (a forked worker needs its own open file for its own flock)."""
        if self._map is not None:
            if self._pid == process.pid():
                return self._map
            self._map.close()  # the parent's, inherited by this forked worker
            os.close(self._fd)
            self._map = None
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, PRIVATE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                if os.fstat(fd).st_size < SIZE or os.pread(fd, len(MAGIC), 0) != MAGIC:
                    # Grown, never shrunk: a process may still map it, and reading past the end is SIGBUS.
                    os.pwrite(fd, bytes(SIZE), 0)
                    os.pwrite(fd, MAGIC, 0)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
            counters = mmap.mmap(fd, SIZE)
        except BaseException:
            os.close(fd)
            raise
        self._map, self._fd, self._pid = counters, fd, process.pid()
        return counters


def _slot(counters: mmap.mmap, digest: bytes, home: int) -> int:
    """The offset of the slot of `digest`: its own, else the first empty one, else the stalest."""
    stalest, stalest_bucket = -1, 0
    for probe in range(PROBES):
        offset = HEADER + (home + probe) % SLOTS * SLOT.size
        found, last, _, _ = SLOT.unpack_from(counters, offset)
        if found in (digest, EMPTY):
            return offset
        if stalest < 0 or last < stalest_bucket:
            stalest, stalest_bucket = offset, last
    return stalest
