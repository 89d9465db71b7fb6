"""returns-mock: contracts and a stateful mock server for the 35up and 3plship returns APIs."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
