"""Answers that vary within the contract: the same request answered another way the provider could.

Given the answer a provider's rules produced, a `Variation` draws another one the contract also allows
and that stays consistent with the state and the request:

- what a request put there is state and stays: every field the client sent, and every field the
  contract marks `x-from-request` (whoever's request it was: the client's, a scenario's, the portal's),
  whose number may only change its form (`10` or `10.0`); identifiers (`x-identifier`), constants,
  enumerations (statuses), booleans, integers and patterned strings (ids, timestamps, URLs) stay too;
- what the provider's rules derived may vary as the contract lets it: a nullable field becomes null, an
  optional one is left out, a free string goes to its length bounds or to other scripts, a number changes
  its form; the answer keeps the contract's cross-field rules (`if`/`then` in the schemas): a change that
  would break one is not made;
- a resource (an object with an `x-identifier` property) is varied once per field and state: a later
  answer showing the same return shows the same varied fields until the provider's rules change them;
- before the provider's rules run, a request may draw one of its operation's documented errors (429
  with Retry-After, 500, 503) instead, which then changes nothing, and a latency (`latency_ms`), up to
  the client's own timeout and beyond where the door knows it, else up to the provider's documented
  ceiling (`x-latency` in its OpenAPI document);
- the state itself may vary: mockserver.domain.portal draws returns the client did not make.

The draws come from a `Chooser`: `SeededChooser` (serve --vary SEED, POST /__admin/vary) or the
hypothesis one of `mockserver.fuzzing`, whose draws shrink towards "as the rules gave it" (index 0).
Every candidate is checked against its field's schema, and the varied answer against the whole
response schema; a change that would not validate is not made.
"""

from __future__ import annotations

import copy
import functools
import json
import random
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Hashable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
from jsonschema import Draft202012Validator
from referencing import Registry
from referencing._core import Resolver

from mockserver.contract import FORMAT_CHECKER, schemas, valid
from mockserver.store import Settings

JSON = dict[str, Any]
T = TypeVar("T")
KEY = "vary"
"""The store setting holding {"seed": N} while a server varies its answers."""

VARIED_ERRORS = (503, 500, 429)
"""The documented errors a varied request may draw instead of its answer."""
SHORT_LATENCIES_MS = (5, 20, 60)
"""Latencies any varied request may draw (slept for real, in-process too)."""
IN_PROCESS_SLEEP_MS = 20
"""How much of a varied latency the in-process mocks wait for real."""
LATENCY_LEVELS_MS = (250, 1000)
"""Longer latencies drawn over HTTP, where the client's timeout is unknown, below the ceiling."""
LATENCY_CEILING_MS = 5000
"""The longest latency drawn when the provider's contract names none (`x-latency`)."""
ERROR_ODDS = 0.15
LATENCY_ODDS = 0.2
KEEP_ODDS = 0.5
"""The chance that a field, or a request, is left as the rules gave it (seeded draws)."""
FULL_PAGE_KEEP_ODDS = 0.2
"""The chance that a full last page says, as the rules do, that nothing follows (else: more may)."""
MEMORY = 100_000
"""Resource fields remembered per process; beyond it the memory starts over (bounded, as the journal)."""
OTHER_SCRIPTS = "ÀéøßĀłŒДжЯΩλπאשعربي中文字日本語한국어ไทยदेवनागरी🙂🚚📦"
"""Characters of other scripts (and outside the BMP) for seeded draws of free strings."""
LONG_STRING = 256
"""The length of a free string drawn at its upper bound when the contract gives none."""
FROM_REQUEST = "x-from-request"
"""The contract's mark on a field of a resource that a request put there (its value is state)."""
SHOWN_TEXT = 60
"""How many characters of a drawn string a note shows."""


class _Absent:
    def __repr__(self) -> str:
        return "absent"


ABSENT: Any = _Absent()


@dataclass(frozen=True)
class Change:
    """One varied part of an answer: a JSON pointer and the value it took (ABSENT: left out)."""

    pointer: str
    value: Any

    def describe(self) -> str:
        return f"{self.pointer}: {shown(self.value)}"


def shown(value: Any) -> str:
    """A drawn value as a note shows it: JSON-like, what cannot be seen escaped (`"\\x80"`, `"\\u200b"`),
    and its type named, so that `""`, `"\\u200b"`, `10` and `10.0` read differently."""
    if value is ABSENT:
        return "absent"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        quoted = value[:SHOWN_TEXT].replace("\\", "\\\\").replace('"', '\\"')
        text = escaped(quoted) + ("..." if len(value) > SHOWN_TEXT else "")
        return f'"{text}" (string of {len(value)} character{"" if len(value) == 1 else "s"})'
    if isinstance(value, int):
        return f"{value} (integer)"
    if isinstance(value, float):
        return f"{orjson.dumps(value).decode()} (number with a decimal point)"
    text = orjson.dumps(value).decode()
    text = escaped(text if len(text) <= 80 else text[:77] + "...")
    return f"{text} ({'array' if isinstance(value, list) else 'object'})"


def escaped(text: str) -> str:
    """`text` with what cannot be seen written as an escape: controls (`\\x80`), format characters (the
    zero-width `\\u200b`, the bidi `\\u202e`), separators other than the space, unassigned code points."""
    return "".join(char if char.isprintable() else _escape(char) for char in text)


def _escape(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


class Chooser(ABC):
    """Where a variation's draws come from. `index` answers 0 for "as the rules gave it"; with a key, the
    draw is remembered and the same key draws the same answer again."""

    def __init__(self) -> None:
        self._memory: dict[Hashable, Any] = {}
        self._lock = threading.Lock()

    def index(self, key: Hashable | None, n: int, keep: float = KEEP_ODDS) -> int:
        if n <= 1:
            return 0
        return self._remembered(key, lambda: self._index(n, keep))  # type: ignore[no-any-return]

    def text(self, key: Hashable | None, min_size: int, max_size: int) -> str:
        return self._remembered(key, lambda: self._text(min_size, max_size))  # type: ignore[no-any-return]

    def integer(self, key: Hashable | None, low: int, high: int) -> int:
        """A whole number from low to high (shrinking towards low)."""
        if low >= high:
            return low
        return self._remembered(key, lambda: self._integer(low, high))  # type: ignore[no-any-return]

    def group(self, make: Callable[[Chooser], T]) -> T:
        """`make`'s draws as one unit (what hypothesis shrinks, or deletes, whole)."""
        return make(self)

    def keep(self, key: Hashable) -> None:
        """Remember `key` as not varied (a field the client sent: a later read shows it as sent)."""
        with self._lock:
            self._forget_if_full()
            self._memory[key] = 0

    def plain(self, identity: Any) -> None:
        """Answer the resource with this identifier as the rules give it, always (a return there only to fill
        a page: its variations would be draws a failure has to shrink away, and no one reads them)."""
        self.keep(("plain", identity))

    def is_plain(self, identity: Any) -> bool:
        return ("plain", identity) in self._memory

    def seen(self, key: Hashable) -> bool:
        """Whether `key` was drawn (or kept) before; remembered from now on either way."""
        with self._lock:
            if key in self._memory:
                return True
            self._forget_if_full()
            self._memory[key] = 0
            return False

    def _remembered(self, key: Hashable | None, draw: Callable[[], Any]) -> Any:
        if key is None:
            return draw()
        with self._lock:
            if key in self._memory:
                return self._memory[key]
        value = draw()
        with self._lock:
            self._forget_if_full()
            return self._memory.setdefault(key, value)

    def _forget_if_full(self) -> None:
        if len(self._memory) >= MEMORY:
            self._memory.clear()

    @abstractmethod
    def _index(self, n: int, keep: float) -> int:
        """0 with about the odds `keep`, else one of 1..n-1."""

    @abstractmethod
    def _text(self, min_size: int, max_size: int) -> str:
        """A string of min_size to max_size characters, in other scripts than the answer's."""

    @abstractmethod
    def _integer(self, low: int, high: int) -> int:
        """A whole number from low to high."""


class SeededChooser(Chooser):
    """Draws from one seeded sequence per process: the same seed and the same requests, in the same
    order, give the same answers."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        self.seed = seed
        self._rng = random.Random(seed)

    def _index(self, n: int, keep: float) -> int:
        with self._lock:
            return 0 if self._rng.random() < keep else self._rng.randrange(1, n)

    def _text(self, min_size: int, max_size: int) -> str:
        with self._lock:
            size = self._rng.randint(min_size, max_size) if min_size < max_size else min_size
            return "".join(self._rng.choice(OTHER_SCRIPTS) for _ in range(size))

    def _integer(self, low: int, high: int) -> int:
        with self._lock:
            return self._rng.randint(low, high)


@dataclass
class Walk:
    """One answer being varied."""

    chooser: Chooser
    sent: frozenset[tuple[str, ...]]
    """The key paths (array indices as "*") of every part of the request body the client sent."""
    changes: list[Change]
    texts_only: bool = False
    """Vary only the provider's own words (strings marked `x-compare: presence`: a message): an error."""


class Variation:
    def __init__(self, chooser: Chooser, latency_ceiling_ms: int | None = None) -> None:
        self.chooser = chooser
        self.latency_ceiling_ms = latency_ceiling_ms
        """The longest latency drawn (None: each provider's documented ceiling)."""

    # --- before the rules: an error or a latency -------------------------------------------------

    def error(self, documented: Collection[int]) -> int | None:
        """One of the operation's documented errors to answer instead, or None."""
        statuses = [s for s in VARIED_ERRORS if s in documented]
        if not statuses:
            return None
        drawn = self.chooser.index(None, len(statuses) + 1, keep=1 - ERROR_ODDS)
        return statuses[drawn - 1] if drawn else None

    def latency_ms(self, ceiling_ms: int, timeout_ms: float | None = None) -> int:
        """A latency for this answer (0: none). With the client's own read timeout known (`timeout_ms`, in
        process; `inf` for none), one just under it and, when it is shorter than the ceiling, one beyond
        it; else levels up to the ceiling: the provider may be as slow as its documented ceiling, never
        slower."""
        ceiling = self.latency_ceiling_ms if self.latency_ceiling_ms is not None else ceiling_ms
        if timeout_ms is None:
            longer = [*(ms for ms in LATENCY_LEVELS_MS if ms < ceiling), ceiling]
        else:
            longer = [int(min(timeout_ms, ceiling) * 0.9), int(min(ceiling, timeout_ms * 2))]
        levels = sorted({ms for ms in (*SHORT_LATENCIES_MS, *longer) if 0 < ms <= ceiling})
        drawn = self.chooser.index(None, len(levels) + 1, keep=1 - LATENCY_ODDS)
        return levels[drawn - 1] if drawn else 0

    # --- after the rules: the answer -------------------------------------------------------------

    def answer(self, validator: Draft202012Validator, registry: Registry[Any], body: Any,
               request_body: Any, *, error: bool = False) -> tuple[Any, list[Change]]:
        """`body` varied within `validator`'s schema, and what was varied. A change that would break the
        schema (a cross-field rule: `refund: null` while the refund is processing) is not made. An error
        the rules gave (`error`) varies only in the provider's own words: its messages."""
        schema: JSON = validator.schema
        resolver = schemas.resolver_for(validator, registry)
        walk = Walk(self.chooser, frozenset(_key_paths(request_body, ())), [], texts_only=error)
        varied = self._node(walk, schema, resolver, body, (), "", None)
        changes = walk.changes
        while changes and not valid(validator, varied):
            broken = [_pointer(error.absolute_path) for error in validator.iter_errors(varied)]
            kept = [c for c in changes if not any(_related(c.pointer, p) for p in broken)]
            if len(kept) == len(changes):  # nothing to blame: the answer as the rules gave it
                return body, []
            changes = kept
            varied = _applied(body, changes)
        return (varied, changes) if changes else (body, [])

    def more_pages(self, body: Any, page: JSON, size: Any) -> tuple[Any, Change] | None:
        """On a full last page (as many resources as the page size, and the flag saying none follows), maybe
        the flag saying more may follow, as an API that does not count ahead says it (the operation's
        `x-page`): the next page is then empty. The answer with it, and the change; None: unchanged."""
        items, flag = _at(body, page["items"]), _at(body, page["has_more"])
        if flag is not False or not isinstance(items, list) or not isinstance(size, int) or len(items) != size:
            return None
        if not self.chooser.index(None, 2, keep=FULL_PAGE_KEEP_ODDS):
            return None
        change = Change(page["has_more"], True)
        return _applied(body, [change]), change

    def _node(self, walk: Walk, schema: JSON, resolver: Resolver[Any], value: Any, path: tuple[str, ...],
              pointer: str, resource: tuple[Any, str] | None) -> Any:
        """`value` with its parts varied (itself is varied by its parent, which may leave it out)."""
        schema, resolver = schemas.resolved(schema, resolver)
        branch = schemas.branch(schema, resolver, value)
        if branch is not None:
            return self._node(walk, branch[0], branch[1], value, path, pointer, resource)
        if isinstance(value, dict):
            return self._object(walk, schema, resolver, value, path, pointer, resource)
        if isinstance(value, list) and isinstance(schema.get("items"), dict):
            return [self._node(walk, schema["items"], resolver, item, (*path, "*"), f"{pointer}/{i}",
                               _within(resource, f"/{i}"))
                    for i, item in enumerate(value)]
        return value

    def _object(self, walk: Walk, schema: JSON, resolver: Resolver[Any], value: dict[str, Any],
                path: tuple[str, ...], pointer: str, resource: tuple[Any, str] | None) -> dict[str, Any]:
        properties, required = schemas.properties(schema, resolver)
        identifier = next((name for name, sub in properties.items()
                           if name in value and schemas.resolved(sub, resolver)[0].get("x-identifier")), None)
        if identifier is not None:  # a resource: its fields are remembered under its identity
            if walk.chooser.is_plain(value[identifier]):
                return value
            resource = ((schema.get("$id") or schema.get("title"), value[identifier]), "")
        out: dict[str, Any] = {}
        for name, item in value.items():
            sub = properties.get(name)
            child_path = (*path, name)
            child_pointer = f"{pointer}/{schemas.escape(name)}"
            child_resource = _within(resource, f"/{schemas.escape(name)}")
            if sub is None or name == identifier:
                out[name] = item
                continue
            drawn = self._field(walk, sub, resolver, item, child_path, name not in required, child_resource)
            if drawn is ABSENT:
                walk.changes.append(Change(child_pointer, ABSENT))
                continue
            if drawn is not item:
                walk.changes.append(Change(child_pointer, drawn))
                out[name] = drawn
                continue
            if isinstance(item, list) and _from_request(sub, resolver):
                out[name] = item  # a request's list (a return's items) is state, all of it
                continue
            out[name] = self._node(walk, sub, resolver, item, child_path, child_pointer, child_resource)
        return out

    def _field(self, walk: Walk, schema: JSON, resolver: Resolver[Any], value: Any, path: tuple[str, ...],
               optional: bool, resource: tuple[Any, str] | None) -> Any:
        """The value a field takes: `value` itself (unvaried), ABSENT, or another value."""
        resolved, inner = schemas.resolved(schema, resolver)
        key = None if resource is None else (resource[0], resource[1], _state(value))
        if _sent(walk.sent, path):
            if key is not None:
                walk.chooser.keep(key)
            return value
        leaf = _leaf_schema(resolved, inner, value)
        if walk.texts_only:  # an error: only the provider's own words
            if leaf is None or not isinstance(value, str) or not _own_words(schema, resolver):
                return value
            worded = _text_bounds(leaf, value)
            drawn = walk.chooser.index(key, len(worded) + 1)
            return _text(walk.chooser, key, leaf, worded[drawn - 1], value) if drawn else value
        if _from_request(schema, resolver):  # state: only a number's form may change (the same number)
            forms = list(_forms(value)) if leaf is not None else []
            return forms[0] if forms and walk.chooser.index(key, 2) else value
        options: list[Any] = []
        if optional:
            options.append(ABSENT)
        if value is not None and schemas.nullable(resolved, inner):
            options.append(None)
        texts: list[tuple[int, int]] = []
        if leaf is not None:
            if isinstance(value, str):
                texts = _text_bounds(leaf, value)
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                options += list(_forms(value))
        drawn = walk.chooser.index(key, len(options) + len(texts) + 1)
        if drawn == 0:
            return value
        if drawn <= len(options):
            return options[drawn - 1]
        assert leaf is not None
        return _text(walk.chooser, key, leaf, texts[drawn - len(options) - 1], value)


def _text(chooser: Chooser, key: tuple[Any, ...] | None, leaf: JSON, bounds: tuple[int, int], value: str) -> str:
    low, high = bounds
    text = chooser.text(None if key is None else (*key, "text", low, high), low, high)
    return text if _valid(leaf, text) else value


def _from_request(schema: JSON, resolver: Resolver[Any]) -> bool:
    return FROM_REQUEST in schema or FROM_REQUEST in schemas.resolved(schema, resolver)[0]


def _own_words(schema: JSON, resolver: Resolver[Any]) -> bool:
    """A string whose words are the provider's own choice: only its presence is the contract's."""
    return "presence" in (schema.get("x-compare"), schemas.resolved(schema, resolver)[0].get("x-compare"))


def _leaf_schema(schema: JSON, resolver: Resolver[Any], value: Any) -> JSON | None:
    """The schema a string or number value may vary within, or None if it must stay as it is."""
    branch = schemas.branch(schema, resolver, value) or (schema, resolver)
    leaf = schemas.resolved(*branch)[0]
    if any(k in leaf for k in ("enum", "const", "pattern", "format", "x-identifier")):
        return None
    kind = leaf.get("type")
    kinds = set(kind) if isinstance(kind, list) else {kind}
    if isinstance(value, str) and "string" in kinds:
        return leaf
    if isinstance(value, (int, float)) and not isinstance(value, bool) and "number" in kinds:
        return leaf
    return None


def _valid(leaf: JSON, value: Any) -> bool:
    """Whether a candidate keeps its field's schema (a leaf: a string or a number without references;
    the whole varied answer is checked against the whole schema again)."""
    return bool(_leaf_validator(orjson.dumps(leaf, option=orjson.OPT_SORT_KEYS)).is_valid(value))


@functools.lru_cache(maxsize=256)
def _leaf_validator(leaf: bytes) -> Draft202012Validator:
    return Draft202012Validator(orjson.loads(leaf), format_checker=FORMAT_CHECKER)


def _text_bounds(schema: JSON, value: str) -> list[tuple[int, int]]:
    """The lengths a free string may be drawn at: its lower bound, its upper bound, and its own length
    (in other characters)."""
    low = int(schema.get("minLength", 0))
    high = int(schema.get("maxLength", max(LONG_STRING, low)))
    return sorted({(low, low), (high, high), (len(value), len(value))})


def _forms(value: Any) -> Iterator[float]:
    """The same number written the other way: `10` as `10.0`, and `10.0` as `10`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    if isinstance(value, float) and value.is_integer():
        yield int(value)
    elif isinstance(value, int):
        yield float(value)


# --- the answer's paths ------------------------------------------------------------------------


def _key_paths(value: Any, path: tuple[str, ...]) -> Iterator[tuple[str, ...]]:
    if path:
        yield path
    if isinstance(value, dict):
        for name, item in value.items():
            yield from _key_paths(item, (*path, str(name)))
    elif isinstance(value, list):
        for item in value:
            yield from _key_paths(item, (*path, "*"))


def _sent(sent: frozenset[tuple[str, ...]], path: tuple[str, ...]) -> bool:
    """Whether the client sent this part: a request path ends the answer's (the answer may wrap the
    resource in an envelope)."""
    return any(path[i:] in sent for i in range(len(path)))


def _within(resource: tuple[Any, str] | None, step: str) -> tuple[Any, str] | None:
    return None if resource is None else (resource[0], resource[1] + step)


def _state(value: Any) -> Hashable:
    """What a remembered draw depends on: a leaf's value, a container's kind (a refund that completes
    stays the refund it was varied as)."""
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    return json.dumps(value)


def _pointer(path: Iterator[Any] | Collection[Any]) -> str:
    return "".join(f"/{schemas.escape(str(part))}" for part in path)


def _related(change: str, broken: str) -> bool:
    """Whether a change at one pointer can be what broke a rule reported at another (the same part, a
    part of it, or the object holding it)."""
    return change == broken or change.startswith(broken + "/") or broken.startswith(change + "/")


def _parts(pointer: str) -> list[str]:
    return [p.replace("~1", "/").replace("~0", "~") for p in pointer.split("/")[1:]]


def _at(body: Any, pointer: str) -> Any:
    """The part of `body` at `pointer`, or ABSENT."""
    for part in _parts(pointer):
        if isinstance(body, dict) and part in body:
            body = body[part]
        elif isinstance(body, list) and part.isdigit() and int(part) < len(body):
            body = body[int(part)]
        else:
            return ABSENT
    return body


def _applied(body: Any, changes: list[Change]) -> Any:
    """`body` with `changes` made (each at a pointer whose parent the body has)."""
    out = copy.deepcopy(body)
    for change in changes:
        *parents, last = _parts(change.pointer)
        target = out
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        if change.value is ABSENT:
            del target[last]
        elif isinstance(target, list):
            target[int(last)] = change.value
        else:
            target[last] = change.value
    return out


class Varying:
    """Whether this mock varies its answers, and with which draws: the store setting (shared by workers
    and replicas, set by serve --vary and POST /__admin/vary), or a variation used in-process."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._local: Variation | None = None
        self._seeded: tuple[str, Variation | None] | None = None

    def use(self, variation: Variation | None) -> None:
        """In-process: vary with this variation (None: as the setting says)."""
        self._local = variation

    def current(self) -> Variation | None:
        if self._local is not None:
            return self._local
        raw = self._settings.get_setting(KEY)
        if raw is None:
            return None
        if self._seeded is None or self._seeded[0] != raw:
            setting = json.loads(raw)
            seed = setting["seed"]
            self._seeded = (raw, Variation(SeededChooser(int(seed)), setting.get("latency_max_ms"))
                            if seed is not None else None)
        return self._seeded[1]

    def seed(self) -> int | None:
        raw = self._settings.get_setting(KEY)
        seed = None if raw is None else json.loads(raw)["seed"]
        return None if seed is None else int(seed)

    def latency_max_ms(self) -> int | None:
        """The longest latency a seeded variation draws, if set (else each provider's documented ceiling)."""
        raw = self._settings.get_setting(KEY)
        value = None if raw is None else json.loads(raw).get("latency_max_ms")
        return None if value is None else int(value)

    def set(self, seed: int | None, latency_max_ms: int | None = None) -> None:
        """Vary with draws from `seed` from now on, its sequence (and what it remembers) started over in
        every process, latencies at most `latency_max_ms` (None: each provider's documented ceiling);
        seed None: stop varying."""
        self._settings.set_setting(KEY, json.dumps({"seed": seed, "latency_max_ms": latency_max_ms,
                                                    "started": random.getrandbits(64)}))
