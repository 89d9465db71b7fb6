"""A provider's backend, in the manner of moto's models: its rules over the store and the clock, no HTTP.

What the rest of the mock asks of a provider's state goes here, typed, with no downcast: the record as a
read would see it now, a seeded return built in its target state, a move through the provider's own
rules, its status graph, its background work. The `Mock` holds the backends (and never an HTTP face);
the control plane and seeding reach them there, and a provider's stateless face
(`mockserver.providers.face.Face`) serves its operations over one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from mockserver.contract import Contract
from mockserver.domain.clock import Clock
from mockserver.domain.ids import IdGenerator
from mockserver.domain.lifecycle import Lifecycle
from mockserver.domain.webhooks import DeliveryPolicy
from mockserver.store import ReturnRecord, Store


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
