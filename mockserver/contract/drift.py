"""Where the mock and the real provider disagree on the same request (the shadow proxy, `returns-mock
drift`, `verify --compare-mock`): the two answers compared, each difference classified.

What is compared: the status (the mock refuses what the provider accepts, or accepts what it refuses, or
another status); then, for answers of one status, the headers the contract declares for it and the media
type of Content-Type (kind `header`), and the body field by field: missing or extra fields, types, values,
the provider's error code. Lists of resources are matched by their `x-identifier`, other lists by the
fields the client sent (else by position): one extra or missing item is one difference at that item, and
the same items in another order one `order` difference.

What is not, by default (the contracts say which, through `$ref`, `items`, `anyOf`/`oneOf` and `allOf`):
identifiers (`x-identifier`: ids the mock could not adopt), fields marked `x-compare: presence` (request
ids, human-readable messages at any depth, secrets: presence and type only), fields marked `x-compare:
when-present` (what the mock adds beside a provider's documented shape: compared where both answers have
them), headers by their own `x-compare` (`presence`, `scheme`: an auth challenge's scheme, `methods`: a
method list such as Allow, as a set, HEAD going with GET), and
timestamps (`format: date-time`), which count as equal within `TIMESTAMP_TOLERANCE` (stamped at the request,
a second apart) but not beyond it (a refund expected two days later is a difference). `ignore` adds JSON
pointers, with `*` for any one segment (`/data/*/carrier`).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import orjson
from referencing import Registry

from mockserver.contract import Contract, DeclaredResponse, Validator, masking, schemas
from mockserver.contract.schemas import Place

TIMESTAMP_TOLERANCE = 5.0
"""Seconds two timestamps may differ by and still count as the same instant."""

VALUE_LIMIT = 4096
"""Bytes of JSON a value shown in a difference keeps; a longer one is cut, and says so (CUT)."""

CUT = "…[cut: {size} bytes of JSON]"

REFUSALS = frozenset({"mock_refuses", "mock_accepts", "status"})
"""The kinds that say the two implementations took different decisions (the rest: different answers)."""


class _Absent:
    def __repr__(self) -> str:
        return "absent"


MISSING: Any = _Absent()
"""A field (or header, or body) one side's answer does not have: shown as `absent`, never as null."""


@dataclass(frozen=True)
class Difference:
    pointer: str
    """Where: a JSON pointer in the upstream's answer (the mock's, for an extra field); "" for the status; a
    header's name for kind `header`."""
    upstream: Any
    mock: Any
    kind: str
    schema: str = ""
    """Where the rule it breaks is written: contract file and JSON pointer (`3plship/return.json#/properties/
    status`)."""
    resource: str | None = field(default=None, compare=False)
    """The identifier of the resource (an item with an `x-identifier`) the difference is inside, if any."""

    def as_json(self) -> dict[str, Any]:
        """Its JSON form; a side where it is absent has no key (`null` is a value the answer had)."""
        data: dict[str, Any] = {"pointer": self.pointer}
        if self.upstream is not MISSING:
            data["upstream"] = self.upstream
        if self.mock is not MISSING:
            data["mock"] = self.mock
        data["kind"] = self.kind
        if self.schema:
            data["schema"] = self.schema
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Difference:
        return cls(str(data["pointer"]), data.get("upstream", MISSING), data.get("mock", MISSING), str(data["kind"]),
                   str(data.get("schema", "")))

    def shown(self) -> Difference:
        """Both values as a report shows them: masked where the field looks like a credential, cut where long."""
        if self.kind == "header":
            return self
        return replace(self, upstream=_cut(_masked(self.pointer, self.upstream)),
                       mock=_cut(_masked(self.pointer, self.mock)))

    def values(self, other: str = "upstream") -> str:
        """Both sides' values, the other implementation's named `other` (the upstream, a target, a recording)."""
        return f"{other} {_shown(self.upstream)}, mock {_shown(self.mock)}"

    def describe(self, other: str = "upstream") -> str:
        where = self.pointer or "(status)"
        return f"{self.kind} at {where}: {self.values(other)}"


@dataclass(frozen=True)
class Answered:
    """One side's answer: its status, headers and body (parsed JSON, text, or MISSING when empty)."""

    status: int
    headers: Sequence[tuple[str, str]]
    body: Any


def parsed(body: bytes | None) -> Any:
    """A body as compared: JSON (orjson's depth limit: deeper is compared as text), text, or MISSING."""
    if not body:
        return MISSING
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return body.decode("utf-8", "replace")


@dataclass(frozen=True)
class Expected:
    """What the contract says of the upstream's answer: the response it declares for its status (None: the
    contract says nothing, every field is compared by value), where the operation is written, and the
    contract to tell where each rule is."""

    contract: Contract
    response: DeclaredResponse | None
    status_where: str = ""
    """Where the statuses the request may get are written: its operation's `responses` in openapi.json (its
    `paths`, for a path or method the contract does not have), as a URI and JSON pointer."""


def compare(upstream: Answered, mock: Answered, expected: Expected | None, ignore: Sequence[str] = (),
            sent: Any = MISSING) -> list[Difference]:
    """Every difference between the upstream's answer and the mock's. `sent`: the request body, whose lists'
    fields match the items of the answers' lists that have no identifier."""
    source = _Source(expected)
    upstream_ok, mock_ok = 200 <= upstream.status < 300, 200 <= mock.status < 300
    kind = "mock_refuses" if upstream_ok and not mock_ok else "mock_accepts" if mock_ok and not upstream_ok \
        else "status" if upstream.status != mock.status else None
    if kind is not None:
        return [Difference("", upstream.status, mock.status, kind, source.status())]
    walk = _Walk(source, upstream.body, mock.body, [p.split("/")[1:] for p in ignore], _sent_lists(sent))
    found = list(_headers(upstream, mock, expected.response if expected else None, source))
    found += walk.diff(upstream.body, mock.body, "", None)
    return [d.shown() for d in found]


# --- headers -------------------------------------------------------------------------------------------


def _first(headers: Sequence[tuple[str, str]]) -> dict[str, str]:
    found: dict[str, str] = {}
    for name, value in headers:
        found.setdefault(name.lower(), value)
    return found


def media_type(value: str | None) -> str | None:
    return value.split(";", 1)[0].strip().lower() if value else None


def _headers(upstream: Answered, mock: Answered, response: DeclaredResponse | None,
             source: _Source) -> Iterator[Difference]:
    theirs, ours = _first(upstream.headers), _first(mock.headers)
    if upstream.body is not MISSING and mock.body is not MISSING:
        a, b = theirs.get("content-type"), ours.get("content-type")
        if media_type(a) != media_type(b):
            where = source.where(response.where + "/content") if response is not None else ""
            yield Difference("Content-Type", MISSING if a is None else a, MISSING if b is None else b, "header", where)
    for header in response.headers if response is not None else ():
        a, b = theirs.get(header.name.lower()), ours.get(header.name.lower())
        if a is None and b is None:
            continue
        if a is None or b is None or not _same_header(header.compare, a, b):
            yield Difference(header.name, MISSING if a is None else a, MISSING if b is None else b, "header",
                             source.where(header.where))


def _same_header(mode: str, a: str, b: str) -> bool:
    if mode == "presence":
        return True
    if mode == "scheme":
        return a.strip().split(" ", 1)[0].lower() == b.strip().split(" ", 1)[0].lower()
    if mode == "methods":  # a method list (Allow), as a set; HEAD goes with GET (RFC 9110, 9.3.2)
        return _methods(a) == _methods(b)
    return a == b


def _methods(value: str) -> set[str]:
    found = {t.strip().upper() for t in value.split(",") if t.strip()}
    return found | {"HEAD"} if "GET" in found else found


# --- the body --------------------------------------------------------------------------------------------


class _Source:
    """Where the rules are written: the upstream's response schema, asked only where two values differ."""

    def __init__(self, expected: Expected | None) -> None:
        self.expected = expected
        response = expected.response if expected else None
        self.root: Place | None = None
        if expected is not None and response is not None and response.validator is not None:
            self.root = schemas.place_of(response.validator, expected.contract.registry)

    def status(self) -> str:
        return self.where(self.expected.status_where) if self.expected is not None else ""

    def where(self, location: str) -> str:
        if self.expected is None or not location:
            return ""
        file, pointer = self.expected.contract.source(location)
        return f"{file}#{pointer}"

    def place(self, body: Any, pointer: str) -> Place | None:
        if self.root is None or body is MISSING:
            return None
        registry = self.expected.contract.registry if self.expected else None
        return schemas.located(self.root, body, pointer, _validity(registry))


def _validity(registry: Registry[Any] | None) -> Callable[[Place, Any], bool]:
    def valid(place: Place, value: Any) -> bool:
        checker = Validator(place.schema, registry=registry, _resolver=place.resolver)
        return bool(checker.is_valid(value))
    return valid


class _Walk:
    def __init__(self, source: _Source, upstream: Any, mock: Any, patterns: list[list[str]],
                 sent: list[tuple[frozenset[str], list[dict[str, Any]]]]) -> None:
        self.source = source
        self.upstream = upstream
        self.mock = mock
        self.patterns = patterns
        self.sent = sent

    def _ignored(self, pointer: str) -> bool:
        segments = pointer.split("/")[1:]
        return any(len(p) <= len(segments) and all(a in ("*", b) for a, b in zip(p, segments, strict=False))
                   for p in self.patterns)

    def _schema(self, pointer: str, side: str = "upstream") -> Place | None:
        return self.source.place(self.upstream if side == "upstream" else self.mock, pointer)

    def _where(self, place: Place | None) -> str:
        return self.source.where(place.where) if place is not None else ""

    def diff(self, upstream: Any, mock: Any, pointer: str, resource: str | None) -> Iterator[Difference]:
        """The differences under `pointer`; the schema is asked only where two values differ (most do not)."""
        if pointer and self._ignored(pointer):
            return
        if upstream is MISSING or mock is MISSING:
            place = self._schema(pointer, "upstream" if mock is MISSING else "mock")
            if place is not None and place.schema.get("x-compare") == "when-present":
                return
            yield Difference(pointer, upstream, mock, "missing" if mock is MISSING else "extra", self._where(place),
                             resource)
            return
        if _kind(upstream) != _kind(mock):
            place = self._schema(pointer)
            yield Difference(pointer, upstream, mock, "type", self._where(place), resource)
            return
        if upstream == mock:
            if isinstance(upstream, (dict, list)):
                if _spelled(upstream) == _spelled(mock):
                    return  # else the same values, a number spelled otherwise inside (2 and 2.0): see below
            elif type(upstream) is type(mock):
                return
            else:  # 2 and 2.0: the same number, another type only where the contract says integer
                place = self._schema(pointer)
                kinds = place.schema.get("type") if place is not None else None
                if "integer" in (kinds if isinstance(kinds, list) else [kinds]):
                    yield Difference(pointer, upstream, mock, "type", self._where(place), resource)
                return
        if isinstance(upstream, dict):
            resource = self._resource(upstream, mock, pointer) or resource
            for name in [*upstream, *(k for k in mock if k not in upstream)]:
                yield from self.diff(upstream.get(name, MISSING), mock.get(name, MISSING),
                                     f"{pointer}/{schemas.escape(name)}", resource)
            return
        if isinstance(upstream, list):
            yield from self._list(upstream, mock, pointer, resource)
            return
        place = self._schema(pointer)
        schema = place.schema if place is not None else {}
        if schema.get("x-identifier") or schema.get("x-compare") == "presence":
            return
        if schema.get("format") == "date-time" and _close(upstream, mock):
            return
        yield Difference(pointer, upstream, mock, "error_code" if "x-codes" in schema else "value", self._where(place),
                         resource)

    def _resource(self, upstream: dict[str, Any], mock: dict[str, Any], pointer: str) -> str | None:
        """The identity of the resource an object is (its `x-identifier`), if it is one."""
        place = self._schema(pointer)
        name = schemas.identifier(place) if place is not None and place.schema else None
        value = upstream.get(name) if name is not None else None
        return value if isinstance(value, str) else None

    def _list(self, upstream: list[Any], mock: list[Any], pointer: str, resource: str | None) -> Iterator[Difference]:
        key, identified = self._key(upstream, mock, pointer)
        theirs = [key(item) for item in upstream] if key else []
        ours = [key(item) for item in mock] if key else []
        keyed = key is not None and None not in theirs and None not in ours \
            and len(set(theirs)) == len(theirs) and len(set(ours)) == len(ours)
        # Items matched by what the client sent are matched so only where that explains the lists: an item
        # more or less, or the same items in another order (a sent value the provider changed is a value).
        if keyed and (identified or len(upstream) != len(mock) or set(theirs) == set(ours)):
            where = {k: i for i, k in enumerate(ours)}
            for i, item in enumerate(upstream):
                j = where.get(theirs[i])
                if j is None:
                    yield from self.diff(item, MISSING, f"{pointer}/{i}", _named(theirs[i]) or resource)
                else:
                    yield from self.diff(item, mock[j], f"{pointer}/{i}", resource)
            known = set(theirs)
            for j, item in enumerate(mock):
                if ours[j] not in known:
                    yield from self.diff(MISSING, item, f"{pointer}/{j}", _named(ours[j]) or resource)
            common = set(theirs) & set(ours)
            first, second = [k for k in theirs if k in common], [k for k in ours if k in common]
            if first != second and not self._ignored(pointer):
                place = self._schema(pointer)
                yield Difference(pointer, [_label(k) for k in first], [_label(k) for k in second], "order",
                                 self._where(place), resource)
            return
        for i in range(max(len(upstream), len(mock))):
            yield from self.diff(upstream[i] if i < len(upstream) else MISSING, mock[i] if i < len(mock) else MISSING,
                                 f"{pointer}/{i}", resource)

    def _key(self, upstream: list[Any], mock: list[Any],
             pointer: str) -> tuple[Callable[[Any], Hashable | None] | None, bool]:
        """How the items of two lists are matched, and whether by identity: by their `x-identifier`, else by the
        fields the client sent for them (a list of objects in the request whose shared fields every item
        has), else not at all (None: by position)."""
        sample = upstream[0] if upstream else mock[0] if mock else None
        if not isinstance(sample, dict):
            return None, False
        place = self._schema(f"{pointer}/0", "upstream" if upstream else "mock")
        name = schemas.identifier(place) if place is not None and place.schema else None
        if name is not None:
            return (lambda item: ("id", item[name]) if isinstance(item, dict) and isinstance(item.get(name), str)
                    else None), True
        items = [*upstream, *mock]
        if not all(isinstance(item, dict) for item in items):
            return None, False
        for names, _ in self.sent:
            if all(names <= item.keys() for item in items):
                return _sent_key(sorted(names)), False
        return None, False


def _sent_key(fields: list[str]) -> Callable[[Any], Hashable | None]:
    def key(item: Any) -> Hashable | None:
        return ("sent", *(_hashable(item.get(f, MISSING)) for f in fields)) if isinstance(item, dict) else None
    return key


def _spelled(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def _named(key: Hashable | None) -> str | None:
    return key[1] if isinstance(key, tuple) and key[:1] == ("id",) and isinstance(key[1], str) else None


def _label(key: Hashable) -> Any:
    """A list item's key as a report shows it: its identifier, or the values the client sent."""
    if isinstance(key, tuple) and key[:1] == ("id",):
        return key[1]
    return list(key[1:]) if isinstance(key, tuple) else key


def _hashable(value: Any) -> Hashable:
    if value is MISSING:
        return "\0absent"
    if isinstance(value, (dict, list)):
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    return value  # type: ignore[no-any-return]


def _sent_lists(sent: Any) -> list[tuple[frozenset[str], list[dict[str, Any]]]]:
    """Every list of objects in the request body, with the fields its items share."""
    found: list[tuple[frozenset[str], list[dict[str, Any]]]] = []
    pending = [sent]
    while pending:
        node = pending.pop()
        if isinstance(node, dict):
            pending.extend(node.values())
        elif isinstance(node, list):
            if node and all(isinstance(item, dict) for item in node):
                shared = frozenset.intersection(*(frozenset(item) for item in node))
                if shared:
                    found.append((shared, node))
            pending.extend(node)
    return found


def _masked(pointer: str, value: Any) -> Any:
    return value if value is MISSING else masking.at_pointer(pointer, value)


def _cut(value: Any) -> Any:
    """A value too long to show whole (a list of 10,000 returns) as the start of its JSON and its size."""
    if value is MISSING or isinstance(value, (bool, int, float)) or value is None:
        return value
    text = orjson.dumps(value).decode() if not isinstance(value, str) else value
    if len(text) <= VALUE_LIMIT:
        return value
    return text[:VALUE_LIMIT // 4] + CUT.format(size=len(text.encode()))


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
        return abs((first - second).total_seconds()) <= TIMESTAMP_TOLERANCE
    except (ValueError, TypeError, OverflowError):
        return False


def _shown(value: Any) -> str:
    if value is MISSING:
        return "absent"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# --- the log -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DriftEntry:
    id: int
    """The exchange's number in the comparison (1 for the first compared), in the order the upstream answered."""
    provider: str
    method: str
    path: str
    account: str | None
    upstream_status: int
    mock_status: int
    differences: tuple[Difference, ...]
    operation: str | None = None
    """The contract's operationId, or None for a path or method it does not have."""
    cause: int | None = None
    """The id of the entry this one follows from: an earlier exchange on the same resource that the mock did
    not answer as the upstream did (a create refused, another status reached), so its state went its own way."""
    resources: tuple[str, ...] = field(default=(), compare=False)
    """The resources the exchange is about (path ids, identifiers in its answers): what it is forgotten with."""
    compared: bool = field(default=True, compare=False)
    """False: the mirror could not compare the exchange (it had forgotten what the exchange is about)."""

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "provider": self.provider, "method": self.method, "path": self.path,
                "account": self.account, "operation": self.operation, "upstream_status": self.upstream_status,
                "mock_status": self.mock_status, "cause": self.cause,
                "differences": [d.as_json() for d in self.differences]}

    def size(self) -> int:
        """Bytes of its JSON form (what the log's bound counts)."""
        return len(orjson.dumps(self.as_json()))


OTHER = "(paths and methods the contract does not have)"
"""Where a report counts exchanges that are no operation of the contract."""

DRIFT_SIZE = 16 * 1024 * 1024
"""Bytes of entries a drift log keeps by default (their JSON); the oldest go first."""


class DriftLog:
    """The differences found, bounded by count and by bytes (the oldest go first), and how many exchanges
    were compared; entries are also forgotten with the resources they are about."""

    def __init__(self, size: int = 1000, max_bytes: int = DRIFT_SIZE) -> None:
        self.size = size
        self.max_bytes = max_bytes
        self._entries: OrderedDict[int, tuple[DriftEntry, int]] = OrderedDict()
        self._about: dict[str, set[int]] = {}
        self._bytes = 0
        self._lock = threading.Lock()
        self.exchanges = 0
        self.diverged = 0
        self.consequences = 0
        self.uncompared = 0
        self.operations: dict[tuple[str, str], int] = {}
        """(provider, operationId or OTHER) -> exchanges compared there."""

    def record(self, entry: DriftEntry) -> None:
        """One exchange, compared or not."""
        with self._lock:
            self.exchanges += 1
            operation = (entry.provider, entry.operation or OTHER)
            self.operations[operation] = self.operations.get(operation, 0) + 1
            if not entry.compared:
                self.uncompared += 1
                return
            if not entry.differences:
                return
            self.diverged += 1
            self.consequences += entry.cause is not None
            size = entry.size()
            self._entries[entry.id] = (entry, size)
            self._bytes += size
            for resource in entry.resources:
                self._about.setdefault(resource, set()).add(entry.id)
            while self._entries and (len(self._entries) > self.size or self._bytes > self.max_bytes):
                self._drop(next(iter(self._entries)))

    def _drop(self, entry_id: int) -> None:
        entry, size = self._entries.pop(entry_id)
        self._bytes -= size
        for resource in entry.resources:
            ids = self._about.get(resource)
            if ids is not None:
                ids.discard(entry_id)
                if not ids:
                    del self._about[resource]

    def forget(self, resources: Iterable[str]) -> None:
        """Drop the entries about these resources (the mirror forgot them)."""
        with self._lock:
            for resource in resources:
                for entry_id in sorted(self._about.get(resource, ())):
                    if entry_id in self._entries:
                        self._drop(entry_id)

    def entries(self) -> list[DriftEntry]:
        """The entries kept, in the order of their exchanges."""
        with self._lock:
            return [entry for _, (entry, _) in sorted(self._entries.items())]

    @property
    def held_bytes(self) -> int:
        return self._bytes

    def summary(self) -> dict[str, int]:
        return {"exchanges": self.exchanges, "diverged": self.diverged,
                "root_causes": self.diverged - self.consequences, "consequences": self.consequences,
                "uncompared": self.uncompared}

    def as_json(self) -> dict[str, Any]:
        with self._lock:
            return {"entries": [e.as_json() for _, (e, _) in sorted(self._entries.items())],
                    "summary": self.summary()}

    def clear(self) -> None:
        with self._lock:
            self._entries = OrderedDict()
            self._about = {}
            self._bytes = 0
            self.exchanges = self.diverged = self.consequences = self.uncompared = 0
            self.operations = {}


# --- the report, as people read it ------------------------------------------------------------------------


def text_report(title: str, report: dict[str, Any], other: str = "upstream", verb: str = "compared") -> str:
    """A drift report (DriftLog.as_json) for people: a line per entry, its differences below it, and the
    entries that follow from it nested under it."""
    summary = report["summary"]
    lines = [f"{title}: {summary['exchanges']} exchange(s) {verb}, {summary['diverged']} with drift "
             f"({summary['root_causes']} root cause(s), {summary['consequences']} consequence(s))"
             + (f", {summary['uncompared']} not compared (the mirror had forgotten their resources)"
                if summary.get("uncompared") else "") + "."]
    entries = report["entries"]
    ids = {e["id"] for e in entries}
    children: dict[int, list[dict[str, Any]]] = {}
    for e in entries:
        if e.get("cause") in ids:
            children.setdefault(e["cause"], []).append(e)

    def show(e: dict[str, Any], depth: int) -> None:
        pad = "  " * depth
        cause = f", follows from #{e['cause']}" if e.get("cause") is not None else ""
        lines.append(f"{pad}#{e['id']} {e['method']} {e['path']} ({e['provider']}, {e['account']}{cause}): "
                     f"{other} {e['upstream_status']}, mock {e['mock_status']}")
        for d in e["differences"]:
            lines.append(f"{pad}  {Difference.from_json(d).describe(other)}")
        for child in children.get(e["id"], []):
            show(child, depth + 1)

    for e in entries:
        if e.get("cause") not in ids:
            show(e, 0)
    return "\n".join(lines)
