"""A real HTTP server for the mock on a free loopback port, in a background thread.

For clients that are not `requests`-based (httpx, aiohttp, other processes) inside a test suite. The
standalone server (`returns-mock serve`) uses granian instead.
"""

from __future__ import annotations

import dataclasses
import threading
from typing import Any

from werkzeug.serving import make_server

from mockserver.domain.autopilot import named
from mockserver.domain.clock import Clock
from mockserver.domain.config import Config
from mockserver.inprocess import MockHandle
from mockserver.store import MemoryStore
from mockserver.web import create_app


class ThreadedServer:
    """Any WSGI app served on 127.0.0.1 on a free port by werkzeug's threaded server."""

    def __init__(self, app: Any, host: str = "127.0.0.1") -> None:
        self._server = make_server(host, 0, app, threaded=True)
        self.url = f"http://{host}:{self._server.server_port}"
        # A short poll: stopping waits for the serving loop to notice, up to one poll interval.
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
                                        name="returns-mock", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def __enter__(self) -> ThreadedServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class LiveMock(MockHandle):
    """The mock served over real HTTP: `.url`, and each provider's base URL."""

    def __init__(self, config: Config | None = None, clock: Clock | None = None,
                 autopilot: str | dict[str, Any] | list[dict[str, Any]] | None = None) -> None:
        """`autopilot`: schedules of the provider's own moves, or a preset's name (mockserver.domain.autopilot)."""
        config = config or Config()
        if autopilot is not None:
            config = dataclasses.replace(config, autopilot=named(autopilot))
        self.app = create_app(config, store=MemoryStore(), clock=clock)
        self._server = ThreadedServer(self.app)
        self.url = self._server.url
        self._base_urls = {name: self.url + entry.contract.mock_prefix for name, entry in self.state.providers.items()}

    @property
    def base_urls(self) -> dict[str, str]:
        """Each provider's base URL on this server (also as `.url_<provider>`, e.g. `.url_3plship`)."""
        return dict(self._base_urls)

    def __enter__(self) -> LiveMock:
        self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop()
        self.state.close()
