"""What one request carries from step to step: typed, in one place, instead of loose `g` attributes."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from flask import Request, g, request

from ..clock import isoformat
from ..contracts import Problem
from ..errors import StoreError
from ..http import ProviderApi
from ..mock import Mock
from ..variation import Variation

_UNREAD = object()


@dataclass
class RequestContext:
    mock: Mock
    api: ProviderApi | None
    """The provider this request is for; None for the control plane, the index and the OpenAPI documents."""
    request: Request
    """Flask's request itself (each read through its context-local proxy costs a lookup)."""
    started: float = field(default_factory=time.perf_counter)
    account: str | None = None
    """The account the request was authenticated as (set once authentication succeeded)."""
    fault: str = ""
    """The fault rule that answered the request, if one did."""
    variation: Variation | None = None
    """The variation this request's answer is drawn with (mockserver.variation), if the mock varies."""
    varied: list[str] = field(default_factory=list)
    """What the variation changed (pointer: value, a latency, a status), for the journal."""
    rate_headers: dict[str, str] = field(default_factory=dict)
    violations: list[Problem] = field(default_factory=list)
    """Each way the client's request broke its contract (the journal keeps them with the entry)."""
    _caller: object = _UNREAD
    _request_id: str | None = None
    _at: str | None = None

    @property
    def caller(self) -> str | None:
        """The account the credentials name, or None if they are unusable; decoded once per request."""
        if self._caller is _UNREAD:
            self._caller = self.api.rate_key(self.request.headers.get("Authorization")) if self.api else None
        return self._caller  # type: ignore[return-value]

    @property
    def request_id(self) -> str:
        if self._request_id is None:
            self._request_id = self.mock.ids.new("req", 24)
        return self._request_id

    @property
    def at(self) -> str:
        """The request's instant, read from the clock once: the envelope and the journal agree."""
        if self._at is None:
            try:
                self._at = isoformat(self.mock.clock.now())
            except StoreError:  # the clock lives in a store that is away: the answer (a 503) still needs a time
                self._at = isoformat(datetime.now(UTC))
        return self._at


def provider_for(mock: Mock, path: str) -> ProviderApi | None:
    """The provider whose path the request is under, and whose format its errors are answered in."""
    for name, api in mock.apis.items():
        if path == f"/{name}" or path.startswith(f"/{name}/"):
            return api
    return None


def begin(mock: Mock) -> RequestContext:
    req: Request = request._get_current_object()  # type: ignore[attr-defined]
    path = req.path
    ctx = RequestContext(mock, None if path.endswith("/openapi.json") else provider_for(mock, path), req)
    g.returns_mock = ctx
    return ctx


def current(mock: Mock) -> RequestContext:
    """This request's context (made now if the request failed before the pipeline began)."""
    ctx: RequestContext | None = g.get("returns_mock")
    return ctx if ctx is not None else begin(mock)
