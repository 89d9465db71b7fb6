"""What a provider is to the rest of the mock: a registry entry that builds its backend and its face.

A provider is its contracts folder, its package and one `Provider` entry in the registry
(`mockserver.providers.registry`). Everything outside the provider's package (the web layer, the CLI, in-process
mocking, the proxy, verify, HAR checks, seeding, the admin API) iterates the registry and talks to the
provider through this interface, the `Backend` it builds over the mock's store and clock (settled reads,
seeding, control-plane moves, the status graph, background work) and the stateless `Face` it builds for
HTTP (auth, envelopes, error format, handlers over a backend); none of it names a provider.
"""

from __future__ import annotations

import argparse
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib.resources.abc import Traversable
from typing import Any, Protocol

from mockserver.contract import Contract, add_folder, contract
from mockserver.domain.backend import Backend, Services
from mockserver.providers.face import Face

__all__ = ["Credentials", "Provider", "Scenario", "ScenarioClient", "Services"]


class ScenarioClient(Protocol):
    """What `verify` hands a provider's scenarios: calls against the implementation, each answer checked
    against the contract, and the expectations whose failure ends the scenario."""

    def call(self, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None,
             authenticated: bool = True) -> Any: ...

    def expect(self, response: Any, status: int, why: str) -> Any: ...

    def require(self, condition: bool, check: str, message: str, response: Any) -> None: ...


Scenario = Callable[[ScenarioClient], None]


@dataclass(frozen=True)
class Credentials:
    """What `returns-mock verify` was given to call a provider's implementation."""

    api_key: str | None = None
    username: str | None = None
    password: str | None = None


class Provider(ABC):
    """One registry entry, in the manner of moto's per-service backends: found by name, built on demand."""

    name: str
    contracts_folder: Traversable | None = None
    """Where the contract files are, if not in the package's contracts/<name>/ folder."""

    def __init__(self) -> None:
        if self.contracts_folder is not None:
            add_folder(self.name, self.contracts_folder)

    @property
    def contract(self) -> Contract:
        return contract(self.name)

    @property
    def mock_prefix(self) -> str:
        return self.contract.mock_prefix

    @property
    def real_base_url(self) -> str | None:
        return self.contract.real_base_url

    @abstractmethod
    def backend(self, services: Services) -> Backend:
        """This provider's rules over the mock's store and clock (no HTTP)."""

    @abstractmethod
    def face(self, options: Mapping[str, Any]) -> Face[Any]:
        """This provider's HTTP face (stateless), configured by its options (Config.providers[name])."""

    # --- seeding and the control plane -----------------------------------------------------------

    def recorded_resources(self, body: Any) -> list[Any]:
        """The returns a recorded answer body carries (checked against return.json by the caller)."""
        return []

    def seed_item(self, resource: dict[str, Any]) -> dict[str, Any]:
        """A scenario entry (without provider and account) that rebuilds a recorded return's state."""
        raise NotImplementedError(f"{self.name} returns cannot be seeded from a recording")

    # --- command line ----------------------------------------------------------------------------

    def add_arguments(self, serve: argparse.ArgumentParser) -> None:  # noqa: B027 - most have no flags
        """This provider's own `serve` flags (their dest names are the keys of `options`)."""

    def options(self, args: argparse.Namespace) -> dict[str, Any]:
        """This provider's options (Config.providers[name]) from the parsed `serve` flags."""
        return {}

    # --- verify: calling another implementation of this provider -----------------------------------

    credentials: tuple[str, ...] = ()
    """Which of Credentials' fields `verify` needs for this provider."""

    def auth_headers(self, credentials: Credentials) -> dict[str, str]:
        return {}

    def probe(self) -> tuple[str, str, Any, dict[str, Any] | None]:
        """A cheap request (method, path, JSON body, query) that answers 401 with bad credentials."""
        return "GET", "/", None, None

    def scenarios(self) -> list[Scenario]:
        """Scripted lifecycle scenarios `verify` runs against an implementation."""
        return []
