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

import functools
import re
from collections.abc import Callable
from contextlib import ContextDecorator
from typing import Any, TypeVar
from urllib.parse import urlsplit

import requests
import responses
from flask import Flask
from werkzeug.test import Client

from .clock import Clock
from .config import Config
from .faults import ConnectionDropped
from .interception import AiohttpInterception, DroppedConnection, HttpxInterception, ProviderHostGuard, available
from .journal import Entry, Violation
from .mock import Mock
from .store import MemoryStore
from .web import create_app, mock_of

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
    list of URL prefixes lets only those through.
    """

    def __init__(self, *, passthrough: bool | list[str] = False, config: Config | None = None,
                 clock: Clock | None = None) -> None:
        self._passthrough = passthrough
        self._config = config or Config()
        self._clock = clock
        self._responses: responses.RequestsMock | None = None
        self._others: list[Any] = []

    def __enter__(self) -> mock_providers:
        self.app = create_app(self._config, store=MemoryStore(), clock=self._clock)
        self._client = Client(self.app)
        mock = responses.RequestsMock(assert_all_requests_are_fired=False)
        for provider, base in self.base_urls.items():
            pattern = re.compile(re.escape(base) + r"(/.*)?(\?.*)?$")
            for method in METHODS:
                mock.add_callback(method, pattern, callback=functools.partial(self._dispatch, provider))
        mock.add_passthru(re.compile(r"https?://(127\.0\.0\.1|localhost|\[::1\])[:/]"))
        if self._passthrough is True:
            mock.add_passthru(re.compile(r".*"))
        elif self._passthrough:
            for prefix in self._passthrough:
                mock.add_passthru(prefix)
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

    def __exit__(self, *exc: object) -> None:
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
            with mock_providers(passthrough=self._passthrough, config=self._config, clock=self._clock):
                return func(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    @property
    def base_urls(self) -> dict[str, str]:
        """Each served provider's real base URL, where requests are intercepted."""
        return {name: api.contract.real_base_url for name, api in self.state.apis.items()
                if api.contract.real_base_url is not None}

    def _dispatch(self, provider: str, request: requests.PreparedRequest) -> tuple[int, dict[str, str], bytes]:
        body = request.body.encode() if isinstance(request.body, str) else request.body
        try:
            status, headers, content = self._handle(provider, str(request.method), str(request.url),
                                                    list(request.headers.items()), body or b"")
        except DroppedConnection:
            raise requests.ConnectionError(f"{request.method} {request.url}: connection dropped (fault rule)") from None
        return status, {k: v for k, v in headers if k.lower() != "content-length"}, content

    def _handle(self, provider: str, method: str, url: str, headers: list[tuple[str, str]],
                body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        """One request to a provider's real base URL, answered by the app (every client comes here)."""
        parts = urlsplit(url)
        api = self.state.apis[provider]
        base_path = urlsplit(api.contract.real_base_url or "").path
        path = api.contract.mock_prefix + parts.path[len(base_path):]
        response = self._client.open(path, method=method, query_string=parts.query, headers=headers, data=body)
        try:
            content = response.get_data()
        except ConnectionDropped:
            raise DroppedConnection(f"{method} {url}") from None
        return response.status_code, list(response.headers.items()), content
