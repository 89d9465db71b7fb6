"""What clients sent and what the mock answered, and the requests that broke the contract.

Both are bounded (the oldest entries go first), so memory stays flat under long runs.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

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

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("request_body", "response_body"):
            raw = data[key]
            data[key] = raw.decode("utf-8", errors="replace") if raw is not None else None
        data["violations"] = [v.as_json() for v in self.violations]
        return data


class Journal:
    def __init__(self, size: int = 1000) -> None:
        self._entries: deque[Entry] = deque(maxlen=size)
        self._violations: deque[Violation] = deque(maxlen=size)
        self._lock = threading.Lock()
        self._next = 0

    def next_id(self) -> int:
        with self._lock:
            self._next += 1
            return self._next

    def record(self, entry: Entry) -> None:
        with self._lock:
            self._entries.append(entry)
            self._violations.extend(entry.violations)

    def entries(self, *, provider: str | None = None, account: str | None = None, path: str | None = None,
                status: int | None = None) -> list[Entry]:
        with self._lock:
            found = list(self._entries)
        return [e for e in found
                if (provider is None or e.provider == provider) and (account is None or e.account == account)
                and (path is None or e.path.startswith(path)) and (status is None or e.status == status)]

    def violations(self) -> list[Violation]:
        with self._lock:
            return list(self._violations)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._violations.clear()

    def __len__(self) -> int:
        return len(self._entries)
