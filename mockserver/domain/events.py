"""Webhook events as a provider's contract describes them, written nowhere else.

The OpenAPI document's `webhooks` section names every event type and the schema of its body; a schema the
mock fills itself carries `x-event`: each property of the event in order and where its value comes from
(a new id with the given prefix, the event's type, the moment it happened on the mock's clock, the
resource), the resource's own constant properties first (3plship's `"object": "return"`). The resource an
event speaks of is the `x-identifier` inside it (what out-of-order delivery groups by), and a built event
is checked against its schema like any answer (a trigger's overrides included).
"""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any

from mockserver.contract import Contract, Problem, contract, problems, schemas
from mockserver.domain.clock import isoformat

SOURCES = ("id", "type", "moment", "resource")
"""Where x-event may take a property's value from."""


class Events:
    """One provider's webhook events."""

    def __init__(self, provider: str) -> None:
        self.contract: Contract = contract(provider)
        self.schemas: dict[str, str] = {}
        for name, item in self.contract.openapi.get("webhooks", {}).items():
            ref = item["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
            self.schemas[name] = str(ref).rsplit("/", 1)[-1]

    def sent(self) -> list[str]:
        """The event types the mock itself sends (their schema says how it fills one)."""
        return [name for name, schema in self.schemas.items() if "x-event" in self.contract.schema(schema)]

    def build(self, event_type: str, resource: dict[str, Any], event_id: str, at: datetime) -> dict[str, Any]:
        """The event announcing `resource` (as it is at `at`), with id `event_id`."""
        fill = self._fill(event_type)
        values = {"id": event_id, "type": event_type, "moment": isoformat(at),
                  "resource": {**_constants(self.schemas[event_type], self.contract.provider), **resource}}
        return {name: values[source] for name, source in fill["properties"].items()}

    def id_prefix(self, event_type: str) -> str:
        return str(self._fill(event_type)["id_prefix"])

    def _fill(self, event_type: str) -> dict[str, Any]:
        fill: dict[str, Any] = self.contract.schema(self.schemas[event_type])["x-event"]
        return fill

    def problems(self, event_type: str, event: Any, prefix: tuple[Any, ...] = ()) -> list[Problem]:
        return problems(self.contract.validator(self.schemas[event_type]), event, "body", prefix)

    def subject(self, event_type: str, event: Any) -> str | None:
        """The id of the resource the event speaks of (the first `x-identifier` inside it)."""
        validator = self.contract.validator(self.schemas[event_type])
        resolver = schemas.resolver_for(validator, self.contract.registry)
        return next((value for schema, value in schemas.parts(validator.schema, resolver, event)
                     if schema.get("x-identifier") and isinstance(value, str)), None)

    def moment_of(self, event_type: str, resource: dict[str, Any], history: list[dict[str, Any]]) -> str | None:
        """When the state an event announces began, from a return's history: the latest entry into the status
        its lifecycle sends the event for (the first status for the create event); None if never."""
        events = self.contract.lifecycle.get("events", {})
        status = next((s for s, name in events.get("on_status", {}).items() if name == event_type), None)
        if events.get("on_create") == event_type:
            return str(history[0]["at"]) if history else None
        at = next((entry["at"] for entry in reversed(history) if entry.get("status") == status), None)
        return str(at) if at is not None else None


@functools.cache
def _constants(schema_name: str, provider: str) -> dict[str, Any]:
    """The resource's constant properties (`const`), which every event's resource starts with."""
    c = contract(provider)
    validator = c.validator(schema_name)
    resolver = schemas.resolver_for(validator, c.registry)
    fill = c.schema(schema_name)["x-event"]["properties"]
    name = next(n for n, source in fill.items() if source == "resource")
    resource, resolver = schemas.resolved(validator.schema["properties"][name], resolver)
    properties, _ = schemas.properties(resource, resolver)
    return {key: sub["const"] for key, sub in properties.items() if "const" in sub}
