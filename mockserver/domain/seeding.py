"""Preload returns in any state, for any account, from a scenario document (contracts/admin/scenario.json).

A scenario is checked whole, then stored in one transaction: either every return is there, or none.
Each provider's backend builds its own returns (`Backend.seed_record`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from mockserver.contract import Problem, contract, problems
from mockserver.contract.errors import DuplicateReturn, ProviderError
from mockserver.domain.backend import Backend, ProviderEntry
from mockserver.store import ReturnRecord, ReturnStore

SEED_SCHEMA = "seed-return.json"
"""A provider's shape of one seeded return, in its contracts folder."""


class ScenarioError(Exception):
    def __init__(self, message: str, details: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


def build(providers: Mapping[str, ProviderEntry], backends: Mapping[str, Backend], now: datetime,
          document: Any) -> list[ReturnRecord]:
    """Every return of the scenario as a record in its target state; raises ScenarioError."""
    found = problems(contract("admin").validator("scenario.json"), document, "scenario")
    if found:
        raise ScenarioError(f"The scenario does not match contracts/admin/scenario.json: {found[0].message}.",
                            [p.as_detail() for p in found])
    found = [problem for index, item in enumerate(document["returns"])
             for problem in _item_problems(providers, index, item)]
    if found:
        raise ScenarioError(f"The scenario does not match its providers' seed-return.json: {found[0].message}.",
                            [p.as_detail() for p in found])
    records: list[ReturnRecord] = []
    seen: set[tuple[str, str, str]] = set()
    for index, item in enumerate(document["returns"]):
        where = f"returns[{index}]"
        name = item["provider"]
        try:
            record = backends[name].seed_record(item, now)
        except ProviderError as exc:
            raise ScenarioError(f"{where}: {exc.message}", [{"field": where, "message": exc.message}]) from None
        key = (record.provider, record.account, record.id)
        if key in seen:
            message = f"{where}: a second {record.provider} return {record.id} for account {record.account}"
            raise ScenarioError(message, [{"field": where, "message": message}])
        seen.add(key)
        records.append(record)
    return records


def _item_problems(providers: Mapping[str, ProviderEntry], index: int, item: dict[str, Any]) -> list[Problem]:
    """An entry checked against its provider's contracts/<provider>/seed-return.json."""
    name = item["provider"]
    if name not in providers:
        where = f"returns[{index}].provider"
        return [Problem(where, f"{where}: {name!r} is not one of the valid values: {', '.join(providers)}",
                        allowed=tuple(providers))]
    schemas = providers[name].contract
    if SEED_SCHEMA not in schemas.documents:
        where = f"returns[{index}].provider"
        return [Problem(where, f"{where}: {name} returns cannot be seeded")]
    return problems(schemas.validator(SEED_SCHEMA), item, prefix=("returns", index))


def seed(store: ReturnStore, records: list[ReturnRecord]) -> list[ReturnRecord]:
    try:
        with store.transaction() as tx:
            stored = [tx.insert(record) for record in records]
    except DuplicateReturn as exc:
        message = f"return {exc} already exists: nothing from this scenario was stored"
        raise ScenarioError(message, [{"field": "returns", "message": message}]) from None
    return stored
