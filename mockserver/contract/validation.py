"""One check of a request against its operation's contract, for every terminal that needs it: the mock
answers its first refusal in the provider's format, the proxy records every problem (and refuses it under
--strict). No HTTP framework here: the caller hands over the path values, the query, the Content-Type and
the raw body.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_to_bytes

import orjson

from mockserver.contract import (
    BASE_URI,
    FORMAT_CHECKER,
    MAX_JSON_DEPTH,
    Operation,
    Problem,
    Validator,
    json_text,
    nested_too_deep,
    problems,
    unusable_text,
)


@dataclass(frozen=True)
class Refusal:
    """Why the request cannot be served: 400 (not usable: no body, not JSON, not text) or 422 (it breaks
    the contract), with a message for the client and each problem as a detail."""

    status: int
    message: str
    problems: list[Problem]


@dataclass
class CheckedRequest:
    path: dict[str, Any] = field(default_factory=dict)
    query: dict[str, Any] = field(default_factory=dict)
    body: Any = None
    ignored: list[Problem] = field(default_factory=list)
    """Query parameters the operation does not know: ignored, as a real API ignores them, yet recorded."""
    refusals: list[Refusal] = field(default_factory=list)
    """Each stage that failed, in the order the mock checks them (path, query, body): it answers the first."""

    def all_problems(self) -> list[Problem]:
        return [*self.ignored, *(p for refusal in self.refusals for p in refusal.problems)]


def check_request(op: Operation, path_values: Mapping[str, str], query: Mapping[str, str],
                  content_type: str | None, raw: bytes, undecodable: Sequence[Problem] = ()) -> CheckedRequest:
    """`undecodable`: query parameters that are not text (query_values): the query is then unusable (400)."""
    checked = CheckedRequest(ignored=list(op.unknown_query(query)))
    for location, given in (("path", path_values), ("query", query)):
        if location == "query" and undecodable:
            checked.refusals.append(_unusable(f"Request query is not usable: {undecodable[0].message}.",
                                              *undecodable))
            continue
        values, found = op.check_parameters(location, given)
        if found:
            checked.refusals.append(invalid(found))
        elif location == "path":
            checked.path = values
        else:
            checked.query = values
    if op.body_validator is not None:
        body, refusal = _body(op, content_type, raw)
        if refusal is not None:
            checked.refusals.append(refusal)
        checked.body = body
    return checked


def json_mimetype(content_type: str | None) -> str | None:
    """None when `content_type` is JSON (application/json or any +json type); else the media type it
    names instead ("" when there is none)."""
    mimetype = (content_type or "").split(";", 1)[0].strip().lower()
    return None if mimetype == "application/json" or mimetype.endswith("+json") else mimetype


def invalid(found: list[Problem]) -> Refusal:
    more = f" (and {len(found) - 1} more problem{'s' if len(found) > 2 else ''})" if len(found) > 1 else ""
    return Refusal(422, f"Request does not match the contract: {found[0].message}{more}.", found)


def _unusable(message: str, *problem: Problem) -> Refusal:
    return Refusal(400, message, list(problem))


def query_values(raw: bytes) -> tuple[dict[str, str], list[Problem]]:
    """A query string's parameters (each name's first value) decoded from its bytes: `+` and percent-escapes
    undone, then UTF-8. A name or value that is not UTF-8 is a problem naming it (never a guess: a replaced
    character would look up, or store, something the client did not send)."""
    values: dict[str, str] = {}
    found: list[Problem] = []
    for part in raw.split(b"&") if raw else ():
        if not part:
            continue
        name, _, value = part.partition(b"=")
        name, value = _unquote(name), _unquote(value)
        try:
            text = name.decode("utf-8")
        except UnicodeDecodeError as exc:
            shown = name.decode("utf-8", "backslashreplace")
            found.append(Problem(shown, f"the query parameter name {shown} is not UTF-8 text (byte {exc.start})",
                                 "query"))
            continue
        try:
            values.setdefault(text, value.decode("utf-8"))
        except UnicodeDecodeError as exc:
            found.append(Problem(text, f"{text} is not UTF-8 text (byte {exc.start} of its value)", "query"))
    return values, found


def _unquote(raw: bytes) -> bytes:
    if b"+" in raw:
        raw = raw.replace(b"+", b" ")
    return unquote_to_bytes(raw) if b"%" in raw else raw


def _body(op: Operation, content_type: str | None, raw: bytes) -> tuple[Any, Refusal | None]:
    if not raw:
        if op.body_required:
            return None, _unusable("Request body is required: send a JSON object.",
                                   Problem("", "the body is empty", "body"))
        return {}, None
    mimetype = json_mimetype(content_type)
    if mimetype is not None:
        message = f"Content-Type must be application/json, not {mimetype or 'missing'}."
        return None, _unusable(message, Problem("Content-Type", message, "header"))
    if nested_too_deep(raw):
        deep = f"the body nests deeper than {MAX_JSON_DEPTH} levels"
        return None, _unusable(f"Request body is not usable: {deep}.", Problem("", deep, "body"))
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:  # refused, or beyond orjson (big integers, lone surrogates): the stdlib says
        body, reason = _parse_json(raw)
        if reason is not None:
            return None, _unusable(f"Request body is not valid JSON: {reason}.", Problem("", reason, "body"))
        unusable = unusable_text(body)
        if unusable is not None:
            name, why = unusable
            message = f"{name or 'body'} {why}."
            return None, _unusable(f"Request is not usable: {message}", Problem(name, message, "body"))
    assert op.body_validator is not None
    found = problems(op.body_validator, body)
    return body, (invalid(found) if found else None)


def _parse_json(raw: bytes) -> tuple[Any, str | None]:
    try:
        return json_text.loads(raw.decode("utf-8")), None
    except UnicodeDecodeError as exc:
        return None, f"the body is not valid UTF-8 (byte {exc.start})"
    except RecursionError:
        return None, "the body is nested too deeply"
    except ValueError as exc:
        return None, str(exc)


# --- the answer's side (the proxy, verify, HAR checks) ---------------------------------------------


def _json(body: bytes | None, content_type: str | None) -> tuple[object, Problem | None]:
    """A response body as JSON, or why it is not."""
    if not body:
        return None, None
    mimetype = json_mimetype(content_type)
    if mimetype is not None:
        return None, Problem("Content-Type", f"Content-Type is {mimetype or 'missing'}, not application/json",
                             "header", side="response")
    if nested_too_deep(body):
        return None, Problem("", f"body nests deeper than {MAX_JSON_DEPTH} levels", side="response")
    try:
        return json_text.loads(body.decode("utf-8")), None
    except (UnicodeDecodeError, ValueError) as exc:
        return None, Problem("", f"body is not valid JSON: {exc}", side="response")
    except RecursionError:
        return None, Problem("", "body is nested too deeply to be checked", side="response")


def on_side(side: str, problem: Problem) -> Problem:
    """A problem of the request or the response, named by its field (or, without one, its location)."""
    return dataclasses.replace(problem, side=side,
                               field=problem.field or (problem.location if problem.location != "response" else ""))


def check_response(op: Operation, status: int, content_type: str | None, body: bytes | None,
                   headers: Sequence[tuple[str, str]] | None = None) -> list[Problem]:
    """Every way an answer to `op` breaks the contract: an undocumented status, a required header missing
    or a header's value (when `headers` are given), or its body."""
    findings: list[Problem] = []
    if status not in op.responses:
        documented = ", ".join(str(code) for code in sorted(op.responses))
        findings.append(Problem("status", f"status {status} is not documented for {op.operation_id} "
                                          f"(documented: {documented})", "status", side="response"))
        return findings
    if headers is not None:
        findings += _headers(op, status, headers)
    validator = op.responses[status]
    parsed, bad = _json(body, content_type)
    if bad:
        findings.append(bad)
    elif validator is not None:
        if not body:
            findings.append(Problem("", "the response has no body", side="response"))
        else:
            findings += [on_side("response", p) for p in problems(validator, parsed, "response")]
    return findings


def _headers(op: Operation, status: int, headers: Sequence[tuple[str, str]]) -> list[Problem]:
    given = {name.lower(): value for name, value in reversed(headers)}
    found: list[Problem] = []
    for header in op.declared[status].headers if status in op.declared else ():
        value = given.get(header.name.lower())
        where = header.where.removeprefix(BASE_URI)
        if value is None:
            if header.required:
                found.append(Problem(header.name, f"the response header {header.name} is required (status {status})",
                                     "header", schema=where, side="response"))
            continue
        for problem in problems(_header_validator(header.where, header.schema), value, "header", (header.name,)):
            found.append(dataclasses.replace(problem, schema=where, side="response"))
    return found


_HEADER_VALIDATORS: dict[str, Any] = {}


def _header_validator(where: str, schema: dict[str, Any]) -> Any:
    validator = _HEADER_VALIDATORS.get(where)
    if validator is None:
        validator = _HEADER_VALIDATORS[where] = Validator({**schema, "$id": where.replace("#", "-header.json#")
                                                          .partition("#")[0]}, format_checker=FORMAT_CHECKER)
    return validator
