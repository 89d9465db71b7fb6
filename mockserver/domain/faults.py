"""Fault injection: latency, error statuses and dropped connections for matching provider requests.

Rules live in the store (every worker sees them; `times` is counted down atomically). They are checked
before the provider handles the request, so a request answered by a fault changes no state.
"""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from mockserver.contract import Problem, contract
from mockserver.store import Settings

KEY = "faults"
ID_KEY = "fault-ids"
"""The last fault rule id given (a counter in the settings, shared by every worker and replica)."""


class ConnectionDropped(Exception):
    """Raised while a dropped-connection answer is being sent, so the server aborts the connection."""


class NoAnswerInTime(Exception):
    """Raised while an answer later than the client's own read timeout is being sent (the in-process
    mocks, which know it): each client library raises its own timeout error for it."""


@dataclass
class Outcome:
    latency_ms: int = 0
    status: int | None = None
    drop: bool = False
    rules: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        kind = "drop_connection" if self.drop else f"status {self.status}" if self.status else "latency"
        return f"{kind} ({', '.join(self.rules)})"


def each_rule(body: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    """The rules of a body that holds one or a list, each with the prefix its problems' fields take."""
    for index, rule in enumerate(body if isinstance(body, list) else [body]):
        yield (f"[{index}]." if isinstance(body, list) else ""), rule


def rule_problems(body: Any, paths: Mapping[str, Collection[str]]) -> list[Problem]:
    """What makes rules (one, or a list, as in contracts/admin/faults-request.json) unable ever to fire:
    a provider this mock does not serve, or a path that is the start of none of its operations' paths.
    `paths`: each served provider's operation paths (templates such as /returns/{id}/status)."""
    found = []
    for where, rule in each_rule(body):
        name = rule.get("provider")
        if name is not None and name not in paths:
            allowed = tuple(paths)
            found.append(Problem(f"{where}provider", f"{where}provider: {name!r} is not one of the valid values: "
                                                     f"{', '.join(allowed)}", "body", allowed))
            continue
        path = rule.get("path")
        candidates = sorted({p for n, ps in paths.items() if name in (None, n) for p in ps})
        if path is not None and not any(_can_start(path, template) for template in candidates):
            message = (f"{where}path: {path} starts no path of {name or 'any provider'} (paths are relative to the "
                       f"provider's base URL): {', '.join(candidates)}")
            found.append(Problem(f"{where}path", message, "body", tuple(candidates)))
    return found


def _can_start(prefix: str, template: str) -> bool:
    """Whether some concrete path of `template` (/returns/{id}/status) starts with `prefix`."""
    given, parts = prefix.split("/"), template.split("/")
    if len(given) > len(parts):
        return False
    for index, (segment, part) in enumerate(zip(given, parts, strict=False)):
        variable = part.startswith("{") and part.endswith("}")
        last = index == len(given) - 1
        if variable:
            if not segment and not last:
                return False
        elif segment != part and not (last and part.startswith(segment)):
            return False
    return True


def chaos_profile(name: str) -> list[dict[str, Any]]:
    profiles: dict[str, list[dict[str, Any]]] = contract("admin").documents["chaos.json"]["profiles"]
    return [dict(rule) for rule in profiles[name]]


def chaos_profiles() -> list[str]:
    return sorted(contract("admin").documents["chaos.json"]["profiles"])


class Rules:
    """Rules kept in the store's settings under `key` (every worker and replica sees them), each with an id
    never given before in this store (`prefix` and a counter under `id_key`), `times` counted down atomically."""

    def __init__(self, store: Settings, key: str, id_key: str, prefix: str, rng: random.Random) -> None:
        self.store = store
        self.key, self.id_key, self.prefix = key, id_key, prefix
        self.rng = rng
        """Whether a rule with a probability fires: one sequence of draws per process (--deterministic)."""
        self._lock = threading.Lock()

    def _set(self) -> str | None:
        raw = self.store.get_setting(self.key)
        return raw if raw and raw != "[]" else None

    def rules(self) -> list[dict[str, Any]]:
        raw = self._set()
        rules: list[dict[str, Any]] = json.loads(raw) if raw else []
        return rules

    def replace(self, rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
        start = self._take_ids(len(rules))
        numbered = [{**rule, "id": f"{self.prefix}{start + n}"} for n, rule in enumerate(rules)]
        self.store.set_setting(self.key, json.dumps(numbered))
        return numbered

    def add(self, rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
        added: list[dict[str, Any]] = []
        start = self._take_ids(len(rules))

        def change(raw: str | None) -> str:
            current = json.loads(raw) if raw else []
            added[:] = [{**rule, "id": f"{self.prefix}{start + n}"} for n, rule in enumerate(rules)]
            return json.dumps(current + added)

        self.store.update_setting(self.key, change)
        return added

    def _take_ids(self, count: int) -> int:
        """The first of `count` rule ids never given before in this store: an id names one rule for good,
        so `f1` in the journal is the same rule whatever was deleted since."""
        taken: list[int] = []

        def change(raw: str | None) -> str:
            last = int(raw or 0)
            taken[:] = [last + 1]
            return str(last + count)

        self.store.update_setting(self.id_key, change)
        return taken[0]

    def remove(self, rule_id: str | None = None) -> int:
        removed = 0

        def change(raw: str | None) -> str:
            nonlocal removed
            current = json.loads(raw) if raw else []
            kept = [r for r in current if rule_id is not None and r["id"] != rule_id]
            removed = len(current) - len(kept)
            return json.dumps(kept)

        self.store.update_setting(self.key, change)
        return removed

    def spend(self, rule_ids: list[str]) -> set[str]:
        """Atomically: count down each of these rules that has `times` left (a rule without `times` always
        applies); a rule whose `times` ran out is dropped. Answers the rules that apply."""
        applied: set[str] = set()

        def change(raw: str | None) -> str:
            applied.clear()
            current = json.loads(raw) if raw else []
            for rule in current:
                if rule["id"] not in rule_ids:
                    continue
                if "times" not in rule:
                    applied.add(rule["id"])
                elif rule["times"] > 0:
                    rule["times"] -= 1
                    applied.add(rule["id"])
            return json.dumps([rule for rule in current if rule.get("times", 1) > 0])

        self.store.update_setting(self.key, change)
        return applied


class Faults(Rules):
    def __init__(self, store: Settings, rng: random.Random) -> None:
        super().__init__(store, KEY, ID_KEY, "f", rng)

    def armed(self) -> bool:
        """Whether any rule is set (asked first on every request: most have none, and need no parsing)."""
        return self._set() is not None

    def pick(self, provider: str, method: str, path: str, account: str | None) -> Outcome | None:
        rules = self.rules()
        if not rules:
            return None
        fired = []
        with self._lock:  # one sequence of draws per process, so --deterministic runs repeat
            for rule in rules:
                if _matches(rule, provider, method, path, account) and \
                        self.rng.random() < float(rule.get("probability", 1)):
                    fired.append(rule)
        # Every fired latency rule applies (the longest delay wins); of the rules that answer (a status, a
        # dropped connection), the first one does. Only the rules that apply count a request against their `times`.
        delays = [r for r in fired if not _answers(r)]
        answering = [r for r in fired if _answers(r)]
        if any("times" in r for r in delays) or (answering and "times" in answering[0]):
            applied = self._count_down([r["id"] for r in delays if "times" in r], [r["id"] for r in answering])
            delays = [r for r in delays if "times" not in r or r["id"] in applied]
            answering = [r for r in answering if r["id"] in applied][:1]
        else:
            answering = answering[:1]
        if not delays and not answering:
            return None
        outcome = Outcome()
        for rule in delays + answering:  # several delays do not add up: the longest applies (at most 60 s)
            outcome.latency_ms = max(outcome.latency_ms, int(rule.get("latency_ms", 0)))
            outcome.rules.append(rule["id"])
        if answering:
            outcome.status = answering[0].get("status")
            outcome.drop = bool(answering[0].get("drop_connection"))
        return outcome

    def _count_down(self, delays: list[str], answering: list[str]) -> set[str]:
        """Atomically: count down each latency rule that still has `times`, and the first answering rule
        that can still answer (one with `times` left, or without `times`). Answers the rules that apply."""
        applied: set[str] = set()

        def change(raw: str | None) -> str:
            applied.clear()
            current = json.loads(raw) if raw else []
            by_id = {rule["id"]: rule for rule in current}
            for rule_id in delays:
                rule = by_id.get(rule_id)
                if rule is not None and rule.get("times", 0) > 0:
                    rule["times"] -= 1
                    applied.add(rule_id)
            for rule_id in answering:
                rule = by_id.get(rule_id)
                if rule is None:
                    continue
                if "times" not in rule:
                    applied.add(rule_id)
                    break
                if rule["times"] > 0:
                    rule["times"] -= 1
                    applied.add(rule_id)
                    break
            return json.dumps([rule for rule in current if rule.get("times", 1) > 0])

        self.store.update_setting(self.key, change)
        return applied


def _answers(rule: dict[str, Any]) -> bool:
    return rule.get("status") is not None or bool(rule.get("drop_connection"))


def _matches(rule: dict[str, Any], provider: str, method: str, path: str, account: str | None) -> bool:
    return ((rule.get("provider") in (None, provider)) and (rule.get("method") in (None, method))
            and path.startswith(rule.get("path", "")) and (rule.get("account") in (None, account)))


class DroppedBody:
    """An answer's body that starts and breaks off: the client sees the connection drop mid-response.
    `start`: what is sent first (how the provider's answer would begin)."""

    __slots__ = ("start",)

    def __init__(self, start: bytes) -> None:
        self.start = start

    def __iter__(self) -> Iterator[bytes]:
        yield self.start
        raise ConnectionDropped("connection dropped by a fault rule")


def late_body(latency_ms: float, timeout_s: float) -> Iterator[bytes]:
    """An answer that comes later than the client waits: nothing arrives in time."""
    raise NoAnswerInTime(f"no answer within the client's read timeout ({timeout_s:g} s): it took {latency_ms:g} ms")
    yield b""  # a generator: raised when the answer is read, after the journal kept the request
