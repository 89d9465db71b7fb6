"""The journal in the PostgreSQL database: `/__admin/journal` on any replica lists what every replica
served. Entries are queued and stored in batches off the request path (BatchedJournal)."""

from __future__ import annotations

import contextlib
from contextlib import AbstractContextManager
from typing import Any, Protocol

from mockserver.contract import Violation
from mockserver.store.journal import Entry, with_id
from mockserver.store.postgres_wire import BEGIN, COMMIT, ROLLBACK, Statement, Step, run, run_all, stored
from mockserver.store.sqlite_journal import BatchedJournal, decode, encode

INSERT = Statement("INSERT INTO journal (provider, account, path, status, has_violations, entry) "
                   "VALUES (%s, %s, %s, %s, %s, %s)")
LAST = Statement("SELECT COALESCE(MAX(id), 0) FROM journal")
TRIM = Statement("DELETE FROM journal WHERE id > %s AND id <= %s")

SWEEP_EVERY = 100
"""Every this many trims, one reaches back to the first id: the rows a bounded trim missed (a replica
stopped between its batch and its trim) go then."""


class Database(Protocol):
    def connected(self) -> AbstractContextManager[Any]: ...


class PostgresJournal(BatchedJournal):
    def __init__(self, store: Database, size: int = 1000) -> None:
        super().__init__(size, shared=True)  # other replicas write to it too, whatever this one's workers
        self._store = store

    def _store_batch(self, batch: list[Entry]) -> None:
        # One round trip for the batch: BEGIN, its inserts, the last id, COMMIT (the bytes as bytea's hex text).
        steps: list[Step] = [(BEGIN, ())]
        steps += [(INSERT, (e.provider, e.account, e.path, e.status, bool(e.violations), "\\x" + encode(e).hex()))
                  for e in batch]
        steps += [(LAST, ()), (COMMIT, ())]
        with self._store.connected() as conn:
            try:
                answered = run_all(conn, steps)
            except Exception:
                with contextlib.suppress(Exception):  # the first failure is the one to tell
                    run_all(conn, [(ROLLBACK, ())])
                raise
            last = int(answered[-2][0][0] or 0)
            first = last - len(batch)
            if last // self.TRIM_EVERY != first // self.TRIM_EVERY:
                # From just below what the last trim left, not from the first id: the index still holds the
                # rows deleted before (until a vacuum), and walking them cost a trim ~1,500 pages, a request
                # ~24 us of the database's time, more with every trim.
                sweep = self.TRIM_EVERY * SWEEP_EVERY
                lowest = 0 if last // sweep != first // sweep else first - self.size - 2 * self.TRIM_EVERY
                run(conn, TRIM, (lowest, last - self.size))

    def entries(self, *, provider: str | None = None, account: str | None = None, path: str | None = None,
                status: int | None = None, limit: int | None = None) -> list[Entry]:
        where, args = ["TRUE"], []
        for column, value in (("provider", provider), ("account", account), ("status", status)):
            if value is not None:
                where.append(f"{column}=%s")
                args.append(value)
        if path is not None:
            where.append("left(path, %s)=%s")
            args += [len(stored(path)), path]  # its length as stored: an escaped character is two
        self._settle()
        with self._store.connected() as conn:
            rows = conn.execute(
                f"SELECT id, entry FROM journal WHERE {' AND '.join(where)} AND id > "
                f"(SELECT COALESCE(MAX(id), 0) FROM journal) - %s ORDER BY id DESC LIMIT %s",
                [*args, self.size, limit or self.size]).fetchall()
        return [with_id(decode(bytes(r[1])), r[0]) for r in reversed(rows)]

    def violations(self) -> list[Violation]:
        self._settle()
        with self._store.connected() as conn:
            rows = conn.execute("SELECT id, entry FROM journal WHERE has_violations AND id > "
                                "(SELECT COALESCE(MAX(id), 0) FROM journal) - %s ORDER BY id", (self.size,)).fetchall()
        return [v for r in rows for v in with_id(decode(bytes(r[1])), r[0]).violations]

    def clear(self) -> None:
        self._settle()
        with self._store.connected() as conn:
            conn.execute("DELETE FROM journal")
