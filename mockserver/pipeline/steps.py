"""The steps of the pipeline, each reading and writing only the request's `Context`.

The mock runs: the body's deadline, the store, faults, the rate limit, the variation, authentication,
the request check, then its handler; after it, on every answer: the rate-limit headers, the varied
answer, the journal, the worker's name, the self-check. The proxy runs the request check, the journal
(masked) and the recording around its forwarder.
"""

from __future__ import annotations

import time
from typing import Any, Literal

import orjson

from mockserver import process
from mockserver.contract import Problem, Violation, masking, problems
from mockserver.contract.errors import ProviderError, StoreUnavailable
from mockserver.contract.validation import Refusal, check_request
from mockserver.domain.faults import DroppedBody, Faults, late_body
from mockserver.domain.portal import Portal
from mockserver.domain.ratelimit import RateLimiter
from mockserver.domain.variation import IN_PROCESS_SLEEP_MS, LATENCY_CEILING_MS, Varying
from mockserver.pipeline.context import Context
from mockserver.pipeline.exchange import Answer
from mockserver.pipeline.run import ContractViolation, Step
from mockserver.providers.face import (
    BAD_REQUEST,
    RATE_LIMIT_EXCEEDED,
    REQUEST_TIMEOUT,
    VALIDATION_ERROR,
    Face,
    kind_of,
)
from mockserver.store import Store
from mockserver.store.journal import BODY_LIMIT, Entry, Journal

WORKER_HEADER = "X-Returns-Mock-Worker"



def made_up_error(ctx: Context, face: Face[Any], status: int, message: str) -> ProviderError:
    """An error the provider's rules did not give (a fault's, a varied answer's), as the provider says it."""
    ctx.made_up = status
    headers = {"Retry-After": "1"} if status in (429, 503) else {}  # as the provider's own 429, a busy server's 503
    return face.error(status, kind_of(status), message, [], headers)


class RefuseAtTheDoor(Step):
    """A request the server's door refused on its head (a Host that is not this server's, or not a host at
    all): answered in the provider's format, its body never read."""

    def before(self, ctx: Context) -> Answer | None:
        refused = ctx.request.refused
        if refused is None:
            return None
        status, _, message, header = refused
        ctx.account = ctx.caller  # journaled under the account its credentials name
        ctx.unmetered = True
        raise ctx.face.error(status, kind_of(status), message, [{"field": header, "location": "header",
                                                                 "message": message}])


class RefuseLateBodies(Step):
    """A request whose body did not arrive in time (the server says so) is answered 408 and closed."""

    def before(self, ctx: Context) -> Answer | None:
        if not ctx.request.timed_out:
            return None
        message = "The request body did not arrive in time; send it whole, promptly."
        ctx.unmetered = True
        raise ctx.face.error(408, REQUEST_TIMEOUT, message, [{"location": "body", "message": message}],
                             {"Connection": "close"})


class UseStore(Step):
    """The store checked (a store file deleted under the server: 503) and its settings read once a request
    (or a copy confirmed by its first statement; an answer that needed none, confirmed before it is kept)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def before(self, ctx: Context) -> Answer | None:
        self.store.check(0.1)
        self.store.pin_settings(True, confirm_later=True)
        return None

    def after(self, ctx: Context, answer: Answer) -> Answer:
        try:
            self.store.confirm_settings()
        except StoreUnavailable:
            # A 503 for a store that is away stands: it depends on no setting, and confirming them needs that
            # store (a dead pooled connection fails the request's statement, then this confirmation too).
            if answer.status != 503:
                raise
        return answer

    def finish(self, ctx: Context) -> None:
        self.store.pin_settings(False)


class InjectFaults(Step):
    def __init__(self, faults: Faults) -> None:
        self.faults = faults

    def before(self, ctx: Context) -> Answer | None:
        face = ctx.face
        if not self.faults.armed():
            return None
        outcome = self.faults.pick(face.name, ctx.request.method, ctx.relative, ctx.caller)
        if outcome is None:
            return None
        ctx.fault = outcome.label
        if outcome.latency_ms:
            timeout = ctx.request.client_timeout_s
            if timeout is not None and outcome.latency_ms > timeout * 1000:
                time.sleep(timeout)  # the client waits as long as it said, then gives up
                return late_answer(outcome.latency_ms, timeout)
            ctx.delay(outcome.latency_ms)
        if outcome.drop:  # the answer begins as the provider's would (its status, its first member), then breaks off
            status, start = face.answer_start(ctx.op)
            headers = [("Content-Type", "application/json"), ("Content-Length", "4096")]
            return Answer(status, DroppedBody(start), headers)
        if outcome.status is not None:
            ctx.unmetered = True  # answered by the fault: counted nowhere, yet its answer carries the headers
            raise made_up_error(ctx, face, outcome.status, f"Injected fault: {outcome.label}.")
        return None


class LimitRate(Step):
    def __init__(self, limiter: RateLimiter) -> None:
        self.limiter = limiter

    @staticmethod
    def _key(ctx: Context) -> str:
        return ctx.caller or f"anonymous:{ctx.request.remote_addr}"

    def before(self, ctx: Context) -> Answer | None:
        face = ctx.face
        if not face.rate_limited:
            return None
        decision = self.limiter.hit(self._key(ctx))
        ctx.rate_headers = decision.headers()
        if not decision.allowed:
            message = (f"Rate limit exceeded: {decision.limit} requests per {decision.period} "
                       f"for this API key. Retry after {decision.retry_after} s.")
            raise face.error(429, RATE_LIMIT_EXCEEDED, message, [{"location": "header", "field": "Authorization",
                                                                  "message": message}])
        return None

    def after(self, ctx: Context, answer: Answer) -> Answer:
        # Every answer of a rate-limited API carries them: counted ones, refusals, faults and 408s (peeked).
        if not ctx.face.rate_limited:
            return answer
        if ctx.rate_headers is None and ctx.unmetered:
            ctx.rate_headers = self.limiter.peek(self._key(ctx)).headers()
        if ctx.rate_headers:
            headers = dict(ctx.rate_headers)
            if ctx.made_up == 429:
                headers["X-RateLimit-Remaining"] = "0"
            answer.update_headers(headers)
        return answer


def late_answer(latency_ms: float, timeout_s: float) -> Answer:
    """What a client whose read timeout passed first gets: nothing (its library raises its timeout error)."""
    return Answer(200, late_body(latency_ms, timeout_s), [("Content-Type", "application/json")])


class Vary(Step):
    """While the mock varies its answers (mockserver.domain.variation): before the rules, maybe a latency and
    one of the operation's documented errors instead of its answer; after them, the answer varied.

    A latency is drawn up to the provider's documented ceiling. Over HTTP it is slept for real; in-process,
    where the door knows the client's read timeout, one beyond it is answered as the client sees it (no
    answer in time, before the provider acted) and one within it is waited for IN_PROCESS_SLEEP_MS at most
    (enough to vary the order of a client's concurrent requests; no fuzzed run waits seconds)."""

    def __init__(self, varying: Varying) -> None:
        self.varying = varying

    def before(self, ctx: Context) -> Answer | None:
        face, op = ctx.face, ctx.op
        if op is None:
            return None
        variation = self.varying.current()
        if variation is None:
            return None
        ctx.variation = variation
        timeout = ctx.request.client_timeout_s
        ceiling = face.contract.latency_ceiling_ms or LATENCY_CEILING_MS
        latency = variation.latency_ms(ceiling, None if timeout is None else timeout * 1000)
        if latency and timeout is not None and latency > timeout * 1000:
            ctx.varied.append(f"latency: {latency} ms, longer than the client's read timeout "
                              f"({timeout * 1000:g} ms): no answer in time")
            return late_answer(latency, timeout)
        if latency:
            ctx.varied.append(f"latency: {latency} ms")
            ctx.delay(latency if timeout is None else min(latency, IN_PROCESS_SLEEP_MS))
        status = variation.error(op.responses)
        if status is not None:
            ctx.varied.append(f"status: {status}")
            raise made_up_error(ctx, face, status, f"Varied answer: the documented {status} (returns-mock vary).")
        return None

    def after(self, ctx: Context, answer: Answer) -> Answer:
        variation, face, op = ctx.variation, ctx.face, ctx.op
        if variation is None or op is None or ctx.fault or ctx.made_up or not 200 <= answer.status < 500:
            return answer
        validator = op.responses.get(answer.status)
        if validator is None or answer.dropped:
            return answer
        try:
            sent = orjson.loads(ctx.body() or b"null")
        except orjson.JSONDecodeError:
            sent = None
        body, changes = variation.answer(validator, face.contract.registry, orjson.loads(answer.data), sent,
                                         error=answer.status >= 300)
        if op.page is not None and ctx.checked is not None:
            more = variation.more_pages(body, op.page, ctx.checked.query.get(op.page["size"]))
            if more is not None:
                body, changes = more[0], [*changes, more[1]]
        if changes:
            answer.body = orjson.dumps(body)
            ctx.varied += [change.describe() for change in changes]
        return answer


class VaryState(Step):
    """While the mock varies its answers: the first page of an account's returns a client asks for may find
    returns there it did not make (mockserver.domain.portal), stored before the page is read."""

    def __init__(self, portal: Portal) -> None:
        self.portal = portal

    def before(self, ctx: Context) -> Answer | None:
        op, checked = ctx.op, ctx.checked
        if ctx.variation is None or op is None or op.page is None or checked is None or ctx.account is None:
            return None
        size = checked.query.get(op.page["size"])
        if isinstance(size, int):
            ctx.varied += self.portal.draw(ctx.variation.chooser, ctx.face.name, ctx.account, size)
        return None


class Authenticate(Step):
    """The account the credentials name (401 in the provider's format if they are unusable)."""

    def before(self, ctx: Context) -> Answer | None:
        if ctx.op is not None:
            # The credentials were decoded once already; authenticate again only to say why they are refused.
            ctx.account = ctx.caller or ctx.face.authenticate(ctx.request.header("Authorization"))
        return None


class NameTheAccount(Step):
    """The account the credentials name, without authenticating (the proxy: the upstream decides)."""

    def before(self, ctx: Context) -> Answer | None:
        ctx.account = ctx.caller
        return None


class CheckRequest(Step):
    """The request against its operation (mockserver.contract.validation). `first`: the mock answers the first
    refusal (unknown query names only recorded); `none`: every problem recorded, nothing refused (the
    proxy); `all`: refused with every problem (the proxy's --strict)."""

    def __init__(self, refuse: Literal["first", "none", "all"]) -> None:
        self.refuse = refuse

    def before(self, ctx: Context) -> Answer | None:
        face, op, req = ctx.face, ctx.op, ctx.request
        if op is None:
            if self.refuse != "first":  # the mock answers it 404 or 405, the client's fault all the same
                ctx.violations.append(Problem("", f"{req.method} {ctx.relative} is not an operation of the "
                                                  f"{face.name} contract", "path"))
            return None
        raw = req.body() if op.body_validator is not None else b""
        checked = check_request(op, ctx.path_values, req.args, req.content_type, raw, req.query_problems)
        ctx.checked = checked
        if self.refuse == "first":
            ctx.violations += checked.ignored  # ignored, as a real API ignores them, but recorded against the client
            if checked.refusals:
                raise refused(face, checked.refusals[0])
            return None
        found = checked.all_problems()
        if self.refuse == "all" and found:
            message = f"Request does not match the contract (not forwarded): {found[0].message}."
            error = face.error(422, VALIDATION_ERROR, message, [p.as_detail() for p in found])
            error.schema_locations = [p.schema for p in found]
            raise error
        ctx.violations += found
        return None


def refused(face: Face[Any], refusal: Refusal) -> ProviderError:
    kind = BAD_REQUEST if refusal.status == 400 else VALIDATION_ERROR
    error = face.error(refusal.status, kind, refusal.message, [p.as_detail() for p in refusal.problems])
    error.schema_locations = [p.schema for p in refusal.problems]
    return error


class RecordInJournal(Step):
    """Journal every provider request, with the contract violations it carried. `masked`: bodies, query
    and a credential account shown by the masking rule (the proxy's traffic is real)."""

    def __init__(self, journal: Journal, *, masked: bool = False) -> None:
        self.journal = journal
        self.masked = masked

    def after(self, ctx: Context, answer: Answer) -> Answer:
        face, req = ctx.face, ctx.request
        # Answered before authentication (a fault, the rate limit, a varied status, a late body): the account
        # its credentials name all the same, so that filtering the journal by account finds them.
        account = ctx.account if ctx.account is not None else ctx.caller
        status = 0 if answer.dropped else answer.status  # only a dropped-connection fault: the client got no status
        if self.masked:
            request_body, response_body = shown(ctx, answer)
            query = masking.query_string(req.query_string)
            if account is not None and face.secret_accounts:  # the account is the client's real API key
                account = masking.account_hint(account)
        else:
            request_body, response_body, query = ctx.body() or b"", answer.data, req.query_string
        op = ctx.op.operation_id if ctx.op is not None else None
        violations = tuple(Violation(v, req.method, req.path, face.name, status, account, op) for v in ctx.violations)
        self.journal.record(Entry(
            id=0, at=ctx.at, provider=face.name, account=account, method=req.method, path=req.path, query=query,
            status=status, duration_ms=round((time.perf_counter() - ctx.started + ctx.deferred_s) * 1000, 3),
            request_body=request_body[:BODY_LIMIT] or None, response_body=response_body[:BODY_LIMIT],
            violations=violations, fault=ctx.fault, varied=tuple(ctx.varied)))
        return answer


def shown(ctx: Context, answer: Answer) -> tuple[bytes, bytes]:
    """The request and answer bodies as shown and recorded: masked once, for the journal and the recording."""
    if ctx.shown is None:
        ctx.shown = (masking.body(ctx.body() or b"", ctx.request.content_type),
                     masking.body(answer.data, answer.content_type))
    return ctx.shown


class NameTheWorker(Step):
    """With several worker processes or replicas, say which one answered (X-Returns-Mock-Worker: its pid)."""

    def after(self, ctx: Context, answer: Answer) -> Answer:
        answer.set_header(WORKER_HEADER, str(process.pid()))
        return answer


class SelfCheck(Step):
    """Validate what the mock answers against its own contract (switched on in tests)."""

    def __init__(self, failures: list[str]) -> None:
        self.failures = failures

    def after(self, ctx: Context, answer: Answer) -> Answer:
        face, op = ctx.face, ctx.op
        if ctx.fault or answer.dropped:
            return answer
        status = answer.status
        where = f"{ctx.request.method} {ctx.request.path} -> {status}"
        if op is not None:
            if status not in op.responses:
                self._violation(f"{where}: status {status} is not documented for {op.operation_id}")
            validator = op.responses.get(status)
        else:
            validator = face.contract.validator("error.json")
        if validator is not None:
            issues = problems(validator, orjson.loads(answer.data), "response")
            if issues:
                self._violation(f"{where}: " + "; ".join(p.message for p in issues))
        return answer

    def _violation(self, message: str) -> None:
        self.failures.append(message)
        raise ContractViolation(message)
