"""Safe by default in a browser: what a web page on another origin can make a mock (or proxy) on the
developer's own machine do is nothing.

A WSGI middleware in front of the whole app, before Flask, the pipeline and the journal:
- Bound to loopback, every request whose `Host` is not a loopback name or address (or a name given with
  --allow-host) is refused: a DNS-rebinding page reaches the server under its own host name, and could
  otherwise read the journal (API keys, webhook secrets). webpack-dev-server's `allowedHosts`
  (CVE-2018-14732) and Vite's `server.allowedHosts` (CVE-2025-24010) close the same hole this way.
- Writes to /__admin must come from the same origin (a browser says where a request comes from in
  `Origin` and `Sec-Fetch-Site`; curl and test clients send neither), and a body must be
  `application/json`, which no page can send cross-site without a CORS preflight the mock never grants.
- The control plane, the dashboard and the documents are answered with a content security policy
  (`frame-ancestors 'none'`: no framing), `nosniff` and `Referrer-Policy: no-referrer`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from typing import Any

import orjson

ADMIN = "/__admin"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
JSON_POLICY = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
HEADERS = [("X-Content-Type-Options", "nosniff"), ("Referrer-Policy", "no-referrer"),
           ("X-Frame-Options", "DENY"), ("Cross-Origin-Resource-Policy", "same-origin")]

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def is_loopback_host(host: str) -> bool:
    """Whether a host name or address (no port) names this machine's loopback interface."""
    name = host.strip("[]").rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):  # RFC 6761: always loopback
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _host_name(header: str) -> str:
    """The name in a Host header, without its port: `[::1]:8080` -> `::1`, `localhost:80` -> `localhost`."""
    if header.startswith("["):
        return header[1:header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class BrowserGuard:
    def __init__(self, app: WsgiApp, allowed_hosts: Iterable[str] | None) -> None:
        """`allowed_hosts`: None answers any Host (bound to a public address, behind the admin token); a
        list (maybe empty) answers loopback names and those."""
        self.app = app
        self.allowed = None if allowed_hosts is None else frozenset(h.lower().rstrip(".") for h in allowed_hosts)
        self._seen: dict[str, bool] = {}

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if self.allowed is not None:
            host = environ.get("HTTP_HOST")
            if host is not None and not self._host_ok(host):
                return _refuse(start_response, 403, "forbidden_host",
                               f"Host {host!r} is not this mock's: it answers only loopback names (localhost, "
                               "127.0.0.1, [::1]) and those given with --allow-host, so that no web page can reach "
                               "it through DNS rebinding.")
        path: str = environ.get("PATH_INFO", "")
        if path.startswith(ADMIN):
            if environ.get("REQUEST_METHOD", "GET") not in SAFE_METHODS:
                refusal = _cross_site(environ) or _not_json(environ)
                if refusal is not None:
                    return _refuse(start_response, *refusal)
            return self.app(environ, _with_headers(start_response))
        if path == "/" or path.endswith("/openapi.json"):
            return self.app(environ, _with_headers(start_response))
        return self.app(environ, start_response)

    def _host_ok(self, host: str) -> bool:
        known = self._seen.get(host)
        if known is None:
            name = _host_name(host).lower().rstrip(".")
            known = is_loopback_host(name) or name in (self.allowed or ())
            if len(self._seen) < 1024:  # bounded: a client can send any number of names
                self._seen[host] = known
        return known


def _cross_site(environ: dict[str, Any]) -> tuple[int, str, str] | None:
    site = environ.get("HTTP_SEC_FETCH_SITE")
    origin = environ.get("HTTP_ORIGIN")
    own = f"{environ.get('wsgi.url_scheme', 'http')}://{environ.get('HTTP_HOST', '')}"
    if site in ("cross-site", "same-site") or (origin is not None and origin.lower() != own.lower()):
        return (403, "cross_site_request",
                f"The control plane takes writes only from its own origin ({own}), not from "
                f"{origin or 'a page on another site'}: a web page must not be able to drive this mock.")
    return None


def _not_json(environ: dict[str, Any]) -> tuple[int, str, str] | None:
    has_body = environ.get("CONTENT_LENGTH", "") not in ("", "0") or "HTTP_TRANSFER_ENCODING" in environ
    mimetype = environ.get("CONTENT_TYPE", "").split(";", 1)[0].strip().lower()
    if has_body and mimetype != "application/json" and not mimetype.endswith("+json"):
        return (415, "unsupported_media_type",
                f"The control plane takes JSON bodies only: send Content-Type: application/json, not "
                f"{mimetype or 'none'}.")
    return None


def _with_headers(start_response: StartResponse) -> StartResponse:
    def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        names = {name.lower() for name, _ in headers}
        extra = [(n, v) for n, v in HEADERS if n.lower() not in names]
        if "content-security-policy" not in names:
            extra.append(("Content-Security-Policy", JSON_POLICY))
        return start_response(status, headers + extra, exc_info)

    return start


def _refuse(start_response: StartResponse, status: int, code: str, message: str) -> list[bytes]:
    body = orjson.dumps({"error": {"code": code, "message": message, "details": []}})
    reason = {403: "Forbidden", 415: "Unsupported Media Type"}[status]
    start_response(f"{status} {reason}", [("Content-Type", "application/json"), ("Content-Length", str(len(body))),
                                          ("Content-Security-Policy", JSON_POLICY), *HEADERS])
    return [body]
