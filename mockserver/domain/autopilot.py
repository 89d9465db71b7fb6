"""Autopilot: the provider's own moves on the mock's clock (the warehouse receives, the customer ships).

A schedule, for a provider and optionally one account, lists moves of the provider's lifecycle and when
each happens on its own: a duration after the return entered the status it leaves (calendar or business
days, on the mock's clock), or after the client has read the return N times (for clients that poll). A
schedule for an account replaces the provider's own for that account. Schedules live in the settings,
so every worker and replica follows the same ones; a return's next due move is kept in its `due_at`, so
due returns are found by an indexed query (mockserver.domain.scheduler) and each move is made once.
Off by default: without a schedule nothing moves but what the provider's rules move (35up expiry,
3plship refunds).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol

from mockserver.contract import Problem, contract, field_path, folders, problems
from mockserver.domain.clock import add_business_days, from_millis, parse_duration, to_millis
from mockserver.domain.lifecycle import Lifecycle
from mockserver.store import Settings

KEY = "autopilot"
SCHEMA = "autopilot-request.json"


@dataclass(frozen=True)
class Step:
    """One move of a schedule: to a status, from a given one (or any the lifecycle allows it from), after a
    duration on the mock's clock or after a number of reads."""

    index: int
    to: str
    source: str | None
    after: str | None
    business: bool
    after_reads: int | None

    @property
    def timed(self) -> bool:
        return self.after is not None

    def applies(self, lifecycle: Lifecycle, status: str) -> bool:
        return (self.source is None or self.source == status) and lifecycle.can_move(status, self.to)

    def due(self, entered_ms: int) -> int:
        """When this move falls due for a return that entered its status at `entered_ms` (a timed step)."""
        start = from_millis(entered_ms)
        if self.business:
            return to_millis(add_business_days(start, parse_duration(self.after or "P0D").days))
        return to_millis(start + parse_duration(self.after or "P0D"))

    def describe(self) -> str:
        when = (f"after {self.after_reads} read{'s' if self.after_reads != 1 else ''}" if self.after is None
                else f"after {self.after}" + (" (business days)" if self.business else ""))
        return f"autopilot moves[{self.index}]: to {self.to} {when}"


@dataclass(frozen=True)
class ProviderMove:
    """A move the provider made on its own, as the journal records it."""

    provider: str
    account: str
    return_id: str
    source: str
    to: str
    at: int
    """When it happened, on the mock's clock (epoch ms): the moment it fell due."""
    cause: str
    resource: dict[str, Any]
    """The return as the provider answers it, right after the move."""


def presets_of(provider: str) -> dict[str, Any]:
    """The autopilot schedules a provider's contract names (its lifecycle.json's autopilot.presets)."""
    documents = contract(provider).documents
    presets: dict[str, Any] = documents.get("lifecycle.json", {}).get("autopilot", {}).get("presets", {})
    return presets


def named(value: str | dict[str, Any] | list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Schedules as given (one, or a list), or a preset by name: PRESET (the provider whose contract names it)
    or PROVIDER:PRESET. ValueError, saying which presets exist, for a name no provider (or several) has."""
    if isinstance(value, dict):
        return [value]
    if isinstance(value, list):
        return value
    provider, colon, name = value.rpartition(":")
    owners = [p for p in folders() if (not colon or p == provider) and name in presets_of(p)]
    if len(owners) == 1:
        return [{"provider": owners[0], "preset": name}]
    if owners:
        raise ValueError(f"several providers name the preset {name}: say which, e.g. {owners[0]}:{name}")
    known = [f"{p}:{preset}" for p in folders() for preset in presets_of(p)]
    raise ValueError(f"no preset {value!r} (known: {', '.join(known) or 'none'})")


class Planner(Protocol):
    """What checking a schedule needs of a provider's backend."""

    lifecycle: Lifecycle | None

    def presets(self) -> dict[str, Any]: ...

    @property
    def counts_reads(self) -> bool: ...


class Autopilot:
    """The schedules, kept in the store's settings."""

    def __init__(self, store: Settings) -> None:
        self.store = store

    def schedules(self) -> list[dict[str, Any]]:
        return list(_schedules(self.store.get_setting(KEY) or "[]"))

    def steps(self, provider: str, account: str) -> tuple[Step, ...]:
        """The moves that apply to one account's returns: its own schedule's, else the provider's."""
        raw = self.store.get_setting(KEY)
        if raw is None or raw == "[]":
            return ()
        return _steps(raw).get((provider, account)) or _steps(raw).get((provider, None)) or ()

    def put(self, schedule: dict[str, Any]) -> None:
        """Set a checked schedule (`check`), in place of the one for the same provider and account."""
        def change(raw: str | None) -> str:
            kept = [s for s in json.loads(raw or "[]")
                    if (s["provider"], s.get("account")) != (schedule["provider"], schedule.get("account"))]
            return json.dumps([*kept, schedule])

        self.store.update_setting(KEY, change)

    def remove(self, provider: str | None = None, account: str | None = None) -> int:
        """Drop the schedules of a provider and/or account (all without either); answers how many."""
        removed = 0

        def change(raw: str | None) -> str:
            nonlocal removed
            current = json.loads(raw or "[]")
            kept = [s for s in current if not ((provider is None or s["provider"] == provider)
                                                and (account is None or s.get("account") == account))]
            removed = len(current) - len(kept)
            return json.dumps(kept)

        self.store.update_setting(KEY, change)
        return removed


@functools.lru_cache(maxsize=16)
def _schedules(raw: str) -> tuple[dict[str, Any], ...]:
    return tuple(json.loads(raw))


@functools.lru_cache(maxsize=16)
def _steps(raw: str) -> dict[tuple[str, str | None], tuple[Step, ...]]:
    """Settings are read on every request and change rarely: each distinct value is parsed once."""
    return {(s["provider"], s.get("account")): tuple(
        Step(n, m["to"], m.get("from"), m.get("after"), m.get("days") == "business", m.get("after_reads"))
        for n, m in enumerate(s["moves"])) for s in json.loads(raw)}


def check(body: Any, planners: Mapping[str, Planner],
          where: tuple[Any, ...] = ()) -> tuple[dict[str, Any], list[Problem]]:
    """A schedule (contracts/admin/autopilot-request.json) checked against its provider's lifecycle, its
    preset expanded: the schedule to store, or the problems that refuse it (each naming its field)."""
    found = problems(contract("admin").validator(SCHEMA), body, prefix=where)
    if found:
        return {}, found
    prefix = field_path(list(where)) + "." if where else ""
    name = body["provider"]
    planner = planners.get(name)
    if planner is None or planner.lifecycle is None:
        movable = tuple(n for n, p in planners.items() if p.lifecycle is not None)
        return {}, [Problem(f"{prefix}provider", f"{prefix}provider: {name!r} is not one of the valid values: "
                                                 f"{', '.join(movable)}", "body", movable)]
    lifecycle = planner.lifecycle
    moves = body.get("moves")
    if "preset" in body:
        presets = planner.presets()
        if body["preset"] not in presets:
            message = (f"{prefix}preset: {body['preset']!r} is not one of {name}'s presets: "
                       f"{', '.join(presets) or 'it has none'}")
            return {}, [Problem(f"{prefix}preset", message, "body", tuple(presets))]
        moves = presets[body["preset"]]["moves"]
    found = [p for index, move in enumerate(moves) for p in _move_problems(move, f"{prefix}moves[{index}]",
                                                                          lifecycle, planner.counts_reads, name)]
    schedule = {"provider": name, **({"account": body["account"]} if "account" in body else {}),
                **({"preset": body["preset"]} if "preset" in body else {}), "moves": [dict(m) for m in moves]}
    return schedule, found


def _move_problems(move: dict[str, Any], where: str, lifecycle: Lifecycle, counts_reads: bool,
                   provider: str) -> list[Problem]:
    statuses = tuple(lifecycle.statuses)
    for field in ("to", "from"):
        if field in move and move[field] not in statuses:
            return [Problem(f"{where}.{field}", f"{where}.{field}: {move[field]!r} is not one of the valid values: "
                                                f"{', '.join(statuses)}", "body", statuses)]
    target, source = move["to"], move.get("from")
    if source is not None and not lifecycle.can_move(source, target):
        allowed = lifecycle.allowed(source)
        return [Problem(f"{where}.from", f"{where}: the {provider} lifecycle has no move from {source} to {target}"
                                         f" (from {source}: {', '.join(allowed) or 'none'})", "body", tuple(allowed))]
    sources = [s for s in statuses if lifecycle.can_move(s, target)]
    if not sources:
        return [Problem(f"{where}.to", f"{where}.to: no move of the {provider} lifecycle leads to {target}", "body")]
    if "after" in move:
        try:
            delta = parse_duration(move["after"])
        except ValueError as exc:  # "P", "PT" and "P1DT" pass the schema's pattern
            return [Problem(f"{where}.after", f"{where}.after: {exc}", "body")]
        if delta <= timedelta(0):
            return [Problem(f"{where}.after", f"{where}.after: {move['after']} is not a wait: give a positive "
                                              "duration such as P3D or PT1H", "body")]
        if move.get("days") == "business" and (delta.seconds or delta.microseconds or "W" in move["after"]):
            return [Problem(f"{where}.after", f"{where}.after: business days are counted whole (P3D), not "
                                              f"{move['after']}", "body")]
    elif not counts_reads:
        return [Problem(f"{where}.after_reads", f"{where}.after_reads: {provider} has no read of a return: "
                                                "give after instead", "body")]
    return []
