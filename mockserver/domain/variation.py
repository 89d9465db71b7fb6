"""Answers that vary within the contract: the same request answered another valid way.

Given the answer a provider's rules produced, a `Variation` draws another one the contract also allows
and that stays consistent with the state and the request:

- what may vary is read from the answer's schema: a nullable field becomes null, an optional one is left
  out, a free string (no pattern, format or enum) goes to its length bounds or to other scripts, a number
  (not an integer: those are counts) is written as an integer or a decimal or goes to its bounds;
- what stays: identifiers (`x-identifier` in the contracts), constants, enumerations (statuses),
  booleans, integers, patterned strings (ids, timestamps, URLs) and every field the client sent;
- a resource (an object with an `x-identifier` property) is varied once per field and state: a later
  answer showing the same return shows the same varied fields until the provider's rules change them;
- before the provider's rules run, a request may draw one of its operation's documented errors (429
  with Retry-After, 500, 503) instead, which then changes nothing, and a short latency.

The draws come from a `Chooser`: `SeededChooser` (serve --vary SEED, POST /__admin/vary) or the
hypothesis one of `mockserver.fuzzing`, whose draws shrink towards "as the rules gave it" (index 0).
Every candidate is checked against its field's schema, and the varied answer against the whole
response schema; an answer that would not validate is sent as the rules gave it.
"""

from __future__ import annotations

import json
import random
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Hashable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson
from jsonschema import Draft202012Validator
from referencing import Registry
from referencing._core import Resolver

from mockserver.contract import FORMAT_CHECKER, schemas
from mockserver.store import Settings

JSON = dict[str, Any]
KEY = "vary"
"""The store setting holding {"seed": N} while a server varies its answers."""

VARIED_ERRORS = (503, 500, 429)
"""The documented errors a varied request may draw instead of its answer."""
LATENCIES_MS = (5, 20, 60)
ERROR_ODDS = 0.15
LATENCY_ODDS = 0.2
KEEP_ODDS = 0.5
"""The chance that a field, or a request, is left as the rules gave it (seeded draws)."""
MEMORY = 100_000
"""Resource fields remembered per process; beyond it the memory starts over (bounded, as the journal)."""
OTHER_SCRIPTS = "ÀéøßĀłŒДжЯΩλπאשعربي中文字日本語한국어ไทยदेवनागरी🙂🚚📦"
"""Characters of other scripts (and outside the BMP) for seeded draws of free strings."""
LONG_STRING = 256
"""The length of a free string drawn at its upper bound when the contract gives none."""


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
        if self.value is ABSENT:
            return f"{self.pointer}: absent"
        text = orjson.dumps(self.value).decode()
        return f"{self.pointer}: {text if len(text) <= 80 else text[:77] + '...'}"


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

    def keep(self, key: Hashable) -> None:
        """Remember `key` as not varied (a field the client sent: a later read shows it as sent)."""
        with self._lock:
            self._forget_if_full()
            self._memory[key] = 0

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


@dataclass
class Walk:
    """One answer being varied."""

    chooser: Chooser
    sent: frozenset[tuple[str, ...]]
    """The key paths (array indices as "*") of every part of the request body the client sent."""
    changes: list[Change]


class Variation:
    def __init__(self, chooser: Chooser) -> None:
        self.chooser = chooser

    # --- before the rules: an error or a latency -------------------------------------------------

    def error(self, documented: Collection[int]) -> int | None:
        """One of the operation's documented errors to answer instead, or None."""
        statuses = [s for s in VARIED_ERRORS if s in documented]
        if not statuses:
            return None
        drawn = self.chooser.index(None, len(statuses) + 1, keep=1 - ERROR_ODDS)
        return statuses[drawn - 1] if drawn else None

    def latency_ms(self) -> int:
        drawn = self.chooser.index(None, len(LATENCIES_MS) + 1, keep=1 - LATENCY_ODDS)
        return LATENCIES_MS[drawn - 1] if drawn else 0

    # --- after the rules: the answer -------------------------------------------------------------

    def answer(self, validator: Draft202012Validator, registry: Registry[Any], body: Any,
               request_body: Any) -> tuple[Any, list[Change]]:
        """`body` varied within `validator`'s schema, and what was varied; unvaried if the result would
        not validate."""
        schema: JSON = validator.schema
        resolver = schemas.resolver_for(validator, registry)
        walk = Walk(self.chooser, frozenset(_key_paths(request_body, ())), [])
        varied = self._node(walk, schema, resolver, body, (), "", None)
        if not walk.changes:
            return body, []
        if not validator.is_valid(varied):
            return body, []
        return varied, walk.changes

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
        options: list[Any] = []
        if optional:
            options.append(ABSENT)
        if value is not None and schemas.nullable(resolved, inner):
            options.append(None)
        leaf = _leaf_schema(resolved, inner, value)
        texts: list[tuple[int, int]] = []
        if leaf is not None:
            if isinstance(value, str):
                texts = _text_bounds(leaf, value)
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                options += [v for v in _numbers(leaf, value) if _valid(leaf, v)]
        drawn = walk.chooser.index(key, len(options) + len(texts) + 1)
        if drawn == 0:
            return value
        if drawn <= len(options):
            return options[drawn - 1]
        assert leaf is not None
        low, high = texts[drawn - len(options) - 1]
        text = walk.chooser.text(None if key is None else (*key, "text", low, high), low, high)
        return text if _valid(leaf, text) else value

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
    return bool(Draft202012Validator(leaf, format_checker=FORMAT_CHECKER).is_valid(value))


def _text_bounds(schema: JSON, value: str) -> list[tuple[int, int]]:
    """The lengths a free string may be drawn at: its lower bound, its upper bound, and its own length
    (in other characters)."""
    low = int(schema.get("minLength", 0))
    high = int(schema.get("maxLength", max(LONG_STRING, low)))
    return sorted({(low, low), (high, high), (len(value), len(value))})


def _numbers(schema: JSON, value: float) -> Iterator[float]:
    if isinstance(value, float) and value.is_integer():
        yield int(value)
    elif isinstance(value, int):
        yield float(value)
    for bound in ("minimum", "maximum"):
        if bound in schema and schema[bound] != value:
            yield schema[bound]


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
            seed = json.loads(raw)["seed"]
            self._seeded = (raw, Variation(SeededChooser(int(seed))) if seed is not None else None)
        return self._seeded[1]

    def seed(self) -> int | None:
        raw = self._settings.get_setting(KEY)
        seed = None if raw is None else json.loads(raw)["seed"]
        return None if seed is None else int(seed)

    def set(self, seed: int | None) -> None:
        """Vary with draws from `seed` from now on, its sequence (and what it remembers) started over in
        every process; None: stop varying."""
        self._settings.set_setting(KEY, json.dumps({"seed": seed, "started": random.getrandbits(64)}))
