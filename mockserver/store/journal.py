"""What clients sent and what the mock answered, and the requests that broke the contract.

Both are bounded (the oldest entries go first), so memory stays flat under long runs.
"""

from __future__ import annotations

import dataclasses
import threading
from abc import ABC, abstractmethod
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

from mockserver.contract import Violation

BODY_LIMIT = 16 * 1024


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
    varied: tuple[str, ...] = ()
    """What a varied answer changed (serve --vary, fuzzed tests): `pointer: value`, a latency, a status."""
    origin: str = "client"
    """Who acted: `client` (a request), or `provider` (a move the provider made on its own when the mock's
    clock passed it: method MOVE, the return's path, {from, to, by} and the return after the move)."""

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("request_body", "response_body"):
            raw = data[key]
            data[key] = raw.decode("utf-8", errors="replace") if raw is not None else None
        data["violations"] = [v.as_json() for v in self.violations]
        return data


class Journal(ABC):
    """Bounded: keeps the last `size` entries, numbered in the order they are stored."""

    def __init__(self, size: int = 1000) -> None:
        self.size = size

    @abstractmethod
    def record(self, entry: Entry) -> None: ...

    @abstractmethod
    def entries(self, *, provider: str | None = None, account: str | None = None, path: str | None = None,
                status: int | None = None, limit: int | None = None) -> list[Entry]:
        """Oldest first; with `limit`, the most recent `limit` of them."""

    @abstractmethod
    def violations(self) -> list[Violation]: ...

    @abstractmethod
    def clear(self) -> None: ...


def with_id(entry: Entry, entry_id: int) -> Entry:
    return dataclasses.replace(entry, id=entry_id,
                               violations=tuple(dataclasses.replace(v, entry=entry_id) for v in entry.violations))


def matches(e: Entry, provider: str | None, account: str | None, path: str | None, status: int | None) -> bool:
    return ((provider is None or e.provider == provider) and (account is None or e.account == account)
            and (path is None or e.path.startswith(path)) and (status is None or e.status == status))


class MemoryJournal(Journal):
    def __init__(self, size: int = 1000) -> None:
        super().__init__(size)
        self._entries: deque[Entry] = deque(maxlen=size)
        self._lock = threading.Lock()
        self._next = 0

    def record(self, entry: Entry) -> None:
        with self._lock:
            self._next += 1
            self._entries.append(with_id(entry, self._next))

    def entries(self, *, provider: str | None = None, account: str | None = None, path: str | None = None,
                status: int | None = None, limit: int | None = None) -> list[Entry]:
        with self._lock:
            found = [e for e in self._entries if matches(e, provider, account, path, status)]
        return found[-limit:] if limit else found

    def violations(self) -> list[Violation]:
        with self._lock:
            return [v for e in self._entries for v in e.violations]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
