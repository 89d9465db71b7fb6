"""The Flask application over a `Mock`: each provider's prefix, every route generated from the contracts.

Each OpenAPI operation becomes a route that hands the request, with its operation, to the pipeline
(`mockserver.pipeline`): faults, rate limit, variation, authentication, the request check, the
provider's handler over its backend, the journal, the self-check. Whatever else is under a provider's
path goes through the same pipeline (404 or 405 in the provider's format). The control plane, the
index and the OpenAPI documents are plain Flask views.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed, RequestTimeout
from werkzeug.routing import Rule

from mockserver import process
from mockserver.contract import Operation, contract, folders
from mockserver.contract.errors import ProviderError, StoreUnavailable
from mockserver.domain.clock import Clock
from mockserver.domain.config import Config
from mockserver.domain.mock import Mock
from mockserver.pipeline import ContractViolation, Pipeline, Serve, Step
from mockserver.pipeline.steps import (
    WORKER_HEADER,
    Authenticate,
    CheckRequest,
    InjectFaults,
    LimitRate,
    NameTheWorker,
    RecordInJournal,
    RefuseAtTheDoor,
    RefuseLateBodies,
    SelfCheck,
    UseStore,
    Vary,
    VaryState,
)
from mockserver.providers.face import Face, kind_of
from mockserver.providers.registry import REGISTRY, build_mock
from mockserver.store import Store
from mockserver.store.sqlite_file import store_away
from mockserver.version import __version__
from mockserver.web import door
from mockserver.web.admin import json_response, outside_providers
from mockserver.web.admin import register as register_admin
from mockserver.web.guard import REFUSED, BrowserGuard, refused
from mockserver.web.serving import BODY_TIMED_OUT

__all__ = ["ContractViolation", "WebMock", "create_app", "mock_of", "served", "validate_contracts"]

_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


@dataclass
class WebMock:
    """The Flask extension: the Mock an app serves, with what only the web side knows: the providers'
    faces, the pipeline, every route's operation."""

    mock: Mock
    faces: dict[str, Face[Any]] = field(default_factory=dict)
    operations: dict[str, tuple[Face[Any], Operation]] = field(default_factory=dict)
    """Every route's endpoint name and the operation it serves."""
    self_check_failures: list[str] = field(default_factory=list)
    pipelined: set[str] = field(default_factory=set)
    """The endpoints answered through the pipeline (every provider path)."""

    def _outside_providers(self) -> Response | None:
        if request.endpoint in self.pipelined:
            return None  # the pipeline checks the store itself (mockserver.pipeline.steps.UseStore)
        door = request.environ.get(REFUSED)
        if door is not None and request.endpoint is not None:  # a document under a provider's name
            status, headers, body = refused(*door)
            return Response(body, status, headers=headers)
        if request.environ.get(BODY_TIMED_OUT):
            raise RequestTimeout("The request body did not arrive in time; send it whole, promptly.")
        self.mock.store.check(0.1)  # a store file deleted under the server: 503 (every write checks at once)
        self.mock.store.pin_settings(True)
        return None

    def _after_outside_providers(self, _: BaseException | None) -> None:
        if request.endpoint not in self.pipelined:  # the pipeline unpins its own (UseStore.finish)
            self.mock.store.pin_settings(False)

    def _name_the_worker(self, response: Response) -> Response:
        if request.endpoint not in self.pipelined:  # the pipeline names it (NameTheWorker)
            response.headers[WORKER_HEADER] = str(process.pid())
        return response

    def init_app(self, app: Flask) -> None:
        mock = self.mock
        app.config["MAX_CONTENT_LENGTH"] = mock.config.max_body_bytes
        app.extensions["returns_mock"] = self
        self.faces = {name: REGISTRY[name].face(mock.config.options(name)) for name in mock.backends}
        handlers = {name: face.handlers(mock.backends[name]) for name, face in self.faces.items()}
        pipeline = Pipeline(self.faces, default_steps(mock, self.self_check_failures), Serve(handlers), mock.clock,
                            mock.ids, raise_unexpected=lambda: app.testing)
        for face in self.faces.values():
            self._register(app, pipeline, face)
        _register_errors(app, pipeline)

        @app.get("/")
        def index() -> Response:
            return json_response(200, {
                "service": "returns-mock",
                "version": __version__,
                "store": mock.store.shown,
                "engine": mock.store.engine,
                "providers": {
                    name: {"base_url": face.contract.mock_prefix, "openapi": f"/{name}/openapi.json"}
                    for name, face in self.faces.items()
                },
            })

        register_admin(app, mock)
        app.wsgi_app = BrowserGuard(app.wsgi_app, mock.config.allowed_hosts,  # type: ignore[method-assign]
                                    token=mock.config.admin_token, renders=pipeline.face_for)
        # The control plane, the index and the documents: the store checked, its settings read once.
        app.before_request(self._outside_providers)
        app.teardown_request(self._after_outside_providers)
        if mock.config.workers > 1 or mock.store.shared:
            app.after_request(self._name_the_worker)

    def _register(self, app: Flask, pipeline: Pipeline, face: Face[Any]) -> None:
        prefix = face.contract.mock_prefix
        for op in face.contract.operations:
            rule = prefix + re.sub(r"\{(\w+)\}", r"<\1>", op.path)
            endpoint = f"{face.name}.{op.operation_id}"
            self.operations[endpoint] = (face, op)
            app.add_url_rule(rule, endpoint=endpoint, view_func=_view(pipeline, op),
                             methods=[op.method], provide_automatic_options=False)
            self.pipelined.add(endpoint)
        # Whatever else is under the provider's path goes through the pipeline too: 404 or 405 in its format.
        anything = _view(pipeline, None)
        for rule, endpoint in ((f"/{face.name}", f"{face.name}.root"),
                               (f"/{face.name}/<path:rest>", f"{face.name}.other")):
            app.add_url_rule(rule, endpoint=endpoint, view_func=anything, methods=_METHODS,
                             provide_automatic_options=False)
            self.pipelined.add(endpoint)

        document = orjson.dumps(face.contract.bundled_openapi())
        app.add_url_rule(f"/{face.name}/openapi.json", endpoint=f"{face.name}.openapi",
                         view_func=lambda: Response(document, 200, mimetype="application/json"),
                         methods=["GET"], provide_automatic_options=False)


def default_steps(mock: Mock, self_check_failures: list[str]) -> list[Step]:
    steps: list[Step] = [RefuseAtTheDoor(), RefuseLateBodies(), UseStore(mock.store), InjectFaults(mock.faults),
                         LimitRate(mock.rate_limiter), Vary(mock.varying), Authenticate(), CheckRequest("first"),
                         VaryState(mock.portal), RecordInJournal(mock.journal)]
    if mock.config.workers > 1 or mock.store.shared:  # several processes may answer: say which one did
        steps.append(NameTheWorker())
    if mock.config.self_check:
        steps.append(SelfCheck(self_check_failures))
    return steps


class _Rule(Rule):
    """A route whose URL builders (werkzeug compiles two Python functions per route when it is added, used
    only by url_for) are compiled at their first use: most of a new app's cost, paid by every fuzzed run's
    fresh mock, for builders the mock never calls."""

    def _compile_builder(self, append_unknown: bool = True) -> Callable[..., tuple[str, str]]:
        def build(rule: Rule, **values: Any) -> tuple[str, str]:
            compiled = Rule._compile_builder(rule, append_unknown).__get__(rule, None)
            setattr(rule, "_build_unknown" if append_unknown else "_build", compiled)
            return compiled(**values)  # type: ignore[no-any-return]

        return build


def create_app(mock: Mock | Config | None = None, *, store: Store | None = None,
               clock: Clock | None = None) -> Flask:
    """A Flask app serving `mock`; given a Config (or nothing), a Mock of every registered provider."""
    if not isinstance(mock, Mock):
        mock = build_mock(mock, store=store, clock=clock)
    app = Flask("mockserver")
    app.url_rule_class = _Rule
    WebMock(mock).init_app(app)
    return app


def served(app: Flask) -> WebMock:
    web: WebMock = app.extensions["returns_mock"]
    return web


def mock_of(app: Flask) -> Mock:
    return served(app).mock


# --- routes ------------------------------------------------------------------------------------


def _view(pipeline: Pipeline, op: Operation | None) -> Any:
    if op is None:
        def elsewhere(rest: str = "") -> Response:
            return door.run(pipeline, door.current())

        return elsewhere

    def view(**path_values: str) -> Response:
        return door.run(pipeline, door.current(), (op, path_values))

    view.__name__ = f"{op.operation_id}_view"
    return view


# --- the control plane's and the index's errors (a provider's path answers through its pipeline) ----------



def _render(error: ProviderError) -> Response:
    body = {"error": {"code": error.code, "message": error.message, "details": error.details}}
    return json_response(error.status, body, dict(error.headers))




def _register_errors(app: Flask, pipeline: Pipeline) -> None:
    @app.errorhandler(ProviderError)
    def provider_error(error: ProviderError) -> Response:
        return _render(error)

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Response:
        if pipeline.face_for(request.path) is not None:  # a method no route takes (BREW): 405 as the provider says
            return door.run(pipeline, door.current())
        status = error.code or 500
        kind = kind_of(status)
        headers: dict[str, str] = {}
        if status == 404:
            return outside_providers(error, {name: f.contract.mock_prefix for name, f in served(app).faces.items()},
                                     [rule.rule for rule in app.url_map.iter_rules()])
        elif isinstance(error, MethodNotAllowed):
            allowed = sorted(error.valid_methods or [])
            headers["Allow"] = ", ".join(allowed)
            message = f"{request.method} is not allowed on {request.path}; allowed: {', '.join(allowed)}."
        elif status == 413:
            message = f"Request body is larger than {request.max_content_length} bytes."
        elif status == 408:
            message = error.description or "The request body did not arrive in time."
            headers["Connection"] = "close"
        else:
            message = error.description or error.name
        return _render(ProviderError(status, kind, message, [], headers))

    @app.errorhandler(StoreUnavailable)
    def store_unavailable(error: StoreUnavailable) -> Response:
        return _render(ProviderError(503, "service_unavailable", f"The mock's store is unavailable: {error}. "
                                                                 f"Retry shortly.", [], {"Retry-After": "1"}))

    @app.errorhandler(Exception)
    def unexpected(error: Exception) -> Response:
        if store_away(error):  # a read from a store file that cannot be used now (a write says so itself)
            return store_unavailable(StoreUnavailable(str(error)))
        if isinstance(error, ContractViolation) or app.testing:
            raise error
        app.logger.exception("unexpected error")
        return _render(ProviderError(500, "internal_error", f"Internal error in the mock: {error!r}."))


def validate_contracts() -> None:
    """Load and compile every contract at start-up, so a broken contract fails before serving."""
    for name in folders():
        c = contract(name)
        if "openapi.json" in c.documents:
            c.operations  # noqa: B018 - compiles every validator
            c.bundled_openapi()
