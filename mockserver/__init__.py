"""returns-mock: contracts and a stateful mock server for the 35up and 3plship returns APIs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .version import __version__

__all__ = ["__version__", "mock_providers"]

if TYPE_CHECKING:
    from .inprocess import mock_providers


def __getattr__(name: str) -> Any:
    # Imported lazily: the server's worker processes need neither responses nor requests.
    if name == "mock_providers":
        from .inprocess import mock_providers

        return mock_providers
    raise AttributeError(name)
