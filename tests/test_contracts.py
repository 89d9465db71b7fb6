"""The contracts themselves: well-formed, complete, provenance-marked, and agreeing with the fixtures."""

from __future__ import annotations

import json
import re
from collections import deque
from collections.abc import Iterator
from typing import Any

import pytest
from helpers import FIXTURES, ROOT
from openapi_spec_validator import validate

from mockserver.contract import FORMAT_CHECKER, Validator, contract, problems
from mockserver.providers.registry import REGISTRY

PROVIDERS = REGISTRY.names()

PROVENANCE = {"documented", "inferred"}


def walk(node: Any) -> Any:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_every_schema_file_has_id_title_description_and_provenance(provider: str) -> None:
    c = contract(provider)
    assert len(c.schema_files) >= 8
    for name in c.schema_files:
        doc = c.schema(name)
        assert doc["$schema"] == "https://json-schema.org/draft/2020-12/schema", name
        assert doc["$id"].endswith(f"/{provider}/{name}"), name
        assert doc["title"] and doc["description"], name
        assert doc["x-provenance"]["source"] in PROVENANCE, name
        assert doc["x-provenance"]["note"], name


@pytest.mark.parametrize("provider", PROVIDERS)
def test_openapi_documents_are_valid_openapi_31(provider: str) -> None:
    c = contract(provider)
    # As written in contracts/ (external $refs to the schema files beside it) ...
    validate(c.openapi, base_uri=(ROOT / "contracts" / provider / "openapi.json").as_uri())
    # ... and as served: self-contained.
    bundled = c.bundled_openapi()
    validate(bundled)
    refs = [n["$ref"] for n in walk(bundled) if "$ref" in n]
    assert refs and all(r.startswith("#/") for r in refs)
    # Whole components only: Dredd's parser and several client generators follow no pointer into one.
    whole = re.compile(r"#/components/(schemas|parameters|responses|headers|securitySchemes)/[A-Za-z0-9._-]+")
    assert [r for r in refs if not whole.fullmatch(r)] == []


@pytest.mark.parametrize("provider", PROVIDERS)
def test_every_operation_and_response_is_marked_documented_or_inferred(provider: str) -> None:
    c = contract(provider)
    for path, item in c.openapi["paths"].items():
        for method, op in item.items():
            if method == "parameters":
                continue
            assert op["x-provenance"]["source"] in PROVENANCE, (path, method)
            for code, response in op["responses"].items():
                assert c.resolve(response)["x-provenance"]["source"] in PROVENANCE, (path, method, code)
                assert "application/json" in c.resolve(response)["content"], (path, method, code)
    for event, item in c.openapi.get("webhooks", {}).items():
        assert item["post"]["x-provenance"]["source"] in PROVENANCE, event
        for code, response in item["post"]["responses"].items():
            assert c.resolve(response)["x-provenance"]["source"] in PROVENANCE, (event, code)
    for scheme in c.openapi["components"]["securitySchemes"].values():
        assert scheme["x-provenance"]["source"] in PROVENANCE


# The provider pages behind the contracts: every `documented` mark names the one it comes from.
SOURCES = ("https://35up.com/docu-articles/api-integration-retuns", "https://35up.com/docu-articles/return-file",
           *(f"https://www.3plship.com/developers/docs/{page}" for page in (
               "api-reference/returns", "authentication", "errors", "rate-limits", "webhooks",
               "api-reference/webhooks-reference")))
CONSTRAINTS = {"pattern", "format", "minLength", "maxLength", "minItems", "maxItems", "minimum", "maximum",
               "exclusiveMinimum", "exclusiveMaximum"}


def marks(node: Any, where: str, inherited: str | None = None) -> Iterator[tuple[str, str | None, dict[str, Any]]]:
    """(where, the provenance it falls under, the node) for every schema node of a contract document."""
    if isinstance(node, dict):
        own = node.get("x-provenance")
        source = own["source"] if isinstance(own, dict) else inherited
        yield where, source, node
        for key, value in node.items():
            yield from marks(value, f"{where}/{key}", source)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from marks(value, f"{where}/{index}", inherited)


@pytest.mark.parametrize("folder", ["35up", "3plship", "admin"])
def test_every_documented_mark_names_its_source_page(folder: str) -> None:
    for name, doc in contract(folder).documents.items():
        for where, _, node in marks(doc, f"{folder}/{name}"):
            mark = node.get("x-provenance")
            if isinstance(mark, dict):
                assert "PROVIDERS.md" not in mark.get("note", ""), where  # not in this repository
                if mark["source"] == "documented":
                    assert any(page in mark.get("note", "") for page in SOURCES), where


@pytest.mark.parametrize("provider", PROVIDERS)
def test_constraints_added_inside_documented_schemas_carry_their_own_mark(provider: str) -> None:
    """A user must tell the provider's rule from ours: a bound or pattern on a field of a documented
    schema is marked (inferred, or documented with its page) on the field itself."""
    for name, doc in contract(provider).documents.items():
        for where, source, node in marks(doc, f"{provider}/{name}"):
            for field, schema in (node.get("properties") or {}).items():
                if source == "documented" and isinstance(schema, dict) and CONSTRAINTS & set(schema):
                    assert isinstance(schema.get("x-provenance"), dict), f"{where}/properties/{field}"


def test_security_schemes_are_basic_and_bearer() -> None:
    assert contract("35up").openapi["components"]["securitySchemes"]["basicAuth"]["scheme"] == "basic"
    assert contract("3plship").openapi["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"


@pytest.mark.parametrize(("provider", "links"), [
    ("35up", {"UpdateReturn": "updateReturn"}),
    ("3plship", {"UpdateReturnStatus": "updateReturnStatus", "ProcessRefund": "processRefund"}),
])
def test_create_links_to_every_operation_taking_its_id(provider: str, links: dict[str, str]) -> None:
    c = contract(provider)
    created = c.openapi["paths"]["/returns"]["post"]["responses"]["201"]["links"]
    assert {name: link["operationId"] for name, link in created.items()} == links


def test_servers_are_the_mock_then_the_real_provider() -> None:
    assert [s["url"] for s in contract("35up").openapi["servers"]] == ["/35up/v1", "https://api.35up.io/v1"]
    assert [s["url"] for s in contract("3plship").openapi["servers"]] == [
        "/3plship/api/v1", "https://app.3plship.com/api/v1"]


def test_list_parameters_carry_their_bounds() -> None:
    params = {p.name: p.schema for p in contract("3plship").operation("listReturns").parameters}
    assert params["limit"] == {"type": "integer", "minimum": 1, "maximum": 100, "default": 50}
    assert params["page"]["minimum"] == 1 and params["page"]["default"] == 1


MANIFEST = json.loads((FIXTURES / "manifest.json").read_text())["examples"]


@pytest.mark.parametrize("example", MANIFEST, ids=[e["file"] for e in MANIFEST])
def test_documented_examples_against_their_schemas(example: dict[str, Any]) -> None:
    c = contract(example["provider"])
    instance = json.loads((FIXTURES / example["file"]).read_text())
    found = problems(c.validator(example["schema"]), instance)
    if example["valid"]:
        assert found == []
    else:
        assert found, f"{example['file']} should break {example['schema']}: {example['note']}"


def test_every_fixture_file_is_in_the_manifest() -> None:
    listed = {e["file"] for e in MANIFEST}
    on_disk = {str(p.relative_to(FIXTURES)) for p in FIXTURES.glob("*/*.json")
               if p.parent.name in PROVIDERS}
    assert on_disk == listed


@pytest.mark.parametrize("provider", PROVIDERS)
def test_openapi_examples_validate_against_their_schemas(provider: str) -> None:
    c = contract(provider)
    checked = 0
    for op in c.operations:
        raw = c.openapi["paths"][op.path][op.method.lower()]
        if "requestBody" in raw:
            for example in c.resolve(raw["requestBody"])["content"]["application/json"]["examples"].values():
                assert op.body_validator is not None
                assert problems(op.body_validator, example["value"]) == [], (op.operation_id, example)
                checked += 1
        for code, response in raw["responses"].items():
            content = c.resolve(response).get("content", {}).get("application/json", {})
            for example in content.get("examples", {}).values():
                validator = op.responses[int(code)]
                assert validator is not None
                assert problems(validator, example["value"]) == [], (op.operation_id, code)
                checked += 1
    assert checked >= 2


def test_35up_lifecycle_covers_every_status_and_every_status_is_reachable() -> None:
    c = contract("35up")
    statuses = c.enum("status.json")
    graph = {s: e["to"] for s, e in c.lifecycle["transitions"].items()}
    assert sorted(graph) == sorted(statuses)
    seen, queue = {"created"}, deque(["created"])
    while queue:
        for nxt in graph[queue.popleft()]:
            if nxt not in seen:
                seen.add(nxt)
                queue.append(nxt)
    assert seen == set(statuses)
    assert graph["closed"] == []
    # Every status but closed leads on to closed eventually.
    for status in statuses:
        reach, queue = {status}, deque([status])
        while queue:
            for nxt in graph[queue.popleft()]:
                if nxt not in reach:
                    reach.add(nxt)
                    queue.append(nxt)
        assert "closed" in reach, status


def test_3plship_lifecycle_matches_its_status_enum() -> None:
    c = contract("3plship")
    assert list(c.lifecycle["transitions"]) == c.enum("status.json")
    assert c.lifecycle["refund"]["allowed_from"] == ["inspected"]
    assert c.lifecycle["refund"]["business_days"] == 5


def test_served_openapi_is_the_bundled_contract(client: Any) -> None:
    for provider in PROVIDERS:
        response = client.get(f"/{provider}/openapi.json")
        assert response.status_code == 200
        assert response.get_json() == contract(provider).bundled_openapi()


ODD_VALUES: list[Any] = [None, True, 0, -1, 1.5, 10**30, "", " ", "x\n", "\u0663", "a" * 300, [], {}, [1], {"x": 1}]


def _mutations(body: Any) -> Any:
    """The body with each field (at any depth) replaced by odd values, removed, or joined by an unknown one."""
    yield body
    if isinstance(body, dict):
        yield {**body, "unexpected": 1}
        for key, value in body.items():
            yield {k: v for k, v in body.items() if k != key}
            for odd in ODD_VALUES:
                yield {**body, key: odd}
            for changed in _mutations(value):
                yield {**body, key: changed}
    elif isinstance(body, list) and body:
        for changed in _mutations(body[0]):
            yield [changed, *body[1:]]
        yield [*body, *body] * 60


@pytest.mark.parametrize("provider", PROVIDERS)
def test_fast_validation_agrees_with_the_python_validator(provider: str) -> None:
    """Requests are checked by jsonschema-rs first; it must never pass what the Python validator refuses."""
    from mockserver.contract import _fast

    checked = 0
    for op in contract(provider).operations:
        if op.body_validator is None:
            continue
        examples = [json.loads(p.read_text()) for p in (FIXTURES / provider).glob("*.request.json")]
        for example in examples or [{}]:
            for body in _mutations(example):
                python_ok = not list(op.body_validator.iter_errors(body))
                assert _fast(op.body_validator).is_valid(body) == python_ok, (op.operation_id, body)
                checked += 1
    assert checked > 100


def _shipping_of(value: Any) -> Any:
    answer = json.loads((FIXTURES / "3plship" / "create-return.response.json").read_text())["data"]
    return {**answer, "return_shipping": value}


@pytest.mark.parametrize(("provider", "schema", "instance", "expected"), [
    # "a rule or a list of rules": an object is a rule, so its own problems, not "must be an array"
    ("admin", "faults-request.json", {"latency_ms": 10**12, "probability": 2},
     [("latency_ms", "latency_ms must be at most 60000"), ("probability", "probability must be at most 1")]),
    ("admin", "faults-request.json", [{"latency_ms": -1}], [("[0].latency_ms", "[0].latency_ms must be at least 0")]),
    ("admin", "faults-request.json", {"provider": "35up"},
     [("", "request body needs one of status, latency_ms, drop_connection")]),
    # "a shipment or null": an object is a shipment
    ("3plship", "return.json", _shipping_of({"carrier": 5, "tracking_number": "1Z", "status": "in_transit"}),
     [("return_shipping.tracking_url", "return_shipping.tracking_url is required"),
      ("return_shipping.carrier", "return_shipping.carrier must be a string or null, not an integer")]),
])
def test_problems_come_from_the_alternative_of_the_instances_type(
        provider: str, schema: str, instance: Any, expected: list[tuple[str, str]]) -> None:
    found = problems(contract(provider).validator(schema), instance)
    assert [(p.field, p.message) for p in found] == expected


@pytest.mark.parametrize("provider", REGISTRY.names())
def test_every_parameter_has_an_example_its_schema_accepts(provider: str) -> None:
    """Tools that make requests from the document alone (Dredd, Postman converters) need an example for
    every path and query parameter; each must be a value the contract accepts."""
    document = contract(provider).bundled_openapi()
    seen = 0
    for path, item in document["paths"].items():
        operations = [op for op in item.values() if isinstance(op, dict) and "responses" in op]
        for parameter in item.get("parameters", []) + [p for op in operations for p in op.get("parameters", [])]:
            if "$ref" in parameter:
                parameter = document["components"]["parameters"][parameter["$ref"].rsplit("/", 1)[1]]
            example = parameter.get("example", parameter.get("schema", {}).get("examples", [None])[0])
            assert example is not None, (path, parameter["name"])
            schema = {**parameter["schema"], "components": document.get("components", {})}  # its $refs resolve
            assert problems(Validator(schema, format_checker=FORMAT_CHECKER), example) == [], (path, parameter)
            seen += 1
    assert seen >= 1


def test_the_webhooks_section_documents_every_event_type() -> None:
    """All 11 documented event types, each with the schema its deliveries follow: the returns' own for the
    two this mock emits (the schema deliveries are checked against in test_webhooks), an envelope for the rest."""
    document = contract("3plship").bundled_openapi()
    types = contract("3plship").schema("webhook-event-type.json")["enum"]
    assert sorted(document["webhooks"]) == sorted(types)
    emitted = contract("3plship").schema("webhook-event.json")["properties"]["type"]["enum"]
    for event_type, item in document["webhooks"].items():
        schema = item["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        assert schema == ("#/components/schemas/WebhookEvent" if event_type in emitted
                          else "#/components/schemas/OtherWebhookEvent"), event_type


@pytest.mark.parametrize("provider", PROVIDERS)
def test_the_comparison_annotations_are_used_as_the_readme_says(provider: str) -> None:
    """`x-identifier` (an id the shadow adopts and the variation never changes) marks one required string
    property of a resource; `x-compare` says `presence` or, for a field the contract does not require,
    `when-present`; on a response header, `presence`, `scheme` or `methods`."""
    c = contract(provider)
    identified = 0
    for name in c.schema_files:
        for node in walk(c.schema(name)):
            for prop, sub in node.get("properties", {}).items() if isinstance(node.get("properties"), dict) else []:
                if isinstance(sub, dict) and sub.get("x-compare") == "when-present":
                    assert prop not in node.get("required", []), (name, prop)
            if "x-compare" in node:
                assert node["x-compare"] in ("presence", "when-present"), (name, node)
            for prop, sub in node.get("properties", {}).items() if isinstance(node.get("properties"), dict) else []:
                if isinstance(sub, dict) and sub.get("x-identifier"):
                    assert sub["x-identifier"] is True and sub.get("type") == "string", (name, prop)
                    assert prop in node.get("required", []), (name, prop)
                    identified += 1
    assert identified >= 1
    headers = [h for op in c.operations for d in op.declared.values() for h in d.headers]
    assert headers and {h.compare for h in headers} <= {"presence", "scheme", "methods"}
