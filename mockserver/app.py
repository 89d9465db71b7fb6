"""The Flask application: both providers, one prefix each, every route generated from the contracts.

Each OpenAPI operation becomes a route whose view authenticates, validates the path, query and body
against the operation's compiled schemas, calls the provider's handler and renders the provider's own
envelope. Every failure, the HTTP layer's own included, is rendered in the provider's error format.
"""

from __future__ import annotations

import json
import random
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from flask import Flask, Request, Response, g, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from . import __version__
from .clock import Clock, StoreClock, isoformat, parse_instant
from .config import Config
from .contracts import PROVIDERS, Operation, Problem, contract, problems
from .errors import ProviderError
from .faults import KEY as FAULTS_KEY
from .faults import Faults, dropped_body
from .http import (
    BAD_REQUEST,
    INTERNAL_ERROR,
    METHOD_NOT_ALLOWED,
    NOT_FOUND,
    PAYLOAD_TOO_LARGE,
    RATE_LIMIT_EXCEEDED,
    VALIDATION_ERROR,
    Call,
    ProviderApi,
)
from .ids import IdGenerator
from .journal import BODY_LIMIT, Entry, Journal, MemoryJournal, SqliteJournal
from .journal import Violation as JournalViolation
from .ratelimit import RateLimiter, RatePolicy
from .store import MemoryStore, SqliteStore, Store, open_store
from .thirtyfiveup.api import Api35up
from .thirtyfiveup.core import Returns35up
from .threeplship.api import Api3plship
from .threeplship.core import Returns3plship
from .threeplship.webhooks import DeliveryPolicy, Webhooks


class ContractViolation(AssertionError):
    """The mock answered something its own contract does not allow (response self-check)."""


@dataclass
class MockState:
    """What the app's views share: configuration, store, clock, ids and the provider APIs."""

    config: Config
    store: Store
    clock: Clock
    ids: IdGenerator
    apis: dict[str, ProviderApi]
    journal: Journal = field(default_factory=MemoryJournal)
    webhooks: Webhooks | None = None
    rate_limiter: RateLimiter | None = None
    faults: Faults | None = None
    operations: dict[str, tuple[ProviderApi, Operation]] = field(default_factory=dict)
    self_check_failures: list[str] = field(default_factory=list)

    @property
    def returns_35up(self) -> Returns35up:
        return self.apis["35up"].core  # type: ignore[attr-defined, no-any-return]

    @property
    def returns_3plship(self) -> Returns3plship:
        return self.apis["3plship"].core  # type: ignore[attr-defined, no-any-return]


def create_app(config: Config | None = None, *, store: Store | None = None,
               clock: Clock | None = None) -> Flask:
    config = config or Config()
    store = store or open_store(config.store)
    if clock is None:
        clock = StoreClock(store)
        clock.ensure(config.clock, parse_instant(config.clock_start) if config.clock_start else None)
    ids = IdGenerator(config.seed)
    webhooks = Webhooks(store, clock, ids, DeliveryPolicy(
        allowed_hosts=tuple(h.lower() for h in config.allow_webhook_hosts), attempts=config.webhook_attempts,
        backoff_ms=config.webhook_backoff_ms, timeout_ms=config.webhook_timeout_ms))
    apis: list[ProviderApi] = [
        Api35up(Returns35up(store, clock, mode=config.lifecycle,
                            return_window_days=config.return_window_days), users=config.users_35up),
        Api3plship(Returns3plship(store, clock, ids, events=webhooks), webhooks, keys=config.keys_3plship),
    ]
    state = MockState(config=config, store=store, clock=clock, ids=ids, apis={a.name: a for a in apis},
                      journal=open_journal(store, config.journal_size, config.workers))

    app = Flask("mockserver")
    app.config["MAX_CONTENT_LENGTH"] = config.max_body_bytes
    app.extensions["returns_mock"] = state
    for api in apis:
        _register(app, state, api)
    _register_errors(app, state)

    @app.get("/")
    def index() -> Response:
        return _json(200, {
            "service": "returns-mock",
            "version": __version__,
            "store": state.store.engine,
            "providers": {
                name: {"base_url": api.contract.mock_prefix, "openapi": f"/{name}/openapi.json"}
                for name, api in state.apis.items()
            },
        })

    state.webhooks = webhooks
    if store.has_pending_deliveries():  # left over from before a restart
        webhooks.deliverer.start()
    state.faults = Faults(store, random.Random(config.seed))
    if config.faults and store.get_setting(FAULTS_KEY) is None:
        state.faults.replace(config.faults)
    default_policy = RatePolicy.parse(config.rate_limit) if config.rate_limit else None
    state.rate_limiter = RateLimiter(store, clock, default_policy)
    from . import admin

    admin.register(app, state)
    if config.seed_file and isinstance(store, MemoryStore):
        from .seeding import seed

        seed(state, json.loads(Path(config.seed_file).read_text()))
    app.before_request(lambda: _start(state))
    app.teardown_request(lambda _: state.store.pin_settings(False))
    app.before_request(lambda: _inject_fault(state))
    app.before_request(lambda: _rate_limit(state))
    if config.self_check:
        app.after_request(lambda response: _self_check(state, response))
    app.after_request(lambda response: _record(state, response))
    return app


def open_journal(store: Store, size: int, workers: int = 1) -> Journal:
    """The journal lives where the returns do, so that every worker process writes to the same one."""
    if isinstance(store, SqliteStore):
        return SqliteJournal(store, size, shared=workers > 1)
    return MemoryJournal(size)


def mock_state(app: Flask) -> MockState:
    state: MockState = app.extensions["returns_mock"]
    return state


# --- routes ------------------------------------------------------------------------------------


def _register(app: Flask, state: MockState, api: ProviderApi) -> None:
    prefix = api.contract.mock_prefix
    handlers = api.handlers
    for op in api.contract.operations:
        rule = prefix + re.sub(r"\{(\w+)\}", r"<\1>", op.path)
        endpoint = f"{api.name}.{op.operation_id}"
        state.operations[endpoint] = (api, op)
        app.add_url_rule(rule, endpoint=endpoint, view_func=_view(api, op, handlers[op.operation_id]),
                         methods=[op.method], provide_automatic_options=False)

    document = orjson.dumps(api.contract.bundled_openapi())
    app.add_url_rule(f"/{api.name}/openapi.json", endpoint=f"{api.name}.openapi",
                     view_func=lambda: Response(document, 200, mimetype="application/json"),
                     methods=["GET"], provide_automatic_options=False)


def _view(api: ProviderApi, op: Operation, handler: Any) -> Any:
    def view(**path_values: str) -> Response:
        # The credentials were decoded once already; authenticate again only to say why they are refused.
        account = _caller(api) or api.authenticate(request.headers.get("Authorization"))
        g.account = account
        path = _parameters(api, op, "path", path_values)
        query = _parameters(api, op, "query", request.args)
        body = _body(api, op) if op.body_validator is not None else None
        status, payload = handler(Call(account=account, path=path, query=query, body=body))
        return _json(status, api.success_body(payload, _request_id(), _timestamp()))

    view.__name__ = f"{api.name}_{op.operation_id}"
    return view


def _parameters(api: ProviderApi, op: Operation, location: str, given: Any) -> dict[str, Any]:
    values, found = op.check_parameters(location, given)
    if found:
        raise _invalid(api, found)
    return values


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _body(api: ProviderApi, op: Operation) -> Any:
    raw = request.get_data(cache=True)
    if not raw:
        if op.body_required:
            raise api.error(400, BAD_REQUEST, "Request body is required: send a JSON object.",
                            [{"location": "body", "message": "the body is empty"}])
        return {}
    mimetype = request.mimetype
    if mimetype != "application/json" and not mimetype.endswith("+json"):
        message = f"Content-Type must be application/json, not {mimetype or 'missing'}."
        raise api.error(400, BAD_REQUEST, message,
                        [{"field": "Content-Type", "location": "header", "message": message}])
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:  # refused, or beyond orjson (big integers): the stdlib says which
        body = _parse_json(api, raw)
    assert op.body_validator is not None
    found = problems(op.body_validator, body)
    if found:
        raise _invalid(api, found)
    return body


def _parse_json(api: ProviderApi, raw: bytes) -> Any:
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except UnicodeDecodeError as exc:
        raise _bad_json(api, f"the body is not valid UTF-8 (byte {exc.start})") from None
    except RecursionError:
        raise _bad_json(api, "the body is nested too deeply") from None
    except ValueError as exc:
        raise _bad_json(api, str(exc)) from None


def _bad_json(api: ProviderApi, reason: str) -> ProviderError:
    return api.error(400, BAD_REQUEST, f"Request body is not valid JSON: {reason}.",
                     [{"location": "body", "message": reason}])


def _invalid(api: ProviderApi, found: list[Problem]) -> ProviderError:
    more = f" (and {len(found) - 1} more problem{'s' if len(found) > 2 else ''})" if len(found) > 1 else ""
    error = api.error(422, VALIDATION_ERROR, f"Request does not match the contract: {found[0].message}{more}.",
                      [p.as_detail() for p in found])
    error.schema_locations = [p.schema for p in found]
    return error


# --- responses and errors ----------------------------------------------------------------------


def _request_id() -> str:
    if "request_id" not in g:
        state: MockState = _state()
        g.request_id = state.ids.new("req", 24)
    return str(g.request_id)


def _timestamp() -> str:
    """The request's instant, read from the clock once: the envelope and the journal agree."""
    at: str | None = g.get("at")
    if at is None:
        at = g.at = isoformat(_state().clock.now())
    return at


def _state() -> MockState:
    from flask import current_app

    return mock_state(current_app)


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status, headers=headers, mimetype="application/json")


def _api_for_path(state: MockState, path: str) -> ProviderApi | None:
    for name, api in state.apis.items():
        if path == f"/{name}" or path.startswith(f"/{name}/"):
            return api
    return None


def _provider(state: MockState) -> ProviderApi | None:
    """The provider this request is for, found once per request (None: admin, index, OpenAPI documents)."""
    if "api" not in g:
        path = request.path
        g.api = None if path.endswith("/openapi.json") else _api_for_path(state, path)
    api: ProviderApi | None = g.api
    return api


def _caller(api: ProviderApi) -> str | None:
    """The account the credentials name, or None if they are unusable; decoded once per request."""
    if "caller" not in g:
        g.caller = api.rate_key(request.headers.get("Authorization"))
    caller: str | None = g.caller
    return caller


# Refusals that are the client's fault against the contract (not a refusal for a reason of state).
CLIENT_FAULTS = frozenset({400, 401, 405, 413, 422})


def _render_error(state: MockState, error: ProviderError) -> Response:
    api = _api_for_path(state, request.path)
    if api is not None and (error.status in CLIENT_FAULTS or (error.status == 404 and request.url_rule is None)):
        schemas = error.schema_locations + [""] * len(error.details)
        g.violations = [(str(d.get("field", "")), str(d.get("location", "")), str(d["message"]), schema)
                        for d, schema in zip(error.details, schemas, strict=False)] or [
                            ("", "request", error.message, "")]
    headers = dict(error.headers)
    if api is None:
        body: Any = {"error": {"code": error.code, "message": error.message, "details": error.details}}
    else:
        body = api.error_body(error, _request_id(), _timestamp())
    return _json(error.status, body, headers)


_KINDS = {400: BAD_REQUEST, 404: NOT_FOUND, 405: METHOD_NOT_ALLOWED, 413: PAYLOAD_TOO_LARGE}


def _register_errors(app: Flask, state: MockState) -> None:
    @app.errorhandler(ProviderError)
    def provider_error(error: ProviderError) -> Response:
        return _render_error(state, error)

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Response:
        status = error.code or 500
        kind = _KINDS.get(status, INTERNAL_ERROR if status >= 500 else BAD_REQUEST)
        api = _api_for_path(state, request.path)
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
        else:
            message = error.description or error.name
        return _render_error(state, ProviderError(status, code, message, [], headers))

    @app.errorhandler(Exception)
    def unexpected(error: Exception) -> Response:
        if isinstance(error, ContractViolation) or app.testing:
            raise error
        app.logger.exception("unexpected error")
        api = _api_for_path(state, request.path)
        code = api.code(INTERNAL_ERROR) if api else INTERNAL_ERROR
        return _render_error(state, ProviderError(500, code, f"Internal error in the mock: {error!r}."))


def _start(state: MockState) -> None:
    g.started = time.perf_counter()
    state.store.pin_settings(True)


_FAULT_KINDS = {429: RATE_LIMIT_EXCEEDED, 500: INTERNAL_ERROR, 502: "bad_gateway", 503: "service_unavailable",
                504: "gateway_timeout", 400: BAD_REQUEST, 404: NOT_FOUND, 413: PAYLOAD_TOO_LARGE}


def _inject_fault(state: MockState) -> Response | None:
    api = _provider(state)
    if api is None or state.faults is None:
        return None
    relative = request.path[len(api.contract.mock_prefix):] or "/"
    outcome = state.faults.pick(api.name, request.method, relative, _caller(api))
    if outcome is None:
        return None
    g.fault = outcome.label
    if outcome.latency_ms:
        time.sleep(outcome.latency_ms / 1000)
    if outcome.drop:
        return Response(dropped_body(), 200, mimetype="application/json", headers={"Content-Length": "4096"})
    if outcome.status is not None:
        kind = _FAULT_KINDS.get(outcome.status, "internal_error" if outcome.status >= 500 else BAD_REQUEST)
        headers = {"Retry-After": "1"} if outcome.status == 429 else {}
        raise api.error(outcome.status, kind, f"Injected fault: {outcome.label}.", [], headers)
    return None


def _rate_limit(state: MockState) -> None:
    if g.get("fault"):  # a faulted request is answered by the fault, not counted
        return
    api = _provider(state)
    if api is None or not api.rate_limited or state.rate_limiter is None:
        return
    key = _caller(api) or f"anonymous:{request.remote_addr}"
    decision = state.rate_limiter.hit(key)
    g.rate_headers = decision.headers()
    if not decision.allowed:
        message = (f"Rate limit exceeded: {decision.limit} requests per {state.rate_limiter.policy().period} "
                   f"for this API key. Retry after {decision.retry_after} s.")
        raise api.error(429, RATE_LIMIT_EXCEEDED, message, [{"location": "header", "field": "Authorization",
                                                             "message": message}])


def _record(state: MockState, response: Response) -> Response:
    """Journal every provider request, with the contract violations it carried."""
    api = _provider(state)
    if api is None:
        return response
    # The objects behind the context-local proxies, read once: each proxy access costs a lookup.
    req: Request = request._get_current_object()  # type: ignore[attr-defined]
    ctx = g._get_current_object()
    response.headers.update(ctx.get("rate_headers", {}))
    account = ctx.get("account")
    violations = tuple(
        JournalViolation(0, req.method, req.path, api.name, account, response.status_code,
                         field_, location, message, schema)
        for field_, location, message, schema in ctx.get("violations", ()))
    try:
        body = req.get_data(cache=True)[:BODY_LIMIT]
    except HTTPException:  # over the size limit: not kept
        body = None
    dropped = response.is_streamed
    state.journal.record(Entry(
        id=0, at=_timestamp(), provider=api.name, account=account, method=req.method,
        path=req.path, query=req.query_string.decode("latin-1"), status=response.status_code,
        duration_ms=round((time.perf_counter() - ctx.get("started", time.perf_counter())) * 1000, 3),
        request_body=body or None, response_body=b"" if dropped else response.get_data()[:BODY_LIMIT],
        violations=violations, fault=ctx.get("fault", "")))
    return response


def _self_check(state: MockState, response: Response) -> Response:
    """Validate what the mock answers against its own contract (switched on in tests)."""
    api = _provider(state)
    if api is None or g.get("fault"):
        return response
    endpoint = request.url_rule.endpoint if request.url_rule else None
    status = response.status_code
    where = f"{request.method} {request.path} -> {status}"
    if endpoint in state.operations:
        _, op = state.operations[endpoint]
        if status not in op.responses:
            _violation(state, f"{where}: status {status} is not documented for {op.operation_id}")
        validator = op.responses.get(status)
    else:
        validator = api.contract.validator("error.json")
    if validator is not None:
        body = orjson.loads(response.get_data())
        issues = problems(validator, body, "response")
        if issues:
            _violation(state, f"{where}: " + "; ".join(p.message for p in issues))
    return response


def _violation(state: MockState, message: str) -> None:
    state.self_check_failures.append(message)
    raise ContractViolation(message)


def validate_contracts() -> None:
    """Load and compile every contract at start-up, so a broken contract fails before serving."""
    for provider in PROVIDERS:
        c = contract(provider)
        c.operations  # noqa: B018 - compiles every validator
        c.bundled_openapi()
