"""Configuration of one mock: an object, so the CLI, the WSGI entry point and tests share it."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from typing import Any

from .lifecycle import Mode

ENV_VAR = "RETURNS_MOCK_CONFIG"


@dataclass(frozen=True)
class Config:
    store: str = "memory"
    """`memory` or `sqlite:PATH`."""
    lifecycle: Mode = "strict"
    """35up transition checking: `strict` (the graph) or `permissive` (any move but out of closed)."""
    return_window_days: int | None = None
    """35up: days in awaiting_return before a return expires; None = contracts/35up/lifecycle.json."""
    max_body_bytes: int = 1024 * 1024
    seed: int | None = None
    """Seed for ids (ret_..., req_...); None = random."""
    self_check: bool = False
    """Validate every response against the contract; a mismatch raises ContractViolation."""
    journal_size: int = 1000
    """How many requests (and contract violations) the journal keeps; the oldest go first."""
    workers: int = 1
    """Worker processes serving this configuration (they share the SQLite store)."""
    clock: str = "real"
    """`real` (ticking, movable through /__admin/clock) or `frozen` (moves only when told to)."""
    clock_start: str | None = None
    """ISO-8601 instant the clock starts at (default: now)."""
    admin_token: str | None = None
    """When set, every /__admin call needs Authorization: Bearer <token>."""
    seed_file: str | None = None
    """A scenario (contracts/admin/scenario.json) each new in-memory store is seeded with."""
    rate_limit: str | None = None
    """3plship rate limit enforced at start, e.g. 1000/hour; None counts at the standard tier without 429s."""
    faults: list[dict[str, Any]] | None = None
    """Fault rules (contracts/admin/fault-rule.json) a new store starts with: --faults FILE and --chaos."""
    allow_webhook_hosts: tuple[str, ...] = ()
    """Hosts webhooks may be delivered to besides loopback ones."""
    webhook_attempts: int = 6
    webhook_backoff_ms: int = 1000
    """Wait before the first retry of a webhook delivery; it doubles for each next one."""
    webhook_timeout_ms: int = 5000
    users_35up: dict[str, str] | None = None
    """35up Basic credentials (username -> password) that are accepted; None = any well-formed pair."""
    keys_3plship: list[str] | None = None
    """3plship API keys that are accepted; None = any zl_live_... / zl_test_... key."""

    def to_env(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_env(cls) -> Config:
        raw = os.environ.get(ENV_VAR)
        return cls(**json.loads(raw)) if raw else cls()
