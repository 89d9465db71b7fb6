"""Safe by default in a browser: what a web page on another origin can make a mock (or proxy) on the
developer's own machine do is nothing; and the door's checks made before anything is read.

Decided on a request's head alone (`BrowserGuard.refusal`), which the production server calls before it
reads any body (mockserver.web.serving), and which the guard, a WSGI middleware in front of the whole app,
applies for every other door (in-process):
- The Host header must be one: a name or an address, with an optional numeric port (`[::1]evil`, `[::1`,
  `localhost:evil`, two Hosts are 400). An absolute-form request target's authority stands for it (RFC
  9112 3.2.2). Bound to loopback, it must be there, and be a loopback name or address (or a name given
  with --allow-host): a DNS-rebinding page reaches the server under its own host name, and could otherwise
  read the journal (API keys, webhook secrets). webpack-dev-server's `allowedHosts` (CVE-2018-14732) and
  Vite's `server.allowedHosts` (CVE-2025-24010) close the same hole this way.
- /__admin with an admin token: `Authorization: Bearer TOKEN` (but the dashboard page and the OpenAPI document,
  which hold no data).
- Writes to /__admin must come from the same origin (a browser says where a request comes from in
  `Origin` and `Sec-Fetch-Site`; curl and test clients send neither), and a body must be
  `application/json`, which no page can send cross-site without a CORS preflight the mock never grants.
- The control plane, the dashboard and the documents are answered with a content security policy
  (`frame-ancestors 'none'`: no framing), `nosniff` and `Referrer-Policy: no-referrer`.

A refusal on a provider's path is answered by the provider's pipeline, in its format (REFUSED); any other
in the control plane's.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable
from typing import Any

import orjson

from mockserver.domain.credentials import same_secret, wire_bytes

ADMIN = "/__admin"
PUBLIC = frozenset({ADMIN, ADMIN + "/", ADMIN + "/openapi.json"})
"""What answers without the admin token (GET): the dashboard page (it asks for the token, then calls the API
with it) and the control plane's OpenAPI document; neither holds data."""
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
JSON_POLICY = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
HEADERS = [("X-Content-Type-Options", "nosniff"), ("Referrer-Policy", "no-referrer"),
           ("X-Frame-Options", "DENY"), ("Cross-Origin-Resource-Policy", "same-origin")]
CHECKED = "returns_mock.door_checked"
"""Set in the environ of a request whose head the door checked already (the server does, before the body)."""
REFUSED = "returns_mock.refused"
"""Set in the environ of a request refused on a provider's path: (status, code, message, header), for its
pipeline to answer in the provider's format (`refused` answers it in the control plane's elsewhere)."""

_HOST = re.compile(r"(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<name>[A-Za-z0-9._~-]+))(?::(?P<port>[0-9]{0,5}))?")

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]
Refusal = tuple[int, list[tuple[str, str]], bytes]
_Verdict = tuple[int, str, str] | None
"""Why a Host is refused (status, code, message), or None."""


def is_loopback_host(host: str) -> bool:
    """Whether a host name or address (no port) names this machine's loopback interface."""
    name = host.strip("[]").rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):  # RFC 6761: always loopback
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def host_name(header: str) -> str | None:
    """The name in a Host header, without its port (`[::1]:8080` -> `::1`, `localhost:80` -> `localhost`);
    None if the header is not a host with an optional numeric port."""
    found = _HOST.fullmatch(header)
    if found is None or (found["port"] and int(found["port"]) > 65535):
        return None
    if found["v6"] is not None:
        try:
            return str(ipaddress.IPv6Address(found["v6"]))
        except ValueError:
            return None
    return str(found["name"])


class BrowserGuard:
    def __init__(self, app: WsgiApp, allowed_hosts: Iterable[str] | None, *, token: str | None = None,
                 renders: Callable[[str], object] | None = None) -> None:
        """`allowed_hosts`: None answers any Host (bound to a public address, behind the admin token); a
        list (maybe empty) answers loopback names and those. `token`: the admin token, if there is one.
        `renders`: whether a path is a provider's (its pipeline answers a refusal there)."""
        self.app = app
        self.allowed = None if allowed_hosts is None else frozenset(h.lower().rstrip(".") for h in allowed_hosts)
        self.token = token
        self.renders = renders
        self._seen: dict[str, _Verdict] = {}

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        refusal = self.refusal(environ) if CHECKED not in environ else None
        if refusal is not None:
            status, headers, body = refusal
            start_response(f"{status} {_REASONS[status]}", headers)
            return [body]
        path: str = environ.get("PATH_INFO", "")
        if path.startswith(ADMIN) or path == "/" or path.endswith("/openapi.json"):
            return self.app(environ, _with_headers(start_response))
        return self.app(environ, start_response)

    def refusal(self, environ: dict[str, Any]) -> Refusal | None:
        """The answer that refuses this request on its head alone, or None. On a provider's path the refusal
        is left in the environ (REFUSED) for its pipeline to answer, and None is returned: the request goes
        on, its body unread."""
        environ[CHECKED] = True
        verdict = self._host(environ)
        path: str = environ.get("PATH_INFO", "")
        if verdict is None and path.startswith(ADMIN):
            verdict = self._admin(environ, path)
        if verdict is None:
            return None
        status, code, message = verdict
        if self.renders is not None and self.renders(path):
            environ[REFUSED] = (status, code, message, "Authorization" if status == 401 else "Host")
            return None
        return refused(status, code, message)

    def _host(self, environ: dict[str, Any]) -> _Verdict:
        host = environ.get("HTTP_HOST")
        if host is None:
            if self.allowed is None and environ.get("SERVER_PROTOCOL") == "HTTP/1.0":
                return None  # HTTP/1.0 has no Host; only a mock bound to loopback insists on one
            return 400, "bad_host", "The request has no Host header; HTTP/1.1 requires one (RFC 9112 3.2)."
        verdict = self._seen.get(host, ())
        if verdict == ():
            verdict = self._judge(host)
            if len(self._seen) < 1024:  # bounded: a client can send any number of names
                self._seen[host] = verdict
        return verdict  # type: ignore[return-value]

    def _judge(self, host: str) -> _Verdict:
        name = host_name(host)
        if name is None:
            return (400, "bad_host", f"Host {host!r} is not a host name or address with an optional numeric port "
                                     "(RFC 9110 7.2).")
        name = name.lower().rstrip(".")
        if self.allowed is not None and not (is_loopback_host(name) or name in self.allowed):
            return (403, "forbidden_host",
                    f"Host {host!r} is not this mock's: it answers only loopback names (localhost, 127.0.0.1, "
                    "[::1]) and those given with --allow-host, so that no web page can reach it through DNS "
                    "rebinding.")
        return None

    def _admin(self, environ: dict[str, Any], path: str) -> _Verdict:
        method = environ.get("REQUEST_METHOD", "GET")
        if method not in SAFE_METHODS:
            refusal = _cross_site(environ) or _not_json(environ)
            if refusal is not None:
                return refusal
        if self.token is None or (path in PUBLIC and method in SAFE_METHODS):
            return None
        given = environ.get("HTTP_AUTHORIZATION", "")
        if given.startswith("Bearer ") and same_secret(wire_bytes(given[7:].strip()), self.token):
            return None
        return 401, "unauthorized", "The admin API needs Authorization: Bearer <admin token>."


def _cross_site(environ: dict[str, Any]) -> _Verdict:
    site = environ.get("HTTP_SEC_FETCH_SITE")
    origin = environ.get("HTTP_ORIGIN")
    own = f"{environ.get('wsgi.url_scheme', 'http')}://{environ.get('HTTP_HOST', '')}"
    if site in ("cross-site", "same-site") or (origin is not None and origin.lower() != own.lower()):
        return (403, "cross_site_request",
                f"The control plane takes writes only from its own origin ({own}), not from "
                f"{origin or 'a page on another site'}: a web page must not be able to drive this mock.")
    return None


def _not_json(environ: dict[str, Any]) -> _Verdict:
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


_REASONS = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 415: "Unsupported Media Type"}


def refused(status: int, code: str, message: str, *_: object) -> Refusal:
    """A refusal in the control plane's format (a REFUSED tuple too, on a path the pipeline does not answer)."""
    body = orjson.dumps({"error": {"code": code, "message": message, "details": []}})
    extra = [("WWW-Authenticate", 'Bearer realm="returns-mock admin"')] if status == 401 else []
    return status, [("Content-Type", "application/json"), ("Content-Length", str(len(body))),
                    ("Content-Security-Policy", JSON_POLICY), *HEADERS, *extra], body
