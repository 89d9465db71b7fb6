"""The contracts: JSON Schemas, OpenAPI documents and lifecycle data under contracts/.

Everything that knows a shape reads it from here: request validation, the response self-check, the
served OpenAPI documents and the tests. Files are loaded once per process and validators are compiled
once (see `contract()`), never per request.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any

import jsonschema_rs
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from jsonschema.validators import extend
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

_INTEGER = re.compile(r"[+-]?[0-9]{1,18}")
HTTP_METHODS = ("get", "put", "post", "patch", "delete")
FORMAT_CHECKER = Draft202012Validator.FORMAT_CHECKER


@cache
def _ecma(pattern: str) -> re.Pattern[str]:
    # JSON Schema patterns are ECMA-262 regexes. Python's `$` also matches before a final newline, so
    # "42\n" would pass "^[0-9]+$"; a trailing `$` becomes `\Z`, the end of the string, as in ECMA.
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        pattern = pattern[:-1] + r"\Z"
    # ECMA's \d is [0-9]; Python's str patterns would also take other scripts' digits ("٣").
    return re.compile(pattern, re.ASCII)


def _pattern(validator: Any, pattern: str, instance: Any, schema: JSON) -> Iterator[ValidationError]:
    if validator.is_type(instance, "string") and not _ecma(pattern).search(instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


Validator = extend(Draft202012Validator, {"pattern": _pattern})

JSON = dict[str, Any]


def contracts_root() -> Traversable:
    return resources.files("mockserver") / "contracts"


def fixtures_root() -> Traversable:
    return resources.files("mockserver") / "fixtures"


@dataclass(frozen=True)
class Problem:
    """One way something broke the contract, worded for whoever has to fix it: the one violation type of
    the mock's views, the proxy, verify and validate-har (the journal keeps each with its request)."""

    field: str
    message: str
    location: str = "body"
    allowed: tuple[str, ...] | None = None
    schema: str = dataclasses.field(default="", compare=False)
    """Where the broken rule is written: contract file and JSON pointer to the keyword."""
    side: str = dataclasses.field(default="request", compare=False)
    """Who broke the contract: the `request` (the client) or, behind the proxy or in a check of another
    implementation, the `response` (the provider)."""

    def as_detail(self) -> JSON:
        detail: JSON = {"message": self.message, "location": self.location}
        if self.field:
            detail["field"] = self.field
        if self.allowed is not None:
            detail["allowed"] = list(self.allowed)
        return detail


@dataclass(frozen=True)
class Violation:
    """A problem found in one exchange (a request the mock or the proxy saw, a recorded HAR entry): the
    one violation type the journal, the proxy, the in-process mocks and the HAR check keep."""

    problem: Problem
    method: str
    path: str
    provider: str | None
    status: int = 0
    account: str | None = None
    operation: str | None = None
    entry: int = 0
    """The journal entry's id, or the HAR entry's index."""

    @property
    def field(self) -> str:
        return self.problem.field

    @property
    def location(self) -> str:
        return "response" if self.problem.side == "response" else self.problem.location

    @property
    def message(self) -> str:
        return self.problem.message

    @property
    def schema(self) -> str:
        """Where the broken rule is written: contract file and JSON pointer, e.g.
        3plship/return-create-request.json#/properties/items/items/$ref/properties/quantity/minimum"""
        return self.problem.schema

    @property
    def source(self) -> str:
        """Who broke the contract: `request` (the client) or, behind the proxy, `response` (the provider)."""
        return self.problem.side

    def describe(self) -> str:
        where = f"{self.field} ({self.location})" if self.field else self.location
        return f"{self.method} {self.path} -> {self.status}: {where}: {self.message}"

    def as_json(self) -> JSON:
        return {"entry": self.entry, "method": self.method, "path": self.path, "provider": self.provider,
                "account": self.account, "status": self.status, "field": self.field, "location": self.location,
                "message": self.message, "schema": self.schema, "source": self.source}

    @classmethod
    def from_json(cls, data: JSON) -> Violation:
        """From its stored form (the dataclass's fields) or its shown one (as_json, as journals before kept it)."""
        if "problem" in data:
            p = data["problem"]
            allowed = tuple(p["allowed"]) if p.get("allowed") is not None else None
            problem = Problem(p["field"], p["message"], p["location"], allowed, p.get("schema", ""),
                              p.get("side", "request"))
        else:
            problem = Problem(data["field"], data["message"], data["location"], schema=data.get("schema", ""),
                              side=data.get("source", "request"))
        return cls(problem, data["method"], data["path"], data["provider"], data["status"], data.get("account"),
                   data.get("operation"), data.get("entry", 0))


@dataclass(frozen=True)
class Parameter:
    name: str
    location: str  # "path" or "query"
    required: bool
    schema: JSON
    validator: Draft202012Validator

    @property
    def is_integer(self) -> bool:
        return self.schema.get("type") == "integer"

    @property
    def default(self) -> Any:
        return self.schema.get("default")


@dataclass(frozen=True)
class DeclaredHeader:
    """A response header an operation's answer declares (OpenAPI `headers`)."""

    name: str
    required: bool
    schema: JSON
    compare: str
    """How the shadow compares it (`x-compare` on the header): `presence`, `scheme` (an auth challenge's
    scheme), `methods` (a method list, as a set), else its value."""
    where: str
    """Where it is declared: openapi.json's URI and the JSON pointer to the header object."""


@dataclass(frozen=True)
class DeclaredResponse:
    """What the contract says of one status of an operation: its body's validator, headers and media types."""

    status: int
    validator: Draft202012Validator | None
    headers: tuple[DeclaredHeader, ...]
    media_types: tuple[str, ...]
    where: str
    """openapi.json's URI and the JSON pointer to the response object (a shared one where it is a $ref)."""


@dataclass(frozen=True)
class Operation:
    """One operation of a provider's OpenAPI document, with its validators compiled."""

    provider: str
    operation_id: str
    method: str
    path: str
    parameters: tuple[Parameter, ...]
    body_validator: Draft202012Validator | None
    body_required: bool
    responses: dict[int, Draft202012Validator | None]
    declared: dict[int, DeclaredResponse] = field(default_factory=dict)
    where: str = ""
    """openapi.json's URI and the JSON pointer to the operation object."""
    page: JSON | None = None
    """`x-page`: the answer is one page of resources (where they are, the query parameter bounding the
    page, where its has-more flag is)."""

    @property
    def label(self) -> str:
        return f"{self.method} {self.path}"

    def check_parameters(self, location: str, given: Mapping[str, str]) -> tuple[dict[str, Any], list[Problem]]:
        """Coerce and validate the path or query values of a request (unknown query names: `unknown_query`)."""
        values: dict[str, Any] = {}
        found: list[Problem] = []
        for param in self.parameters:
            if param.location != location:
                continue
            raw = given.get(param.name)
            if raw is None:
                if param.required:
                    found.append(Problem(param.name, f"{param.name} is required", location))
                elif param.default is not None:
                    values[param.name] = param.default
                continue
            value: Any = raw
            if param.is_integer:
                if not _INTEGER.fullmatch(raw):
                    found.append(Problem(param.name, f"{param.name} must be an integer, not {raw!r}", location))
                    continue
                value = int(raw)
            issues = problems(param.validator, value, location, (param.name,))
            if issues:
                found.extend(issues)
            else:
                values[param.name] = value
        return values, found

    @functools.cached_property
    def query_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.parameters if p.location == "query")

    def unknown_query(self, given: Mapping[str, str]) -> list[Problem]:
        """Query names the operation does not know: a real API ignores them, the client most likely misspelt one."""
        known = self.query_names
        if all(name in known for name in given):  # every request: no list built when all is well
            return []
        hint = f"; known: {', '.join(known)}" if known else ""
        return [Problem(name, f"{name} is not a known query parameter (ignored){hint}", "query")
                for name in given if name not in known]


@dataclass
class Contract:
    """All contract files of one provider."""

    provider: str
    documents: dict[str, JSON]
    base_uri: str
    registry: Registry[Any] = field(repr=False)
    _validators: dict[str, Draft202012Validator] = field(default_factory=dict, repr=False)
    _inline: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def openapi(self) -> JSON:
        return self.documents["openapi.json"]

    @property
    def lifecycle(self) -> JSON:
        return self.documents["lifecycle.json"]

    @property
    def mock_prefix(self) -> str:
        """The mock's own base path: the first `servers` entry of the OpenAPI document."""
        return str(self.openapi["servers"][0]["url"]).rstrip("/")

    @property
    def latency_ceiling_ms(self) -> int | None:
        """The longest an answer of this API is taken to take (`info.x-latency.max_ms`), if the contract says."""
        latency = self.openapi.get("info", {}).get("x-latency")
        return int(latency["max_ms"]) if isinstance(latency, dict) else None

    @property
    def real_base_url(self) -> str | None:
        """The real provider's base URL: the first absolute `servers` entry, if there is one."""
        for server in self.openapi.get("servers", []):
            url = str(server["url"])
            if url.startswith(("http://", "https://")):
                return url.rstrip("/")
        return None

    @property
    def schema_files(self) -> list[str]:
        return sorted(name for name, doc in self.documents.items() if "$schema" in doc)

    def schema(self, name: str) -> JSON:
        return self.documents[name]

    def validator(self, name: str) -> Draft202012Validator:
        """Compiled validator for a schema file (by file name), cached."""
        if name not in self._validators:
            schema = self.documents[name]
            self._validators[name] = Validator(schema, registry=self.registry, format_checker=FORMAT_CHECKER)
        return self._validators[name]

    def inline_validator(self, schema: JSON, where: str, source: str | None = None) -> Draft202012Validator:
        """Validator for a schema written inside openapi.json; relative $refs resolve beside it. `source`:
        the JSON pointer to it in openapi.json (what `source` answers for its URI)."""
        uri = f"{self.base_uri}{_slug(where)}.inline.json"
        if source is not None:
            self._inline[uri] = source
        anchored = {**schema, "$id": uri}
        return Validator(anchored, registry=self.registry, format_checker=FORMAT_CHECKER)

    def source(self, where: str) -> tuple[str, str]:
        """The contract file (relative to contracts/, e.g. `3plship/return.json`) and the JSON pointer in it
        of a schema location (`https://returns-mock.local/contracts/3plship/return.json#/properties/id`);
        a schema written inside openapi.json is found there."""
        uri, _, pointer = where.partition("#")
        if uri in self._inline:
            return f"{self.provider}/openapi.json", self._inline[uri] + pointer
        return uri.removeprefix(BASE_URI), pointer

    def common_response(self, status: int) -> DeclaredResponse | None:
        """What the contract says of `status` where no operation's answer does (a path or method it does not
        have, a status its operation does not declare): the response every operation that declares the
        status agrees on (the same body schema; the headers they all declare), else, for a failure, the
        body schema every failure of the contract shares (its error envelope)."""
        return _common_response(self.provider, status)

    def enum(self, name: str) -> list[str]:
        return list(self.documents[name]["enum"])

    # --- OpenAPI ---------------------------------------------------------------------------------

    def resolve(self, node: JSON) -> JSON:
        """Follow a local `#/components/...` reference inside openapi.json."""
        while "$ref" in node and str(node["$ref"]).startswith("#/"):
            target: Any = self.openapi
            for part in str(node["$ref"])[2:].split("/"):
                target = target[part]
            node = target
        return node

    def first_member(self, schema: JSON) -> str | None:
        """The member an object of `schema` is written with first (its first property), following `$ref`s to
        this provider's files; None if it names no properties."""
        seen = 0
        while "properties" not in schema and isinstance(schema.get("$ref"), str) and seen < 8:
            schema = self.documents.get(str(schema["$ref"]).rsplit("/", 1)[-1], {})
            seen += 1
        properties = schema.get("properties")
        return next(iter(properties), None) if isinstance(properties, dict) else None

    def _schema_validator(self, schema: JSON, where: str, source: str | None = None) -> Draft202012Validator:
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref in self.documents and len(schema) == 1:
            return self.validator(ref)
        return self.inline_validator(schema, where, source)

    def _located(self, node: JSON, pointer: str) -> tuple[JSON, str]:
        """`resolve`, with the JSON pointer (in openapi.json) of the node reached."""
        while "$ref" in node and str(node["$ref"]).startswith("#/"):
            pointer = str(node["$ref"])[1:]
            node = self.resolve({"$ref": node["$ref"]})
        return node, pointer

    @property
    def operations(self) -> list[Operation]:
        return _operations(self.provider)

    def operation(self, operation_id: str) -> Operation:
        for op in self.operations:
            if op.operation_id == operation_id:
                return op
        raise KeyError(operation_id)

    def bundled_openapi(self) -> JSON:
        return _bundled(self.provider)

    def methods_at(self, path: str) -> list[str]:
        """The methods the contract has for a concrete request path (relative to the base URL)."""
        return [op.method for op, pattern in _path_patterns(self.provider) if pattern.fullmatch(path)]

    def match(self, method: str, path: str) -> tuple[Operation, dict[str, str]] | None:
        """The operation a concrete request path (relative to the base URL) belongs to, with its path values."""
        for op, pattern in _path_patterns(self.provider):
            found = pattern.fullmatch(path)
            if found and op.method == method.upper():
                return op, found.groupdict()
        return None


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")


def _read_json(node: Traversable) -> JSON:
    with node.open("rb") as fh:
        data = json.load(fh)
    if not isinstance(data, dict):
        raise ValueError(f"{node.name}: a contract file must hold a JSON object")
    return data


BASE_URI = "https://returns-mock.local/contracts/"

# Contract folders outside the package (a provider registered from elsewhere), by name.
_EXTRA: dict[str, Traversable] = {}


def add_folder(name: str, folder: Traversable) -> None:
    """Make a contract folder that does not ship inside the package known under `name`."""
    if _EXTRA.get(name) == folder:
        return
    _EXTRA[name] = folder
    for cached in (_documents, _registry, _fast_registry, contract, _operations, _path_patterns, _bundled,
                   _common_response):
        cached.cache_clear()


def remove_folder(name: str) -> None:
    if _EXTRA.pop(name, None) is not None:
        for cached in (_documents, _registry, _fast_registry, contract, _operations, _path_patterns, _bundled,
                       _common_response):
            cached.cache_clear()


def folders() -> dict[str, Traversable]:
    """Every contract folder: those shipped in the package, then those added."""
    found = {node.name: node for node in contracts_root().iterdir() if node.is_dir()}
    return {**dict(sorted(found.items())), **_EXTRA}


@cache
def _documents(folder: str) -> dict[str, JSON]:
    node = folders()[folder]
    return {child.name: _read_json(child) for child in node.iterdir() if child.name.endswith(".json")}


@cache
def _registry() -> Registry[Any]:
    """Every schema of every folder, so that one folder's schemas can reference another's."""
    resources_ = []
    for folder in folders():
        for name, doc in _documents(folder).items():
            if "$schema" in doc:
                expected = f"{BASE_URI}{folder}/{name}"
                if doc.get("$id") != expected:
                    raise ValueError(f"contracts/{folder}/{name}: $id must be {expected}")
                # Without `$schema`: a referenced resource that names its dialect is validated by the stock
                # validator class, which would lose the ECMA `pattern` above.
                contents = {k: v for k, v in doc.items() if k != "$schema"}
                resources_.append((expected, Resource.from_contents(contents, default_specification=DRAFT202012)))
    registry: Registry[Any] = Registry().with_resources(resources_)
    return registry


@cache
def contract(provider: str) -> Contract:
    """The contract files of a provider (or of the control plane: 'admin')."""
    if provider not in folders():
        raise KeyError(f"unknown contract folder {provider!r}; known: {', '.join(folders())}")
    return Contract(provider=provider, documents=_documents(provider), base_uri=f"{BASE_URI}{provider}/",
                    registry=_registry())


@cache
def _operations(provider: str) -> list[Operation]:
    c = contract(provider)
    operations: list[Operation] = []
    for path, item in c.openapi["paths"].items():
        shared = [c.resolve(p) for p in item.get("parameters", [])]
        for method in HTTP_METHODS:
            if method not in item:
                continue
            op = item[method]
            op_id = op["operationId"]
            params = []
            for p in shared + [c.resolve(p) for p in op.get("parameters", [])]:
                params.append(
                    Parameter(
                        name=p["name"],
                        location=p["in"],
                        required=bool(p.get("required", False)),
                        schema=p["schema"],
                        validator=c.inline_validator(p["schema"], f"{op_id}-{p['in']}-{p['name']}"),
                    )
                )
            body_validator = None
            body_required = False
            if "requestBody" in op:
                body = c.resolve(op["requestBody"])
                body_required = bool(body.get("required", False))
                body_validator = c._schema_validator(
                    body["content"]["application/json"]["schema"], f"{op_id}-body"
                )
            responses: dict[int, Draft202012Validator | None] = {}
            declared: dict[int, DeclaredResponse] = {}
            op_pointer = f"/paths/{_escape(path)}/{method}"
            for code, response in op["responses"].items():
                response, pointer = c._located(response, f"{op_pointer}/responses/{code}")
                content = response.get("content", {}).get("application/json")
                responses[int(code)] = (
                    c._schema_validator(content["schema"], f"{op_id}-{code}",
                                        f"{pointer}/content/application~1json/schema") if content else None
                )
                declared[int(code)] = DeclaredResponse(
                    int(code), responses[int(code)], _declared_headers(c, response, pointer),
                    tuple(response.get("content", {})), f"{c.base_uri}openapi.json#{pointer}")
            operations.append(
                Operation(
                    provider=provider,
                    operation_id=op_id,
                    method=method.upper(),
                    path=path,
                    parameters=tuple(params),
                    body_validator=body_validator,
                    body_required=body_required,
                    responses=responses,
                    declared=declared,
                    where=f"{c.base_uri}openapi.json#{op_pointer}",
                    page=op.get("x-page"),
                )
            )
    return operations


def _escape(name: str) -> str:
    return name.replace("~", "~0").replace("/", "~1")


def _declared_headers(c: Contract, response: JSON, pointer: str) -> tuple[DeclaredHeader, ...]:
    found = []
    for name, header in response.get("headers", {}).items():
        header, where = c._located(header, f"{pointer}/headers/{_escape(name)}")
        found.append(DeclaredHeader(name, bool(header.get("required", False)), header.get("schema", {}),
                                    str(header.get("x-compare", "value")), f"{c.base_uri}openapi.json#{where}"))
    return tuple(found)


@cache
def _common_response(provider: str, status: int) -> DeclaredResponse | None:
    operations = _operations(provider)
    declaring = [op.declared[status] for op in operations if status in op.declared]
    ids = {str(d.validator.schema.get("$id")) if d.validator is not None else None for d in declaring}
    if declaring and len(ids) == 1:
        first = declaring[0]
        names = set.intersection(*({h.name for h in d.headers} for d in declaring))
        return dataclasses.replace(first, status=status, headers=tuple(h for h in first.headers if h.name in names))
    if status < 400:
        return None
    failures = [d for op in operations for code, d in op.declared.items() if code >= 400 and d.validator is not None]
    envelopes = {str(d.validator.schema.get("$id")) for d in failures if d.validator is not None}
    if len(envelopes) != 1:
        return None
    return dataclasses.replace(failures[0], status=status, headers=())


@cache
def _path_patterns(provider: str) -> list[tuple[Operation, re.Pattern[str]]]:
    return [(op, re.compile(re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(op.path))))
            for op in _operations(provider)]


# --- problems: jsonschema errors in the client's words ------------------------------------------


def field_path(parts: Iterator[Any] | list[Any] | tuple[Any, ...]) -> str:
    """`['items', 0, 'quantity']` -> `items[0].quantity`."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


_JSON_TYPES = {
    dict: "an object",
    list: "an array",
    str: "a string",
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    type(None): "null",
}


def _json_type(value: Any) -> str:
    return _JSON_TYPES.get(type(value), type(value).__name__)


def _needs_one_of(error: ValidationError) -> bool:
    """An anyOf/oneOf of required fields, none of them present: "needs one of a, b, c"."""
    return error.validator in ("anyOf", "oneOf") and bool(error.context) and \
        all(f.validator == "required" for f in error.context)


def _leaves(error: ValidationError) -> list[ValidationError]:
    """For anyOf/oneOf, the failures of the alternative meant; otherwise the error itself.

    The alternative meant is the only one of the instance's type, if there is one: for an object sent
    where "a rule or a list of rules" is expected, the rule's problems, not "must be an array".
    best_match alone prefers the shallowest error, which is exactly that type mismatch."""
    if error.validator in ("anyOf", "oneOf") and error.context:
        from jsonschema.exceptions import best_match

        alternatives: dict[Any, list[ValidationError]] = {}
        for failure in error.context:
            alternatives.setdefault(failure.relative_schema_path[0], []).append(failure)
        of_its_type = [failures for failures in alternatives.values()
                       if not any(f.validator == "type" and not f.relative_path for f in failures)]
        if len(of_its_type) == 1:
            return [leaf for failure in of_its_type[0] for leaf in _leaves(failure)]
        if _needs_one_of(error):  # said as such by _describe
            return [error]
        best = best_match(error.context)
        return _leaves(best) if best is not None else [error]
    return [error]


@cache
def _fast_registry() -> jsonschema_rs.Registry:
    return jsonschema_rs.Registry([(doc["$id"], doc) for folder in folders() for doc in _documents(folder).values()
                                   if "$schema" in doc])


_FAST: dict[str, Any] = {}


def _fast(validator: Draft202012Validator) -> Any:
    """The same schema compiled by jsonschema-rs (keyed by its `$id`: every contract schema has one)."""
    key = str(validator.schema.get("$id", ""))
    fast = _FAST.get(key)
    if fast is None:
        fast = jsonschema_rs.validator_for(validator.schema, registry=_fast_registry(), validate_formats=True)
        if key:
            _FAST[key] = fast
    return fast


def valid(validator: Draft202012Validator, instance: Any) -> bool:
    """Whether `instance` keeps the schema: jsonschema-rs's answer, the Python validator's where it cannot
    give one (the same verdict `problems` reaches, without describing anything)."""
    try:
        return bool(_fast(validator).is_valid(instance))
    except ValueError:
        return bool(validator.is_valid(instance))


def problems(validator: Draft202012Validator, instance: Any, location: str = "body",
             prefix: tuple[Any, ...] = ()) -> list[Problem]:
    """All the ways `instance` breaks the schema, one Problem per offending field, in path order.

    jsonschema-rs answers "valid" in microseconds; the Python validator stays the authority and writes
    the messages, so it runs whenever the fast one objects (it is at least as strict: formats on, no
    big numbers, ECMA patterns) and its answer is the one that counts.
    """
    try:
        if _fast(validator).is_valid(instance):
            return []
    except ValueError:  # e.g. an integer of thousands of digits: the Python validator copes
        pass
    found: list[Problem] = []
    errors = sorted(validator.iter_errors(instance), key=lambda e: [str(p) for p in e.absolute_path])
    for top in errors:
        for error in _leaves(top):
            for problem in _describe(error, location, prefix):
                problem = dataclasses.replace(problem, schema=_schema_location(validator, error))
                if problem not in found:  # if/then/else and $ref can report one problem several times
                    found.append(problem)
    return found


def _schema_location(validator: Draft202012Validator, error: ValidationError) -> str:
    root = str(validator.schema.get("$id", "")).removeprefix(BASE_URI)
    return f"{root}#/" + "/".join(str(part) for part in error.absolute_schema_path)


def _describe(error: ValidationError, location: str, prefix: tuple[Any, ...]) -> list[Problem]:
    path = prefix + tuple(error.absolute_path)
    where = field_path(list(path))
    kind = error.validator
    value = error.validator_value
    instance = error.instance
    if kind == "required" and isinstance(instance, dict):
        return [
            Problem(field_path([*path, name]), f"{field_path([*path, name])} is required", location)
            for name in value
            if name not in instance
        ]
    if kind == "additionalProperties" and isinstance(instance, dict):
        known = set(error.schema.get("properties", {}))
        extras = [name for name in instance if name not in known]
        return [
            Problem(field_path([*path, name]), f"{field_path([*path, name])} is not a known field"
                    + (f"; known fields: {', '.join(sorted(known))}" if known else ""), location)
            for name in extras
        ]
    label = where or ("request body" if location == "body" else location)
    if kind == "enum":
        allowed = tuple(str(v) for v in value)
        return [Problem(where, f"{label}: {instance!r} is not one of the valid values: {', '.join(allowed)}",
                        location, allowed)]
    if _needs_one_of(error):
        names = [name for f in error.context for name in f.validator_value if name not in instance]
        return [Problem(where, f"{label} needs one of {', '.join(dict.fromkeys(names))}", location)]
    if kind == "not" and isinstance(value, dict) and set(value) == {"required"}:
        return [Problem(where, f"{label}: use only one of {', '.join(value['required'])}", location)]
    if kind == "const":
        return [Problem(where, f"{label} must be {json.dumps(value)}", location, (str(value),))]
    if kind == "type":
        expected = value if isinstance(value, str) else " or ".join(value)
        article = "an" if expected[0] in "aeiou" else "a"
        return [Problem(where, f"{label} must be {article} {expected}, not {_json_type(instance)}", location)]
    if kind == "pattern":  # the form in words (x-expected) or by example, rather than a regular expression
        expected = error.schema.get("x-expected")
        examples = error.schema.get("examples")
        if expected:
            return [Problem(where, f"{label} must be {expected}, not {instance!r}", location)]
        if examples:
            shown = ", ".join(str(e) for e in examples[:3])
            return [Problem(where, f"{label}: {instance!r} does not have the expected form (e.g. {shown})", location)]
    messages = {
        "minimum": f"{label} must be at least {value}",
        "maximum": f"{label} must be at most {value}",
        "exclusiveMinimum": f"{label} must be greater than {value}",
        "exclusiveMaximum": f"{label} must be less than {value}",
        "minLength": f"{label} must be at least {value} characters long",
        "maxLength": f"{label} must be at most {value} characters long",
        "minItems": f"{label} must have at least {value} entries",
        "maxItems": f"{label} must have at most {value} entries",
        "pattern": f"{label} does not match the expected form {value}",
        "format": f"{label} is not a valid {value}",
    }
    return [Problem(where, messages.get(str(kind), f"{label}: {error.message}"), location)]


# --- the served, self-contained OpenAPI document -----------------------------------------------


@cache
def _bundled(provider: str) -> JSON:
    """openapi.json with every schema file it references (directly or through others) moved into
    components/schemas; schema files it does not reach (the control plane's seed-return.json) stay out.

    Any tool can load the result from its URL alone. `$id`/`$schema` are dropped from the bundled
    schemas so that references resolve against the document, not against the files' own URIs. A file's
    `$defs` become components of their own (`<Title><Name>`): client generators follow references to
    components, not pointers into them.
    """
    c = contract(provider)
    names: dict[str, str] = {}
    for file_name in sorted(_reached(c)):
        title = str(c.documents[file_name]["title"])
        if title in names.values():
            raise ValueError(f"contracts/{provider}: two schemas are titled {title!r}")
        names[file_name] = title

    def rewrite(node: Any, home: str | None) -> Any:
        if isinstance(node, dict):
            out = {}
            for key, value in node.items():
                if key == "$ref" and isinstance(value, str):
                    out[key] = _rewrite_ref(value, home, names)
                elif home is not None and key in ("$id", "$schema"):
                    continue
                else:
                    out[key] = rewrite(value, home)
            return out
        if isinstance(node, list):
            return [rewrite(v, home) for v in node]
        return node

    doc: JSON = rewrite(copy.deepcopy(c.openapi), None)
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    for file_name, title in names.items():
        bundled = rewrite(c.documents[file_name], file_name)
        for name, definition in bundled.pop("$defs", {}).items():
            schemas[_def_name(title, name)] = definition
        schemas[title] = bundled
    return doc


def _def_name(title: str, name: str) -> str:
    return title + "".join(part[:1].upper() + part[1:] for part in re.split(r"[^A-Za-z0-9]+", name))


def _reached(c: Contract) -> set[str]:
    """The schema files openapi.json references, directly or through other schema files."""
    found: set[str] = set()
    pending: list[Any] = [c.openapi]
    while pending:
        node = pending.pop()
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str):
                target = ref.partition("#")[0]
                if target in c.documents and target not in found:
                    found.add(target)
                    pending.append(c.documents[target])
            pending.extend(node.values())
        elif isinstance(node, list):
            pending.extend(node)
    return found


def _rewrite_ref(ref: str, home: str | None, names: dict[str, str]) -> str:
    target, _, fragment = ref.partition("#")
    if not target:
        if home is None:  # a reference inside openapi.json itself
            return ref
        target = home
    if target not in names:
        raise ValueError(f"unresolvable $ref {ref!r}")
    if fragment.startswith("/$defs/"):
        name, _, rest = fragment[len("/$defs/"):].partition("/")
        return f"#/components/schemas/{_def_name(names[target], name)}" + (f"/{rest}" if rest else "")
    return f"#/components/schemas/{names[target]}{fragment}"


def unusable_text(value: Any, path: tuple[Any, ...] = ()) -> tuple[str, str] | None:
    """The first string in `value` (keys included) that is not Unicode text, as (field, reason): a lone
    UTF-16 surrogate (`"\\ud800"` is valid JSON syntax, but has no UTF-8 form, so no store, log or answer
    can hold it). None if every string is text."""
    if isinstance(value, str):
        reason = _text_reason(value)
        return (field_path(path), reason) if reason else None
    if isinstance(value, dict):
        for key, item in value.items():
            reason = _text_reason(key)
            if reason:
                shown = key.encode("utf-8", "backslashreplace").decode()  # the answer must be text itself
                return field_path([*path, shown]), f"is a field name that {reason}"
            found = unusable_text(item, (*path, key))
            if found:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = unusable_text(item, (*path, index))
            if found:
                return found
    return None


def _text_reason(text: str) -> str | None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"holds a lone surrogate (U+{ord(text[exc.start]):04X}), which is not Unicode text"
    return None


MAX_JSON_DEPTH = 128
"""How deep a JSON body may nest (serde_json's limit): deeper is unusable, refused by the mock and by the proxy
before it forwards. Real requests nest a few levels; what walks JSON in Python (masking, comparing, checking
text) needs a bound well inside the interpreter's recursion limit."""

_STRUCTURE = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.S)


def nested_too_deep(raw: bytes) -> bool:
    """Whether JSON text (valid or not) nests deeper than MAX_JSON_DEPTH; read as bytes, strings skipped, and
    only when it has that many brackets at all."""
    if raw.count(b"[") + raw.count(b"{") <= MAX_JSON_DEPTH:
        return False
    depth = 0
    for found in _STRUCTURE.finditer(raw):
        token = found.group()
        if token in (b"[", b"{"):
            depth += 1
            if depth > MAX_JSON_DEPTH:
                return True
        elif token in (b"]", b"}"):
            depth -= 1
    return False
