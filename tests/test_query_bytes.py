"""Query strings are bytes: whatever a client puts in one (raw UTF-8 as no client library would send it,
Unicode digits, escapes that decode to no text) is answered in the provider's format, a 4xx naming the
parameter where it is unusable, never a 500: on every store, and through the proxy."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest
from helpers import PL, UP35, Server, mock_or_proxy

pytestmark = pytest.mark.system

KEY = "zl_test_bytes"
FULL_WIDTH_YEAR = "".join(chr(0xFF10 + int(d)) for d in "2026").encode()  # FULLWIDTH DIGIT TWO, ZERO, ...

# (what follows `?`, as bytes on the wire; the status; the parameter the answer names, if it refuses)
LIST_QUERIES = [
    (b"order_id=\xc3\xa9", 200, None),  # raw UTF-8: the text it is, as if percent-encoded
    (b"order_id=%C3%A9", 200, None),
    (b"limit=\xd9\xa1", 422, "limit"),  # ARABIC-INDIC DIGIT ONE: int() would take it, the contract does not
    (b"limit=\xc2\xbd", 422, "limit"),  # VULGAR FRACTION ONE HALF
    (b"start_date=" + FULL_WIDTH_YEAR + b"-01-01", 422, "start_date"),
    (b"order_id=%ff", 400, "order_id"),  # no text at all: refused, never guessed (U+FFFD would match nothing)
    (b"limit=5&status=%c3%28", 400, "status"),
    (b"%ff%fe=1", 400, "\\xff\\xfe"),
]


def raw(port: int, request_line: bytes, headers: bytes = b"", body: bytes = b"") -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        conn.sendall(request_line + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n" + headers
                     + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    head, _, content = data.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), content


@pytest.fixture(params=["memory", "sqlite", "postgresql", "proxy"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    kind: str = request.param
    if kind == "memory":
        store = "memory"
    elif kind == "sqlite":
        store = f"sqlite:{tmp_path_factory.mktemp('bytes') / 'state.db'}"
    else:
        store = request.getfixturevalue("postgres_url") if kind == "postgresql" else "memory"
    with mock_or_proxy("proxy" if kind == "proxy" else "serve", "--store", store, "--workers", "1") as front:
        yield front


def test_any_query_bytes_are_answered_in_the_providers_format_naming_the_parameter(server: Server) -> None:
    auth = f"Authorization: Bearer {KEY}\r\n".encode()
    for query, status, named in LIST_QUERIES:
        got, body = raw(server.port, b"GET " + PL.encode() + b"/returns?" + query, auth)
        assert got == status, (query, body[:300])
        answer = json.loads(body)
        assert answer["success"] is (status == 200), query
        if named is not None:
            assert answer["error"]["details"]["field"] == named, (query, answer)
    # 35up: a parameter no operation has, in raw UTF-8, is ignored as any unknown one is.
    got, body = raw(server.port, b"PATCH " + UP35.encode() + b"/returns/ord-x?x=\xc3\xa9",
                    b"Authorization: Basic c2hvcDpwdw==\r\nContent-Type: application/json\r\n", b'{"status": "closed"}')
    assert got == 404 and json.loads(body)["error"]["code"] == "not_found"
    # The control plane's own queries (here the proxy's): refused in its format, naming the parameter.
    for query, named in ((b"limit=\xd9\xa1", "limit"), (b"account=%ff", "account")):
        got, body = raw(server.port, b"GET /__admin/journal?" + query)
        assert got in (400, 422), (query, body[:300])
        assert json.loads(body)["error"]["details"][0]["field"] == named
    got, _ = raw(server.port, b"GET /__admin/health")
    assert got == 200


def test_a_request_line_that_is_not_utf8_is_refused_by_the_server_itself() -> None:
    """Raw bytes that are no UTF-8 at all never reach the mock: the HTTP server (granian's hyper) refuses the
    request line with its own bare 400, as for any malformed request line. A 4xx, never a 500."""
    mock = Server("--store", "memory").start()
    try:
        got, _ = raw(mock.port, b"GET " + PL.encode() + b"/returns?order_id=\xff",
                     f"Authorization: Bearer {KEY}\r\n".encode())
        assert got == 400
    finally:
        mock.stop()
