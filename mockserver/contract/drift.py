"""Where the mock and the real provider disagree on the same request (the shadow proxy, `returns-mock
drift`): the two answers compared, each difference classified.

What is compared: the status (the mock refuses what the provider accepts, or accepts what it refuses, or
another status), then, for answers of one status, the body field by field: missing or extra fields,
types, values, and the provider's error code. What is not, by default (the contracts say which):
identifiers (`x-identifier`: ids the mock could not adopt), fields marked `x-compare: presence` (request
ids, human-readable messages, secrets: compared by presence and type only) and timestamps (`format:
date-time`), which count as equal within `TIMESTAMP_TOLERANCE` (stamped at the request, a second apart)
but not beyond it (a refund expected two days later is a difference). `ignore` adds JSON pointers, with
`*` for any one segment (`/data/*/carrier`).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry

from mockserver.contract import masking, schemas

TIMESTAMP_TOLERANCE = 5.0
"""Seconds two timestamps may differ by and still count as the same instant."""


@dataclass(frozen=True)
class Difference:
    pointer: str
    """Where, in the upstream's answer (or the mock's, for an extra field); "" for the status."""
    upstream: Any
    mock: Any
    kind: str

    def as_json(self) -> dict[str, Any]:
        return {"pointer": self.pointer, "upstream": _json(self.upstream), "mock": _json(self.mock), "kind": self.kind}

    def masked(self) -> Difference:
        """Both values masked where the field looks like a credential (what the report shows)."""
        return Difference(self.pointer, _masked(self.pointer, self.upstream), _masked(self.pointer, self.mock),
                          self.kind)

    def values(self, other: str = "upstream") -> str:
        """Both sides' values, the other implementation's named `other` (the upstream, a target, a recording)."""
        return f"{other} {_shown(self.upstream)}, mock {_shown(self.mock)}"

    def describe(self, other: str = "upstream") -> str:
        return f"{self.kind} at {self.pointer or '(status)'}: {self.values(other)}"


@dataclass(frozen=True)
class DriftEntry:
    provider: str
    method: str
    path: str
    account: str | None
    upstream_status: int
    mock_status: int
    differences: tuple[Difference, ...]

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["differences"] = [d.as_json() for d in self.differences]
        return data


class _Missing:
    def __repr__(self) -> str:
        return "absent"


MISSING: Any = _Missing()


def compare(upstream_status: int, upstream: Any, mock_status: int, mock: Any,
            schema: tuple[Draft202012Validator, Registry[Any]] | None, ignore: Sequence[str] = ()) -> list[Difference]:
    """Every difference between the upstream's answer and the mock's; `schema`: the upstream answer's
    (for its status), whose annotations say what is noise."""
    upstream_ok, mock_ok = 200 <= upstream_status < 300, 200 <= mock_status < 300
    if upstream_ok and not mock_ok:
        return [Difference("", upstream_status, mock_status, "mock_refuses")]
    if mock_ok and not upstream_ok:
        return [Difference("", upstream_status, mock_status, "mock_accepts")]
    if upstream_status != mock_status:
        return [Difference("", upstream_status, mock_status, "status")]
    if schema is None or upstream is MISSING:
        def schema_at(pointer: str) -> dict[str, Any]:
            return {}
    else:
        validator, registry = schema
        resolver = schemas.resolver_for(validator, registry)

        def schema_at(pointer: str) -> dict[str, Any]:
            return schemas.at(validator.schema, resolver, upstream, pointer)

    patterns = [p.split("/")[1:] for p in ignore]
    return [d.masked() for d in _diff(upstream, mock, "", schema_at, patterns)]


def _ignored(pointer: str, patterns: list[list[str]]) -> bool:
    segments = pointer.split("/")[1:]
    return any(len(p) <= len(segments) and all(a in ("*", b) for a, b in zip(p, segments, strict=False))
               for p in patterns)


def _diff(upstream: Any, mock: Any, pointer: str, schema_at: Callable[[str], dict[str, Any]],
          patterns: list[list[str]]) -> Iterator[Difference]:
    """The differences under `pointer`; the schema is asked only where two values differ (most do not)."""
    if pointer and _ignored(pointer, patterns):
        return
    if upstream is MISSING or mock is MISSING:
        yield Difference(pointer, upstream, mock, "missing" if mock is MISSING else "extra")
        return
    if _kind(upstream) != _kind(mock):
        yield Difference(pointer, upstream, mock, "type")
        return
    if isinstance(upstream, dict):
        for name in [*upstream, *(k for k in mock if k not in upstream)]:
            yield from _diff(upstream.get(name, MISSING), mock.get(name, MISSING),
                             f"{pointer}/{schemas.escape(name)}", schema_at, patterns)
        return
    if isinstance(upstream, list):
        for i in range(max(len(upstream), len(mock))):
            yield from _diff(upstream[i] if i < len(upstream) else MISSING, mock[i] if i < len(mock) else MISSING,
                             f"{pointer}/{i}", schema_at, patterns)
        return
    if upstream == mock:
        return
    schema = schema_at(pointer)
    if schema.get("x-identifier") or schema.get("x-compare") == "presence":
        return
    if schema.get("format") == "date-time" and _close(upstream, mock):
        return
    yield Difference(pointer, upstream, mock, "error_code" if "x-codes" in schema else "value")


def _masked(pointer: str, value: Any) -> Any:
    return value if value is MISSING else masking.at_pointer(pointer, value)


def _json(value: Any) -> Any:
    """A compared value as JSON shows it: an absent field as null (its kind says it was absent)."""
    return None if value is MISSING else value


def _kind(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return type(value).__name__
    if isinstance(value, (int, float)):
        return "number"
    return type(value).__name__


def _close(a: Any, b: Any) -> bool:
    try:
        first = datetime.fromisoformat(str(a).replace("Z", "+00:00"))
        second = datetime.fromisoformat(str(b).replace("Z", "+00:00"))
    except ValueError:
        return False
    return abs((first - second).total_seconds()) <= TIMESTAMP_TOLERANCE


def _shown(value: Any) -> str:
    if value is MISSING:
        return "absent"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class DriftLog:
    """The differences found, bounded (the oldest go first), and how many exchanges were compared."""

    def __init__(self, size: int = 1000) -> None:
        self._entries: deque[DriftEntry] = deque(maxlen=size)
        self._lock = threading.Lock()
        self.exchanges = 0
        self.diverged = 0

    def record(self, entry: DriftEntry) -> None:
        with self._lock:
            self.exchanges += 1
            if entry.differences:
                self.diverged += 1
                self._entries.append(entry)

    def entries(self) -> list[DriftEntry]:
        with self._lock:
            return list(self._entries)

    def as_json(self) -> dict[str, Any]:
        with self._lock:
            return {"entries": [e.as_json() for e in self._entries],
                    "summary": {"exchanges": self.exchanges, "diverged": self.diverged}}

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.exchanges = self.diverged = 0
