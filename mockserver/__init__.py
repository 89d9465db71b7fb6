"""returns-mock: contracts and a stateful mock server for the 35up and 3plship returns APIs."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from mockserver.version import __version__

__all__ = ["Config", "FrozenClock", "__version__", "create_app", "mock_providers"]

if TYPE_CHECKING:
    from mockserver.domain.clock import FrozenClock
    from mockserver.domain.config import Config
    from mockserver.inprocess import mock_providers
    from mockserver.web import create_app

_PUBLIC = {"mock_providers": "mockserver.inprocess", "create_app": "mockserver.web",
           "Config": "mockserver.domain.config", "FrozenClock": "mockserver.domain.clock"}


def __getattr__(name: str) -> Any:
    # Imported lazily: the server's worker processes need neither responses nor requests.
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(name)
