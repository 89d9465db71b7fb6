"""A request and its answer as the pipeline sees them: plain data, no HTTP framework, no server.

The doors (Flask for the mock and the proxy, the in-process mocks through Flask) turn what they receive
into a `Request` and what the pipeline gives back into their own response.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from mockserver.contract import Operation, Problem
from mockserver.domain.faults import DroppedBody


class Headers(Protocol):
    """Request headers, looked up without regard to case."""

    def get(self, key: str, /) -> str | None: ...

    def items(self) -> Iterable[tuple[str, str]]: ...


class BodyRefused(Exception):
    """The request body could not be read whole: too large (413) or broken off (400)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _no_body() -> bytes:
    return b""


@dataclass(eq=False)
class Request:
    method: str
    path: str
    """As the client addressed it, decoded, the provider's prefix included."""
    query_string: str = ""
    args: Mapping[str, str] = field(default_factory=dict)
    """The query: each name's first value."""
    query_problems: Sequence[Problem] = ()
    """Query parameters that are not UTF-8 text (left out of `args`): the request's fault, naming them."""
    headers: Headers = field(default_factory=dict)  # type: ignore[assignment]
    content_type: str | None = None
    remote_addr: str | None = None
    read_body: Callable[[], bytes] = _no_body
    """Reads the body (once; it may raise BodyRefused): a body is read only when a step needs it."""
    route: tuple[Operation, dict[str, str]] | None = None
    """The operation and path values, when the door routed the request already (else the pipeline does)."""
    timed_out: bool = False
    """The server gave up waiting for the body: answered 408."""
    refused: tuple[int, str, str, str] | None = None
    """Refused at the door on its head (status, code, why, the header at fault): answered so, its body unread."""
    raw_path: str | None = None
    """The path as the client sent it, percent-escapes kept, where the server says (the proxy forwards it)."""
    defers_delays: bool = False
    """The server sleeps a latency itself after the answer is made (Answer.deferred_s), holding no thread."""
    client_timeout_s: float | None = None
    """The client's own read timeout, where the door knows it (in-process: `inf` when it set none); a
    latency beyond it is answered as the client sees it: no answer in time. None over HTTP (unknown)."""
    _body: bytes | None = None

    def body(self) -> bytes:
        if self._body is None:
            self._body = self.read_body()
        return self._body

    def header(self, name: str) -> str | None:
        return self.headers.get(name)


@dataclass(eq=False)
class Answer:
    status: int
    body: bytes | Iterable[bytes] = b""
    """Bytes, or chunks (a dropped connection's, which break off: DroppedBody)."""
    headers: list[tuple[str, str]] = field(default_factory=list)
    reason: str = ""
    """The reason phrase, where an upstream gave one."""
    deferred_s: float = 0.0
    """Latency the server is to add before sending (Request.defers_delays)."""

    @property
    def dropped(self) -> bool:
        return not isinstance(self.body, bytes)

    @property
    def data(self) -> bytes:
        """The body; of a dropped answer, what was sent before it broke off."""
        if isinstance(self.body, bytes):
            return self.body
        return self.body.start if isinstance(self.body, DroppedBody) else b""

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        return next((v for k, v in self.headers if k.lower() == lowered), None)

    def set_header(self, name: str, value: str) -> None:
        lowered = name.lower()
        self.headers = [(k, v) for k, v in self.headers if k.lower() != lowered]
        self.headers.append((name, value))

    def update_headers(self, values: Mapping[str, str]) -> None:
        replaced = {name.lower() for name in values}
        self.headers = [(k, v) for k, v in self.headers if k.lower() not in replaced]
        self.headers += values.items()

    @property
    def content_type(self) -> str | None:
        return self.header("Content-Type")


def json_answer(status: int, body: Any, headers: Mapping[str, str] | None = None) -> Answer:
    return Answer(status, orjson.dumps(body), [("Content-Type", "application/json"), *(headers or {}).items()])
