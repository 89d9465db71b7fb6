"""The control plane under /__admin: health, reset, clock, seed, returns, journal, violations, dashboard.

Errors are {"error": {"code", "message", "details"}}. With an admin token configured, every call needs
`Authorization: Bearer TOKEN` but the dashboard page and the OpenAPI document, which hold no data; the door
checks it before any body is read (mockserver.web.guard).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import os
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

import orjson
from flask import Blueprint, Flask, Response, render_template, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from mockserver.contract import Problem, contract, json_text, problems
from mockserver.contract.errors import ProviderError
from mockserver.contract.hints import closest_path, unknown_path
from mockserver.contract.validation import query_values
from mockserver.domain.clock import (
    ControllableClock,
    StoreClock,
    in_range,
    isoformat,
    parse_duration,
    parse_instant,
    shifted,
)
from mockserver.domain.config import ADMIN_MAX_BODY
from mockserver.domain.delivery_faults import chaos_profile as delivery_chaos
from mockserver.domain.delivery_faults import chaos_profiles as delivery_chaos_profiles
from mockserver.domain.faults import Rules, chaos_profile, chaos_profiles, rule_problems
from mockserver.domain.mock import Mock, Refused
from mockserver.domain.ratelimit import RatePolicy
from mockserver.domain.seeding import ScenarioError
from mockserver.providers.face import kind_of
from mockserver.store import ReturnRecord
from mockserver.store.journal import Journal
from mockserver.version import __version__

PREFIX = "/__admin"
MAX_BODY = "returns_mock.max_body"
"""Where the server put the body limit it held a request to (mockserver.web.serving)."""
DELIVERY_STATUSES = ("pending", "held", "delivered", "failed", "blocked")


class AdminError(Exception):
    def __init__(self, status: int, code: str, message: str, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details or []



def _body(schema: str) -> Any:
    try:
        body = json_text.loads(request.get_data() or b"null")
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise AdminError(400, "bad_request", f"Request body is not valid JSON: {exc}.") from None
    found = problems(contract("admin").validator(schema), body)
    if found:
        raise AdminError(422, "validation_error", f"{found[0].message}.", [p.as_detail() for p in found])
    return body


def _args() -> dict[str, str]:
    """The query, decoded from its bytes (each name's first value): a parameter that is not UTF-8 is a 400
    naming it."""
    values, undecodable = query_values(request.query_string)
    if undecodable:
        raise AdminError(400, "bad_request", f"Request query is not usable: {undecodable[0].message}.",
                         [p.as_detail() for p in undecodable])
    return values


def _query(name: str, choices: tuple[str, ...] | None = None) -> str | None:
    value = _args().get(name)
    if value is not None and choices is not None and value not in choices:
        raise AdminError(422, "validation_error", f"{name} must be one of {', '.join(choices)}.",
                         [Problem(name, f"{name} must be one of {', '.join(choices)}", "query", choices).as_detail()])
    return value


def _int_query(name: str, low: int, high: int) -> int | None:
    raw = _args().get(name)
    if raw is None:
        return None
    if not (raw.isascii() and raw.isdigit() and len(raw) < 12) or not low <= int(raw) <= high:
        message = f"{name} must be an integer from {low} to {high}"
        raise AdminError(422, "validation_error", message + ".", [Problem(name, message, "query").as_detail()])
    return int(raw)


def _status_query() -> int | None:
    """A journal entry's status: an HTTP status, or 0 (a fault rule dropped the connection: no answer)."""
    raw = request.args.get("status")
    if raw == "0":
        return 0
    if raw is not None and not (raw.isascii() and raw.isdigit() and len(raw) == 3 and 100 <= int(raw) <= 599):
        message = "status must be an HTTP status from 100 to 599, or 0 (a dropped connection: no answer)"
        raise AdminError(422, "validation_error", message + ".", [Problem("status", message, "query").as_detail()])
    return int(raw) if raw is not None else None


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    """A JSON answer of the web's own (the control plane, the index, errors outside a provider's path; the
    proxy's too)."""
    return Response(orjson.dumps(body), status, headers=headers, mimetype="application/json")


def outside_providers(error: HTTPException, prefixes: Mapping[str, str], rules: Iterable[str]) -> Response:
    """What a request under no provider's path answers, in the control plane's JSON since no provider's format
    applies: a 404 names where each provider is served and the closest served path, a 405 the methods
    allowed (the mock's app and the proxy's)."""
    status, headers, details = error.code or 500, {}, []
    message = error.description or error.name
    if status == 404:
        templates = list(rules)
        closest = closest_path(request.path, templates)
        message = unknown_path(request.method, request.path, {**prefixes, "the control plane": PREFIX}, templates)
        details = [{"location": "path", "message": message, "prefixes": dict(prefixes),
                    **({"closest": closest} if closest else {})}]
    elif isinstance(error, MethodNotAllowed):
        allowed = sorted(error.valid_methods or [])
        headers["Allow"] = ", ".join(allowed)
        message = f"{request.method} is not allowed on {request.path}; allowed: {', '.join(allowed)}."
    return json_response(status, {"error": {"code": kind_of(status), "message": message, "details": details}},
                         headers)


def _record_json(record: ReturnRecord) -> dict[str, Any]:
    return {"provider": record.provider, "account": record.account, "id": record.id, "order_id": record.order_id,
            "status": record.status, "resource": record.resource, "history": record.history}


@functools.cache
def _page_policy(page: str) -> str:
    """The dashboard's content security policy: its own inline script and style (by hash) and calls to its
    own origin, nothing else; never framed."""
    def hashes(tag: str) -> str:
        found = re.findall(rf"<{tag}>(.*?)</{tag}>", page, re.DOTALL)
        return " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(t.encode()).digest()).decode()}'" for t in found)

    return (f"default-src 'none'; script-src {hashes('script')}; style-src {hashes('style')}; connect-src 'self'; "
            "img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")


def clock_json(clock: ControllableClock) -> dict[str, Any]:
    return {"now": isoformat(clock.now()), "mode": clock.mode}


def control_plane(journal: Journal, providers: tuple[str, ...]) -> Blueprint:
    """What every server's /__admin has (the mock's and the proxy's): the admin error format, the journal,
    the violations and the dashboard page (the token is checked at the door: mockserver.web.guard)."""
    admin = Blueprint("admin", __name__, url_prefix=PREFIX, template_folder="templates")

    @admin.before_request
    def body_limit() -> None:
        # The provider body limit (--max-body-bytes) emulates the providers; seed scenarios may be larger. The
        # admin token, Host and Origin were checked at the door, before any body was read (mockserver.web.guard).
        request.max_content_length = request.environ.get(MAX_BODY, ADMIN_MAX_BODY)

    @admin.errorhandler(AdminError)
    def admin_error(error: AdminError) -> Response:
        response = json_response(error.status, {"error": {"code": error.code, "message": error.message,
                                                  "details": error.details}})
        if error.status == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="returns-mock admin"'
        return response

    @admin.get("/journal")
    def list_journal() -> Response:
        entries = journal.entries(provider=_query("provider", providers), account=_query("account"),
                                  path=_query("path"), status=_status_query(),
                                  limit=_int_query("limit", 1, 100000))
        return json_response(200, {"size": journal.size, "entries": [e.as_json() for e in entries]})

    @admin.delete("/journal")
    def clear_journal() -> Response:
        journal.clear()
        return Response(status=204)

    @admin.get("/violations")
    def violations() -> Response:
        return json_response(200, {"violations": [v.as_json() for v in journal.violations()]})

    @admin.get("/openapi.json")
    def openapi() -> Response:
        return json_response(200, contract("admin").bundled_openapi())

    @admin.get("/")
    def dashboard() -> Response:
        page = render_template("dashboard.html")
        return Response(page, 200, mimetype="text/html", headers={"Content-Security-Policy": _page_policy(page)})

    return admin


def register(app: Flask, state: Mock) -> None:
    providers = tuple(state.backends)
    admin = control_plane(state.journal, providers)

    @admin.get("/health")
    def health() -> Response:
        state.store.check()
        return json_response(200, {"status": "ok", "version": __version__, "store": state.store.shown,
                                   "engine": state.store.engine,
                                   "pid": os.getpid(), "clock": clock_json(_clock(state))})

    @admin.post("/reset")
    def reset() -> Response:
        provider = _query("provider", providers)
        account = _query("account")
        removed = state.store.reset(provider, account)
        if provider is None and account is None:
            state.journal.clear()
        return json_response(200, {"removed": removed, "provider": provider, "account": account})

    @admin.get("/clock")
    def get_clock() -> Response:
        return json_response(200, clock_json(_clock(state)))

    @admin.post("/clock")
    def move_clock() -> Response:
        body = _body("clock-request.json")
        clock = _clock(state)
        if "mode" in body and not isinstance(clock, StoreClock):
            raise AdminError(409, "clock_not_switchable", "This mock's clock was given to it in code; "
                                                          "its mode cannot be switched.")
        # Where the clock goes is worked out first: a refused request changes nothing, not even the mode.
        field = "advance" if "advance" in body else "set"
        try:
            if "advance" in body:
                target: datetime | None = shifted(clock.now(), parse_duration(body["advance"]))
            else:
                target = in_range(parse_instant(body["set"])) if "set" in body else None
        except ValueError as exc:
            raise AdminError(422, "validation_error", str(exc), [{"field": field, "message": str(exc)}]) from None
        if isinstance(clock, StoreClock) and "mode" in body:
            clock.reset(body["mode"], target or clock.now())
        elif target is not None:
            clock.set(target)
        state.settle()  # what the clock passed happens now, not at the next read
        return json_response(200, clock_json(clock))

    @admin.post("/seed")
    def seed_returns() -> Response:
        document = _body("scenario.json")
        try:
            stored = state.seed(document)
        except ScenarioError as exc:
            raise AdminError(422, "invalid_scenario", exc.message, exc.details) from None
        return json_response(201, {"seeded": len(stored), "returns": [
            {"provider": r.provider, "account": r.account, "id": r.id, "status": r.status} for r in stored]})

    @admin.get("/returns")
    def list_returns() -> Response:
        provider, account = _query("provider", providers), _query("account")
        search, limit, offset = _query("q"), _int_query("limit", 1, 1000), _int_query("offset", 0, 10**9)
        if search is None and limit is None and offset is None:  # every return (scripts, small states)
            return json_response(200, {"returns": [_record_json(r) for r in state.returns(provider, account)]})
        limit, offset = limit or 50, offset or 0
        records, total = state.store.find(provider, account, search or None, offset, limit)
        shown = [_record_json(state.settled(r)) for r in records if r.provider in providers]
        return json_response(200, {"returns": shown, "total": total, "offset": offset, "limit": limit})

    def _the_return(provider: str, return_id: str, account: str | None = None) -> ReturnRecord:
        if provider not in providers:
            raise AdminError(404, "not_found", f"Unknown provider {provider}; known: {', '.join(providers)}.")
        found, _ = state.store.find(provider, account or _query("account"), return_id, 0, 1000)
        matches = [r for r in found if r.id == return_id]
        if not matches:
            raise AdminError(404, "not_found", f"No {provider} return {return_id}.")
        if len(matches) > 1:
            accounts = sorted(r.account for r in matches)
            raise AdminError(409, "ambiguous", f"{provider} return {return_id} exists in several accounts: "
                                               f"{', '.join(accounts)}; add ?account=.")
        return matches[0]

    @admin.get("/returns/<provider>/<return_id>")
    def one_return(provider: str, return_id: str) -> Response:
        return json_response(200, _record_json(state.settled(_the_return(provider, return_id))))

    @admin.post("/returns/<provider>/<return_id>/status")
    def move_return(provider: str, return_id: str) -> Response:
        record = _the_return(provider, return_id)
        body = _body("return-status-request.json")
        try:
            state.backends[provider].move(record.account, record.id, body["status"])
        except ProviderError as exc:  # the provider's own refusal, as it would answer it
            raise AdminError(exc.status, exc.code, exc.message, exc.details) from None
        return json_response(200, _record_json(state.settled(_the_return(provider, return_id))))

    @admin.get("/lifecycles")
    def lifecycles() -> Response:
        graphs = {}
        for name, backend in state.backends.items():
            lifecycle = backend.lifecycle
            if lifecycle is not None:
                graphs[name] = {"initial": lifecycle.initial, "final": lifecycle.final,
                                "statuses": lifecycle.statuses,
                                "transitions": {s: lifecycle.allowed(s) for s in lifecycle.statuses}}
        return json_response(200, {"lifecycles": graphs})

    @admin.get("/rate-limits")
    def get_rate_limits() -> Response:
        return json_response(200, state.rate_limiter.policy().as_json())

    @admin.route("/rate-limits", methods=["PUT", "POST"])
    def set_rate_limits() -> Response:
        body = _body("rate-limit.json")
        try:
            policy = RatePolicy.from_json(body)
        except ValueError as exc:
            raise AdminError(422, "validation_error", f"{exc}.", [{"field": "windows", "message": str(exc)}]) from None
        state.rate_limiter.set_policy(policy)
        return json_response(200, policy.as_json())

    @admin.get("/webhooks/deliveries")
    def deliveries() -> Response:
        found = state.store.deliveries(account=_query("account"), status=_query("status", DELIVERY_STATUSES))
        event, subscription = _query("event"), _query("subscription")
        return json_response(200, {"deliveries": [d.as_json() for d in found
                                                  if event in (None, d.event_id, d.event_type)
                                                  and subscription in (None, d.webhook_id)]})

    @admin.post("/webhooks/deliveries/<delivery_id>/redeliver")
    def redeliver(delivery_id: str) -> Response:
        try:
            again = state.redeliver(delivery_id)
        except ProviderError as exc:
            raise AdminError(exc.status, exc.code, exc.message, exc.details) from None
        return json_response(202, {"delivery": again.as_json()})

    @admin.post("/webhooks/trigger")
    def trigger() -> Response:
        body = _body("webhook-trigger-request.json")
        provider = body.get("provider")
        if provider is None:
            owners = [name for name, hooks in state.webhooks().items() if body["event"] in hooks.events.sent()]
            provider = owners[0] if len(owners) == 1 else None
        if provider is None:
            sent = state.webhook_events()
            message = f"event: {body['event']!r} is not an event this mock sends: {', '.join(sent)}"
            raise AdminError(422, "validation_error", message + ".",
                             [Problem("event", message, "body", tuple(sent)).as_detail()])
        record = _the_return(provider, body["return"], body.get("account"))
        try:
            queued = state.trigger(body["event"], record, body.get("override"))
        except Refused as exc:
            raise AdminError(exc.status, "validation_error", exc.message, [p.as_detail() for p in exc.problems]) \
                from None
        answer: dict[str, Any] = {"deliveries": [d.as_json() for d in queued]}
        if not queued:
            answer["note"] = (f"No active subscription of account {record.account} to {body['event']}: nothing "
                              "was queued.")
        return json_response(202, answer)

    @admin.post("/webhooks/faults")
    def add_webhook_faults() -> Response:
        try:
            added = state.add_webhook_faults(_body("webhook-faults-request.json"))
        except Refused as exc:
            raise AdminError(exc.status, "validation_error", exc.message, [p.as_detail() for p in exc.problems]) \
                from None
        return json_response(201, {"rules": added})

    @admin.get("/autopilot")
    def get_autopilot() -> Response:
        return json_response(200, {"schedules": state.autopilot.schedules()})

    @admin.put("/autopilot")
    def put_autopilot() -> Response:
        body = _body("autopilot-request.json")
        try:
            (schedule,) = state.set_autopilot([body], replace=False)
        except Refused as exc:
            raise AdminError(exc.status, "validation_error", exc.message, [p.as_detail() for p in exc.problems]) \
                from None
        return json_response(200, schedule)

    @admin.delete("/autopilot")
    def delete_autopilot() -> Response:
        state.remove_autopilot(_query("provider", providers), _query("account"))
        return Response(status=204)

    @admin.post("/faults")
    def add_faults() -> Response:
        body = _body("faults-request.json")
        unknown = rule_problems(body, {name: [op.path for op in entry.contract.operations]
                                       for name, entry in state.providers.items()})
        if unknown:
            raise AdminError(422, "validation_error", f"{unknown[0].message}.", [p.as_detail() for p in unknown])
        return json_response(201, {"rules": state.faults.add(body if isinstance(body, list) else [body])})

    def varying() -> dict[str, Any]:
        latency = state.varying.latency_max_ms()
        return {"seed": state.varying.seed(), **({"latency_max_ms": latency} if latency is not None else {})}

    @admin.get("/vary")
    def vary() -> Response:
        return json_response(200, varying())

    @admin.post("/vary")
    def set_vary() -> Response:
        body = _body("vary-request.json")
        state.varying.set(body["seed"], body.get("latency_max_ms"))
        return json_response(200, varying())

    @admin.delete("/vary")
    def stop_vary() -> Response:
        state.varying.set(None)
        return Response(status=204)

    _rule_routes(admin, "/faults", state.faults, "fault rule", chaos_profiles, chaos_profile)
    _rule_routes(admin, "/webhooks/faults", state.webhook_faults, "webhook fault rule", delivery_chaos_profiles,
                 delivery_chaos)
    app.register_blueprint(admin)


def _rule_routes(admin: Blueprint, path: str, rules: Rules, what: str, profiles: Callable[[], list[str]],
                 profile: Callable[[str], list[dict[str, Any]]]) -> None:
    """GET (list) and DELETE (all) of a set of rules, DELETE of one by id, and its chaos profiles' rules."""
    name = path.strip("/").replace("/", "_")
    admin.add_url_rule(path, f"list_{name}", lambda: json_response(200, {"rules": rules.rules()}), methods=["GET"])

    def clear() -> Response:
        rules.remove()
        return Response(status=204)

    def remove(rule_id: str) -> Response:
        if not rules.remove(rule_id):
            raise AdminError(404, "not_found", f"No {what} {rule_id}.")
        return Response(status=204)

    admin.add_url_rule(path, f"clear_{name}", clear, methods=["DELETE"])
    admin.add_url_rule(f"{path}/<rule_id>", f"remove_{name}", remove, methods=["DELETE"])
    admin.add_url_rule(f"{path}/chaos", f"chaos_{name}", methods=["GET"], view_func=lambda: json_response(
        200, {"profiles": {p: profile(p) for p in profiles()}}))


def _clock(state: Mock) -> ControllableClock:
    clock = state.clock
    if not all(hasattr(clock, name) for name in ("advance", "set", "mode")):
        raise AdminError(409, "clock_not_controllable", "This mock was given a clock that cannot be moved.")
    return clock  # type: ignore[return-value]
