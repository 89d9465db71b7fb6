"""Check one recorded request and its response against a provider's contract."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass

from ..contracts import Operation, Problem, contract, problems
from ..validation import check_request as check
from ..validation import json_mimetype


@dataclass(frozen=True)
class Exchange:
    method: str
    path: str
    """Relative to the provider's base URL, e.g. /returns/ret_1/refund."""
    query: Mapping[str, str]
    request_content_type: str | None
    request_body: bytes | None
    status: int
    response_content_type: str | None
    response_body: bytes | None


def _json(body: bytes | None, content_type: str | None) -> tuple[object, Problem | None]:
    """A response body as JSON, or why it is not (the request side is mockserver.validation's)."""
    if not body:
        return None, None
    mimetype = json_mimetype(content_type)
    if mimetype is not None:
        return None, Problem("Content-Type", f"Content-Type is {mimetype or 'missing'}, not application/json",
                             "header", side="response")
    try:
        return json.loads(body.decode("utf-8")), None
    except (UnicodeDecodeError, ValueError) as exc:
        return None, Problem("", f"body is not valid JSON: {exc}", side="response")


def _on(side: str, problem: Problem) -> Problem:
    """A problem of the request or the response, named by its field (or, without one, its location)."""
    return dataclasses.replace(problem, side=side,
                               field=problem.field or (problem.location if problem.location != "response" else ""))


def check_exchange(provider: str, exchange: Exchange) -> tuple[str | None, list[Problem]]:
    """(operationId or None, every way the request or the response breaks the contract)."""
    op, findings = check_request(provider, exchange.method, exchange.path, exchange.query,
                                 exchange.request_content_type, exchange.request_body)
    if op is None:
        return None, findings
    findings += check_response(op, exchange.status, exchange.response_content_type, exchange.response_body)
    return op.operation_id, findings


def check_request(provider: str, method: str, path: str, query: Mapping[str, str], content_type: str | None,
                  body: bytes | None) -> tuple[Operation | None, list[Problem]]:
    """The operation a request is for (None: none of the contract's), and every way the request breaks it:
    the mock's own check (mockserver.validation), every stage of it."""
    matched = contract(provider).match(method, path)
    if matched is None:
        return None, [Problem("", f"{method} {path} is not an operation of the {provider} contract", "path")]
    op, path_values = matched
    checked = check(op, path_values, query, content_type, body or b"")
    return op, [_on("request", p) for p in checked.all_problems()]


def check_response(op: Operation, status: int, content_type: str | None, body: bytes | None) -> list[Problem]:
    """Every way an answer to `op` breaks the contract: an undocumented status, or its body."""
    findings: list[Problem] = []
    if status not in op.responses:
        documented = ", ".join(str(code) for code in sorted(op.responses))
        findings.append(Problem("status", f"status {status} is not documented for {op.operation_id} "
                                          f"(documented: {documented})", "status", side="response"))
        return findings
    validator = op.responses[status]
    parsed, bad = _json(body, content_type)
    if bad:
        findings.append(bad)
    elif validator is not None:
        if not body:
            findings.append(Problem("", "the response has no body", side="response"))
        else:
            findings += [_on("response", p) for p in problems(validator, parsed, "response")]
    return findings
