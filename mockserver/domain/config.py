"""Configuration of one mock: an object, so the CLI, the WSGI entry point and tests share it."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any

ENV_VAR = "RETURNS_MOCK_CONFIG"
SERVING_ENV_VAR = "RETURNS_MOCK_SERVING"
ADMIN_MAX_BODY = 16 * 1024 * 1024
"""A control-plane request body larger than this is answered 413 (serve --admin-max-body-bytes)."""
CONNECTIONS_CAP = 50_000
"""Connections a server worker holds at most by default, whatever the open-file limit allows."""


@dataclass(frozen=True)
class Config:
    store: str = "memory"
    """`memory` or `sqlite:PATH`."""
    max_body_bytes: int = 1024 * 1024
    body_timeout_ms: int = 10_000
    """The production server answers 408 to a request whose body has not arrived this long after its
    headers (serve --body-timeout-ms)."""
    seed: int | None = None
    """Seed for ids (ret_..., req_...); None = random."""
    self_check: bool = False
    vary: int | None = None
    """Vary every answer within the contract, with draws from this seed (serve --vary); None: as the rules give."""
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
    """Rate limit enforced at start on the providers that document one, e.g. 1000/hour, or several windows
    at once: 100/minute,5000/hour; None counts at the standard tier without 429s."""
    faults: list[dict[str, Any]] | None = None
    """Fault rules (contracts/admin/fault-rule.json) a new store starts with: --faults FILE and --chaos."""
    allow_webhook_hosts: tuple[str, ...] = ()
    """Hosts webhooks may be delivered to besides loopback ones."""
    exposed: bool = False
    """The server listens beyond loopback (serve --host 0.0.0.0): loopback webhook targets are blocked too,
    unless named in allow_webhook_hosts."""
    webhook_subscriptions_per_account: int = 20
    """Webhook subscriptions one account may hold (serve --webhook-subscriptions-per-account)."""
    webhook_faults: list[dict[str, Any]] | None = None
    """Delivery fault rules (contracts/admin/webhook-fault-rule.json) a new store starts with: serve
    --webhook-faults FILE and --webhook-chaos."""
    autopilot: list[dict[str, Any]] | None = None
    """Autopilot schedules (contracts/admin/autopilot-request.json) a new store starts with: serve --autopilot,
    the pytest marker's autopilot=."""
    webhook_attempts: int = 6
    webhook_backoff_ms: int = 1000
    """Wait before the first retry of a webhook delivery; it doubles for each next one."""
    webhook_timeout_ms: int = 5000
    send_webhooks: bool = True
    """False for a mock that mirrors a provider (proxy --shadow, drift, verify --compare-mock): its
    deliveries are queued, never sent."""
    allowed_hosts: list[str] | None = None
    """Host names answered besides loopback ones (serve --allow-host); None answers any Host (in-process
    mocks, or a server bound to a non-loopback address, behind its admin token)."""
    providers: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Each provider's own options, by provider name (see its registry entry's `serve` flags), e.g.
    {"35up": {"lifecycle": "permissive", "users": {"shop": "secret"}}, "3plship": {"keys": ["zl_test_a"]}}."""

    def options(self, provider: str) -> dict[str, Any]:
        return self.providers.get(provider, {})

    def to_env(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_env(cls) -> Config:
        raw = os.environ.get(ENV_VAR)
        return cls(**json.loads(raw)) if raw else cls()


@dataclass(frozen=True)
class Limits:
    """What every server (`serve`, `proxy`) holds its connections and requests to (mockserver.web.serving)."""

    header_timeout_ms: int = 10_000
    """A connection is closed when a request's line and headers take longer, or when it carries no request
    for this long."""
    body_timeout_ms: int = 10_000
    max_body_bytes: int = 1024 * 1024
    admin_max_body_bytes: int = ADMIN_MAX_BODY
    """A control-plane body larger than this is answered 413 without being read."""
    max_connections: int = 0
    """Connections one worker holds; past it the longest idle are closed, or new ones refused at once. 0: no
    watch (in-process, or a server that is not on a port of its own)."""
    port: int = 0
    """The port the server listens on: the watch tells its connections from the process's other sockets."""

    def to_env(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_env(cls) -> Limits:
        raw = os.environ.get(SERVING_ENV_VAR)
        return cls(**json.loads(raw)) if raw else cls()
