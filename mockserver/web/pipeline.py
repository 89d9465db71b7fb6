"""The per-request steps around every provider operation, in one explicit order.

Before the view: faults (a faulted request is answered by the fault and counts nowhere), then the rate
limit, then, while the mock varies its answers, a drawn latency or documented error. After it, on every
answer the provider part gave (errors included): the rate-limit headers, the variation of a success
answer, the journal, then the response self-check (of the varied answer). Each step reads and writes
the request's `RequestContext`, nothing else.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import orjson
from flask import Flask, Response
from werkzeug.exceptions import HTTPException, RequestTimeout

from .. import process
from ..config import Config
from ..contracts import Operation, problems
from ..errors import ProviderError
from ..faults import dropped_body
from ..http import (
    BAD_REQUEST,
    INTERNAL_ERROR,
    NOT_FOUND,
    PAYLOAD_TOO_LARGE,
    RATE_LIMIT_EXCEEDED,
    REQUEST_TIMEOUT,
    ProviderApi,
)
from ..journal import BODY_LIMIT, Entry, Violation
from ..mock import Mock
from .context import RequestContext, begin, current
from .serving import BODY_TIMED_OUT, DEFERRED_DELAY

WORKER_HEADER = "X-Returns-Mock-Worker"


class ContractViolation(AssertionError):
    """The mock answered something its own contract does not allow (response self-check)."""


class Step:
    """One step of the pipeline; `before` may answer the request itself, `after` may change the answer."""

    def before(self, ctx: RequestContext) -> Response | None:
        return None

    def after(self, ctx: RequestContext, response: Response) -> Response:
        return response


_FAULT_KINDS = {429: RATE_LIMIT_EXCEEDED, 500: INTERNAL_ERROR, 502: "bad_gateway", 503: "service_unavailable",
                504: "gateway_timeout", 400: BAD_REQUEST, 404: NOT_FOUND, 413: PAYLOAD_TOO_LARGE}


class InjectFaults(Step):
    def before(self, ctx: RequestContext) -> Response | None:
        api = ctx.api
        if api is None or not ctx.mock.faults.armed():
            return None
        req = ctx.request
        relative = req.path[len(api.contract.mock_prefix):] or "/"
        outcome = ctx.mock.faults.pick(api.name, req.method, relative, ctx.caller)
        if outcome is None:
            return None
        ctx.fault = outcome.label
        if outcome.latency_ms:
            _delay(ctx, outcome.latency_ms)
        if outcome.drop:
            return Response(dropped_body(), 200, mimetype="application/json", headers={"Content-Length": "4096"})
        if outcome.status is not None:
            unmetered(ctx)  # answered by the fault: counted nowhere, yet its answer carries the headers
            raise _made_up_error(ctx, api, outcome.status, f"Injected fault: {outcome.label}.")
        return None


def _made_up_error(ctx: RequestContext, api: ProviderApi, status: int, message: str) -> ProviderError:
    """An error the provider's rules did not give (a fault's, a varied answer's), as the provider says it."""
    kind = _FAULT_KINDS.get(status, INTERNAL_ERROR if status >= 500 else BAD_REQUEST)
    headers = {}
    if status in (429, 503):  # as the provider's own 429 and an overloaded server's 503 say
        headers["Retry-After"] = "1"
    if status == 429 and ctx.rate_headers:
        ctx.rate_headers["X-RateLimit-Remaining"] = "0"
    return api.error(status, kind, message, [], headers)


def _delay(ctx: RequestContext, ms: int) -> None:
    environ = ctx.request.environ
    if DEFERRED_DELAY in environ:  # the server sleeps it, holding no thread (mockserver.web.serving)
        environ[DEFERRED_DELAY] += ms / 1000
    else:
        time.sleep(ms / 1000)


def _rate_key(ctx: RequestContext) -> str:
    return ctx.caller or f"anonymous:{ctx.request.remote_addr}"


def unmetered(ctx: RequestContext) -> None:
    """The rate-limit headers for an answer that does not count (a fault's, a 408), as the provider puts
    them on every answer of a rate-limited API."""
    if ctx.api is not None and ctx.api.rate_limited:
        ctx.rate_headers = ctx.mock.rate_limiter.peek(_rate_key(ctx)).headers()


class LimitRate(Step):
    def before(self, ctx: RequestContext) -> Response | None:
        api = ctx.api
        if api is None or not api.rate_limited:
            return None
        limiter = ctx.mock.rate_limiter
        decision = limiter.hit(_rate_key(ctx))
        ctx.rate_headers = decision.headers()
        if not decision.allowed:
            message = (f"Rate limit exceeded: {decision.limit} requests per {decision.period} "
                       f"for this API key. Retry after {decision.retry_after} s.")
            raise api.error(429, RATE_LIMIT_EXCEEDED, message, [{"location": "header", "field": "Authorization",
                                                                 "message": message}])
        return None

    def after(self, ctx: RequestContext, response: Response) -> Response:
        # Every answer of a rate-limited API carries them: counted ones, refusals, faults and 408s (peeked).
        response.headers.update(ctx.rate_headers)
        return response


class Vary(Step):
    """While the mock varies its answers (mockserver.variation): before the rules, maybe a latency and
    one of the operation's documented errors instead of its answer; after them, the answer varied."""

    def __init__(self, operations: Mapping[str, tuple[ProviderApi, Operation]]) -> None:
        self.operations = operations

    def _operation(self, ctx: RequestContext) -> Operation | None:
        rule = ctx.request.url_rule
        found = self.operations.get(str(rule.endpoint)) if rule is not None else None
        return found[1] if found is not None else None

    def before(self, ctx: RequestContext) -> Response | None:
        api = ctx.api
        if api is None:
            return None
        variation = ctx.mock.varying.current()
        op = self._operation(ctx) if variation is not None else None
        if variation is None or op is None:
            return None
        ctx.variation = variation
        latency = variation.latency_ms()
        if latency:
            ctx.varied.append(f"latency: {latency} ms")
            _delay(ctx, latency)
        status = variation.error(op.responses)
        if status is not None:
            ctx.varied.append(f"status: {status}")
            raise _made_up_error(ctx, api, status, f"Varied answer: the documented {status} (returns-mock vary).")
        return None

    def after(self, ctx: RequestContext, response: Response) -> Response:
        variation, api = ctx.variation, ctx.api
        if variation is None or api is None or ctx.fault or not 200 <= response.status_code < 300:
            return response
        op = self._operation(ctx)
        validator = op.responses.get(response.status_code) if op is not None else None
        if validator is None or response.is_streamed:
            return response
        try:
            sent = orjson.loads(ctx.request.get_data(cache=True) or b"null")
        except (orjson.JSONDecodeError, HTTPException):
            sent = None
        body, changes = variation.answer(validator, api.contract.registry, orjson.loads(response.get_data()), sent)
        if changes:
            response.set_data(orjson.dumps(body))
            ctx.varied += [change.describe() for change in changes]
        return response


class RecordInJournal(Step):
    """Journal every provider request, with the contract violations it carried."""

    def after(self, ctx: RequestContext, response: Response) -> Response:
        api = ctx.api
        if api is None:
            return response
        req = ctx.request
        account = ctx.account
        dropped = response.is_streamed  # only a dropped-connection fault streams: the client got no status
        status = 0 if dropped else response.status_code
        violations = tuple(Violation(0, req.method, req.path, api.name, account, status,
                                     v.field, v.location, v.message, v.schema) for v in ctx.violations)
        try:
            body = req.get_data(cache=True)[:BODY_LIMIT]
        except HTTPException:  # over the size limit: not kept
            body = None
        ctx.mock.journal.record(Entry(
            id=0, at=ctx.at, provider=api.name, account=account, method=req.method,
            path=req.path, query=req.query_string.decode("latin-1"), status=status,
            duration_ms=round((time.perf_counter() - ctx.started + req.environ.get(DEFERRED_DELAY, 0)) * 1000, 3),
            request_body=body or None, response_body=b"" if dropped else response.get_data()[:BODY_LIMIT],
            violations=violations, fault=ctx.fault, varied=tuple(ctx.varied)))
        return response


class NameTheWorker(Step):
    """With several worker processes or replicas, say which one answered (X-Returns-Mock-Worker: its pid)."""

    def after(self, ctx: RequestContext, response: Response) -> Response:
        response.headers[WORKER_HEADER] = str(process.pid())
        return response


class SelfCheck(Step):
    """Validate what the mock answers against its own contract (switched on in tests)."""

    def __init__(self, operations: Mapping[str, tuple[ProviderApi, Operation]], failures: list[str]) -> None:
        self.operations = operations
        self.failures = failures

    def after(self, ctx: RequestContext, response: Response) -> Response:
        api = ctx.api
        if api is None or ctx.fault:
            return response
        req = ctx.request
        endpoint = str(req.url_rule.endpoint) if req.url_rule else ""
        status = response.status_code
        where = f"{req.method} {req.path} -> {status}"
        if endpoint in self.operations:
            _, op = self.operations[endpoint]
            if status not in op.responses:
                self._violation(f"{where}: status {status} is not documented for {op.operation_id}")
            validator = op.responses.get(status)
        else:
            validator = api.contract.validator("error.json")
        if validator is not None:
            issues = problems(validator, orjson.loads(response.get_data()), "response")
            if issues:
                self._violation(f"{where}: " + "; ".join(p.message for p in issues))
        return response

    def _violation(self, message: str) -> None:
        self.failures.append(message)
        raise ContractViolation(message)


def default_steps(config: Config, operations: Mapping[str, tuple[ProviderApi, Operation]],
                  self_check_failures: list[str], *, shared_store: bool = False) -> list[Step]:
    steps: list[Step] = [InjectFaults(), LimitRate(), Vary(operations), RecordInJournal()]
    if config.workers > 1 or shared_store:  # several processes may answer: say which one did
        steps.append(NameTheWorker())
    if config.self_check:
        steps.append(SelfCheck(operations, self_check_failures))
    return steps


class Pipeline:
    """Runs the steps' `before` in order ahead of the view and their `after` in order on its answer."""

    def __init__(self, mock: Mock, steps: Sequence[Step]) -> None:
        self.mock = mock
        self.steps = tuple(steps)

    def init_app(self, app: Flask) -> None:
        app.before_request(self.before)
        app.after_request(self.after)
        app.teardown_request(self.teardown)

    def before(self) -> Response | None:
        ctx = begin(self.mock)
        store = self.mock.store
        if ctx.request.environ.get(BODY_TIMED_OUT):
            message = "The request body did not arrive in time; send it whole, promptly."
            if ctx.api is None:
                raise RequestTimeout(message)
            ctx.account = ctx.caller  # journaled under the account its credentials name
            unmetered(ctx)
            raise ctx.api.error(408, REQUEST_TIMEOUT, message, [{"location": "body", "message": message}],
                                {"Connection": "close"})
        store.check(0.1)  # a store file deleted under the server: 503 (every write checks at once)
        store.pin_settings(True)
        for step in self.steps:
            answer = step.before(ctx)
            if answer is not None:
                return answer
        return None

    def after(self, response: Response) -> Response:
        ctx = current(self.mock)
        for step in self.steps:
            response = step.after(ctx, response)
        return response

    def teardown(self, _: BaseException | None) -> None:
        self.mock.store.pin_settings(False)
