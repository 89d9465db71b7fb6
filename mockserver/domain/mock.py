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
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson

from mockserver.contract import Problem
from mockserver.contract.errors import ProviderError
from mockserver.domain import autopilot as schedules
from mockserver.domain import delivery_faults
from mockserver.domain.autopilot import Autopilot, ProviderMove
from mockserver.domain.backend import Backend, LifecycleBackend, ProviderEntry, Services
from mockserver.domain.clock import Clock, StoreClock, from_millis, isoformat, parse_duration, parse_instant, to_millis
from mockserver.domain.config import Config
from mockserver.domain.delivery_faults import DeliveryFaults
from mockserver.domain.faults import KEY as FAULTS_KEY
from mockserver.domain.faults import Faults
from mockserver.domain.ids import IdGenerator
from mockserver.domain.portal import Portal
from mockserver.domain.ratelimit import STANDARD_TIER, RateLimiter, RatePolicy
from mockserver.domain.scheduler import Scheduler
from mockserver.domain.seeding import ScenarioError, build, seed
from mockserver.domain.variation import Varying
from mockserver.domain.webhooks import DeliveryPolicy, Send, TriggerRefused, Webhooks
from mockserver.store import Delivery, ReturnRecord, Store, open_store
from mockserver.store.journal import Entry, Journal


class Refused(Exception):
    """Something asked of the mock that cannot be (a schedule, a fault rule, a trigger): each problem names
    its field."""

    def __init__(self, status: int, message: str, found: list[Problem]) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.problems = found


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
            backoff_ms=config.webhook_backoff_ms, timeout_ms=config.webhook_timeout_ms, send=config.send_webhooks,
            exposed=config.exposed, subscriptions_per_account=config.webhook_subscriptions_per_account)
        self.autopilot = Autopilot(self.store)
        """The provider's own moves on the mock's clock (mockserver.domain.autopilot)."""
        self.webhook_faults = DeliveryFaults(self.store, random.Random(config.seed))
        """The delivery fault rules (mockserver.domain.delivery_faults)."""
        self.providers: dict[str, ProviderEntry] = {p.name: p for p in providers}
        self.backends: dict[str, Backend] = {
            name: entry.backend(Services(self.store, self.clock, self.ids, policy, config.options(name),
                                         self.autopilot, self.webhook_faults, self.record_moves))
            for name, entry in self.providers.items()}
        self.portal = Portal(self.store, self.backends, self.clock)
        """Returns the client did not make, drawn while answers vary."""
        self.scheduler = Scheduler(self.store, self.clock, self.backends, self.record_moves,
                                   lambda _: self._start_delivering())
        if config.webhook_faults and self.store.get_setting(delivery_faults.KEY) is None:
            self.webhook_faults.replace(config.webhook_faults)
        if config.autopilot and self.store.get_setting(schedules.KEY) is None:
            self.set_autopilot(config.autopilot)
        for backend in self.backends.values():
            backend.start()
        self.scheduler.start()
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
        if only is None or "webhook_faults" in only:
            self.webhook_faults.replace(config.webhook_faults or [])
            if config.webhook_faults or only is not None:
                done.append(f"{len(config.webhook_faults or [])} webhook delivery fault rule(s)")
        if only is None or "autopilot" in only:
            self.set_autopilot(config.autopilot or [])
            if config.autopilot or only is not None:
                done.append(f"{len(config.autopilot or [])} autopilot schedule(s)")
        return done

    def check_scenario(self, document: Any) -> list[ReturnRecord]:
        """Every return of a scenario built, and its autopilot schedules checked, nothing stored; raises
        ScenarioError."""
        records = build(self.providers, self.backends, self.clock.now(), document)
        self.check_scenario_schedules(document)
        return records

    def seed(self, document: Any) -> list[ReturnRecord]:
        """Store every return of a scenario in one transaction, or none, then set its autopilot schedules
        (each in place of the one for its provider and account); raises ScenarioError."""
        records = self.check_scenario(document)
        stored = seed(self.store, records)
        if document.get("autopilot"):
            self.set_autopilot(document["autopilot"], replace=False)
        return stored

    def check_scenario_schedules(self, document: Any) -> list[dict[str, Any]]:
        """A scenario's autopilot schedules, checked; raises ScenarioError."""
        checked = []
        for index, body in enumerate(document.get("autopilot") or []):
            schedule, found = schedules.check(body, self.backends, ("autopilot", index))
            if found:
                raise ScenarioError(f"The scenario's autopilot: {found[0].message}.", [p.as_detail() for p in found])
            checked.append(schedule)
        return checked

    # --- the provider's own moves ------------------------------------------------------------------

    def check_autopilot(self, body: Any, where: tuple[Any, ...] = ()) -> dict[str, Any]:
        """A schedule checked (contracts/admin/autopilot-request.json, its provider's lifecycle); raises Refused."""
        schedule, found = schedules.check(body, self.backends, where)
        if found:
            raise Refused(422, f"{found[0].message}.", found)
        return schedule

    def set_autopilot(self, bodies: list[dict[str, Any]], *, replace: bool = True) -> list[dict[str, Any]]:
        """Set schedules (each in place of the one for its provider and account; `replace`: all others
        dropped), plan every return they concern again, and make what is due now; answers them as stored."""
        checked = [self.check_autopilot(body, (index,) if len(bodies) > 1 else ()) for index, body in
                   enumerate(bodies)]
        before = self.autopilot.schedules()
        if replace and before:
            self.autopilot.remove()
        for schedule in checked:
            self.autopilot.put(schedule)
        if self.autopilot.schedules() != before:  # a start that sets what was set already plans nothing again
            self.replan()
            self.settle()
        return checked

    def remove_autopilot(self, provider: str | None = None, account: str | None = None) -> int:
        removed = self.autopilot.remove(provider, account)
        if removed:
            self.replan()
        return removed

    def replan(self) -> None:
        """Every stored return's next time-based move worked out again (the schedules changed)."""
        for name, backend in self.backends.items():
            if not isinstance(backend, LifecycleBackend):
                continue
            known = [(r.account, r.id) for r in self.store.all(name)]
            with self.store.transaction() as tx:
                for account, return_id in known:
                    record = tx.get(name, account, return_id)
                    if record is None:
                        continue
                    before = record.due_at
                    backend.plan(record)
                    if record.due_at != before:
                        tx.update(record)

    def settle(self) -> list[ProviderMove]:
        """Every move due at the clock's now made (and journaled), every held delivery due released."""
        return self.scheduler.settle()

    def advance(self, duration: str | timedelta) -> None:
        """Move the clock forward (an ISO-8601 duration or a timedelta) and settle what fell due."""
        delta = parse_duration(duration) if isinstance(duration, str) else duration
        advance = getattr(self.clock, "advance", None)
        if advance is None:
            raise TypeError("this mock was given a clock that cannot be moved")
        advance(delta)
        self.settle()

    def record_moves(self, moves: list[ProviderMove]) -> None:
        """Journal the provider's own moves, as the provider's (origin "provider", method MOVE)."""
        for move in moves:
            entry = self.providers.get(move.provider)
            prefix = entry.contract.mock_prefix if entry is not None else f"/{move.provider}"
            self.journal.record(Entry(
                id=0, at=isoformat(from_millis(move.at)), provider=move.provider, account=move.account,
                method="MOVE", path=f"{prefix}/returns/{quote(move.return_id, safe='')}", query="", status=200,
                duration_ms=0.0, request_body=orjson.dumps({"from": move.source, "to": move.to, "by": move.cause}),
                response_body=orjson.dumps(move.resource), violations=(), origin="provider"))

    # --- webhooks ----------------------------------------------------------------------------------

    def webhooks(self) -> dict[str, Webhooks]:
        """The webhooks of each provider that sends any."""
        return {name: b.webhooks for name, b in self.backends.items() if b.webhooks is not None}

    def webhook_events(self) -> list[str]:
        """Every event type the mock sends, of every provider."""
        return [event for hooks in self.webhooks().values() for event in hooks.events.sent()]

    def add_webhook_faults(self, body: Any) -> list[dict[str, Any]]:
        """Delivery fault rules (one or a list, checked by contracts/admin/webhook-faults-request.json first)
        added; raises Refused for a rule that could never fire."""
        found = delivery_faults.rule_problems(body, self.webhook_events())
        if found:
            raise Refused(422, f"{found[0].message}.", found)
        return self.webhook_faults.add(body if isinstance(body, list) else [body])

    def trigger(self, event_type: str, record: ReturnRecord, override: dict[str, Any] | None = None) -> list[Delivery]:
        """An event built from a stored return (as a read sees it now), queued for its account's subscriptions."""
        hooks = self.webhooks().get(record.provider)
        sent = hooks.events.sent() if hooks is not None else []
        if hooks is None or event_type not in sent:
            message = (f"event: {record.provider} sends no {event_type!r} about a return" +
                       (f"; it sends {', '.join(sent)}" if sent else ""))
            raise Refused(422, message + ".", [Problem("event", message, "body", tuple(sent))])
        try:
            queued = hooks.trigger(event_type, self.settled(record), override)
        except TriggerRefused as exc:
            raise Refused(422, f"{exc.problems[0].message}.", exc.problems) from None
        return queued

    def redeliver(self, delivery_id: str) -> Delivery:
        delivery = self.store.delivery(delivery_id)
        hooks = next((h for h in self.webhooks().values() if delivery is not None
                      and delivery.event_type in h.events.schemas), None)
        if delivery is None or hooks is None:
            raise ProviderError(404, "not_found", f"No webhook delivery {delivery_id}.")
        return hooks.redeliver(delivery)

    def deliver(self, send: Send | None = None) -> list[Delivery]:
        """Attempt every delivery due now, in this thread (`Deliverer.deliver_due`): for tests and fuzzers."""
        return [d for hooks in self.webhooks().values() for d in hooks.deliverer.deliver_due(send)]

    def _start_delivering(self) -> None:
        for hooks in self.webhooks().values():
            hooks.deliverer.start()

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
        self.scheduler.stop()
        for backend in self.backends.values():
            backend.close()
