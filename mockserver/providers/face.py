"""What every provider's HTTP face shares: a parsed call, the failure kinds, and the face itself.

A face is stateless (moto's `responses.py`): auth, envelopes, the error format, and a handler per
operationId over a backend it is handed. The mock's web layer, the in-process mocks and the proxy each
build the faces they need from the registry; the proxy, which has no backend, uses a face for auth and
the error format alone.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import orjson

from mockserver.contract import Contract, Operation
from mockserver.contract.errors import ProviderError
from mockserver.domain.backend import Backend


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
FORBIDDEN = "forbidden"
NOT_FOUND = "not_found"
METHOD_NOT_ALLOWED = "method_not_allowed"
PAYLOAD_TOO_LARGE = "payload_too_large"
REQUEST_TIMEOUT = "request_timeout"
VALIDATION_ERROR = "validation_error"
RATE_LIMIT_EXCEEDED = "rate_limit_exceeded"
INTERNAL_ERROR = "internal_error"
SERVICE_UNAVAILABLE = "service_unavailable"
BAD_GATEWAY = "bad_gateway"
GATEWAY_TIMEOUT = "gateway_timeout"

_KIND_OF_STATUS = {400: BAD_REQUEST, 401: UNAUTHORIZED, 403: FORBIDDEN, 404: NOT_FOUND, 405: METHOD_NOT_ALLOWED,
                   408: REQUEST_TIMEOUT, 413: PAYLOAD_TOO_LARGE, 422: VALIDATION_ERROR, 429: RATE_LIMIT_EXCEEDED,
                   500: INTERNAL_ERROR, 502: BAD_GATEWAY, 503: SERVICE_UNAVAILABLE, 504: GATEWAY_TIMEOUT}


def kind_of(status: int) -> str:
    """The failure kind an HTTP status stands for, where no rule says more (an injected fault's, the HTTP
    layer's own refusals)."""
    return _KIND_OF_STATUS.get(status, INTERNAL_ERROR if status >= 500 else BAD_REQUEST)


B = TypeVar("B", bound=Backend)


class Face(ABC, Generic[B]):
    """The HTTP face of one provider: auth, envelopes, error format, and a handler per operationId."""

    name: str
    contract: Contract
    rate_limited = False
    """Whether every request is counted against the API key's rate limit (3plship documents one)."""
    secret_accounts = False
    """Whether the account is itself a credential (an API key): then what is shown or recorded never names it."""

    def rate_key(self, authorization: str | None) -> str | None:
        """The key requests are counted under, or None for requests without usable credentials."""
        try:
            return self.authenticate(authorization)
        except ProviderError:
            return None

    def answer_start(self, op: Operation | None) -> tuple[int, bytes]:
        """The status and the first bytes of this provider's answer to `op` (its success; without an operation,
        its 404 error), as the contract writes it: what a dropped connection sends before it breaks off."""
        if op is None:
            status, schema = 404, self.contract.schema("error.json")
        else:
            status = min((s for s in op.responses if 200 <= s < 300), default=200)
            validator = op.responses.get(status)
            schema = validator.schema if validator is not None else {}
        member = self.contract.first_member(schema)
        return status, b"{" + (orjson.dumps(member) + b":" if member is not None else b"")

    @abstractmethod
    def handlers(self, backend: B) -> dict[str, Handler]:
        """The provider's operations (by operationId) served over `backend`."""

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

    def error(self, status: int, kind: str, message: str,
              details: list[dict[str, Any]] | None = None,
              headers: dict[str, str] | None = None) -> ProviderError:
        return ProviderError(status, self.code(kind), message, details, headers)
