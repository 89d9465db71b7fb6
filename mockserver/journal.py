"""What clients sent and what the mock answered, and the requests that broke the contract.

Both are bounded (the oldest entries go first), so memory stays flat under long runs.
"""

from __future__ import annotations

import base64
import dataclasses
import threading
from abc import ABC, abstractmethod
from collections import deque
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from .store import SqliteStore

BODY_LIMIT = 16 * 1024


@dataclass(frozen=True)
class Violation:
    """A request the client sent that its contract does not allow: the field, the message, where."""

    entry: int
    method: str
    path: str
    provider: str | None
    account: str | None
    status: int
    field: str
    location: str
    message: str
    schema: str = ""
    """Where the broken rule is written: contract file and JSON pointer, e.g.
    3plship/return-create-request.json#/properties/items/items/$ref/properties/quantity/minimum"""

    def describe(self) -> str:
        where = f"{self.field} ({self.location})" if self.field else self.location
        return f"{self.method} {self.path} -> {self.status}: {where}: {self.message}"

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Entry:
    id: int
    at: str
    provider: str | None
    account: str | None
    method: str
    path: str
    query: str
    status: int
    duration_ms: float
    request_body: bytes | None
    response_body: bytes
    violations: tuple[Violation, ...]
    fault: str = ""
    """The fault rule that answered or delayed this request, if any."""

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("request_body", "response_body"):
            raw = data[key]
            data[key] = raw.decode("utf-8", errors="replace") if raw is not None else None
        data["violations"] = [v.as_json() for v in self.violations]
        return data


class Journal(ABC):
    """Bounded: keeps the last `size` entries; record() assigns entry ids."""

    def __init__(self, size: int = 1000) -> None:
        self.size = size

    @abstractmethod
    def record(self, entry: Entry) -> Entry: ...

    @abstractmethod
    def entries(self, *, provider: str | None = None, account: str | None = None, path: str | None = None,
                status: int | None = None, limit: int | None = None) -> list[Entry]:
        """Oldest first; with `limit`, the most recent `limit` of them."""

    @abstractmethod
    def violations(self) -> list[Violation]: ...

    @abstractmethod
    def clear(self) -> None: ...


def _with_id(entry: Entry, entry_id: int) -> Entry:
    return dataclasses.replace(entry, id=entry_id,
                               violations=tuple(dataclasses.replace(v, entry=entry_id) for v in entry.violations))


def _matches(e: Entry, provider: str | None, account: str | None, path: str | None, status: int | None) -> bool:
    return ((provider is None or e.provider == provider) and (account is None or e.account == account)
            and (path is None or e.path.startswith(path)) and (status is None or e.status == status))


class MemoryJournal(Journal):
    def __init__(self, size: int = 1000) -> None:
        super().__init__(size)
        self._entries: deque[Entry] = deque(maxlen=size)
        self._lock = threading.Lock()
        self._next = 0

    def record(self, entry: Entry) -> Entry:
        with self._lock:
            self._next += 1
            entry = _with_id(entry, self._next)
            self._entries.append(entry)
        return entry

    def entries(self, *, provider: str | None = None, account: str | None = None, path: str | None = None,
                status: int | None = None, limit: int | None = None) -> list[Entry]:
        with self._lock:
            found = [e for e in self._entries if _matches(e, provider, account, path, status)]
        return found[-limit:] if limit else found

    def violations(self) -> list[Violation]:
        with self._lock:
            return [v for e in self._entries for v in e.violations]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


def _encode(entry: Entry) -> bytes:
    data = asdict(entry)
    for key in ("request_body", "response_body"):
        data[key] = base64.b64encode(data[key]).decode() if data[key] is not None else None
    return orjson.dumps(data)


def _decode(raw: bytes | str) -> Entry:
    data = orjson.loads(raw)
    for key in ("request_body", "response_body"):
        data[key] = base64.b64decode(data[key]) if data[key] is not None else None
    data["violations"] = tuple(Violation(**v) for v in data["violations"])
    return Entry(**data)


class SqliteJournal(Journal):
    """The journal in the SQLite store's file: one journal for every worker process of the server."""

    def __init__(self, store: SqliteStore, size: int = 1000) -> None:
        super().__init__(size)
        self._store = store

    TRIM_EVERY = 100

    def record(self, entry: Entry) -> Entry:
        # One statement in autocommit mode: the id lives in its column and is put back on reading.
        conn = self._store.connection()
        cursor = conn.execute(
            "INSERT INTO journal (provider, account, path, status, has_violations, entry) VALUES (?, ?, ?, ?, ?, ?)",
            (entry.provider, entry.account, entry.path, entry.status, 1 if entry.violations else 0, _encode(entry)))
        entry_id = int(cursor.lastrowid or 0)
        if entry_id % self.TRIM_EVERY == 0:
            conn.execute("DELETE FROM journal WHERE id <= ?", (entry_id - self.size,))
        return _with_id(entry, entry_id)

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
        # The table keeps up to TRIM_EVERY more rows than the journal's size between trims.
        rows = self._store.connection().execute(
            f"SELECT id, entry FROM journal WHERE {' AND '.join(where)} AND id > "
            f"(SELECT COALESCE(MAX(id), 0) FROM journal) - ? ORDER BY id DESC LIMIT ?",
            [*args, self.size, limit or self.size]).fetchall()
        return [_with_id(_decode(r[1]), r[0]) for r in reversed(rows)]

    def violations(self) -> list[Violation]:
        rows = self._store.connection().execute(
            "SELECT id, entry FROM journal WHERE has_violations=1 AND id > (SELECT COALESCE(MAX(id), 0) "
            "FROM journal) - ? ORDER BY id", (self.size,)).fetchall()
        return [v for r in rows for v in _with_id(_decode(r[1]), r[0]).violations]

    def clear(self) -> None:
        self._store.connection().execute("DELETE FROM journal")
