"""The journal in a SQLite file beside the store's (`<db>-requests`): one journal for every worker process."""

from __future__ import annotations

import atexit
import base64
import logging
import os
import threading
import time
import zlib
from typing import Any

import orjson

from mockserver import process
from mockserver.contract import Violation
from mockserver.contract.errors import StoreUnavailable
from mockserver.store.background import Every
from mockserver.store.journal import Entry, Journal, with_id
from mockserver.store.sqlite_file import SqliteFile

_log = logging.getLogger("returns-mock")

SCHEMA = """
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
"""


class JournalFile(SqliteFile):
    """The journal's own SQLite file: its batches do not wait for the store's writers, nor they for it."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__(path)
        self.connection().executescript(SCHEMA)


def _length(value: Any) -> int:
    if isinstance(value, bytes):
        return len(value)
    raise TypeError(f"cannot journal {type(value).__name__}")


COMPRESS_FROM = 2048
"""Entries this long or longer are compressed (below it, setting zlib up costs more than it saves)."""


def encode(entry: Entry) -> bytes:
    """The entry as JSON (each body written as its length), a newline, then the bodies as they are; `z`
    and that compressed, or `r` and that as it is.

    Bodies are most of an entry (a page of returns is 16 KB), and JSON compresses ~20x at zlib's fastest
    level, which costs less than writing those pages to the database, its WAL and its checkpoints."""
    raw = b"".join((orjson.dumps(entry, default=_length), b"\n", entry.request_body or b"", entry.response_body))
    return b"z" + zlib.compress(raw, 1) if len(raw) >= COMPRESS_FROM else b"r" + raw


def decode(raw: bytes | str) -> Entry:
    if isinstance(raw, str) or raw[:1] == b"{":  # written before this format: bodies in base64
        data = orjson.loads(raw)
        for key in ("request_body", "response_body"):
            data[key] = base64.b64decode(data[key]) if data[key] is not None else None
    else:
        head, _, bodies = (zlib.decompress(raw[1:]) if raw[:1] == b"z" else raw[1:]).partition(b"\n")
        data = orjson.loads(head)
        request_length = data["request_body"]
        data["request_body"] = bodies[:request_length] if request_length is not None else None
        data["response_body"] = bodies[request_length or 0:]
    data["violations"] = tuple(Violation.from_json(v) for v in data["violations"])
    data["varied"] = tuple(data.get("varied", ()))
    return Entry(**data)


class BatchedJournal(Journal):
    """A journal in a database that every worker process (or replica) of the server writes to.

    Requests do not write it themselves: entries are queued and a writer thread per process stores them
    in batches, one transaction per FLUSH_SECONDS, off the request path. Readers first store their own
    process's queue; with several processes (`shared`) they also wait out five batch periods so that
    the others' queues are in too. Engines say how a batch is stored and how entries are read.
    """

    FLUSH_SECONDS = 0.02
    BATCH = 500
    TRIM_EVERY = 100

    def __init__(self, size: int = 1000, *, shared: bool = False) -> None:
        super().__init__(size)
        self._shared = shared
        self._queue: list[Entry] = []
        self._queue_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._watched_in = 0
        self._queue_limit = max(size, 10 * self.BATCH)
        self.dropped = 0
        """Entries the database refused (each logged); the journal goes on without them."""

    def record(self, entry: Entry) -> None:
        with self._queue_lock:
            self._queue.append(entry)
            if len(self._queue) > self._queue_limit:  # the store is failing: do not grow without bound
                del self._queue[:-self._queue_limit]
            if len(self._queue) >= self.BATCH:
                _WRITER.wake()
        if self._watched_in != process.pid():
            self._watched_in = process.pid()
            _WRITER.watch(self)

    def flush(self) -> None:
        """Store this process's queued entries now (one transaction)."""
        with self._write_lock:
            with self._queue_lock:
                batch, self._queue = self._queue, []
            if not batch:
                return
            try:
                self._store_batch(batch)
            except StoreUnavailable:
                with self._queue_lock:  # kept for the next try
                    self._queue[:0] = batch[-self._queue_limit:]
                raise
            except Exception:  # an entry the database refuses must not hold up every later one: store
                self._store_one_by_one(batch)  # the others, and drop only what cannot be stored

    def _store_one_by_one(self, batch: list[Entry]) -> None:
        for index, entry in enumerate(batch):
            try:
                self._store_batch([entry])
            except StoreUnavailable:
                with self._queue_lock:
                    self._queue[:0] = batch[index:][-self._queue_limit:]
                raise
            except Exception:
                self.dropped += 1
                _log.exception("journal entry %s %s dropped: the database refused it", entry.method, entry.path)

    def _store_batch(self, batch: list[Entry]) -> None:
        raise NotImplementedError

    def _settle(self) -> None:
        self.flush()
        if self._shared:
            time.sleep(5 * self.FLUSH_SECONDS)

    def entries(self, *, provider: str | None = None, account: str | None = None, path: str | None = None,
                status: int | None = None, limit: int | None = None) -> list[Entry]:
        raise NotImplementedError

    def violations(self) -> list[Violation]:
        raise NotImplementedError

    def clear(self) -> None:
        raise NotImplementedError


class SqliteJournal(BatchedJournal):
    """The journal in a SQLite file beside the store's (`<db>-requests`): one journal for every worker process."""

    def __init__(self, store: JournalFile, size: int = 1000, *, shared: bool = False) -> None:
        super().__init__(size, shared=shared)
        self._store = store

    def _store_batch(self, batch: list[Entry]) -> None:
        rows = [(e.provider, e.account, e.path, e.status, 1 if e.violations else 0, encode(e)) for e in batch]
        with self._store.writing() as conn:  # encoded first: requests wait for this lock
            conn.executemany(
                "INSERT INTO journal (provider, account, path, status, has_violations, entry) "
                "VALUES (?, ?, ?, ?, ?, ?)", rows)
            last = conn.execute("SELECT MAX(id) FROM journal").fetchone()[0] or 0
            if last // self.TRIM_EVERY != (last - len(batch)) // self.TRIM_EVERY:
                conn.execute("DELETE FROM journal WHERE id <= ?", (last - self.size,))

    def entries(self, *, provider: str | None = None, account: str | None = None, path: str | None = None,
                status: int | None = None, limit: int | None = None) -> list[Entry]:
        where, args = ["1=1"], []
        for column, value in (("provider", provider), ("account", account), ("status", status)):
            if value is not None:
                where.append(f"{column}=?")
                args.append(value)
        if path is not None:
            where.append("substr(path, 1, ?)=?")
            args += [len(path), path]
        self._settle()
        # The table keeps up to TRIM_EVERY more rows than the journal's size between trims.
        rows = self._store.connection().execute(
            f"SELECT id, entry FROM journal WHERE {' AND '.join(where)} AND id > "
            f"(SELECT COALESCE(MAX(id), 0) FROM journal) - ? ORDER BY id DESC LIMIT ?",
            [*args, self.size, limit or self.size]).fetchall()
        return [with_id(decode(r[1]), r[0]) for r in reversed(rows)]

    def violations(self) -> list[Violation]:
        self._settle()
        rows = self._store.connection().execute(
            "SELECT id, entry FROM journal WHERE has_violations=1 AND id > (SELECT COALESCE(MAX(id), 0) "
            "FROM journal) - ? ORDER BY id", (self.size,)).fetchall()
        return [v for r in rows for v in with_id(decode(r[1]), r[0]).violations]

    def clear(self) -> None:
        self._settle()
        with self._store.writing() as conn:
            conn.execute("DELETE FROM journal")


_WRITER = Every("returns-mock-journal", BatchedJournal.FLUSH_SECONDS, BatchedJournal.flush)
"""One thread per process stores the queued entries of every batched journal, in batches."""
atexit.register(_WRITER.run_once)
