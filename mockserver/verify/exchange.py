"""Check one recorded request and its response against a provider's contract."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from mockserver.contract import Operation, Problem, contract
from mockserver.contract.validation import check_request as check
from mockserver.contract.validation import check_response, on_side


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
    response_headers: list[tuple[str, str]] | None = None
    """None: not known (then the headers the contract declares are not checked)."""


def check_exchange(provider: str, exchange: Exchange) -> tuple[str | None, list[Problem]]:
    """(operationId or None, every way the request or the response breaks the contract)."""
    op, findings = check_request(provider, exchange.method, exchange.path, exchange.query,
                                 exchange.request_content_type, exchange.request_body)
    if op is None:
        return None, findings
    findings += check_response(op, exchange.status, exchange.response_content_type, exchange.response_body,
                               exchange.response_headers)
    return op.operation_id, findings


def check_request(provider: str, method: str, path: str, query: Mapping[str, str], content_type: str | None,
                  body: bytes | None) -> tuple[Operation | None, list[Problem]]:
    """The operation a request is for (None: none of the contract's), and every way the request breaks it:
    the mock's own check (mockserver.contract.validation), every stage of it."""
    matched = contract(provider).match(method, path)
    if matched is None:
        return None, [Problem("", f"{method} {path} is not an operation of the {provider} contract", "path")]
    op, path_values = matched
    checked = check(op, path_values, query, content_type, body or b"")
    return op, [on_side("request", p) for p in checked.all_problems()]


__all__ = ["Exchange", "check_exchange", "check_request", "check_response"]
