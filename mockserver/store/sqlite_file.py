"""One SQLite database file shared by threads and worker processes: the store's, and the journal's.

WAL, one connection per thread and process (opened lazily, so worker processes forked by the server get
their own), writers serialised by a write lock, and the WAL checkpointed off the request path.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import stat
import threading
import time
from contextlib import AbstractContextManager
from pathlib import Path

from mockserver import process
from mockserver.contract.errors import StoreUnavailable
from mockserver.store.background import Every

BUSY_TIMEOUT_MS = 30_000
PRIVATE = 0o600
"""The mode of every file the store makes: the journal holds API keys (a 3plship account is its key) and
webhook secrets, the store the subscriptions' `whsec_` secrets. SQLite gives a database's -wal and -shm
files the database file's own mode."""


class WriteLock:
    """Serialises a file's writers: a lock among this process's threads, an flock on `<db>-lock` among
    processes. SQLite serialises writers too, but a writer it makes wait polls by sleeping 1, 2, 5, 10 ...
    ms; a writer waiting on flock wakes the moment the holder lets go. Re-entrant within a thread.
    A context manager written as a class: it is entered on every write."""

    def __init__(self, path: Path) -> None:
        self._path = path.with_name(path.name + "-lock")
        self._thread_lock = threading.RLock()
        self._fd = -1
        self._pid = 0
        self._depth = 0

    def __enter__(self) -> None:
        self._thread_lock.acquire()
        try:
            if self._pid != process.pid():  # a forked worker needs its own open file for its own lock
                self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, PRIVATE)
                self._pid = process.pid()
            if self._depth == 0:
                fcntl.flock(self._fd, fcntl.LOCK_EX)
        except BaseException:
            self._thread_lock.release()
            raise
        self._depth += 1

    def __exit__(self, *exc: object) -> None:
        self._depth -= 1
        try:
            if self._depth == 0:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._thread_lock.release()

    def close(self) -> None:
        with self._thread_lock:
            if self._pid == process.pid() and self._fd >= 0:
                os.close(self._fd)
            self._fd, self._pid = -1, 0


# SQLite's result codes for a file that cannot be used right now, as opposed to a fault in the mock's own SQL
# (which stays a 500 that names it): a full disk, an I/O error, a read-only file, a lock held past the busy
# timeout, a file that cannot be opened. Errors raised without a code are matched by their words.
_AWAY_CODES = ("SQLITE_FULL", "SQLITE_IOERR", "SQLITE_READONLY", "SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_CANTOPEN")
_AWAY_WORDS = ("disk is full", "disk i/o error", "readonly database", "database is locked", "unable to open")


def store_away(exc: BaseException) -> bool:
    """Whether a SQLite error means the store is away for now (503, try again), not a bug (500)."""
    if not isinstance(exc, sqlite3.OperationalError):
        return False
    code = getattr(exc, "sqlite_errorname", None) or ""
    return code.startswith(_AWAY_CODES) or any(words in str(exc).lower() for words in _AWAY_WORDS)


def unavailable(path: Path, exc: BaseException) -> BaseException:
    """The exception to raise for `exc`: StoreUnavailable (caused by it) when the store is away, else `exc`."""
    if not store_away(exc):
        return exc
    away = StoreUnavailable(f"the store file {path} cannot be used now: {exc}")
    away.__cause__ = exc
    return away


class Writing:
    """A write transaction under the write lock: committed at the end, rolled back on any exception (or
    when the commit itself fails, so that the connection is never left inside a transaction)."""

    __slots__ = ("_conn", "_file")

    def __init__(self, file: SqliteFile) -> None:
        self._file = file

    def __enter__(self) -> sqlite3.Connection:
        self._file.check()
        lock = self._file.write_lock
        lock.__enter__()
        try:
            conn = self._conn = self._file.connection()
            conn.execute("BEGIN IMMEDIATE")
        except BaseException as exc:
            lock.__exit__()
            raise unavailable(self._file.path, exc)  # noqa: B904 - the cause is set when it differs
        return conn

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, *exc: object) -> None:
        conn = self._conn
        try:
            if kind is not None:
                conn.execute("ROLLBACK")
                if error is not None and store_away(error):
                    raise unavailable(self._file.path, error)
            else:
                try:
                    conn.execute("COMMIT")
                except BaseException as exc:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise unavailable(self._file.path, exc)  # noqa: B904 - the cause is set when it differs
        except sqlite3.OperationalError as exc:  # the ROLLBACK itself failed: the disk filled up, say
            raise unavailable(self._file.path, exc)  # noqa: B904
        finally:
            self._file.write_lock.__exit__()


class SqliteFile:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._local = threading.local()
        self.write_lock = WriteLock(self.path)
        self._closed = False
        self._identity: tuple[int, int] | None = None
        self._checked_at = 0.0

    def connection(self) -> sqlite3.Connection:
        """This thread's connection (a forked worker opens its own)."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None or getattr(self._local, "pid", None) != process.pid():
            try:
                mode: int | None = os.stat(self.path).st_mode
            except FileNotFoundError:
                mode = None
            if mode is not None and not stat.S_ISREG(mode):  # a FIFO or a device is no database either
                kind = "a directory" if stat.S_ISDIR(mode) else "not a regular file"
                raise sqlite3.OperationalError(f"it is {kind}")
            # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE ... COMMIT).
            if self._identity is None:
                try:  # made here, not 0644 by SQLite
                    os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, PRIVATE))
                except OSError as exc:
                    raise sqlite3.OperationalError(f"unable to open database file ({exc.strerror})") from None
                conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            else:  # opened before: never create it again (a deleted file would come back empty, tables and all gone)
                self.check()
                conn = sqlite3.connect(f"{self.path.absolute().as_uri()}?mode=rw", uri=True, timeout=30,
                                       isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            # Requests never checkpoint (copying the WAL into the database and syncing it takes
            # milliseconds); a background thread does, twice a second.
            conn.execute("PRAGMA wal_autocheckpoint=0")
            self._local.conn = conn
            if self._identity is None:
                found = os.stat(self.path)
                self._identity = (found.st_dev, found.st_ino)
            _CHECKPOINTER.watch(self)
            self._local.pid = process.pid()
        return conn

    def check(self, within_s: float = 0.0) -> None:
        """Raise StoreUnavailable if the file was deleted or replaced under the running server: SQLite would
        go on writing to the open, unlinked file, and every write acknowledged from then on would vanish.
        Every write checks; a read may trust a check made less than `within_s` ago (no system call)."""
        if self._identity is None:
            return
        now = time.monotonic()
        if within_s and now - self._checked_at < within_s:
            return
        try:
            found = os.stat(self.path)
        except OSError:
            found = None
        if found is None or (found.st_dev, found.st_ino) != self._identity:
            self._checked_at = 0.0  # and no read trusts an earlier check from now on
            raise StoreUnavailable(f"the store file {self.path} was deleted or replaced while serving; "
                                   "nothing more is written to it: restart the server")
        self._checked_at = now  # only a check that passed is trusted

    def writing(self) -> AbstractContextManager[sqlite3.Connection]:
        """A write transaction: committed at the end, rolled back on any exception."""
        return Writing(self)

    def checkpoint(self) -> None:
        """Copy what the WAL holds into the database file, and have the next writer start the WAL over.

        A PASSIVE checkpoint alone never catches up under a steady stream of writes (frames keep arriving
        while it copies), so the WAL would grow by megabytes a second and every page lookup would walk it.
        The bulk is copied without blocking anyone; the few frames written meanwhile are copied holding the
        write lock, by RESTART, which lets the next writer reuse the WAL from its start. A reader still on
        the WAL (a long listing) makes RESTART give up at once rather than hold up the writers: next round.
        """
        if self._closed or not self.path.exists():
            return
        conn = self.connection()
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        with self.write_lock:
            conn.execute("PRAGMA busy_timeout=0")
            try:
                conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchall()
            finally:
                conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")

    def integrity_check(self) -> str:
        return str(self.connection().execute("PRAGMA integrity_check").fetchone()[0])

    def close(self) -> None:
        self._closed = True  # the checkpointer must not open a connection of its own to a closed file
        self.write_lock.close()
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


_CHECKPOINTER = Every("returns-mock-checkpoint", 0.5, SqliteFile.checkpoint)
"""One thread per process checkpoints the WAL of every open SQLite file, off the request path."""
