"""What every provider's HTTP side shares: a parsed call, and the adapter interface."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .backend import Backend
from .contracts import Contract
from .errors import ProviderError


@dataclass(frozen=True)
class Call:
    """A request that passed auth and contract validation."""

    account: str
    path: dict[str, Any]
    query: dict[str, Any]
    body: Any


Handler = Callable[[Call], tuple[int, Any]]

# Failures the HTTP layer itself detects, by kind; each provider spells the code its own way.
BAD_REQUEST = "bad_request"
UNAUTHORIZED = "unauthorized"
NOT_FOUND = "not_found"
METHOD_NOT_ALLOWED = "method_not_allowed"
PAYLOAD_TOO_LARGE = "payload_too_large"
REQUEST_TIMEOUT = "request_timeout"
VALIDATION_ERROR = "validation_error"
RATE_LIMIT_EXCEEDED = "rate_limit_exceeded"
INTERNAL_ERROR = "internal_error"
SERVICE_UNAVAILABLE = "service_unavailable"


class ProviderApi(ABC):
    """The HTTP face of one provider: auth, envelopes, error format, and a handler per operationId."""

    name: str
    contract: Contract
    backend: Backend = Backend()
    """Its rules over the store and clock (the control plane, seeding and the Mock use them through it)."""
    rate_limited = False
    """Whether every request is counted against the API key's rate limit (3plship documents one)."""

    def rate_key(self, authorization: str | None) -> str | None:
        """The key requests are counted under, or None for requests without usable credentials."""
        try:
            return self.authenticate(authorization)
        except ProviderError:
            return None

    @property
    @abstractmethod
    def handlers(self) -> dict[str, Handler]: ...

    @abstractmethod
    def authenticate(self, authorization: str | None) -> str:
        """The account the credentials name; raises ProviderError(401) if they are missing or bad."""

    @abstractmethod
    def code(self, kind: str) -> str:
        """This provider's error code for a failure kind of the HTTP layer."""

    @abstractmethod
    def success_body(self, payload: Any, request_id: str, timestamp: str) -> Any: ...

    @abstractmethod
    def error_body(self, error: ProviderError, request_id: str, timestamp: str) -> Any: ...

    def start(self) -> None:  # noqa: B027 - most providers have no background work
        """Resume background work left from before a restart (e.g. webhook deliveries still pending)."""

    def close(self) -> None:  # noqa: B027
        """Stop background work."""

    def error(self, status: int, kind: str, message: str,
              details: list[dict[str, Any]] | None = None,
              headers: dict[str, str] | None = None) -> ProviderError:
        return ProviderError(status, self.code(kind), message, details, headers)
