"""The mock itself, without HTTP: store, clock, ids, journal, faults, rate limiter and provider backends.

A `Mock` is whole once constructed. It is handed its providers (registry entries) by the composition
root, `mockserver.providers.registry.build_mock`, builds their backends and holds those, never an HTTP face: the
web layer (`mockserver.web`), the in-process mocks and the proxy build the faces they serve from the
registry entries.
"""

from __future__ import annotations

import json
import random
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import Any

from mockserver.domain.backend import Backend, ProviderEntry, Services
from mockserver.domain.clock import Clock, StoreClock, parse_instant, to_millis
from mockserver.domain.config import Config
from mockserver.domain.faults import KEY as FAULTS_KEY
from mockserver.domain.faults import Faults
from mockserver.domain.ids import IdGenerator
from mockserver.domain.portal import Portal
from mockserver.domain.ratelimit import STANDARD_TIER, RateLimiter, RatePolicy
from mockserver.domain.seeding import build, seed
from mockserver.domain.variation import Varying
from mockserver.domain.webhooks import DeliveryPolicy
from mockserver.store import ReturnRecord, Store, open_store
from mockserver.store.journal import Journal


class Mock:
    def __init__(self, config: Config, providers: Iterable[ProviderEntry], *, store: Store | None = None,
                 clock: Clock | None = None) -> None:
        self.config = config
        self.store: Store = store if store is not None else open_store(config.store)
        if clock is None:
            store_clock = StoreClock(self.store)
            store_clock.ensure(config.clock, parse_instant(config.clock_start) if config.clock_start else None)
            clock = store_clock
        self.clock: Clock = clock
        self.ids = IdGenerator(config.seed)
        self.journal: Journal = self.store.journal(config.journal_size, workers=config.workers)
        self.faults = Faults(self.store, random.Random(config.seed))
        if config.faults and self.store.get_setting(FAULTS_KEY) is None:
            self.faults.replace(config.faults)
        self.varying = Varying(self.store)
        if config.vary is not None and self.varying.seed() != config.vary:
            self.varying.set(config.vary)
        default_policy = RatePolicy.parse(config.rate_limit) if config.rate_limit else None
        self.rate_limiter = RateLimiter(self.store, self.store, self.clock, default_policy)
        policy = DeliveryPolicy(
            allowed_hosts=tuple(h.lower() for h in config.allow_webhook_hosts), attempts=config.webhook_attempts,
            backoff_ms=config.webhook_backoff_ms, timeout_ms=config.webhook_timeout_ms, send=config.send_webhooks)
        self.providers: dict[str, ProviderEntry] = {p.name: p for p in providers}
        self.backends: dict[str, Backend] = {
            name: entry.backend(Services(self.store, self.clock, self.ids, policy, config.options(name)))
            for name, entry in self.providers.items()}
        self.portal = Portal(self.store, self.backends, self.clock)
        """Returns the client did not make, drawn while answers vary."""
        for backend in self.backends.values():
            backend.start()
        if config.seed_file and not self.store.shared:  # a shared store was seeded once, before the workers
            self.seed(json.loads(Path(config.seed_file).read_text()))

    def start_fresh(self, only: Collection[str] | None = None) -> list[str]:
        """What a new `serve` begins with: the configured clock, rate policy and fault rules, or of those
        only the ones named in `only` ("clock", "rate_limit", "faults": what this start was told
        explicitly; a replica joining a shared database changes nothing else). Says what it set."""
        config = self.config
        done = []
        if isinstance(self.clock, StoreClock) and (only is None or "clock" in only):
            self.clock.reset(config.clock, parse_instant(config.clock_start) if config.clock_start else None)
            done.append(f"clock {config.clock}" + (f" from {config.clock_start}" if config.clock_start else ""))
        if only is None or "rate_limit" in only:
            self.rate_limiter.set_policy(RatePolicy.parse(config.rate_limit) if config.rate_limit
                                         else RatePolicy.parse(STANDARD_TIER, False))
            done.append(f"rate limit {config.rate_limit}" if config.rate_limit else "rate limit counted, not enforced")
        if only is None or "faults" in only:
            self.faults.replace(config.faults or [])
            done.append(f"{len(config.faults or [])} fault rule(s)")
        return done

    def check_scenario(self, document: Any) -> list[ReturnRecord]:
        """Every return of a scenario built, nothing stored; raises ScenarioError."""
        return build(self.providers, self.backends, self.clock.now(), document)

    def seed(self, document: Any) -> list[ReturnRecord]:
        """Store every return of a scenario in one transaction, or none; raises ScenarioError."""
        return seed(self.store, self.check_scenario(document))

    def settled(self, record: ReturnRecord) -> ReturnRecord:
        """The record as a provider read would see it now: its time-based move applied if one is due
        (only then is the provider asked: a page of returns costs no query per return)."""
        if record.due_at is None or record.due_at > to_millis(self.clock.now()):
            return record
        return self.backends[record.provider].settled(record)

    def returns(self, provider: str | None = None, account: str | None = None) -> list[ReturnRecord]:
        """Stored returns as a provider read would see them now."""
        return [self.settled(r) for r in self.store.all(provider, account) if r.provider in self.backends]

    def close(self) -> None:
        for backend in self.backends.values():
            backend.close()
