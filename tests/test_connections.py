"""The connection watch's bookkeeping stays bounded: a client that opens a connection per request (curl in a
loop, requests without a Session) leaves nothing behind once its connections are past the idle deadline."""

from __future__ import annotations

import socket
import sys
import time

import pytest

from mockserver.domain.config import Limits
from mockserver.web.connections import Connections, Watch

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the watch reads /proc (Linux)")


def test_peers_answered_before_the_idle_deadline_are_forgotten_and_busy_ones_kept() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]
    connections = Connections()
    watch = Watch(connections, Limits(header_timeout_ms=200, max_connections=100, port=port))
    for n in range(1000):  # short-lived connections: each request a new peer, none seen by a sweep
        connections.begin(f"127.0.0.1:{40000 + n}")
        connections.end(f"127.0.0.1:{40000 + n}")
    connections.begin("127.0.0.1:39999")
    connections.end("127.0.0.1:39999")
    connections.begin("127.0.0.1:39999")  # a second request under way on it
    time.sleep(0.3)  # past the 200 ms deadline
    connections.begin("127.0.0.1:38888")
    connections.end("127.0.0.1:38888")  # answered just now
    watch.sweep()
    assert set(connections.answered) == {"127.0.0.1:39999", "127.0.0.1:38888"}


def test_without_a_watch_nothing_is_recorded() -> None:
    connections = Connections(tracked=False)
    connections.begin("127.0.0.1:40000")
    connections.end("127.0.0.1:40000")
    assert connections.busy == {} and connections.answered == {}
