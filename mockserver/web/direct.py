"""Calling the app directly, without a server: the WSGI environ a server would build, and one call
(the in-process mocks and the shadow proxy's mirror use it)."""

from __future__ import annotations

import io
import sys
from typing import Any
from urllib.parse import unquote_to_bytes

from flask import Flask

__all__ = ["CLIENT_TIMEOUT", "call", "wsgi_environ"]

CLIENT_TIMEOUT = "returns_mock.client_timeout"
"""Set in the WSGI environ by a door that knows the client's read timeout (the in-process mocks), in
seconds (`inf`: none): a latency beyond it is answered as that client would see it (Request.client_timeout_s)."""


def call(app: Flask, method: str, path: str, query: str, headers: list[tuple[str, str]],
         body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
    """One request to `app`, answered whole: status, headers, body."""
    answer: list[Any] = []

    def start_response(status: str, response_headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        answer[:] = [int(status.split(" ", 1)[0]), response_headers]
        return None

    chunks = app(wsgi_environ(method, "http", "127.0.0.1", path, query, headers, body), start_response)
    try:
        content = b"".join(chunks)
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
    return answer[0], answer[1], content


def wsgi_environ(method: str, scheme: str, netloc: str, path: str, query: str, headers: list[tuple[str, str]],
                 body: bytes) -> dict[str, Any]:
    """The WSGI environ of one request, as a server builds it (werkzeug's test client does the same with
    several times the work: this runs for every in-process request)."""
    host, _, port = netloc.rpartition(":") if netloc.rpartition(":")[2].isdigit() else (netloc, "", "")
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method.upper(), "SCRIPT_NAME": "",
        "PATH_INFO": unquote_to_bytes(path).decode("latin-1"), "QUERY_STRING": query,
        "SERVER_NAME": host, "SERVER_PORT": port or ("443" if scheme == "https" else "80"),
        "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1",
        "wsgi.version": (1, 0), "wsgi.url_scheme": scheme or "http", "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr, "wsgi.multithread": False, "wsgi.multiprocess": False, "wsgi.run_once": False,
        "CONTENT_LENGTH": str(len(body)),
    }
    for name, value in headers:
        key = name.upper().replace("-", "_")
        if key == "CONTENT_LENGTH":
            continue
        if key != "CONTENT_TYPE":
            key = "HTTP_" + key
        environ[key] = f"{environ[key]}, {value}" if key in environ else value
    environ.setdefault("HTTP_HOST", netloc)
    return environ
