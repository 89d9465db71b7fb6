"""Rate counters shared by every worker process: a small memory-mapped file beside the SQLite database.
Its header also holds the settings' change counter (see `changes`).

Every 3plship request is counted. Kept in SQLite, each count was a write transaction of its own: a page
read became a write, and every commit made the other connections drop their page caches. Here a count
is a lock and a few bytes. Counts are not records anyone keeps: a kill -9 in the middle of one can at
worst leave that key's counts wrong until its window moves on, and a file this version cannot read is
started afresh.

Each key has one slot: the bucket it was last counted in, that bucket's count and the previous one's,
which is all a sliding window needs, and until when those counts matter. Slots are found by open
addressing over a short probe window, from a home given by a keyed hash (its key made at random with the
file: no client can choose API keys that land on another's slot). A key is never forgotten inside its
window: a slot is given to another key only once its counts stopped mattering, and when a probe window
holds no such slot the table doubles (the file grows; every process maps the new size at its next count).
Past MOST_SLOTS, a new key's request is answered 503 rather than a count dropped.
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
from mockserver.contract.errors import StoreUnavailable
from mockserver.store.base import Window
from mockserver.store.sqlite_file import PRIVATE

MAGIC = b"returns-mock rate counters 2\n"
HEADER = 64
SLOT = struct.Struct("<16sqqqq")
"""Key digest, the bucket last counted in, its count, the count of the bucket before it, and the instant
(ms on the mock's clock) from which none of those counts matters any more."""
CHANGES = COUNT = struct.Struct("<q")
CHANGES_AT = 32
"""Where the header keeps the settings' change counter (after MAGIC)."""
SLOTS_AT = 40
"""Where the header keeps how many slots the table has now."""
SECRET_AT = 48
SECRET_SIZE = 16
"""The key of the slots' hash, made at random with the file."""
SLOTS = 8192
"""Slots a new file starts with."""
MOST_SLOTS = 1 << 22
"""The most the table grows to (a 192 MiB file). It doubles when a probe window is full, measured at 45-61 %
of its slots taken: about two million windows counted at once (a key limited per minute, hour and day
takes three)."""
PROBES = 32
SIZE = HEADER + SLOTS * SLOT.size
EMPTY = bytes(16)
FOREVER = (1 << 63) - 1


class SharedRateCounters:
    """Sliding-window counts per key, atomic across threads (a lock) and processes (an flock)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._pid = 0
        self._fd = -1
        self._map: mmap.mmap | None = None
        self._slots = 0
        self._hash = hashlib.blake2b(digest_size=16)

    def count(self, windows: Sequence[Window]) -> tuple[list[tuple[int, int]], bool]:
        """See Store.count_requests."""
        with self._lock:
            counters = self._open()
            digests = []
            for window in windows:
                keyed = self._hash.copy()  # the hash's key processed once, not per key
                keyed.update(window.key.encode())
                digests.append(keyed.digest())
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                if COUNT.unpack_from(counters, SLOTS_AT)[0] != self._slots:  # another process grew the table
                    counters = self._remap(COUNT.unpack_from(counters, SLOTS_AT)[0])
                slots = []
                grown = False
                for window, digest in zip(windows, digests, strict=True):
                    offset = self._slot(digest, windows)
                    while offset < 0:
                        counters, grown = self._grow(_now(windows)), True
                        offset = self._slot(digest, windows)
                    found, last, current, previous, _ = SLOT.unpack_from(counters, offset)
                    if found != digest:  # new: taken now, so that another window of this request cannot take it
                        previous = current = 0
                        SLOT.pack_into(counters, offset, digest, window.bucket, 0, 0, _until(window))
                    elif not window.bucket - 1 <= last <= window.bucket:  # too long ago
                        previous = current = 0
                    elif last == window.bucket - 1:
                        previous, current = current, 0
                    slots.append((offset, previous, current))
                if grown:  # for a later window: the earlier ones moved with the rest
                    slots = [(self._slot(digest, windows), previous, current)
                             for digest, (_, previous, current) in zip(digests, slots, strict=True)]
                admitted = all(w.limit is None or previous * w.overlap + current < w.limit
                               for w, (_, previous, current) in zip(windows, slots, strict=True))
                counts = []
                for window, digest, (offset, previous, current) in zip(windows, digests, slots, strict=True):
                    current += 1 if admitted else 0
                    SLOT.pack_into(counters, offset, digest, window.bucket, current, previous, _until(window))
                    counts.append((previous, current))
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        return counts, admitted

    def _slot(self, digest: bytes, windows: Sequence[Window]) -> int:
        """The offset of the slot of `digest`: its own, else the first one whose counts no longer matter (or
        an empty one); -1 if its probe window has none."""
        counters, slots = self._map, self._slots
        assert counters is not None
        home = int.from_bytes(digest[:8], "little") % slots
        free, now = -1, -1
        for probe in range(PROBES):
            offset = HEADER + (home + probe) % slots * SLOT.size
            found, _, _, _, until = SLOT.unpack_from(counters, offset)
            if found == digest:
                return offset
            if found == EMPTY:  # a key is never placed past an empty slot: it is not further on
                return free if free >= 0 else offset
            if free < 0:
                if now < 0:
                    now = _now(windows)
                if until <= now:
                    free = offset
        return free

    def _grow(self, now: int) -> mmap.mmap:
        """Double the table (under the flock), keeping every slot whose counts still matter."""
        counters = self._map
        assert counters is not None
        table = counters[HEADER:HEADER + self._slots * SLOT.size]
        kept = [SLOT.pack(*slot) for slot in SLOT.iter_unpack(table) if slot[0] != EMPTY and slot[4] > now]
        del table
        slots = self._slots * 2
        while True:
            if slots > MOST_SLOTS:
                raise StoreUnavailable(f"the rate counters in {self.path} hold {len(kept)} keys inside their "
                                       "windows, as many as they can: a new key is counted once some of those end")
            if os.fstat(self._fd).st_size < HEADER + slots * SLOT.size:
                os.ftruncate(self._fd, HEADER + slots * SLOT.size)  # grown, never shrunk (see _open)
            counters = self._remap(slots)
            counters[HEADER:HEADER + slots * SLOT.size] = bytes(slots * SLOT.size)
            if all(self._place(raw) for raw in kept):
                break
            slots *= 2
        COUNT.pack_into(counters, SLOTS_AT, slots)
        return counters

    def _place(self, raw: bytes) -> bool:
        """Put a kept slot in the empty slot nearest its home (a table being filled anew)."""
        counters = self._map
        assert counters is not None
        home = int.from_bytes(raw[:8], "little") % self._slots
        for probe in range(PROBES):
            offset = HEADER + (home + probe) % self._slots * SLOT.size
            if counters[offset:offset + 16] == EMPTY:
                counters[offset:offset + SLOT.size] = raw
                return True
        return False

    def _remap(self, slots: int) -> mmap.mmap:
        if self._map is not None:
            self._map.close()
        self._map = mmap.mmap(self._fd, HEADER + slots * SLOT.size)
        self._slots = slots
        return self._map

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
                counters = self._remap(COUNT.unpack_from(counters, SLOTS_AT)[0])  # as another process left it
                counters[HEADER:HEADER + self._slots * SLOT.size] = bytes(self._slots * SLOT.size)
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
                size = os.fstat(fd).st_size
                header = os.pread(fd, HEADER, 0)
                slots = struct.unpack_from("<q", header, SLOTS_AT)[0] if len(header) == HEADER else 0
                if size < SIZE or not header.startswith(MAGIC) or not SLOTS <= slots <= MOST_SLOTS \
                        or slots & (slots - 1) or size < HEADER + slots * SLOT.size:
                    # Grown, never shrunk: a process may still map it, and reading past the end is SIGBUS.
                    os.pwrite(fd, bytes(SIZE), 0)
                    os.pwrite(fd, MAGIC, 0)
                    os.pwrite(fd, struct.pack("<q", SLOTS) + os.urandom(SECRET_SIZE), SLOTS_AT)
                    slots = SLOTS
                self._hash = hashlib.blake2b(digest_size=16, key=os.pread(fd, SECRET_SIZE, SECRET_AT))
                counters = mmap.mmap(fd, HEADER + slots * SLOT.size)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        except BaseException:
            os.close(fd)
            raise
        self._map, self._fd, self._pid, self._slots = counters, fd, process.pid(), slots
        return counters


def _now(windows: Sequence[Window]) -> int:
    """A lower bound of now, from the buckets a request is counted in: no slot is given up before its counts
    stopped mattering."""
    return max((w.bucket * w.period_ms for w in windows if w.period_ms), default=0)


def _until(window: Window) -> int:
    """From when the counts of `window`'s bucket stop mattering: once it is no longer even the previous one."""
    return (window.bucket + 2) * window.period_ms if window.period_ms else FOREVER
