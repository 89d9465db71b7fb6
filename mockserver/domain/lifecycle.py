"""Transition graphs read from contracts/<provider>/lifecycle.json."""

from __future__ import annotations

from typing import Any, Literal

Mode = Literal["strict", "permissive"]
MODES: tuple[Mode, ...] = ("strict", "permissive")


class Lifecycle:
    """Which statuses a return may move to. `strict` follows the graph; `permissive` allows any move to
    another status except out of a final one."""

    def __init__(self, data: dict[str, Any], statuses: list[str], mode: Mode = "strict") -> None:
        transitions: dict[str, Any] = data["transitions"]
        if set(transitions) != set(statuses) or len(transitions) != len(statuses):
            missing = sorted(set(statuses) ^ set(transitions))
            raise ValueError(f"lifecycle nodes and status enum differ: {missing}")
        for source, edge in transitions.items():
            unknown = [s for s in edge["to"] if s not in transitions]
            if unknown:
                raise ValueError(f"lifecycle: {source} -> unknown status {unknown}")
        if mode not in MODES:
            raise ValueError(f"unknown lifecycle mode {mode!r}; use strict or permissive")
        self.statuses = statuses
        self.initial: str = data["initial"]
        self.final: list[str] = list(data.get("final", []))
        self.mode = mode
        self._graph: dict[str, list[str]] = {s: list(e["to"]) for s, e in transitions.items()}

    def allowed(self, current: str) -> list[str]:
        if self.mode == "permissive":
            if current in self.final:
                return []
            return [s for s in self.statuses if s != current]
        return list(self._graph[current])

    def can_move(self, current: str, target: str) -> bool:
        return target in self.allowed(current)
