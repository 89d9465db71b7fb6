"""SQLite store: the embedded default of the server.

WAL journal, one connection per thread and process (opened lazily, so worker processes forked by the
server get their own), and `BEGIN IMMEDIATE` for writes: read-modify-write transactions are serialised
across every worker process, and a state change and its history are one row, so one transaction.
"""

from __future__ import annotations

import dataclasses
import fcntl
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import orjson

from .. import process
from ..background import Every
from ..errors import DuplicateReturn, StoreError
from ..journal import Journal
from .base import Delivery, Page, ReturnRecord, Store, Transaction, Window
from .rate_counters import SharedRateCounters
from .sqlite_journal import SqliteJournal

SCHEMA = """
CREATE TABLE IF NOT EXISTS returns (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    provider TEXT NOT NULL,
    account  TEXT NOT NULL,
    id       TEXT NOT NULL,
    order_id TEXT NOT NULL,
    status   TEXT NOT NULL,
    due_at   INTEGER,
    version  INTEGER NOT NULL,
    resource TEXT NOT NULL,
    history  TEXT NOT NULL,
    UNIQUE (provider, account, id)
);
CREATE INDEX IF NOT EXISTS returns_by_account ON returns (provider, account, seq);
CREATE INDEX IF NOT EXISTS returns_by_status ON returns (provider, account, status, seq);
CREATE INDEX IF NOT EXISTS returns_by_order ON returns (provider, account, order_id, seq);
CREATE INDEX IF NOT EXISTS returns_due ON returns (provider, account, due_at) WHERE due_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS return_counts (
    provider TEXT NOT NULL,
    account  TEXT NOT NULL,
    status   TEXT NOT NULL,
    n        INTEGER NOT NULL,
    PRIMARY KEY (provider, account, status)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS journal (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    provider       TEXT,
    account        TEXT,
    path           TEXT NOT NULL,
    status         INTEGER NOT NULL,
    has_violations INTEGER NOT NULL,
    entry          BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS journal_violations ON journal (has_violations, id);
DROP TABLE IF EXISTS rate_counters;  -- before counts moved to SharedRateCounters
CREATE TABLE IF NOT EXISTS webhooks (id TEXT PRIMARY KEY, account TEXT NOT NULL, data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS webhooks_by_account ON webhooks (account);
CREATE TABLE IF NOT EXISTS deliveries (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT NOT NULL UNIQUE,
    account     TEXT NOT NULL,
    status      TEXT NOT NULL,
    next_at     INTEGER NOT NULL,
    lease_until INTEGER NOT NULL DEFAULT 0,
    data        TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (status, next_at);
"""

BUSY_TIMEOUT_MS = 30_000

COLUMNS = "seq, provider, account, id, order_id, status, due_at, version, resource, history"


def _record(row: tuple[Any, ...]) -> ReturnRecord:
    seq, provider, account, id_, order_id, status, due_at, version, resource, history = row
    return ReturnRecord(provider=provider, account=account, id=id_, order_id=order_id, status=status,
                        resource=orjson.loads(resource), history=orjson.loads(history),
                        due_at=due_at, version=version, seq=seq)


class _SqliteTransaction(Transaction):
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def get(self, provider: str, account: str, id: str) -> ReturnRecord | None:
        row = self._conn.execute(
            f"SELECT {COLUMNS} FROM returns WHERE provider=? AND account=? AND id=?",
            (provider, account, id)).fetchone()
        return _record(row) if row else None

    def insert(self, record: ReturnRecord) -> ReturnRecord:
        try:
            cursor = self._conn.execute(
                "INSERT INTO returns (provider, account, id, order_id, status, due_at, version, resource,"
                " history) VALUES (?, ?, ?, ?, ?, ?, 1, ?, ?)",
                (record.provider, record.account, record.id, record.order_id, record.status,
                 record.due_at, orjson.dumps(record.resource).decode(),
                 orjson.dumps(record.history).decode()))
        except sqlite3.IntegrityError as exc:
            raise DuplicateReturn(record.id) from exc
        self._count(record.provider, record.account, record.status, +1)
        # The row holds the data now; the answer may share the caller's dicts.
        return dataclasses.replace(record, seq=int(cursor.lastrowid or 0), version=1)

    def _count(self, provider: str, account: str, status: str, delta: int) -> None:
        """Keep return_counts in step, so that a list's total is not a scan of the account."""
        self._conn.execute("INSERT INTO return_counts (provider, account, status, n) VALUES (?, ?, ?, ?) "
                           "ON CONFLICT (provider, account, status) DO UPDATE SET n=n+excluded.n",
                           (provider, account, status, delta))

    def update(self, record: ReturnRecord) -> ReturnRecord:
        before = self._conn.execute("SELECT status FROM returns WHERE provider=? AND account=? AND id=?",
                                    (record.provider, record.account, record.id)).fetchone()
        if before is not None and before[0] != record.status:
            self._count(record.provider, record.account, before[0], -1)
            self._count(record.provider, record.account, record.status, +1)
        self._conn.execute(
            "UPDATE returns SET status=?, order_id=?, due_at=?, version=version+1, resource=?, history=?"
            " WHERE provider=? AND account=? AND id=?",
            (record.status, record.order_id, record.due_at, orjson.dumps(record.resource).decode(),
             orjson.dumps(record.history).decode(), record.provider, record.account, record.id))
        stored = record.copy()
        stored.version += 1
        return stored

    def due(self, provider: str, account: str, now_ms: int) -> list[ReturnRecord]:
        rows = self._conn.execute(
            f"SELECT {COLUMNS} FROM returns WHERE provider=? AND account=? AND due_at IS NOT NULL"
            " AND due_at <= ?", (provider, account, now_ms)).fetchall()
        return [_record(r) for r in rows]

    def add_webhook(self, account: str, webhook: dict[str, Any]) -> None:
        self._conn.execute("INSERT INTO webhooks (id, account, data) VALUES (?, ?, ?)",
                           (webhook["id"], account, orjson.dumps(webhook).decode()))

    def webhooks(self, account: str) -> list[dict[str, Any]]:
        rows = self._conn.execute("SELECT data FROM webhooks WHERE account=? ORDER BY rowid", (account,)).fetchall()
        return [orjson.loads(r[0]) for r in rows]

    def add_delivery(self, delivery: Delivery) -> None:
        self._conn.execute("INSERT INTO deliveries (id, account, status, next_at, data) VALUES (?, ?, ?, ?, ?)",
                           (delivery.id, delivery.account, delivery.status, delivery.next_at, delivery.encode()))


class _WriteLock:
    """Serialises the store's writers: a lock among this process's threads, an flock on `<db>-lock` among
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
                self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o644)
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


class _Writing:
    """A write transaction under the write lock: committed at the end, rolled back on any exception (or
    when the commit itself fails, so that the connection is never left inside a transaction)."""

    __slots__ = ("_conn", "_store")

    def __init__(self, store: SqliteStore) -> None:
        self._store = store

    def __enter__(self) -> sqlite3.Connection:
        lock = self._store._write_lock
        lock.__enter__()
        try:
            conn = self._conn = self._store._connection()
            conn.execute("BEGIN IMMEDIATE")
        except BaseException:
            lock.__exit__()
            raise
        return conn

    def __exit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        conn = self._conn
        try:
            if kind is not None:
                conn.execute("ROLLBACK")
            else:
                try:
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
        finally:
            self._store._write_lock.__exit__()


class _InTransaction(_Writing):
    __slots__ = ()

    def __enter__(self) -> _SqliteTransaction:  # type: ignore[override]
        return _SqliteTransaction(super().__enter__())


class SqliteStore(Store):
    engine = "sqlite"
    shared = True

    def journal(self, size: int, *, workers: int = 1) -> Journal:
        return SqliteJournal(self, size, shared=workers > 1)

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._local = threading.local()
        self._write_lock = _WriteLock(self.path)
        self._rate = SharedRateCounters(self.path.with_name(self.path.name + "-rate"))
        self._closed = False
        try:
            conn = self._connection()
            conn.executescript(SCHEMA)
            conn.execute("PRAGMA quick_check").fetchone()
            with self.transaction():  # a file from before return_counts existed
                if conn.execute("SELECT 1 FROM return_counts LIMIT 1").fetchone() is None:
                    conn.execute("INSERT INTO return_counts SELECT provider, account, status, COUNT(*) FROM returns "
                                 "GROUP BY provider, account, status")
            self._rate.open()
        except (sqlite3.Error, OSError, ValueError) as exc:  # OSError, ValueError: the -lock or -rate file
            raise StoreError(f"cannot use {self.path}: {exc}") from exc

    def connection(self) -> sqlite3.Connection:
        return self._connection()

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None or getattr(self._local, "pid", None) != process.pid():
            if self.path.is_dir():
                raise sqlite3.OperationalError("it is a directory")
            # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE ... COMMIT).
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            # Requests never checkpoint (copying the WAL into the database and syncing it takes
            # milliseconds); a background thread does, twice a second.
            conn.execute("PRAGMA wal_autocheckpoint=0")
            self._local.conn = conn
            _CHECKPOINTER.watch(self)
            self._local.pid = process.pid()
        return conn

    def transaction(self) -> AbstractContextManager[Transaction]:
        return _InTransaction(self)

    def writing(self) -> AbstractContextManager[sqlite3.Connection]:
        """A write transaction: committed at the end, rolled back on any exception."""
        return _Writing(self)

    def get(self, provider: str, account: str, id: str) -> ReturnRecord | None:
        return _SqliteTransaction(self._connection()).get(provider, account, id)

    def has_due(self, provider: str, account: str, now_ms: int) -> bool:
        row = self._connection().execute(
            "SELECT 1 FROM returns WHERE provider=? AND account=? AND due_at IS NOT NULL AND due_at <= ?"
            " LIMIT 1", (provider, account, now_ms)).fetchone()
        return row is not None

    def page(self, provider: str, account: str, *, status: str | None, order_id: str | None,
             offset: int, limit: int, created: tuple[str | None, str | None] | None = None) -> Page:
        where = "provider=? AND account=?"
        args: list[Any] = [provider, account]
        if status is not None:
            where += " AND status=?"
            args.append(status)
        if order_id is not None:
            where += " AND order_id=?"
            args.append(order_id)
        counted = order_id is None and created is None
        if created is not None:
            for bound, operator in zip(created, (">=", "<="), strict=True):
                if bound is not None:
                    where += f" AND json_extract(resource, '$.created_at') {operator} ?"
                    args.append(bound)
        conn = self._connection()
        conn.execute("BEGIN")  # one snapshot for the page and its total
        try:
            if counted:
                total = conn.execute(f"SELECT COALESCE(SUM(n), 0) FROM return_counts WHERE {where}", args).fetchone()[0]
            else:  # one order's returns (a short index range), or a date range: counted here
                total = conn.execute(f"SELECT COUNT(*) FROM returns WHERE {where}", args).fetchone()[0]
            rows = conn.execute(
                f"SELECT resource FROM returns WHERE {where} ORDER BY seq DESC LIMIT ? OFFSET ?",
                [*args, limit, offset]).fetchall()
        finally:
            conn.execute("COMMIT")
        return Page([orjson.Fragment(r[0]) for r in rows], int(total))

    def all(self, provider: str | None = None, account: str | None = None) -> Iterator[ReturnRecord]:
        where, args = "1=1", []
        if provider is not None:
            where += " AND provider=?"
            args.append(provider)
        if account is not None:
            where += " AND account=?"
            args.append(account)
        rows = self._connection().execute(
            f"SELECT {COLUMNS} FROM returns WHERE {where} ORDER BY seq", args).fetchall()
        return iter([_record(r) for r in rows])

    def find(self, provider: str | None, account: str | None, search: str | None, offset: int,
             limit: int) -> tuple[list[ReturnRecord], int]:
        where, args = "1=1", []
        for column, value in (("provider", provider), ("account", account)):
            if value is not None:
                where += f" AND {column}=?"
                args.append(value)
        if search is not None:
            where += " AND (instr(id, ?) > 0 OR instr(order_id, ?) > 0)"
            args += [search, search]
        conn = self._connection()
        total = conn.execute(f"SELECT COUNT(*) FROM returns WHERE {where}", args).fetchone()[0]
        rows = conn.execute(f"SELECT {COLUMNS} FROM returns WHERE {where} ORDER BY seq DESC LIMIT ? OFFSET ?",
                            [*args, limit, offset]).fetchall()
        return [_record(r) for r in rows], int(total)

    def reset(self, provider: str | None = None, account: str | None = None) -> int:
        where, args = "1=1", []
        if provider is not None:
            where += " AND provider=?"
            args.append(provider)
        if account is not None:
            where += " AND account=?"
            args.append(account)
        with self.transaction():
            cursor = self._connection().execute(f"DELETE FROM returns WHERE {where}", args)
            self._connection().execute(f"DELETE FROM return_counts WHERE {where}", args)
            if provider is None and account is None:
                for table in ("webhooks", "deliveries"):
                    self._connection().execute(f"DELETE FROM {table}")
        if provider is None and account is None:
            self._rate.clear()
        return cursor.rowcount

    def count_requests(self, windows: Sequence[Window]) -> tuple[list[tuple[int, int]], bool]:
        return self._rate.count(windows)

    def claim_delivery(self, now_ms: int, lease_ms: int) -> Delivery | None:
        with self.writing() as conn:
            row = conn.execute("SELECT id, data FROM deliveries WHERE status='pending' AND next_at <= ? "
                               "AND lease_until < ? ORDER BY next_at LIMIT 1", (now_ms, now_ms)).fetchone()
            if row is not None:
                conn.execute("UPDATE deliveries SET lease_until=? WHERE id=?", (now_ms + lease_ms, row[0]))
        return Delivery.decode(row[1]) if row is not None else None

    def save_delivery(self, delivery: Delivery) -> None:
        with self._write_lock:
            self._connection().execute(
                "UPDATE deliveries SET status=?, next_at=?, lease_until=0, data=? WHERE id=?",
                (delivery.status, delivery.next_at, delivery.encode(), delivery.id))

    def deliveries(self, account: str | None = None, status: str | None = None) -> list[Delivery]:
        where, args = ["1=1"], []
        for column, value in (("account", account), ("status", status)):
            if value is not None:
                where.append(f"{column}=?")
                args.append(value)
        rows = self._connection().execute(
            f"SELECT data FROM deliveries WHERE {' AND '.join(where)} ORDER BY seq", args).fetchall()
        return [Delivery.decode(r[0]) for r in rows]

    def has_pending_deliveries(self) -> bool:
        return self._connection().execute(
            "SELECT 1 FROM deliveries WHERE status='pending' LIMIT 1").fetchone() is not None

    def get_setting(self, key: str) -> str | None:
        # Settings (clock, rate policy, fault rules) are read several times a request and change rarely:
        # they are cached per thread until the change counter in shared memory moves. Inside a request the
        # snapshot taken at its start is used (see `pin_settings`).
        if getattr(self._local, "pinned", False) and getattr(self._local, "pid", None) == process.pid():
            return self._local.settings.get(key)  # type: ignore[no-any-return]
        return self._settings().get(key)

    def _settings(self) -> dict[str, str]:
        version = self._rate.changes()
        cache: dict[str, str] | None = getattr(self._local, "settings", None)
        if cache is None or getattr(self._local, "settings_version", None) != version:
            cache = dict(self._connection().execute("SELECT key, value FROM settings").fetchall())
            self._local.settings = cache
            self._local.settings_version = version
        return cache

    def pin_settings(self, pinned: bool) -> None:
        if pinned:
            self._settings()
        self._local.pinned = pinned

    def set_setting(self, key: str, value: str) -> None:
        with self._write_lock:
            self._connection().execute("INSERT INTO settings (key, value) VALUES (?, ?) "
                                       "ON CONFLICT (key) DO UPDATE SET value=excluded.value", (key, value))
        self._rate.changed()  # inside update_setting's transaction too early: it counts once more after
        cache: dict[str, str] | None = getattr(self._local, "settings", None)
        if cache is not None:
            cache[key] = value

    def update_setting(self, key: str, change: Callable[[str | None], str]) -> str:
        try:
            with self.writing():
                self._local.settings_version = None  # read fresh: the lock is held now
                value = change(self._settings().get(key))
                self.set_setting(key, value)
        except BaseException:
            self._local.settings = None
            raise
        finally:
            self._rate.changed()
        return value

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
        conn = self._connection()
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        with self._write_lock:
            conn.execute("PRAGMA busy_timeout=0")
            try:
                conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchall()
            finally:
                conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")

    def integrity_check(self) -> str:
        return str(self._connection().execute("PRAGMA integrity_check").fetchone()[0])

    def close(self) -> None:
        self._closed = True  # the checkpointer must not open a connection of its own to a closed store
        self._write_lock.close()
        self._rate.close()
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


_CHECKPOINTER = Every("returns-mock-checkpoint", 0.5, SqliteStore.checkpoint)
"""One thread per process checkpoints the WAL of every open SQLite store, off the request path."""
