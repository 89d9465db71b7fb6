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
from mockserver.domain.clock import Clock
from mockserver.domain.ids import IdGenerator
from mockserver.domain.lifecycle import Lifecycle
from mockserver.domain.webhooks import DeliveryPolicy
from mockserver.store import ReturnRecord, ReturnStore, Store, Transaction


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

    def start(self) -> None:
        """Resume background work left from before a restart (e.g. webhook deliveries still pending)."""

    def close(self) -> None:
        """Stop background work."""


Change = Callable[[Transaction, ReturnRecord, datetime], ProviderError | None]
"""A change to a stored return, made in its transaction at a moment: None, or the provider's refusal."""


class LifecycleBackend(Backend):
    """A provider whose returns move through a status graph and through moves the clock makes (an expiry,
    a refund's business days): what the two providers' backends do alike, each giving its own rules."""

    provider: str
    lifecycle: Lifecycle
    store: ReturnStore
    clock: Clock

    def get_record(self, account: str, return_id: str) -> ReturnRecord:
        """The stored return with its time-based moves applied (and saved) as of the clock."""
        raise NotImplementedError

    def _enter(self, record: ReturnRecord, status: str, at: datetime) -> None:
        raise NotImplementedError

    def _settle(self, record: ReturnRecord, now: datetime) -> bool:
        """Apply the moves whose time has come; whether any was."""
        raise NotImplementedError

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
            moved = self._settle(record, now)
            refusal = change(tx, record, now)
            if moved or refusal is None:
                tx.update(record)
        if refusal is not None:
            raise refusal
        return record.resource


@dataclass(frozen=True)
class Services:
    """What a provider's backend is built from: the mock's shared parts and its own options."""

    store: Store
    clock: Clock
    ids: IdGenerator
    delivery_policy: DeliveryPolicy
    options: Mapping[str, Any] = field(default_factory=dict)
    """This provider's entry of Config.providers (what its own command-line flags set)."""


class ProviderEntry(Protocol):
    """What the `Mock` needs of a provider's registry entry (mockserver.providers.provider.Provider): its name, its
    contract and its backend, built over the mock's services."""

    name: str

    @property
    def contract(self) -> Contract: ...

    def backend(self, services: Services) -> Backend: ...
