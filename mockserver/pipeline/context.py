"""What one request carries from step to step: typed, in one place."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from mockserver.contract import Operation, Problem
from mockserver.contract.errors import StoreError
from mockserver.contract.validation import CheckedRequest
from mockserver.domain.clock import Clock, isoformat
from mockserver.domain.ids import IdGenerator
from mockserver.domain.variation import Variation
from mockserver.pipeline.exchange import BodyRefused, Request
from mockserver.providers.face import Face

_UNREAD = object()


@dataclass(eq=False, slots=True)
class Context:
    request: Request
    face: Face[Any]
    """The provider whose path this is (its format answers every failure)."""
    clock: Clock
    ids: IdGenerator
    relative: str = ""
    """The path below the provider's base path (`/returns/ret_1`)."""
    op: Operation | None = None
    """The contract's operation the request is for; None for a path or method the contract does not have."""
    path_values: dict[str, str] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)
    account: str | None = None
    """The account the request was authenticated as (or, behind the proxy, the one its credentials name)."""
    checked: CheckedRequest | None = None
    """The request checked against its operation (path values, query and body parsed)."""
    fault: str = ""
    """The fault rule that answered the request, if one did."""
    made_up: int | None = None
    """The status of an answer no rule gave (a fault's, a varied one's)."""
    unmetered: bool = False
    """Answered without being counted (a fault, a 408): its rate-limit headers are peeked."""
    variation: Variation | None = None
    """The variation this request's answer is drawn with (mockserver.domain.variation), if the mock varies."""
    varied: list[str] = field(default_factory=list)
    """What the variation changed (pointer: value, a latency, a status), for the journal."""
    rate_headers: dict[str, str] | None = None
    violations: list[Problem] = field(default_factory=list)
    """Each way the request (or, behind the proxy, the upstream's answer) broke the contract."""
    drift: Any = None
    """What the shadow found comparing the upstream's answer with the mock's (mockserver.contract.drift)."""
    forwarded: bool = False
    """Behind the proxy: the answer is the upstream's (not one the proxy gave itself: a refusal, a 502)."""
    shown: tuple[bytes, bytes] | None = None
    """The request and answer bodies masked for showing, made once for the journal and the recording."""
    deferred_s: float = 0.0
    _caller: object = _UNREAD
    _request_id: str | None = None
    _at: str | None = None

    @property
    def caller(self) -> str | None:
        """The account the credentials name, or None if they are unusable; decoded once per request."""
        if self._caller is _UNREAD:
            self._caller = self.face.rate_key(self.request.header("Authorization"))
        return self._caller  # type: ignore[return-value]

    @property
    def request_id(self) -> str:
        if self._request_id is None:
            self._request_id = self.ids.new("req", 24)
        return self._request_id

    @property
    def at(self) -> str:
        """The request's instant, read from the clock once: the envelope and the journal agree."""
        if self._at is None:
            try:
                self._at = isoformat(self.clock.now())
            except StoreError:  # the clock lives in a store that is away: the answer (a 503) still needs a time
                self._at = isoformat(datetime.now(UTC))
        return self._at

    def delay(self, ms: int) -> None:
        """Wait `ms` before answering: handed to the server when it sleeps for us, else slept here."""
        if self.request.defers_delays:
            self.deferred_s += ms / 1000
        else:
            time.sleep(ms / 1000)

    def body(self) -> bytes | None:
        """The request body, or None when it could not be read (too large, broken off)."""
        try:
            return self.request.body()
        except BodyRefused:
            return None
