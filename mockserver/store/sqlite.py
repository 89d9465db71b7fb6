"""SQLite store: the embedded default of the server.

One file (`SqliteFile`: WAL, a connection per thread and process, a write lock, background checkpoints)
and `BEGIN IMMEDIATE` for writes: read-modify-write transactions are serialised across every worker
process, and a state change and its history are one row, so one transaction. Beside it: `<db>-rate`
(rate counters and the settings' change counter, in shared memory) and `<db>-requests` (the journal).
"""

from __future__ import annotations

import dataclasses
import os
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any

import orjson

from mockserver import process
from mockserver.contract.errors import DuplicateReturn, StoreError
from mockserver.store.base import Delivery, Page, ReturnRecord, Store, Transaction, Window
from mockserver.store.journal import Journal
from mockserver.store.rate_counters import SharedRateCounters
from mockserver.store.sql import COLUMNS, SqlTransaction, to_record, update_params
from mockserver.store.sqlite_file import SqliteFile, Writing
from mockserver.store.sqlite_journal import JournalFile, SqliteJournal

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
    reads    INTEGER NOT NULL DEFAULT 0,
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
DROP TABLE IF EXISTS journal;  -- before the journal moved to a file of its own (<db>-requests)
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
    data        TEXT NOT NULL,
    webhook_id  TEXT NOT NULL DEFAULT '',
    grp         TEXT
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (status, next_at);
"""

LATER = """
CREATE INDEX IF NOT EXISTS returns_due_any ON returns (due_at, seq) WHERE due_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS deliveries_in_flight ON deliveries (webhook_id, status, lease_until);
CREATE INDEX IF NOT EXISTS deliveries_held ON deliveries (grp) WHERE grp IS NOT NULL;
"""
"""What a file made before the columns above existed gets once they are added (_add_columns)."""

ADDED_COLUMNS = {
    "returns": [("reads", "INTEGER NOT NULL DEFAULT 0")],
    "deliveries": [("webhook_id", "TEXT NOT NULL DEFAULT ''"), ("grp", "TEXT")],
}
"""Columns later releases added: a file from before gets them (ALTER TABLE), the deliveries' subscriptions
read from the JSON each row holds."""

CLAIM = """
SELECT id, data FROM deliveries AS d WHERE status='pending' AND next_at <= ? AND lease_until < ?
  AND NOT EXISTS (SELECT 1 FROM deliveries AS o WHERE o.webhook_id = d.webhook_id AND o.status='pending'
                  AND o.lease_until >= ?)
  ORDER BY seq LIMIT 1
"""
"""The next due delivery of a subscription with no attempt in flight anywhere (a lease not run out)."""


class _SqliteTransaction(SqlTransaction):
    def get(self, provider: str, account: str, id: str) -> ReturnRecord | None:
        row = self._conn.execute(
            f"SELECT {COLUMNS} FROM returns WHERE provider=? AND account=? AND id=?",
            (provider, account, id)).fetchone()
        return to_record(row) if row else None

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

    def _moving(self, record: ReturnRecord) -> None:
        before = self._conn.execute("SELECT status FROM returns WHERE provider=? AND account=? AND id=?",
                                    (record.provider, record.account, record.id)).fetchone()
        if before is not None and before[0] != record.status:
            self._count(record.provider, record.account, before[0], -1)
            self._count(record.provider, record.account, record.status, +1)


class _InTransaction(Writing):
    __slots__ = ()

    def __enter__(self) -> _SqliteTransaction:  # type: ignore[override]
        return _SqliteTransaction(super().__enter__())


class SqliteStore(SqliteFile, Store):
    engine = "sqlite"
    shared = True
    _journal_file: JournalFile | None = None

    def journal(self, size: int, *, workers: int = 1) -> Journal:
        # A file of its own: its batches never wait for, nor hold up, the store's writers.
        if self._journal_file is None:
            path = self.path.with_name(self.path.name + "-requests")
            try:
                self._journal_file = JournalFile(path)
            except (sqlite3.Error, OSError) as exc:
                raise StoreError(f"cannot use {path}: {exc}") from exc
        return SqliteJournal(self._journal_file, size, shared=workers > 1)

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__(path)
        self.shown = f"sqlite:{path}"
        self._rate = SharedRateCounters(self.path.with_name(self.path.name + "-rate"))
        try:
            conn = self.connection()
            conn.executescript(SCHEMA)
            self._add_columns(conn)
            conn.executescript(LATER)
            conn.execute("PRAGMA quick_check").fetchone()
            with self.transaction():  # a file from before return_counts existed
                if conn.execute("SELECT 1 FROM return_counts LIMIT 1").fetchone() is None:
                    conn.execute("INSERT INTO return_counts SELECT provider, account, status, COUNT(*) FROM returns "
                                 "GROUP BY provider, account, status")
            self._rate.open()
        except (sqlite3.Error, OSError, ValueError) as exc:  # OSError, ValueError: the -lock or -rate file
            raise StoreError(f"cannot use {self.path}: {exc}") from exc

    def _add_columns(self, conn: sqlite3.Connection) -> None:
        with self.transaction():
            for table, columns in ADDED_COLUMNS.items():
                present = {row[1] for row in conn.execute(f"PRAGMA table_info({table})").fetchall()}
                for name, kind in columns:
                    if name not in present:
                        conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")
            conn.execute("UPDATE deliveries SET webhook_id=json_extract(data, '$.webhook_id') WHERE webhook_id=''")

    def transaction(self) -> AbstractContextManager[Transaction]:
        return _InTransaction(self)

    def get(self, provider: str, account: str, id: str) -> ReturnRecord | None:
        return _SqliteTransaction(self.connection()).get(provider, account, id)

    def has_due(self, provider: str, account: str, now_ms: int) -> bool:
        row = self.connection().execute(
            "SELECT 1 FROM returns WHERE provider=? AND account=? AND due_at IS NOT NULL AND due_at <= ?"
            " LIMIT 1", (provider, account, now_ms)).fetchone()
        return row is not None

    def has_due_any(self, now_ms: int) -> bool:
        row = self.connection().execute(
            "SELECT 1 FROM returns WHERE due_at IS NOT NULL AND due_at <= ? LIMIT 1", (now_ms,)).fetchone()
        return row is not None

    def page(self, provider: str, account: str, *, status: str | None, order_id: str | None,
             offset: int, limit: int, created: tuple[str | None, str | None] | None = None,
             due_by: int | None = None) -> Page:
        due = due_by is not None and self.has_due(provider, account, due_by)
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
        conn = self.connection()
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
        return Page([orjson.Fragment(r[0]) for r in rows], int(total), due)

    def all(self, provider: str | None = None, account: str | None = None) -> Iterator[ReturnRecord]:
        where, args = "1=1", []
        if provider is not None:
            where += " AND provider=?"
            args.append(provider)
        if account is not None:
            where += " AND account=?"
            args.append(account)
        rows = self.connection().execute(
            f"SELECT {COLUMNS} FROM returns WHERE {where} ORDER BY seq", args).fetchall()
        return iter([to_record(r) for r in rows])

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
        conn = self.connection()
        total = conn.execute(f"SELECT COUNT(*) FROM returns WHERE {where}", args).fetchone()[0]
        rows = conn.execute(f"SELECT {COLUMNS} FROM returns WHERE {where} ORDER BY seq DESC LIMIT ? OFFSET ?",
                            [*args, limit, offset]).fetchall()
        return [to_record(r) for r in rows], int(total)

    def reset(self, provider: str | None = None, account: str | None = None) -> int:
        where, args = "1=1", []
        if provider is not None:
            where += " AND provider=?"
            args.append(provider)
        if account is not None:
            where += " AND account=?"
            args.append(account)
        with self.transaction():
            cursor = self.connection().execute(f"DELETE FROM returns WHERE {where}", args)
            self.connection().execute(f"DELETE FROM return_counts WHERE {where}", args)
            if provider is None and account is None:
                for table in ("webhooks", "deliveries"):
                    self.connection().execute(f"DELETE FROM {table}")
        if provider is None and account is None:
            self._rate.clear()
        return cursor.rowcount

    def count_requests(self, windows: Sequence[Window]) -> tuple[list[tuple[int, int]], bool]:
        return self._rate.count(windows)

    def claim_delivery(self, now_ms: int, lease_ms: int) -> Delivery | None:
        with self.writing() as conn:
            row = conn.execute(CLAIM, (now_ms, now_ms, now_ms)).fetchone()
            if row is not None:
                conn.execute("UPDATE deliveries SET lease_until=? WHERE id=?", (now_ms + lease_ms, row[0]))
        return Delivery.decode(row[1]) if row is not None else None

    def release_held(self, clock_ms: int, now_ms: int,
                     order: Callable[[list[Delivery]], list[Delivery]]) -> list[Delivery]:
        with self.transaction() as tx:
            rows = self.connection().execute("SELECT data FROM deliveries WHERE status='held' AND next_at <= ?"
                                             " ORDER BY seq", (clock_ms,)).fetchall()
            released = order([Delivery.decode(r[0]) for r in rows])
            for delivery in released:
                delivery.status, delivery.next_at = "pending", now_ms
            tx.requeue(released)
        return released

    def has_held(self, clock_ms: int) -> bool:
        return self.connection().execute("SELECT 1 FROM deliveries WHERE status='held' AND next_at <= ? LIMIT 1",
                                         (clock_ms,)).fetchone() is not None

    def delivery(self, delivery_id: str) -> Delivery | None:
        row = self.connection().execute("SELECT data FROM deliveries WHERE id=?", (delivery_id,)).fetchone()
        return Delivery.decode(row[0]) if row is not None else None

    def save_delivery(self, delivery: Delivery) -> None:
        with self.write_lock:
            self.connection().execute(SqlTransaction.UPDATE_DELIVERY, update_params(delivery))

    def deliveries(self, account: str | None = None, status: str | None = None) -> list[Delivery]:
        where, args = ["1=1"], []
        for column, value in (("account", account), ("status", status)):
            if value is not None:
                where.append(f"{column}=?")
                args.append(value)
        rows = self.connection().execute(
            f"SELECT data FROM deliveries WHERE {' AND '.join(where)} ORDER BY seq", args).fetchall()
        return [Delivery.decode(r[0]) for r in rows]

    def has_pending_deliveries(self) -> bool:
        return self.connection().execute(
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
            cache = dict(self.connection().execute("SELECT key, value FROM settings").fetchall())
            self._local.settings = cache
            self._local.settings_version = version
        return cache

    def pin_settings(self, pinned: bool, *, confirm_later: bool = False) -> None:
        if pinned:
            self._settings()
        self._local.pinned = pinned

    def set_setting(self, key: str, value: str) -> None:
        with self.write_lock:
            self.connection().execute("INSERT INTO settings (key, value) VALUES (?, ?) "
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

    def close(self) -> None:
        self._rate.close()
        if self._journal_file is not None:
            self._journal_file.close()
        super().close()
