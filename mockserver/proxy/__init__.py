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

import json
import os
from collections.abc import Hashable
from datetime import UTC, datetime
from typing import Any

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from mockserver.contract import contract, masking
from mockserver.domain.ids import IdGenerator
from mockserver.pipeline import Pipeline
from mockserver.pipeline.steps import (
    CheckRequest,
    NameTheAccount,
    RecordInJournal,
    RefuseAtTheDoor,
    RefuseLateBodies,
)
from mockserver.providers.face import Face
from mockserver.providers.registry import REGISTRY
from mockserver.proxy.config import ProxyConfig
from mockserver.proxy.forward import Forward, Record, RefuseEscapes, RefuseUnforwardable
from mockserver.store.journal import MemoryJournal
from mockserver.version import __version__
from mockserver.web import door
from mockserver.web.admin import AdminError, control_plane, json_response, outside_providers
from mockserver.web.guard import BrowserGuard
from mockserver.web.mirror import Mirror
from mockserver.web.serving import Server, in_worker

ENV_VAR = "RETURNS_MOCK_PROXY"

__all__ = ["ENV_VAR", "ProxyConfig", "app_from_env", "create_proxy_app", "server_from_env"]


def app_from_env() -> Flask:
    """The proxy's Flask app, configured through RETURNS_MOCK_PROXY."""
    return create_proxy_app(ProxyConfig(**json.loads(os.environ[ENV_VAR])))


def server_from_env() -> Server:
    """What `returns-mock proxy` runs in its worker: the app behind granian's ASGI interface, each exchange
    with an upstream on a thread of its own (mockserver.web.serving); shadowing, one account's exchanges in
    turn."""
    config = ProxyConfig(**json.loads(os.environ[ENV_VAR]))
    app = create_proxy_app(config)
    prefixes = tuple((contract(name).mock_prefix, name) for name in config.upstreams)

    def turn(environ: dict[str, object]) -> Hashable | None:
        path = str(environ["PATH_INFO"])
        for prefix, name in prefixes:
            if path == prefix or path.startswith(prefix + "/"):
                return name, environ.get("HTTP_AUTHORIZATION")
        return None

    return in_worker(app.wsgi_app, forwards=True, turn=turn if config.shadow else None)


class WallClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class _Proxy:
    def __init__(self, config: ProxyConfig) -> None:
        self.config = config
        # The providers' faces, only to answer in their format (errors) and to name the account.
        self.faces: dict[str, Face[Any]] = {name: REGISTRY[name].face({}) for name in config.upstreams}
        self.journal = MemoryJournal(config.journal_size)
        self.shadow = Mirror(config.drift_ignore, config.journal_size, max_bytes=config.drift_size) \
            if config.shadow else None
        steps = [RefuseAtTheDoor(), RefuseLateBodies(), NameTheAccount(), RefuseEscapes(), RefuseUnforwardable(),
                 CheckRequest("all" if config.strict else "none"), RecordInJournal(self.journal, masked=True)]
        if config.record:
            steps.append(Record(config.record, config.upstreams))
        self.pipeline = Pipeline(self.faces, steps, Forward(config, self.shadow), WallClock(), IdGenerator())


def create_proxy_app(config: ProxyConfig) -> Flask:
    app = Flask("mockserver.proxy")
    state = _Proxy(config)

    def forward(rest: str = "") -> Response:
        return door.run(state.pipeline, door.current())

    for name in config.upstreams:
        prefix = contract(name).mock_prefix
        methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
        app.add_url_rule(prefix, endpoint=f"{name}.root", view_func=forward, methods=methods,
                         provide_automatic_options=False)
        app.add_url_rule(prefix + "/<path:rest>", endpoint=f"{name}.forward", view_func=forward, methods=methods,
                         provide_automatic_options=False)

    _admin(app, state)
    prefixes = {name: contract(name).mock_prefix for name in config.upstreams}
    paths = [prefix + op.path for name, prefix in prefixes.items() for op in contract(name).operations]

    def forwarded(path: str) -> bool:
        return any(path == base or path.startswith(base + "/") for base in prefixes.values())

    @app.errorhandler(HTTPException)
    def elsewhere(error: HTTPException) -> Response:
        # Whatever Flask's routes do not take under a provider's path (a method such as BREW, a path with a
        # newline) is the pipeline's too: forwarded or refused, in the provider's format. A path under no
        # provider (the real API's base path kept, a mistyped admin route): JSON with a hint.
        if forwarded(request.path):
            return door.run(state.pipeline, door.current())
        return outside_providers(error, prefixes, [*paths, *(rule.rule for rule in app.url_map.iter_rules())])

    app.wsgi_app = BrowserGuard(app.wsgi_app, config.allowed_hosts,  # type: ignore[method-assign]
                                token=config.admin_token, renders=forwarded)
    return app



def _admin(app: Flask, state: _Proxy) -> None:
    admin = control_plane(state.journal, tuple(state.faces))

    @app.get("/")
    def index() -> Response:
        return json_response(200, {"service": "returns-mock proxy", "version": __version__, "providers": {
            name: {"base_url": face.contract.mock_prefix, "upstream": masking.url(state.config.upstreams[name])}
            for name, face in state.faces.items()}})

    @admin.get("/health")
    def health() -> Response:
        return json_response(200, {"status": "ok", "version": __version__, "mode": "proxy",
                           "shadow": state.shadow is not None,
                           "upstreams": {name: masking.url(u) for name, u in state.config.upstreams.items()}})

    @admin.get("/drift")
    def drift() -> Response:
        return json_response(200, _shadow(state).log.as_json())

    @admin.delete("/drift")
    def clear_drift() -> Response:
        _shadow(state).clear()
        return Response(status=204)

    app.register_blueprint(admin)


def _shadow(state: _Proxy) -> Mirror:
    if state.shadow is None:
        raise AdminError(409, "not_shadowing", "This proxy compares nothing: start it with --shadow.")
    return state.shadow
