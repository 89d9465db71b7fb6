"""Seeding from a recording: the returns a HAR file shows, in the last state their provider reported.

`serve --seed-file recording.har` (a `returns-mock proxy --record` file, or any HAR of these APIs) becomes
a scenario (contracts/admin/scenario.json): each return the provider answered with, as of its last
answer, under the account the recording names (`_account` of the entry, written by the proxy for
non-secret accounts such as a 35up username) or the one given per provider (`--har-account`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from mockserver.contract import Contract, json_text, problems
from mockserver.providers.provider import Provider


class RecordingError(Exception):
    pass


def project(value: Any, schema: dict[str, Any], contract: Contract) -> Any:
    """`value` cut down to what `schema` (a request schema) accepts: the create body of a stored return."""
    while "$ref" in schema and schema["$ref"] in contract.documents:
        schema = contract.documents[schema["$ref"]]
    if isinstance(value, dict) and "properties" in schema:
        return {k: project(v, schema["properties"][k], contract) for k, v in value.items()
                if k in schema["properties"] and v is not None}
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [project(v, schema["items"], contract) for v in value]
    return value


def scenario_from_har(document: Any, providers: Mapping[str, Provider], accounts: Mapping[str, str],
                      locate: Any) -> dict[str, Any]:
    """The scenario a recording shows. `locate(url)` -> (provider, path) or None."""
    log = document.get("log") if isinstance(document, dict) else None
    if not isinstance(log, dict) or not isinstance(log.get("entries"), list):
        raise RecordingError("not a HAR file: no log.entries")
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for index, entry in enumerate(document["log"]["entries"]):
        url, status, text = _exchange(entry, f"log.entries[{index}]")
        found = locate(url)
        if found is None or found[0] not in providers or not 200 <= status < 300:
            continue
        name = found[0]
        try:
            body = json_text.loads(text or "null")
        except ValueError:
            continue
        provider = providers[name]
        schema = provider.contract.validator("return.json")
        account = accounts.get(name) or entry.get("_account")
        for resource in provider.recorded_resources(body):
            if problems(schema, resource, "response"):
                continue
            if not account:
                raise RecordingError(f"the recording does not name the {name} account: give --har-account "
                                     f"{name}=ACCOUNT")
            latest[(name, str(resource["id"]))] = {"provider": name, "account": account,
                                                   **provider.seed_item(resource)}
    return {"description": "returns as a recording last showed them", "returns": list(latest.values())}


def _exchange(entry: Any, where: str) -> tuple[str, int, str | None]:
    """(request URL, response status, response text) of one HAR entry, each of the type HAR 1.2 gives it;
    anything else is a RecordingError naming the entry and the field."""
    if not isinstance(entry, dict):
        raise RecordingError(f"{where}: an entry must be an object, not {json.dumps(entry)[:40]}")
    request, response = entry.get("request"), entry.get("response")
    if not isinstance(request, dict) or not isinstance(request.get("url"), str):
        raise RecordingError(f"{where}.request.url: a HAR entry's request must have a url (a string)")
    if not isinstance(response, dict):
        raise RecordingError(f"{where}.response: a HAR entry must have a response (an object)")
    status = response.get("status")
    if not isinstance(status, int) or isinstance(status, bool) or not 0 <= status <= 999:
        raise RecordingError(f"{where}.response.status: must be an HTTP status (an integer), not "
                             f"{json.dumps(status)[:40]}")
    content = response.get("content", {})
    text = content.get("text") if isinstance(content, dict) else None
    if text is not None and not isinstance(text, str):
        raise RecordingError(f"{where}.response.content.text: must be a string")
    return request["url"], status, text
