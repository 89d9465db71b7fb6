"""The providers in-process: `requests` calls to the real hosts answered by the same Flask app.

    from mockserver import mock_providers

    with mock_providers() as mock:
        requests.post("https://app.3plship.com/api/v1/returns", ...)
        assert mock.violations == []

A `responses` callback turns each request to a registered provider's real base URL (the absolute
`servers` entry of its OpenAPI document, e.g. https://app.3plship.com/api/v1/...) into a WSGI call of
the app (one code path with the server), with a fresh in-memory store per context.
"""

from __future__ import annotations

import dataclasses
import functools
import gc
import math
import re
from collections.abc import Callable
from contextlib import ContextDecorator
from datetime import timedelta
from typing import Any, TypeVar
from urllib.parse import urlsplit

import requests
import responses
from flask import Flask

from mockserver.contract import Violation
from mockserver.domain.autopilot import named
from mockserver.domain.clock import Clock
from mockserver.domain.config import Config
from mockserver.domain.faults import ConnectionDropped, NoAnswerInTime
from mockserver.domain.mock import Mock
from mockserver.domain.variation import SeededChooser, Variation
from mockserver.interception import (
    AiohttpInterception,
    DroppedConnection,
    HttpxInterception,
    LateAnswer,
    ProviderHostGuard,
    available,
)
from mockserver.store import MemoryStore
from mockserver.store.journal import Entry
from mockserver.web import create_app, mock_of
from mockserver.web.direct import CLIENT_TIMEOUT, wsgi_environ

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")

F = TypeVar("F", bound=Callable[..., Any])


class MockHandle:
    """What a test sees of a running mock: its app, state, clock, journal and the client's violations."""

    app: Flask

    @property
    def state(self) -> Mock:
        return mock_of(self.app)

    @property
    def mock(self) -> Mock:
        return mock_of(self.app)

    def __getattr__(self, name: str) -> Any:
        # url_<provider>: each provider's base URL (e.g. url_3plship), for whichever providers are served.
        if name.startswith("url_") and "app" in self.__dict__:
            urls = self.base_urls
            if name[4:] in urls:
                return urls[name[4:]]
        raise AttributeError(name)

    @property
    def base_urls(self) -> dict[str, str]:
        raise NotImplementedError

    @property
    def clock(self) -> Clock:
        return self.state.clock

    def advance(self, duration: str | timedelta) -> None:
        """Move the mock's clock forward (P3D, PT1H, or a timedelta) and make what fell due at once: the
        provider's own moves (expiry, refunds, the autopilot's) and the webhooks they send."""
        self.state.advance(duration)

    @property
    def journal(self) -> list[Entry]:
        """Every request and response, oldest first (bounded: Config.journal_size)."""
        return self.state.journal.entries()

    @property
    def violations(self) -> list[Violation]:
        """The requests that broke the contract, each naming the field and the reason."""
        return self.state.journal.violations()

    def reset(self) -> None:
        """Forget every return and the journal."""
        self.state.store.reset()
        self.state.journal.clear()

    def assert_no_violations(self) -> None:
        found = self.violations
        if found:
            lines = "\n".join(f"  {v.describe()}" for v in found)
            raise AssertionError(f"the code under test sent {len(found)} request(s) that break the contract:\n{lines}")


class mock_providers(MockHandle, ContextDecorator):
    """Context manager and decorator: every provider answered in-process while active, for `requests`,
    httpx (sync and async) and aiohttp clients alike (see interception.py for the last two).

    passthrough: False (default) makes requests to other hosts fail with a connection error, as `responses`
    does (loopback always passes, so a real server works beside it); True lets them reach the network; a
    list of URL prefixes lets only those through. vary: a seed to vary every answer within the contract
    (mockserver.domain.variation), as `serve --vary` does.
    """

    def __init__(self, *, passthrough: bool | list[str] = False, config: Config | None = None,
                 clock: Clock | None = None, vary: int | None = None,
                 autopilot: str | dict[str, Any] | list[dict[str, Any]] | None = None) -> None:
        self._passthrough = passthrough
        self._config = config or Config()
        if autopilot is not None:  # the provider's own moves: schedules, or a preset's name (e.g. warehouse)
            self._config = dataclasses.replace(self._config, autopilot=named(autopilot))
        self._clock = clock
        self._vary = vary
        """Vary every answer within the contract, reproducibly from this seed (as serve --vary)."""
        self._responses: responses.RequestsMock | None = None
        self._others: list[Any] = []

    def __enter__(self) -> mock_providers:
        self.app = create_app(self._config, store=MemoryStore(), clock=self._clock)
        self.notes: list[str] = []
        """What a fuzzed run drew beside the answers (the webhook deliveries), for its failure note."""
        if self._vary is not None:
            self.state.varying.use(Variation(SeededChooser(self._vary)))
        # What exists now (the test process, the contracts, the app) is left out of garbage collection
        # while the mock is active: full collections walked it every few thousand requests, a third of
        # an in-process request's time. The objects rejoin the collector's oldest generation on exit.
        gc.freeze()
        mock = responses.RequestsMock(assert_all_requests_are_fired=False)
        _forget_calls(mock)
        for provider, base in self.base_urls.items():
            pattern = re.compile(re.escape(base) + r"(/.*)?(\?.*)?$")
            for method in METHODS:
                _forget_calls(mock.add_callback(method, pattern, callback=functools.partial(self._dispatch, provider)))
        loopback = r"https?://(127\.0\.0\.1|localhost|\[::1\])[:/]"
        mock.add_passthru(re.compile(loopback))
        if self._passthrough is True:
            mock.add_passthru(re.compile(r".*"))
        else:
            # Exclusive of the providers' patterns: responses answers a request two registrations match with
            # the first, and then drops that one from its registry.
            let_through = [loopback, *(re.escape(base) for base in self.base_urls.values()),
                           *(re.escape(prefix) for prefix in self._passthrough or [])]
            for prefix in self._passthrough or []:
                mock.add_passthru(prefix)
            # Anything else: one line saying what is mocked and how to let the request through, rather than
            # responses' own list of every registered pattern (a dozen regular expressions).
            elsewhere = re.compile(f"^(?!{'|'.join(let_through)})")
            for method in METHODS:
                _forget_calls(mock.add_callback(method, elsewhere, callback=self._refuse_other_host))
        mock.start()
        self._responses = mock
        bases = self.base_urls
        others: list[Any] = [ProviderHostGuard(bases)]
        if available("httpx") and available("respx"):
            others.append(HttpxInterception(bases, self._handle, self._passthrough))
        if available("aiohttp") and available("aioresponses"):
            others.append(AiohttpInterception(bases, self._handle, self._passthrough))
        for other in others:
            other.start()
        self._others = others
        return self

    def _refuse_other_host(self, request: Any) -> tuple[int, dict[str, str], bytes]:
        mocked = ", ".join(self.base_urls.values())
        raise requests.ConnectionError(
            f"returns-mock: {request.method} {request.url} is not a provider URL (mocked in-process: {mocked}); "
            "to let it reach the network, use mock_providers(passthrough=True) or passthrough=['https://host/...']")

    def __exit__(self, *exc: object) -> None:
        gc.unfreeze()
        self.state.close()
        for other in reversed(self._others):
            other.stop()
        self._others = []
        if self._responses is not None:
            self._responses.stop()
            self._responses.reset()
            self._responses = None

    def __call__(self, func: F) -> F:  # a fresh mock for every call of the decorated function
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with mock_providers(passthrough=self._passthrough, config=self._config, clock=self._clock,
                                vary=self._vary):
                return func(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    @property
    def base_urls(self) -> dict[str, str]:
        """Each served provider's real base URL, where requests are intercepted."""
        return {name: entry.contract.real_base_url for name, entry in self.state.providers.items()
                if entry.contract.real_base_url is not None}

    def _dispatch(self, provider: str, request: requests.PreparedRequest) -> tuple[int, dict[str, str], bytes]:
        body = request.body.encode() if isinstance(request.body, str) else request.body
        timeout = _read_timeout(getattr(request, "req_kwargs", {}).get("timeout"))
        try:
            status, headers, content = self._handle(provider, str(request.method), str(request.url),
                                                    list(request.headers.items()), body or b"", timeout)
        except DroppedConnection:
            raise requests.ConnectionError(f"{request.method} {request.url}: connection dropped (fault rule)") from None
        except LateAnswer:
            host = urlsplit(str(request.url)).hostname
            raise requests.exceptions.ReadTimeout(
                f"HTTPSConnectionPool(host={host!r}, port=443): Read timed out. (read timeout={timeout:g})",
                request=request) from None
        return status, {k: v for k, v in headers if k.lower() != "content-length"}, content

    def _handle(self, provider: str, method: str, url: str, headers: list[tuple[str, str]],
                body: bytes, timeout_s: float = math.inf) -> tuple[int, list[tuple[str, str]], bytes]:
        """One request to a provider's real base URL, answered by the app (every client comes here), its
        client waiting `timeout_s` for the answer (LateAnswer: it got none in time)."""
        parts = urlsplit(url)
        entry = self.state.providers[provider]
        base_path = urlsplit(entry.contract.real_base_url or "").path
        path = entry.contract.mock_prefix + parts.path[len(base_path):]
        answer: list[Any] = []

        def start_response(status: str, response_headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            answer[:] = [int(status.split(" ", 1)[0]), response_headers]
            return None

        environ = wsgi_environ(method, parts.scheme, parts.netloc, path, parts.query, headers, body)
        environ[CLIENT_TIMEOUT] = timeout_s
        chunks = self.app(environ, start_response)
        try:
            content = b"".join(chunks)
        except ConnectionDropped:
            raise DroppedConnection(f"{method} {url}") from None
        except NoAnswerInTime:
            raise LateAnswer(f"{method} {url}") from None
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        return answer[0], answer[1], content


def _read_timeout(timeout: Any) -> float:
    """How long a `requests` call waits for its answer: timeout=, as a number, a (connect, read) pair or
    urllib3's Timeout; inf when it set none."""
    if isinstance(timeout, tuple):
        timeout = timeout[1] if len(timeout) > 1 else timeout[0]
    read = getattr(timeout, "read_timeout", timeout)  # urllib3.Timeout
    return float(read) if isinstance(read, (int, float)) and not isinstance(read, bool) else math.inf


class _Unrecorded(responses.CallList):
    """`responses` keeps every call, request and response objects with them, for its own assertions: some
    fifty objects a request, for as long as the mock is active. The mock has its bounded journal."""

    def add(self, request: Any, response: Any) -> None:
        pass

    def add_call(self, call: Any) -> None:
        pass


def _forget_calls(target: Any) -> None:
    if isinstance(getattr(target, "_calls", None), responses.CallList):
        target._calls = _Unrecorded()
