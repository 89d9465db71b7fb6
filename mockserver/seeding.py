"""Preload returns in any state, for any account, from a scenario document (contracts/admin/scenario.json).

A scenario is checked whole, then stored in one transaction: either every return is there, or none.
"""

from __future__ import annotations

from typing import Any

from .app import MockState
from .contracts import contract, problems
from .errors import DuplicateReturn, ProviderError
from .store import ReturnRecord


class ScenarioError(Exception):
    def __init__(self, message: str, details: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


def build(state: MockState, document: Any) -> list[ReturnRecord]:
    """Every return of the scenario as a record in its target state; raises ScenarioError."""
    found = problems(contract("admin").validator("scenario.json"), document)
    if found:
        raise ScenarioError(f"The scenario does not match contracts/admin/scenario.json: {found[0].message}.",
                            [p.as_detail() for p in found])
    now = state.clock.now()
    records: list[ReturnRecord] = []
    seen: set[tuple[str, str, str]] = set()
    for index, item in enumerate(document["returns"]):
        where = f"returns[{index}]"
        try:
            record = _build_35up(state, item, now) if item["provider"] == "35up" else _build_3plship(state, item, now)
        except ProviderError as exc:
            raise ScenarioError(f"{where}: {exc.message}", [{"field": where, "message": exc.message}]) from None
        key = (record.provider, record.account, record.id)
        if key in seen:
            message = f"{where}: a second {record.provider} return {record.id} for account {record.account}"
            raise ScenarioError(message, [{"field": where, "message": message}])
        seen.add(key)
        records.append(record)
    return records


def _build_35up(state: MockState, item: dict[str, Any], now: Any) -> ReturnRecord:
    core = state.returns_35up
    record = core.new_record(item["account"], item["return"], now)
    target = item.get("status", core.lifecycle.initial)
    route = core.route(target)
    if route is None:
        raise ProviderError(422, "unreachable", f"status {target} cannot be reached from {core.lifecycle.initial}")
    for status in route:
        core.move(record, status, now)
    return record


def _build_3plship(state: MockState, item: dict[str, Any], now: Any) -> ReturnRecord:
    core = state.returns_3plship
    record = core.new_record(item["account"], item["return"], now, item.get("id"))
    target = item.get("status", core.lifecycle.initial)
    refund = item.get("refund")
    if target == core.refund_rules["status_after"]:
        refund = refund if refund is not None else {}
        target = core.refund_rules["allowed_from"][0]
    for status in core.lifecycle.statuses[1:core.lifecycle.statuses.index(target) + 1]:
        core.move(record, status, now)
    if refund is not None:
        core.refund(record, refund.get("amount"), now)
        if item.get("status") == core.refund_rules["status_after"]:
            core.complete_refund(record)
    return record


def seed(state: MockState, document: Any) -> list[ReturnRecord]:
    records = build(state, document)
    try:
        with state.store.transaction() as tx:
            stored = [tx.insert(record) for record in records]
    except DuplicateReturn as exc:
        message = f"return {exc} already exists: nothing from this scenario was stored"
        raise ScenarioError(message, [{"field": "returns", "message": message}]) from None
    return stored
