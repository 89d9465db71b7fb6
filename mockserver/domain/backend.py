"""A provider's backend, in the manner of moto's models: its rules over the store and the clock, no HTTP.

What the rest of the mock asks of a provider's state goes here, typed, with no downcast: the record as a
read would see it now, a seeded return built in its target state, a move through the provider's own
rules, its status graph, its background work. The `Mock` holds the backends (and never an HTTP face);
the control plane and seeding reach them there, and a provider's stateless face
(`mockserver.providers.face.Face`) serves its operations over one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from mockserver.contract import Contract
from mockserver.contract.errors import ProviderError
from mockserver.domain.autopilot import Autopilot, ProviderMove, Step, presets_of
from mockserver.domain.clock import Clock, from_millis, parse_instant, to_millis
from mockserver.domain.delivery_faults import DeliveryFaults
from mockserver.domain.ids import IdGenerator
from mockserver.domain.lifecycle import Lifecycle
from mockserver.domain.webhooks import DeliveryPolicy, Webhooks
from mockserver.store import ReturnRecord, ReturnStore, Store, Transaction

Moved = Callable[[list[ProviderMove]], None]
"""Told of the moves the provider made on its own, once they are committed (the mock journals them)."""


def _ignored(moves: list[ProviderMove]) -> None:
    pass


class Backend:
    """Defaults for a provider without the capability (each says so when asked)."""

    name = "this provider"
    lifecycle: Lifecycle | None = None
    """The provider's status graph (the dashboard's picture), if it has one."""

    def settled(self, record: ReturnRecord) -> ReturnRecord:
        """The record with its time-based moves applied as of the clock, as a provider read would see it."""
        return record

    def seed_record(self, item: dict[str, Any], now: datetime) -> ReturnRecord:
        """A return of a scenario (contracts/admin/scenario.json) built in its target state, not stored."""
        raise NotImplementedError(f"{self.name} returns cannot be seeded")

    def move(self, account: str, return_id: str, status: str) -> dict[str, Any]:
        """Move a stored return to `status` through the provider's own rules (ProviderError if they refuse);
        the return as the provider answers it."""
        raise NotImplementedError(f"{self.name} returns cannot be moved from the control plane")

    def settle_in(self, tx: Transaction, record: ReturnRecord, now: datetime) -> list[ProviderMove]:
        """Make, in `tx`, the moves of `record` that are due at `now` (the caller stores it); its `due_at` set
        to its next. A provider without moves of its own has none: nothing stays due."""
        record.due_at = None
        return []

    def presets(self) -> dict[str, Any]:
        """Autopilot schedules the provider's contract names (its lifecycle.json's autopilot.presets)."""
        return {}

    webhooks: Webhooks | None = None
    """The provider's webhooks, if it sends any."""

    @property
    def counts_reads(self) -> bool:
        """Whether a client can read a return (so an autopilot move may wait for reads)."""
        return False

    def start(self) -> None:
        """Resume background work left from before a restart (e.g. webhook deliveries still pending)."""

    def close(self) -> None:
        """Stop background work."""


Change = Callable[[Transaction, ReturnRecord, datetime], ProviderError | None]
"""A change to a stored return, made in its transaction at a moment: None, or the provider's refusal."""


@dataclass(frozen=True)
class Due:
    """A move of a return that falls due at a moment of the mock's clock: the provider's own rule's (`step`
    None: an expiry, a refund's completion) or an autopilot step's."""

    at: int
    to: str
    step: Step | None
    cause: str


class LifecycleBackend(Backend):
    """A provider whose returns move through a status graph and through moves the clock makes (an expiry,
    a refund's business days, the autopilot's): what the two providers' backends do alike, each giving its
    own rules. A move the provider makes on its own happens at the moment it fell due (its history says
    so), through the same path as a client's move, and is journaled as the provider's (`on_moves`)."""

    provider: str
    lifecycle: Lifecycle
    store: ReturnStore
    clock: Clock
    autopilot: Autopilot | None = None
    on_moves: Moved = staticmethod(_ignored)
    MAX_CHAIN = 100
    """Moves made for one return at one settling at most (a schedule cannot loop: each move changes status)."""

    def get_record(self, account: str, return_id: str) -> ReturnRecord:
        """The stored return with its time-based moves applied (and saved) as of the clock."""
        raise NotImplementedError

    def _enter(self, record: ReturnRecord, status: str, at: datetime) -> None:
        raise NotImplementedError

    def _own_due(self, record: ReturnRecord) -> Due | None:
        """The provider's own time rule for the record as it is (an expiry, a refund's completion), if any."""
        return None

    def _make_own(self, tx: Transaction, record: ReturnRecord, due: Due) -> None:
        """Apply the provider's own rule at its due moment."""
        raise NotImplementedError

    def _moved(self, tx: Transaction, record: ReturnRecord, status: str, at: datetime) -> None:
        """One status move through the lifecycle (already allowed), with what the provider does on it (its
        events, queued in `tx`): a client's move and an autopilot move alike."""
        self._enter(record, status, at)

    # --- the provider's own moves ------------------------------------------------------------------

    def presets(self) -> dict[str, Any]:
        return presets_of(self.provider)

    def steps(self, account: str) -> tuple[Step, ...]:
        return self.autopilot.steps(self.provider, account) if self.autopilot is not None else ()

    def next_due(self, record: ReturnRecord) -> Due | None:
        """The record's next time-based move: its own rule's or a timed autopilot step's, whichever is first."""
        found = self._own_due(record)
        entered: int | None = None
        for step in self.steps(record.account):
            if step.timed and step.applies(self.lifecycle, record.status):
                entered = entered if entered is not None else entered_at(record)
                at = step.due(entered)
                if found is None or at < found.at:
                    found = Due(at, step.to, step, step.describe())
        return found

    def plan(self, record: ReturnRecord) -> None:
        """Set the record's `due_at` to its next time-based move's moment (None: nothing will move it)."""
        due = self.next_due(record)
        record.due_at = due.at if due is not None else None

    def settle_in(self, tx: Transaction, record: ReturnRecord, now: datetime) -> list[ProviderMove]:
        made: list[ProviderMove] = []
        now_ms = to_millis(now)
        for _ in range(self.MAX_CHAIN):
            due = self.next_due(record)
            if due is None or due.at > now_ms:
                break
            made.append(self._make(tx, record, due))
        self.plan(record)
        return made

    def _make(self, tx: Transaction, record: ReturnRecord, due: Due) -> ProviderMove:
        source = record.status
        if due.step is None:
            self._make_own(tx, record, due)
        else:
            self._moved(tx, record, due.to, from_millis(due.at))
        return ProviderMove(self.provider, record.account, record.id, source, record.status, due.at, due.cause,
                            record.resource)

    def count_reads(self, account: str, return_ids: list[str]) -> None:
        """The client read these returns (a page showed them): each counts one more read, and an autopilot
        step waiting for that many reads is made now, after the read (the next read shows it)."""
        reading = [step for step in self.steps(account) if step.after_reads is not None]
        if not reading or not return_ids:
            return
        now = self.clock.now()
        made: list[ProviderMove] = []
        with self.store.transaction() as tx:
            for return_id in return_ids:
                record = tx.get(self.provider, account, return_id)
                if record is None or not any(step.applies(self.lifecycle, record.status) for step in reading):
                    continue
                made += self.settle_in(tx, record, now)
                record.reads += 1
                step = next((s for s in reading if s.applies(self.lifecycle, record.status)
                             and record.reads >= (s.after_reads or 0)), None)
                if step is not None:
                    made.append(self._make(tx, record, Due(to_millis(now), step.to, step, step.describe())))
                    made += self.settle_in(tx, record, now)
                tx.update(record)
        self.on_moves(made)

    def _refuse(self, current: str, target: str) -> ProviderError:
        raise NotImplementedError

    def _not_found(self, return_id: str) -> ProviderError:
        raise NotImplementedError

    def settled(self, record: ReturnRecord) -> ReturnRecord:
        return self.get_record(record.account, record.id)

    def step(self, record: ReturnRecord, status: str, at: datetime) -> ProviderError | None:
        """One status step applied to a record if the graph allows it (the caller stores it); else the refusal."""
        if not self.lifecycle.can_move(record.status, status):
            return self._refuse(record.status, status)
        self._enter(record, status, at)
        return None

    def move_record(self, record: ReturnRecord, status: str, at: datetime) -> None:
        """Apply one allowed status step to a record (the caller stores it); refused otherwise."""
        refusal = self.step(record, status, at)
        if refusal is not None:
            raise refusal

    def change(self, account: str, return_id: str, change: Change) -> dict[str, Any]:
        """A stored return changed in one transaction, after the moves its clock has made; the return as
        the provider answers it. A refusal is raised after the commit: a move found on the way is kept."""
        now = self.clock.now()
        with self.store.transaction() as tx:
            record = tx.get(self.provider, account, return_id)
            if record is None:
                raise self._not_found(return_id)
            due_before = record.due_at
            made = self.settle_in(tx, record, now)
            refusal = change(tx, record, now)
            if refusal is None:
                self.plan(record)
            if made or refusal is None or record.due_at != due_before:
                tx.update(record)
        self.on_moves(made)
        if refusal is not None:
            raise refusal
        return record.resource

    def settle_stored(self, account: str, return_id: str, now: datetime) -> ReturnRecord | None:
        """The stored return with the moves due at `now` made (and saved), or None if there is none."""
        with self.store.transaction() as tx:
            record = tx.get(self.provider, account, return_id)
            if record is None:
                return None
            due_before = record.due_at
            made = self.settle_in(tx, record, now)
            if made or record.due_at != due_before:
                tx.update(record)
        self.on_moves(made)
        return record


def entered_at(record: ReturnRecord) -> int:
    """When the record entered its status (epoch ms on the mock's clock): the first of its latest run of
    history entries in that status (a refund's start adds one in the same status)."""
    at: str | None = None
    for entry in reversed(record.history):
        if entry.get("status") != record.status:
            break
        at = entry["at"]
    return to_millis(parse_instant(at)) if at is not None else 0


@dataclass(frozen=True)
class Services:
    """What a provider's backend is built from: the mock's shared parts and its own options."""

    store: Store
    clock: Clock
    ids: IdGenerator
    delivery_policy: DeliveryPolicy
    options: Mapping[str, Any] = field(default_factory=dict)
    """This provider's entry of Config.providers (what its own command-line flags set)."""
    autopilot: Autopilot | None = None
    delivery_faults: DeliveryFaults | None = None
    on_moves: Moved = _ignored
    """Told of the moves the provider made on its own (the mock journals them)."""


class ProviderEntry(Protocol):
    """What the `Mock` needs of a provider's registry entry (mockserver.providers.provider.Provider): its name, its
    contract and its backend, built over the mock's services."""

    name: str

    @property
    def contract(self) -> Contract: ...

    def backend(self, services: Services) -> Backend: ...
