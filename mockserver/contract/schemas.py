"""Reading a JSON Schema of the contracts alongside an instance: following `$ref`s, `anyOf`/`oneOf`
branches and `allOf` properties, so that each part of an answer can be asked what its schema says
(mockserver.domain.variation: what may vary; mockserver.contract.drift: what is compared)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

from jsonschema import Draft202012Validator
from referencing import Registry
from referencing._core import Resolver

JSON = dict[str, Any]
Valid = Callable[[JSON, Resolver[Any], Any], bool]

ANNOTATIONS = frozenset({"$ref", "title", "description", "examples", "x-provenance", "$comment"})


def resolver_for(validator: Draft202012Validator, registry: Registry[Any]) -> Resolver[Any]:
    return registry.resolver(base_uri=str(validator.schema.get("$id", "")))


def resolved(schema: JSON, resolver: Resolver[Any]) -> tuple[JSON, Resolver[Any]]:
    """The schema a `$ref` points to (its siblings kept unless they are annotations), in its own scope. A
    sibling `required` adds to the target's (both apply: a webhook event's data is a return that also
    requires `object`)."""
    while isinstance(schema.get("$ref"), str):
        found = resolver.lookup(schema["$ref"])
        rest = {k: v for k, v in schema.items() if k not in ANNOTATIONS}
        if "required" in rest and "required" in found.contents:
            rest["required"] = list(dict.fromkeys([*found.contents["required"], *rest["required"]]))
        schema, resolver = {**found.contents, **rest} if rest else found.contents, found.resolver
    return schema, resolver


def branches(schema: JSON) -> list[JSON]:
    return [b for keyword in ("anyOf", "oneOf") for b in schema.get(keyword, []) if isinstance(b, dict)]


def is_null(schema: JSON) -> bool:
    return schema.get("type") == "null" or schema.get("const", ...) is None


def nullable(schema: JSON, resolver: Resolver[Any]) -> bool:
    kind = schema.get("type")
    if isinstance(kind, list) and "null" in kind:
        return True
    return any(is_null(resolved(b, resolver)[0]) for b in branches(schema))


_JSON_TYPES: dict[type, tuple[str, ...]] = {dict: ("object",), list: ("array",), str: ("string",),
                                            bool: ("boolean",), int: ("integer", "number"), float: ("number",)}


def _typed_as(schema: JSON, value: Any) -> bool:
    kind = schema.get("type")
    if kind is None:
        return True
    kinds = kind if isinstance(kind, list) else [kind]
    return any(k in kinds for k in _JSON_TYPES.get(type(value), ()))


def branch(schema: JSON, resolver: Resolver[Any], value: Any,
           valid: Valid | None = None) -> tuple[JSON, Resolver[Any]] | None:
    """The one anyOf/oneOf branch `value` is an instance of: the only one that is not null, else the
    only one `valid` accepts (or, without `valid`, the only one of the value's JSON type)."""
    if value is None:
        return None
    candidates = [(b, r) for b, r in (resolved(b, resolver) for b in branches(schema)) if not is_null(b)]
    if len(candidates) == 1:
        return candidates[0]
    matching = [(b, r) for b, r in candidates if (valid(b, r, value) if valid else _typed_as(b, value))]
    return matching[0] if len(matching) == 1 else None


def properties(schema: JSON, resolver: Resolver[Any]) -> tuple[dict[str, JSON], set[str]]:
    """An object schema's properties and required names, its allOf branches' included."""
    found = dict(schema.get("properties", {}))
    required = set(schema.get("required", []))
    for part in schema.get("allOf", []):
        more, needed = properties(resolved(part, resolver)[0], resolver)
        for name, sub in more.items():
            found.setdefault(name, sub)
        required |= needed
    return found, required


def escape(name: str) -> str:
    return name.replace("~", "~0").replace("/", "~1")


def _own(schema: JSON, resolver: Resolver[Any], value: Any) -> tuple[JSON, Resolver[Any]]:
    """The schema `value` is an instance of, resolved: as its parent declares it, merged with the branch
    its value takes."""
    schema, resolver = resolved(schema, resolver)
    chosen = branch(schema, resolver, value)
    if chosen is not None:
        inner, resolver = chosen
        schema = {**{k: v for k, v in schema.items() if k not in ("anyOf", "oneOf")}, **inner}
    return schema, resolver


def parts(schema: JSON, resolver: Resolver[Any], value: Any) -> Iterator[tuple[JSON, Any]]:
    """Every part of `value`, itself included, with the schema it is an instance of."""
    schema, resolver = _own(schema, resolver, value)
    yield schema, value
    if isinstance(value, dict):
        declared, _ = properties(schema, resolver)
        for name, item in value.items():
            if name in declared:
                yield from parts(declared[name], resolver, item)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for item in value:
            yield from parts(schema["items"], resolver, item)


def at(schema: JSON, resolver: Resolver[Any], value: Any, pointer: str) -> JSON:
    """The schema of the part of `value` at `pointer` (as `parts` gives it), walking only that path; {} where
    the schema says nothing of it."""
    for segment in [*pointer.split("/")[1:], None]:
        schema, resolver = _own(schema, resolver, value)
        if segment is None:
            return schema
        name = segment.replace("~1", "/").replace("~0", "~")
        if isinstance(value, dict) and name in value:
            declared, _ = properties(schema, resolver)
            if name not in declared:
                return {}
            schema, value = declared[name], value[name]
        elif isinstance(value, list) and name.isdigit() and int(name) < len(value) \
                and isinstance(schema.get("items"), dict):
            schema, value = schema["items"], value[int(name)]
        else:
            return {}
    return schema


# --- a schema with the place it is written (drift: what a difference breaks) --------------------------


@dataclass(frozen=True)
class Place:
    """A schema, the scope its `$ref`s resolve in, and where it is written: the absolute URI of its file
    (or inline document) and the JSON pointer to it (`https://.../3plship/return.json#/properties/id`)."""

    schema: JSON
    resolver: Resolver[Any]
    where: str

    def at(self, *segments: str | int) -> Place:
        """A subschema of this one (no `$ref` followed), by its keywords' path."""
        node: Any = self.schema
        where = self.where
        for segment in segments:
            node = node[segment]
            where += "/" + escape(str(segment))
        return Place(node, self.resolver, where)


ValidPlace = Callable[[Place, Any], bool]


def place_of(validator: Draft202012Validator, registry: Registry[Any]) -> Place:
    uri = str(validator.schema.get("$id", ""))
    return Place(validator.schema, resolver_for(validator, registry), uri + "#")


def followed(place: Place) -> Place:
    """`resolved`, keeping track of where the schema reached is written."""
    schema, resolver, where = place.schema, place.resolver, place.where
    while isinstance(schema.get("$ref"), str):
        ref = schema["$ref"]
        found = resolver.lookup(ref)
        rest = {k: v for k, v in schema.items() if k not in ANNOTATIONS}
        target = urljoin(where.partition("#")[0], ref)
        where = target if "#" in target else target + "#"
        schema, resolver = ({**found.contents, **rest} if rest else found.contents), found.resolver
    return Place(schema, resolver, where)


def chosen(place: Place, value: Any, valid: ValidPlace | None = None) -> Place:
    """The schema `value` is an instance of: `place` followed, merged with the anyOf/oneOf branch the value
    takes (the only one that is not null, else the only one of its JSON type, else the first `valid`
    accepts)."""
    place = followed(place)
    schema = place.schema
    if value is None:
        return place
    candidates = [followed(place.at(keyword, i)) for keyword in ("anyOf", "oneOf")
                  for i, b in enumerate(schema.get(keyword, [])) if isinstance(b, dict)]
    candidates = [c for c in candidates if not is_null(c.schema)]
    if len(candidates) > 1:
        typed = [c for c in candidates if _typed_as(c.schema, value)]
        candidates = typed if len(typed) == 1 or valid is None else [c for c in typed if valid(c, value)][:1]
    if len(candidates) != 1:
        return place
    inner = candidates[0]
    merged = {**{k: v for k, v in schema.items() if k not in ("anyOf", "oneOf")}, **inner.schema}
    return Place(merged, inner.resolver, inner.where)


def declared(place: Place) -> dict[str, Place]:
    """An object schema's properties (its allOf branches' included), each where it is written."""
    found = {name: place.at("properties", name) for name in place.schema.get("properties", {})}
    for i, _ in enumerate(place.schema.get("allOf", [])):
        for name, sub in declared(followed(place.at("allOf", i))).items():
            found.setdefault(name, sub)
    return found


def located(place: Place, value: Any, pointer: str, valid: ValidPlace | None = None) -> Place:
    """The schema of the part of `value` at `pointer` (its `$ref`s followed), and where it is declared; its
    parent's place with an empty schema where the contract says nothing of that part."""
    for segment in [*pointer.split("/")[1:], None]:
        declared_at = place.where
        place = chosen(place, value, valid)
        if segment is None:  # where the part is declared (a property), not the file its $ref leads to
            return Place(place.schema, place.resolver, declared_at if pointer else place.where)
        name = segment.replace("~1", "/").replace("~0", "~")
        if isinstance(value, dict) and name in value:
            properties = declared(place)
            if name not in properties:
                return Place({}, place.resolver, place.where)
            place, value = properties[name], value[name]
        elif isinstance(value, list) and name.isdigit() and int(name) < len(value) \
                and isinstance(place.schema.get("items"), dict):
            place, value = place.at("items"), value[int(name)]
        else:
            return Place({}, place.resolver, place.where)
    return place


def identifier(place: Place) -> str | None:
    """The name of the property an object schema marks `x-identifier` (a resource's identity), if any."""
    for name, sub in declared(place).items():
        if followed(sub).schema.get("x-identifier"):
            return name
    return None
