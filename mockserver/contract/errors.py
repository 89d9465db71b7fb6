"""Errors a provider core raises. The HTTP layer renders them in the provider's own format."""

from __future__ import annotations

from typing import Any


class ProviderError(Exception):
    """A request the provider refuses: HTTP status, the provider's error code, a message, details."""

    def __init__(self, status: int, code: str, message: str,
                 details: list[dict[str, Any]] | None = None,
                 headers: dict[str, str] | None = None, schema_locations: list[str] | None = None) -> None:
        super().__init__(message)
        self.schema_locations = schema_locations or []
        """For contract violations: where each detail's rule is written in contracts/."""
        self.status = status
        self.code = code
        self.message = message
        self.details = details or []
        self.headers = headers or {}


class StoreError(Exception):
    """The store cannot be opened or used (bad path, unreadable file)."""


class StoreUnavailable(StoreError):
    """The store's database cannot be reached right now (it is down or restarting): answered with 503."""


class SettingsChanged(Exception):
    """The settings a request began with changed before its first statement confirmed them (another worker
    or replica changed them): that statement kept nothing, and the pipeline answers the request again."""


class DuplicateReturn(Exception):
    """The store already holds a return with this id for this account."""
