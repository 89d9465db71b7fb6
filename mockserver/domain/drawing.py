"""An instance of a contract's JSON Schema drawn with a variation's draws (mockserver.domain.variation): what a
request could have sent, for state the client did not make (mockserver.domain.portal).

Every draw goes through the `Chooser`, so a seeded variation repeats it and hypothesis shrinks it (towards
the first option, the shortest string, the lowest number). Strings with a pattern or a format are drawn
from the schema's own `examples`; free strings within their length bounds, in other scripts; a number
with cents (`multipleOf`, else `x-decimal-places`, else two), written as an integer or a decimal when
whole. Arrays are drawn at most MAX_EXTRA_ITEMS longer than their minimum (the cost of a page of returns
with a hundred items each is the test's, not the provider's); a free string at most LONG_STRING long.
"""

from __future__ import annotations

import contextlib
import functools
import math
from decimal import Decimal
from typing import Any

import orjson
from jsonschema import Draft202012Validator
from referencing._core import Resolver

from mockserver.contract import FORMAT_CHECKER, schemas
from mockserver.domain.variation import LONG_STRING, Chooser

JSON = dict[str, Any]
MAX_EXTRA_ITEMS = 2
DECIMAL_PLACES = 2
"""The precision of a number whose schema gives none (money, in the providers' contracts)."""
NUMBER_BOUND = 10**9
"""The bound of a number or integer whose schema gives none."""


class Undrawable(ValueError):
    """A schema this drawing cannot satisfy (a pattern without a valid example): the contract's to fix."""


def instance(chooser: Chooser, schema: JSON, resolver: Resolver[Any], given: JSON | None = None) -> Any:
    """A value of `schema`; an object's members in `given` are taken as they are, not drawn."""
    schema, resolver = schemas.resolved(schema, resolver)
    choices = schemas.branches(schema)
    if choices:
        branch = choices[_pick(chooser, len(choices))]
        return instance(chooser, {**{k: v for k, v in schema.items() if k not in ("anyOf", "oneOf")}, **branch},
                        resolver, given)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][_pick(chooser, len(schema["enum"]))]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = kind[_pick(chooser, len(kind))]
    if kind == "object" or (kind is None and "properties" in schema):
        return _object(chooser, schema, resolver, given or {})
    if kind == "array":
        return _array(chooser, schema, resolver)
    if kind == "string":
        return _string(chooser, schema)
    if kind == "integer":
        low, high = _bounds(schema, 1)
        return chooser.integer(None, low, high)
    if kind == "number":
        return _number(chooser, schema)
    if kind == "boolean":
        return bool(_pick(chooser, 2))
    if kind == "null":
        return None
    raise Undrawable(f"no type to draw in {schema}")


def _pick(chooser: Chooser, n: int) -> int:
    """One of n options, each as likely (the first where hypothesis shrinks): one draw."""
    return chooser.integer(None, 0, n - 1)


def _object(chooser: Chooser, schema: JSON, resolver: Resolver[Any], given: JSON) -> JSON:
    properties, required = schemas.properties(schema, resolver)
    optional = [name for name in properties if name not in required and name not in given]
    present = chooser.integer(None, 0, 2 ** len(optional) - 1)  # which optional members: one draw, 0 for none
    out: JSON = {}
    for name, sub in properties.items():
        if name in given:
            out[name] = given[name]
        elif name in required:
            out[name] = instance(chooser, sub, resolver)
        elif present >> optional.index(name) & 1:
            with contextlib.suppress(Undrawable):  # an optional member it cannot make (an id of a form): left out
                out[name] = instance(chooser, sub, resolver)
    return out


def _array(chooser: Chooser, schema: JSON, resolver: Resolver[Any]) -> list[Any]:
    low = int(schema.get("minItems", 0))
    high = min(int(schema.get("maxItems", low + MAX_EXTRA_ITEMS)), low + MAX_EXTRA_ITEMS)
    items = schema.get("items", {})
    return [instance(chooser, items, resolver) for _ in range(chooser.integer(None, low, high))]


def _string(chooser: Chooser, schema: JSON) -> str:
    if "pattern" in schema or "format" in schema:
        examples = _examples(orjson.dumps(schema, option=orjson.OPT_SORT_KEYS))
        if not examples:
            raise Undrawable(f"a string of pattern {schema.get('pattern')!r} needs an example that matches it")
        return str(examples[_pick(chooser, len(examples))])
    low = int(schema.get("minLength", 0))
    return chooser.text(None, low, max(low, min(int(schema.get("maxLength", LONG_STRING)), LONG_STRING)))


@functools.lru_cache(maxsize=128)
def _examples(schema: bytes) -> list[str]:
    """The schema's examples that keep it (a pattern's or a format's only source of values here)."""
    loaded = orjson.loads(schema)
    check = Draft202012Validator(loaded, format_checker=FORMAT_CHECKER)
    return [e for e in loaded.get("examples", []) if isinstance(e, str) and check.is_valid(e)]


def _bounds(schema: JSON, unit: Decimal | int) -> tuple[int, int]:
    """The lowest and highest multiple of `unit` the schema allows, as counts of units."""
    low = Decimal(str(schema.get("minimum", schema.get("exclusiveMinimum", 0))))
    high = Decimal(str(schema.get("maximum", schema.get("exclusiveMaximum", NUMBER_BOUND))))
    first, last = math.ceil(low / unit), math.floor(high / unit)
    if "exclusiveMinimum" in schema and first * unit <= Decimal(str(schema["exclusiveMinimum"])):
        first += 1
    if "exclusiveMaximum" in schema and last * unit >= Decimal(str(schema["exclusiveMaximum"])):
        last -= 1
    return first, last


def _number(chooser: Chooser, schema: JSON) -> float | int:
    if "multipleOf" in schema:
        unit = Decimal(str(schema["multipleOf"]))
    else:
        unit = Decimal(1).scaleb(-int(schema.get("x-decimal-places", DECIMAL_PLACES)))
    low, high = _bounds(schema, unit)
    value = Decimal(chooser.integer(None, low, high)) * unit
    as_integer = _pick(chooser, 2)  # drawn whatever the value, so that a smaller value shifts no later draw
    if value == value.to_integral_value() and as_integer:
        return int(value)  # a whole amount, written as an integer
    return float(value)
