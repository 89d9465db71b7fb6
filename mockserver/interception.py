"""In-process interception for the HTTP clients people use, beside `requests` (inprocess.py).

httpx (sync and async, through respx) and aiohttp (through aioresponses) are intercepted when both the
client and its mocking library are installed (`pip install 'returns-mock[httpx]'` / `[aiohttp]`); each
request to a provider's real base URL becomes a call of the same Flask app. Loopback always passes
through, so a real server (`returns_mock_server`) works beside the in-process mock. And every other way
out to a provider host (another client, a missing mocking library) fails at name resolution with a
message naming `returns_mock_server`: nothing reaches the real provider.
"""

from __future__ import annotations

import importlib.util
import json
import math
import re
import socket
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

Answer = tuple[int, list[tuple[str, str]], bytes]
Dispatch = Callable[[str, str, str, list[tuple[str, str]], bytes, float], Answer]
"""(provider, method, url, headers, body, the client's read timeout in seconds) -> (status, headers, body);
raises DroppedConnection or LateAnswer."""

LOOPBACK = ("127.0.0.1", "localhost", "::1")


class DroppedConnection(Exception):
    """A fault rule dropped the connection: each client raises its own connection error for it."""


class LateAnswer(Exception):
    """The answer came later than the client's read timeout: each client raises its own timeout error."""


def available(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


class HttpxInterception:
    def __init__(self, bases: dict[str, str], dispatch: Dispatch, passthrough: bool | list[str]) -> None:
        import httpx
        import respx

        self._httpx = httpx
        router = respx.MockRouter(assert_all_called=False, assert_all_mocked=True)
        for provider, base in bases.items():
            router.route(url__regex=re.escape(base) + r"(/.*)?(\?.*)?$").mock(
                side_effect=lambda request, provider=provider: self._answer(provider, request, dispatch))
        router.route(host__in=LOOPBACK).pass_through()
        if passthrough is True:
            router.route().pass_through()
        elif passthrough:
            for prefix in passthrough:
                router.route(url__startswith=prefix).pass_through()
        self._router = router

    def _answer(self, provider: str, request: Any, dispatch: Dispatch) -> Any:
        read = (request.extensions.get("timeout") or {}).get("read")
        try:
            status, headers, body = dispatch(provider, request.method, str(request.url),
                                             list(request.headers.multi_items()), request.read(),
                                             math.inf if read is None else float(read))
        except DroppedConnection:
            raise self._httpx.RemoteProtocolError("connection dropped (fault rule)", request=request) from None
        except LateAnswer:
            raise self._httpx.ReadTimeout("The read operation timed out", request=request) from None
        return self._httpx.Response(status, headers=headers, content=body)

    def start(self) -> None:
        self._router.start()

    def stop(self) -> None:
        self._router.stop(quiet=True)


class AiohttpInterception:
    def __init__(self, bases: dict[str, str], dispatch: Dispatch, passthrough: bool | list[str]) -> None:
        import aiohttp
        from aioresponses import CallbackResult, aioresponses

        self._aiohttp = aiohttp
        through = [f"http://{host}" for host in ("127.0.0.1", "localhost", "[::1]")]
        if isinstance(passthrough, list):
            through += passthrough

        class WithSessionTimeout(aioresponses):
            """aioresponses hands a callback the call's arguments only: the session's own timeout too."""

            async def _request_mock(self, orig_self: Any, method: str, url: Any, *args: Any, **kwargs: Any) -> Any:
                if kwargs.get("timeout") in (None, aiohttp.helpers.sentinel):
                    kwargs["timeout"] = orig_self.timeout
                return await super()._request_mock(orig_self, method, url, *args, **kwargs)

        self._mock = WithSessionTimeout(passthrough=through, passthrough_unmatched=passthrough is True)
        self._bases = bases
        self._dispatch = dispatch
        self._result = CallbackResult

    def start(self) -> None:
        self._mock.start()
        for provider, base in self._bases.items():
            pattern = re.compile(re.escape(base) + r"(/.*)?(\?.*)?$")
            for method in ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"):
                self._mock.add(pattern, method=method, repeat=True,
                               callback=lambda url, provider=provider, method=method, **kw:
                               self._answer(provider, method, url, kw))

    def _answer(self, provider: str, method: str, url: Any, kwargs: dict[str, Any]) -> Any:
        if kwargs.get("json") is not None:
            body = json.dumps(kwargs["json"]).encode()
            headers = {"Content-Type": "application/json", **dict(kwargs.get("headers") or {})}
        else:
            data = kwargs.get("data")
            body = data.encode() if isinstance(data, str) else bytes(data or b"")
            headers = dict(kwargs.get("headers") or {})
        auth = kwargs.get("auth")
        if auth is not None and "Authorization" not in headers:
            headers["Authorization"] = auth.encode()
        target = url.update_query(kwargs["params"]) if kwargs.get("params") else url
        timeout = kwargs.get("timeout")
        if isinstance(timeout, (int, float)):
            timeout = self._aiohttp.ClientTimeout(total=timeout)
        total, read = getattr(timeout, "total", None), getattr(timeout, "sock_read", None)
        waits = [float(t) for t in (total, read) if t is not None]
        try:
            status, answer_headers, content = self._dispatch(provider, method, str(target), list(headers.items()),
                                                             body, min(waits, default=math.inf))
        except DroppedConnection:
            raise self._aiohttp.ServerDisconnectedError("connection dropped (fault rule)") from None
        except LateAnswer:
            if read is not None and (total is None or read <= total):
                raise self._aiohttp.SocketTimeoutError("Timeout on reading data from socket") from None
            raise TimeoutError() from None  # aiohttp's total timeout: asyncio.TimeoutError
        kept = {k: v for k, v in answer_headers if k.lower() != "content-length"}
        return self._result(status=status, body=content, headers=kept,
                            content_type=kept.get("Content-Type", "application/json"))

    def stop(self) -> None:
        self._mock.stop()


class ProviderHostGuard:
    """While active, resolving a provider's real host fails with a message naming returns_mock_server:
    a client the mock does not intercept (urllib, a missing mocking library) never reaches the provider."""

    def __init__(self, bases: dict[str, str]) -> None:
        self._hosts = {(urlsplit(base).hostname or "").lower() for base in bases.values()}
        self._original: Any = None

    def start(self) -> None:
        original = self._original = socket.getaddrinfo
        hosts = self._hosts

        def guarded(host: Any, *args: Any, **kwargs: Any) -> Any:
            name = host.decode() if isinstance(host, bytes) else str(host)
            if name.lower() in hosts:
                raise OSError(f"returns-mock: {name} is mocked in-process for requests, httpx (with respx) and "
                              f"aiohttp (with aioresponses) only, and this call came another way: use the "
                              f"returns_mock_server fixture (a real server on loopback) and its base URLs")
            return original(host, *args, **kwargs)

        socket.getaddrinfo = guarded

    def stop(self) -> None:
        if self._original is not None:
            socket.getaddrinfo = self._original
            self._original = None
