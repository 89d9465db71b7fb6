"""`returns-mock proxy`: a validating proxy in front of the real providers (or a sandbox), with recording.

Each provider is served under the mock's own prefix (`/3plship/api/v1/...`), so a client switches between
mock and proxy by base URL alone. Every request is forwarded as it came (hop-by-hop headers aside; the
client's credentials go to the upstream untouched) and the upstream's answer comes back unchanged. Both
directions are checked against the contracts: what the client sent (source `request`) and what the
provider answered (source `response`). The journal and violations are served under /__admin as by the
mock. An upstream that cannot be reached or answers too late is a 502 or 504 in the provider's format.
With --shadow, every exchange the upstream answered is also applied to a mock mirroring it
(mockserver.web.mirror) and the two answers compared: /__admin/drift.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson
from flask import Flask, Response, request

from .. import masking, outbound
from ..clock import isoformat
from ..config import Config
from ..contracts import Operation, Problem
from ..errors import ProviderError
from ..http import BAD_REQUEST, VALIDATION_ERROR, ProviderApi
from ..ids import IdGenerator
from ..journal import BODY_LIMIT, Entry, MemoryJournal, Violation
from ..registry import REGISTRY, build_mock
from ..store import MemoryStore
from ..verify.exchange import check_request, check_response
from ..version import __version__
from ..web.admin import AdminError, control_plane
from ..web.guard import BrowserGuard
from ..web.mirror import Mirror
from .recording import HarRecorder

HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
                        "trailers", "transfer-encoding", "upgrade", "host", "content-length"})
"""Headers that belong to one connection, not to the exchange (content-length is recomputed)."""


ENV_VAR = "RETURNS_MOCK_PROXY"
TURNS = 64
"""Locks the shadowed accounts are spread over (two accounts may share one: they then wait for each other)."""


@dataclass(frozen=True)
class ProxyConfig:
    upstreams: dict[str, str]
    """Provider name -> the upstream's base URL, e.g. {"3plship": "https://app.3plship.com/api/v1"}."""
    timeout_ms: int = 5000
    """The whole exchange with the upstream, connecting to the answer's last byte (else 504)."""
    max_answer_bytes: int = 8 * 1024 * 1024
    """An upstream answer larger than this once decoded is cut off while it streams and answered 502."""
    strict: bool = False
    """Refuse (422, not forwarded) a request that breaks the contract."""
    record: str | None = None
    admin_token: str | None = None
    journal_size: int = 1000
    allowed_hosts: list[str] | None = None
    """As the mock's Config.allowed_hosts: None answers any Host."""
    shadow: bool = False
    """Also apply every exchange to a mock mirroring the upstream, and record where the answers differ."""
    drift_ignore: tuple[str, ...] = ()
    """JSON pointers (`*`: any one segment) the shadow's comparison leaves out, beside the contracts' noise."""

    def to_env(self) -> str:
        return json.dumps(asdict(self))


def app_from_env() -> Flask:
    """The granian worker's factory (configured through RETURNS_MOCK_PROXY)."""
    return create_proxy_app(ProxyConfig(**json.loads(os.environ[ENV_VAR])))


def create_proxy_app(config: ProxyConfig) -> Flask:
    app = Flask("mockserver.proxy")
    # The providers' own rules, only to answer in their format (errors) and to name the account.
    apis = build_mock(Config(), store=MemoryStore()).apis
    state = _Proxy(config, {name: apis[name] for name in config.upstreams})
    for name, api in state.apis.items():
        prefix = api.contract.mock_prefix
        view = _forwarder(state, name)
        methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
        app.add_url_rule(prefix, endpoint=f"{name}.root", view_func=view, methods=methods,
                         provide_automatic_options=False)
        app.add_url_rule(prefix + "/<path:rest>", endpoint=f"{name}.forward", view_func=view, methods=methods,
                         provide_automatic_options=False)
    _admin(app, state)
    app.wsgi_app = BrowserGuard(app.wsgi_app, config.allowed_hosts)  # type: ignore[method-assign]
    return app


class _Proxy:
    def __init__(self, config: ProxyConfig, apis: dict[str, ProviderApi]) -> None:
        self.config = config
        self.apis = apis
        self.journal = MemoryJournal(config.journal_size)
        self.recorder = HarRecorder(Path(config.record)) if config.record else None
        self.shadow = Mirror(config.drift_ignore, config.journal_size) if config.shadow else None
        self._turns = tuple(threading.Lock() for _ in range(TURNS))

    def in_turn(self, provider: str, credentials: str | None) -> contextlib.AbstractContextManager[Any]:
        """With --shadow, one account's exchanges one at a time, each applied to the mirror before the next
        reaches the upstream: the mock sees them in the upstream's order (a page read between two creates
        counts what the upstream counted). Other accounts go on in parallel. Without it, no wait."""
        if self.shadow is None:
            return contextlib.nullcontext()
        return self._turns[hash((provider, credentials)) % TURNS]


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status, headers=headers, mimetype="application/json")


def _forwarder(state: _Proxy, name: str) -> Any:
    api = state.apis[name]
    upstream = state.config.upstreams[name].rstrip("/")
    shown = masking.url(upstream)

    def forward(rest: str = "") -> Response:
        started, at = time.perf_counter(), datetime.now(UTC)
        relative = "/" + rest
        body = request.get_data()
        query = request.args.to_dict(flat=True)
        # The server hands over the path decoded: encoded again, a `%3F` stays in the path, not a query.
        url = upstream + quote(relative, safe=_PATH_SAFE) + (
            f"?{request.query_string.decode('latin-1')}" if request.query_string else "")
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP]
        op: Operation | None = None
        findings: list[Problem] = []
        answer: Response
        reason = ""
        drift = None
        account = _account(name, api)
        if any(segment in ("..", ".") for segment in rest.split("/")):
            message = "The path leaves the provider's base path (a '.' or '..' segment); not forwarded."
            answer = _render(api, api.error(400, BAD_REQUEST, message, [
                {"field": "path", "location": "path", "message": message}]), at)
        else:
            op, findings = check_request(name, request.method, relative, query, request.content_type, body)
            if state.config.strict and findings:
                answer = _refusal(api, findings, at)
            else:
                with state.in_turn(name, request.headers.get("Authorization")):
                    answer, reason, upstream_findings, answered_upstream = _exchange(
                        state, api, shown, op, request.method, url, headers, body, at)
                    if state.shadow is not None and answered_upstream:
                        drift = state.shadow.apply(api, op, request.method, request.path,
                                                   request.query_string.decode("latin-1"), headers, body,
                                                   answer.status_code, answer.get_data(), account)
                findings = findings + upstream_findings
        answered = answer.get_data()
        # Masked once, for the journal and the recording alike (a JSON body is parsed to mask it).
        shown_request = masking.body(body, request.content_type)
        shown_answer = masking.body(answered, answer.content_type)
        _journal(state, name, account, at, started, findings, answer, shown_request, shown_answer)
        if state.recorder is not None:
            state.recorder.add(started=at, duration_ms=(time.perf_counter() - started) * 1000, method=request.method,
                               url=url, request_headers=headers, request_body=shown_request,
                               request_size=len(body), query=list(request.args.items(multi=True)),
                               status=answer.status_code, reason=reason or answer.status.partition(" ")[2],
                               response_headers=list(answer.headers.items()), response_body=shown_answer,
                               response_size=len(answered), account=None if REGISTRY[name].secret_accounts
                               else account,
                               drift=None if drift is None else [d.as_json() for d in drift.differences])
        return answer

    forward.__name__ = f"proxy_{name}"
    return forward


_PATH_SAFE = "/:@!$&'()*+,;=-._~"


def _exchange(state: _Proxy, api: ProviderApi, shown: str, op: Operation | None, method: str, url: str,
              headers: list[tuple[str, str]], body: bytes,
              at: datetime) -> tuple[Response, str, list[Problem], bool]:
    """Forward one request: the upstream's answer (decoded, capped, within the timeout as a whole), or the
    provider's 502/504 saying why there is none (then the last item, whether the upstream answered, is False)."""
    config = state.config
    try:
        answer = outbound.exchange(method, url, headers, body, timeout=config.timeout_ms / 1000,
                                   limit=config.max_answer_bytes)
    except outbound.AnswerTooLarge:
        message = (f"The upstream {shown} answered more than {config.max_answer_bytes} bytes (decoded); "
                   f"cut off at the cap (--max-answer-bytes), not forwarded.")
        return _failure(api, 502, "bad_gateway", message, at), "", [], False
    except outbound.ExchangeFailed as exc:
        if exc.timed_out:
            message = f"The upstream {shown} did not answer within {config.timeout_ms} ms: {exc.reason}."
            return _failure(api, 504, "gateway_timeout", message, at), "", [], False
        message = f"The upstream {shown} gave no answer: {exc.reason}."
        return _failure(api, 502, "bad_gateway", message, at), "", [], False
    kept = [(k, v) for k, v in answer.headers if k.lower() not in HOP_BY_HOP]
    content_type = next((v for k, v in answer.headers if k.lower() == "content-type"), None)
    findings = check_response(op, answer.status, content_type, answer.body) if op is not None else []
    return Response(answer.body, answer.status, headers=kept), answer.reason, findings, True


def _refusal(api: ProviderApi, findings: list[Problem], at: datetime) -> Response:
    details = [{"field": f.field, "location": "request", "message": f.message} for f in findings]
    error = api.error(422, VALIDATION_ERROR, f"Request does not match the contract (not forwarded): "
                                             f"{findings[0].message}.", details)
    return _render(api, error, at)


def _failure(api: ProviderApi, status: int, kind: str, message: str, at: datetime) -> Response:
    return _render(api, ProviderError(status, api.code(kind), message), at)


_REQUEST_IDS = IdGenerator()
"""The request ids of the proxy's own answers (its 422s, 502s and 504s)."""


def _render(api: ProviderApi, error: ProviderError, at: datetime) -> Response:
    body = api.error_body(error, _REQUEST_IDS.new("req", 24), isoformat(at))
    return _json(error.status, body, dict(error.headers))


def _account(name: str, api: ProviderApi) -> str | None:
    """The account this request's credentials name, as the journal shows it (an API key only as a hint)."""
    account = api.rate_key(request.headers.get("Authorization"))
    if account is not None and REGISTRY[name].secret_accounts:  # the account is the client's real API key
        account = masking.account_hint(account)
    return account


def _journal(state: _Proxy, name: str, account: str | None, at: datetime, started: float,
             findings: list[Problem], answer: Response, request_body: bytes, response_body: bytes) -> None:
    """Journal one exchange; the bodies come masked, the account too where it is a credential."""
    violations = tuple(Violation(0, request.method, request.path, name, account, answer.status_code, f.field,
                                 "response" if f.side == "response" else "request", f.message, f.schema,
                                 source=f.side)
                       for f in findings)
    state.journal.record(Entry(
        id=0, at=isoformat(at), provider=name, account=account, method=request.method, path=request.path,
        query=masking.query_string(request.query_string.decode("latin-1")), status=answer.status_code,
        duration_ms=round((time.perf_counter() - started) * 1000, 3),
        request_body=request_body[:BODY_LIMIT] or None, response_body=response_body[:BODY_LIMIT],
        violations=violations, fault=""))


def _admin(app: Flask, state: _Proxy) -> None:
    admin = control_plane(state.config.admin_token, state.journal, tuple(state.apis))

    @app.get("/")
    def index() -> Response:
        return _json(200, {"service": "returns-mock proxy", "version": __version__, "providers": {
            name: {"base_url": api.contract.mock_prefix, "upstream": masking.url(state.config.upstreams[name])}
            for name, api in state.apis.items()}})

    @admin.get("/health")
    def health() -> Response:
        return _json(200, {"status": "ok", "version": __version__, "mode": "proxy",
                           "upstreams": {name: masking.url(u) for name, u in state.config.upstreams.items()}})

    @admin.get("/drift")
    def drift() -> Response:
        return _json(200, _shadow(state).log.as_json())

    @admin.delete("/drift")
    def clear_drift() -> Response:
        _shadow(state).log.clear()
        return Response(status=204)

    app.register_blueprint(admin)


def _shadow(state: _Proxy) -> Mirror:
    if state.shadow is None:
        raise AdminError(409, "not_shadowing", "This proxy compares nothing: start it with --shadow.")
    return state.shadow
