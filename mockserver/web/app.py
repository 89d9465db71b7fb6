"""The Flask application over a `Mock`: each provider's prefix, every route generated from the contracts.

Each OpenAPI operation becomes a route whose view authenticates, validates the path, query and body
against the operation's compiled schemas, calls the provider's handler and renders the provider's own
envelope. Every failure, the HTTP layer's own included, is rendered in the provider's error format. The
per-request steps (faults, rate limit, journal, self-check) run in order as one pipeline
(`mockserver.web.pipeline`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import orjson
from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from ..clock import Clock
from ..config import Config
from ..contracts import Operation, Problem, contract, folders
from ..errors import ProviderError, StoreUnavailable
from ..http import (
    BAD_REQUEST,
    INTERNAL_ERROR,
    METHOD_NOT_ALLOWED,
    NOT_FOUND,
    PAYLOAD_TOO_LARGE,
    REQUEST_TIMEOUT,
    SERVICE_UNAVAILABLE,
    VALIDATION_ERROR,
    Call,
    Handler,
    ProviderApi,
)
from ..mock import Mock
from ..registry import build_mock
from ..store import Store
from ..store.sqlite_file import store_away
from ..validation import Refusal, check_request
from ..version import __version__
from .admin import register as register_admin
from .context import current, provider_for
from .guard import BrowserGuard
from .pipeline import ContractViolation, Pipeline, default_steps

__all__ = ["ContractViolation", "WebMock", "create_app", "mock_of", "served", "validate_contracts"]


@dataclass
class WebMock:
    """The Flask extension: the Mock an app serves, with what only the web side knows."""

    mock: Mock
    operations: dict[str, tuple[ProviderApi, Operation]] = field(default_factory=dict)
    """Every route's endpoint name and the operation it serves."""
    self_check_failures: list[str] = field(default_factory=list)

    def init_app(self, app: Flask) -> None:
        mock = self.mock
        app.config["MAX_CONTENT_LENGTH"] = mock.config.max_body_bytes
        app.extensions["returns_mock"] = self
        for api in mock.apis.values():
            self._register(app, api)
        _register_errors(app, mock)

        @app.get("/")
        def index() -> Response:
            return _json(200, {
                "service": "returns-mock",
                "version": __version__,
                "store": mock.store.engine,
                "providers": {
                    name: {"base_url": api.contract.mock_prefix, "openapi": f"/{name}/openapi.json"}
                    for name, api in mock.apis.items()
                },
            })

        register_admin(app, mock)
        app.wsgi_app = BrowserGuard(app.wsgi_app, mock.config.allowed_hosts)  # type: ignore[method-assign]
        steps = default_steps(mock.config, self.operations, self.self_check_failures, shared_store=mock.store.shared)
        Pipeline(mock, steps).init_app(app)

    def _register(self, app: Flask, api: ProviderApi) -> None:
        prefix = api.contract.mock_prefix
        handlers = api.handlers
        for op in api.contract.operations:
            rule = prefix + re.sub(r"\{(\w+)\}", r"<\1>", op.path)
            endpoint = f"{api.name}.{op.operation_id}"
            self.operations[endpoint] = (api, op)
            app.add_url_rule(rule, endpoint=endpoint, view_func=_view(self.mock, api, op, handlers[op.operation_id]),
                             methods=[op.method], provide_automatic_options=False)

        document = orjson.dumps(api.contract.bundled_openapi())
        app.add_url_rule(f"/{api.name}/openapi.json", endpoint=f"{api.name}.openapi",
                         view_func=lambda: Response(document, 200, mimetype="application/json"),
                         methods=["GET"], provide_automatic_options=False)


def create_app(mock: Mock | Config | None = None, *, store: Store | None = None,
               clock: Clock | None = None) -> Flask:
    """A Flask app serving `mock`; given a Config (or nothing), a Mock of every registered provider."""
    if not isinstance(mock, Mock):
        mock = build_mock(mock, store=store, clock=clock)
    app = Flask("mockserver")
    WebMock(mock).init_app(app)
    return app


def served(app: Flask) -> WebMock:
    web: WebMock = app.extensions["returns_mock"]
    return web


def mock_of(app: Flask) -> Mock:
    return served(app).mock


# --- routes ------------------------------------------------------------------------------------


def _view(mock: Mock, api: ProviderApi, op: Operation, handler: Handler) -> Any:
    def view(**path_values: str) -> Response:
        ctx = current(mock)
        req = ctx.request
        # The credentials were decoded once already; authenticate again only to say why they are refused.
        account = ctx.caller or api.authenticate(req.headers.get("Authorization"))
        ctx.account = account
        raw = req.get_data(cache=True) if op.body_validator is not None else b""
        checked = check_request(op, path_values, req.args, req.content_type, raw)
        # Unknown query names are ignored, as a real API ignores them, but recorded against the client.
        ctx.violations += checked.ignored
        if checked.refusals:
            raise _refused(api, checked.refusals[0])
        status, payload = handler(Call(account=account, path=checked.path, query=checked.query, body=checked.body))
        return _json(status, api.success_body(payload, ctx.request_id, ctx.at))

    view.__name__ = f"{api.name}_{op.operation_id}"
    return view


def _refused(api: ProviderApi, refusal: Refusal) -> ProviderError:
    kind = BAD_REQUEST if refusal.status == 400 else VALIDATION_ERROR
    error = api.error(refusal.status, kind, refusal.message, [p.as_detail() for p in refusal.problems])
    error.schema_locations = [p.schema for p in refusal.problems]
    return error


# --- responses and errors ----------------------------------------------------------------------


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status, headers=headers, mimetype="application/json")


# Refusals that are the client's fault against the contract (not a refusal for a reason of state).
CLIENT_FAULTS = frozenset({400, 401, 405, 413, 422})


def render_error(mock: Mock, error: ProviderError) -> Response:
    ctx = current(mock)
    # By prefix, not ctx.api: an unknown path under a provider's prefix is answered in its format too.
    api = provider_for(mock, request.path)
    if api is not None and (error.status in CLIENT_FAULTS or (error.status == 404 and request.url_rule is None)):
        schemas = error.schema_locations + [""] * len(error.details)
        ctx.violations += [Problem(str(d.get("field", "")), str(d.get("message", error.message)),
                                   str(d.get("location", "")), schema=schema)
                           for d, schema in zip(error.details, schemas, strict=False)] or [
                              Problem("", error.message, "request")]
    if api is None:
        body: Any = {"error": {"code": error.code, "message": error.message, "details": error.details}}
    else:
        body = api.error_body(error, ctx.request_id, ctx.at)
    return _json(error.status, body, dict(error.headers))


_KINDS = {400: BAD_REQUEST, 404: NOT_FOUND, 405: METHOD_NOT_ALLOWED, 408: REQUEST_TIMEOUT, 413: PAYLOAD_TOO_LARGE}


def _register_errors(app: Flask, mock: Mock) -> None:
    @app.errorhandler(ProviderError)
    def provider_error(error: ProviderError) -> Response:
        return render_error(mock, error)

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Response:
        status = error.code or 500
        kind = _KINDS.get(status, INTERNAL_ERROR if status >= 500 else BAD_REQUEST)
        api = provider_for(mock, request.path)
        code = api.code(kind) if api else kind
        headers: dict[str, str] = {}
        if status == 404:
            message = f"No such resource: {request.method} {request.path}."
        elif isinstance(error, MethodNotAllowed):
            allowed = sorted(error.valid_methods or [])
            headers["Allow"] = ", ".join(allowed)
            message = f"{request.method} is not allowed on {request.path}; allowed: {', '.join(allowed)}."
        elif status == 413:
            message = f"Request body is larger than {app.config['MAX_CONTENT_LENGTH']} bytes."
        elif status == 408:
            message = error.description or "The request body did not arrive in time."
            headers["Connection"] = "close"
        else:
            message = error.description or error.name
        return render_error(mock, ProviderError(status, code, message, [], headers))

    @app.errorhandler(StoreUnavailable)
    def store_unavailable(error: StoreUnavailable) -> Response:
        api = provider_for(mock, request.path)
        code = api.code(SERVICE_UNAVAILABLE) if api else SERVICE_UNAVAILABLE
        return render_error(mock, ProviderError(503, code, f"The mock's store is unavailable: {error}. Retry shortly.",
                                                [], {"Retry-After": "1"}))

    @app.errorhandler(Exception)
    def unexpected(error: Exception) -> Response:
        if store_away(error):  # a read from a store file that cannot be used now (a write says so itself)
            return store_unavailable(StoreUnavailable(str(error)))
        if isinstance(error, ContractViolation) or app.testing:
            raise error
        app.logger.exception("unexpected error")
        api = provider_for(mock, request.path)
        code = api.code(INTERNAL_ERROR) if api else INTERNAL_ERROR
        return render_error(mock, ProviderError(500, code, f"Internal error in the mock: {error!r}."))


def validate_contracts() -> None:
    """Load and compile every contract at start-up, so a broken contract fails before serving."""
    for name in folders():
        c = contract(name)
        if "openapi.json" in c.documents:
            c.operations  # noqa: B018 - compiles every validator
            c.bundled_openapi()
