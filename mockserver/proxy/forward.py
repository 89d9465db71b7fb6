"""The proxy's terminal and its own steps: forward to the upstream (and, shadowing, to the mirror),
refuse what must not be forwarded (a path that would leave the provider's base path, TRACE, JSON nested
too deep), record each exchange in a HAR file."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlsplit

from mockserver.contract import MAX_JSON_DEPTH, masking, nested_too_deep
from mockserver.contract.validation import check_response
from mockserver.domain import outbound
from mockserver.domain.clock import parse_instant
from mockserver.pipeline import Answer, Context, Step
from mockserver.pipeline.steps import shown
from mockserver.providers.face import BAD_GATEWAY, BAD_REQUEST, GATEWAY_TIMEOUT, kind_of
from mockserver.proxy.config import ProxyConfig
from mockserver.proxy.recording import HarRecorder, account_fields, shown_account
from mockserver.web.mirror import Mirror

HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
                        "trailers", "transfer-encoding", "upgrade", "host", "content-length"})
"""Headers that belong to one connection, not to the exchange (content-length is recomputed)."""

UNFORWARDED_METHODS = frozenset({"TRACE", "CONNECT"})
"""TRACE echoes the request back, credentials included (cross-site tracing); CONNECT asks for a tunnel."""

_PATH_SAFE = "/:@!$&'()*+,;=-._~"
_ENCODED_ESCAPES = ("%2e", "%2f", "%5c")


def upstream_url(base: str, ctx: Context) -> str:
    """Where the request goes: the path below the provider's prefix as the client sent it, where the server
    says (else the decoded path encoded again: a `%3F` stays in the path, not a query)."""
    req = ctx.request
    prefix = ctx.face.contract.mock_prefix
    raw = req.raw_path
    relative = raw[len(prefix):] if raw is not None and raw.startswith(prefix) else quote(ctx.relative, safe=_PATH_SAFE)
    query = req.query_string
    return base.rstrip("/") + (relative or "/") + (f"?{query}" if query else "")


def forwarded_headers(ctx: Context) -> list[tuple[str, str]]:
    """The request's headers as sent (each value one character a byte: they go on as the same bytes)."""
    return [(k, v) for k, v in ctx.request.headers.items() if k.lower() not in HOP_BY_HOP]


def _shown(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Headers for a person: values that are UTF-8 shown as text, not one character a byte."""
    return [(k, v if v.isascii() else v.encode("latin-1", "replace").decode("utf-8", "replace")) for k, v in headers]


class RefuseEscapes(Step):
    """A path that would leave the provider's base path upstream: 400, never forwarded. A `.` or `..` segment
    (also encoded: the server decoded it), with a path parameter (`..;x`, which Tomcat and Spring read as
    `..`), a backslash (a separator to IIS and others; `%5c` too), or an escape left encoded once more
    (`%252e`: a server that decodes twice sees a dot-segment)."""

    def before(self, ctx: Context) -> Answer | None:
        relative = ctx.relative
        lowered = relative.lower()
        if "\\" in relative or any(segment.split(";", 1)[0] in ("..", ".") for segment in relative.split("/")) \
                or any(escape in lowered for escape in _ENCODED_ESCAPES):
            message = ("The path leaves the provider's base path (a '.' or '..' segment, a backslash, or an escape "
                       "encoded twice); not forwarded.")
            raise ctx.face.error(400, BAD_REQUEST, message, [{"field": "path", "location": "path", "message": message}])
        return None


class RefuseUnforwardable(Step):
    """What the proxy does not send on: TRACE and CONNECT (405), and a JSON body nested deeper than the mock
    itself reads (400), in the provider's format."""

    def before(self, ctx: Context) -> Answer | None:
        req = ctx.request
        if req.method in UNFORWARDED_METHODS:
            message = f"{req.method} is not forwarded by this proxy."
            raise ctx.face.error(405, kind_of(405), message, [{"field": "method", "location": "method",
                                                               "message": message}])
        data = ctx.body()
        if data and nested_too_deep(data):
            message = f"Request body is not usable: it nests deeper than {MAX_JSON_DEPTH} levels; not forwarded."
            raise ctx.face.error(400, BAD_REQUEST, message, [{"field": "body", "location": "body", "message": message}])
        return None


class Forward:
    """Forward one request: the upstream's answer (decoded, capped, within the timeout as a whole), or the
    provider's 502/504 saying why there is none. The answer is checked against the contract (violations
    of source `response`); shadowing, the same request is applied to the mirror and the answers compared."""

    def __init__(self, config: ProxyConfig, shadow: Mirror | None) -> None:
        self.config = config
        self.shadow = shadow
        self._turns: dict[tuple[str, str | None], tuple[threading.Lock, list[int]]] = {}
        self._guard = threading.Lock()

    @contextlib.contextmanager
    def _turn(self, provider: str, credentials: str | None) -> Iterator[None]:
        """With --shadow, one account's exchanges one at a time, each applied to the mirror before the next
        reaches the upstream: the mock sees them in the upstream's order (a page read between two creates
        counts what the upstream counted). Other accounts go on in parallel (each has a lock of its own, gone
        when unused). Without it, no wait. (The server orders them before they take a thread: this holds the
        order under any WSGI server.)"""
        if self.shadow is None:
            yield
            return
        key = (provider, credentials)
        with self._guard:
            lock, users = self._turns.setdefault(key, (threading.Lock(), [0]))
            users[0] += 1
        try:
            with lock:
                yield
        finally:
            with self._guard:
                users[0] -= 1
                if not users[0]:
                    del self._turns[key]

    def __call__(self, ctx: Context) -> Answer:
        face, req = ctx.face, ctx.request
        base = self.config.upstreams[face.name]
        headers = forwarded_headers(ctx)
        body = req.body()
        with self._turn(face.name, req.header("Authorization")):
            answer = self._exchange(ctx, masking.url(base), upstream_url(base, ctx), headers, body)
            ctx.forwarded = True
            if self.shadow is not None and self._compares(answer.data):
                ctx.drift = self.shadow.apply(face.name, req.method, req.path, req.query_string, headers, body,
                                              answer.status, answer.headers, answer.data,
                                              shown_account(face, ctx.account), parse_instant(ctx.at))
        if ctx.op is not None:
            ctx.violations += check_response(ctx.op, answer.status, answer.content_type, answer.data, answer.headers)
        return answer

    def _compares(self, data: bytes) -> bool:
        """Whether the shadow compares this answer: one nested deeper than MAX_JSON_DEPTH is relayed and
        recorded as a violation, not walked."""
        return self.shadow is not None and not nested_too_deep(data)

    def _exchange(self, ctx: Context, shown_url: str, url: str, headers: list[tuple[str, str]],
                  body: bytes) -> Answer:
        face, config = ctx.face, self.config
        try:
            got = outbound.exchange(ctx.request.method, url, headers, body, timeout=config.timeout_ms / 1000,
                                    limit=config.max_answer_bytes)
        except outbound.AnswerTooLarge:
            message = (f"The upstream {shown_url} answered more than {config.max_answer_bytes} bytes (decoded); "
                       f"cut off at the cap (--max-answer-bytes), not forwarded.")
            raise face.error(502, BAD_GATEWAY, message) from None
        except outbound.ExchangeFailed as exc:
            if exc.timed_out:
                message = f"The upstream {shown_url} did not answer within {config.timeout_ms} ms: {exc.reason}."
                raise face.error(504, GATEWAY_TIMEOUT, message) from None
            raise face.error(502, BAD_GATEWAY, f"The upstream {shown_url} gave no answer: {exc.reason}.") from None
        kept = [(k, v) for k, v in got.headers if k.lower() not in HOP_BY_HOP]
        return Answer(got.status, got.body, kept, reason=got.reason)


class Record(Step):
    """Each exchange into a HAR 1.2 file (mockserver.proxy.recording), masked by the one rule set."""

    def __init__(self, path: str, upstreams: Mapping[str, str]) -> None:
        self.recorder = HarRecorder(Path(path))
        self.upstreams = upstreams

    def after(self, ctx: Context, answer: Answer) -> Answer:
        face, req = ctx.face, ctx.request
        request_body, response_body = shown(ctx, answer)
        drift = getattr(ctx.drift, "differences", None)
        self.recorder.add(
            provider=face.name, base_path=urlsplit(self.upstreams[face.name]).path.rstrip("/"),
            forwarded=ctx.forwarded, sequence=getattr(ctx.drift, "id", None),
            accounts=account_fields(face, ctx.account),
            started=parse_instant(ctx.at), duration_ms=(time.perf_counter() - ctx.started) * 1000, method=req.method,
            url=upstream_url(self.upstreams[face.name], ctx), request_headers=_shown(forwarded_headers(ctx)),
            request_body=request_body, request_size=len(ctx.body() or b""),
            query=parse_qsl(req.query_string, keep_blank_values=True), status=answer.status,
            reason=answer.reason or _REASONS.get(answer.status, ""), response_headers=_shown(answer.headers),
            response_body=response_body, response_size=len(answer.data),
            drift=None if drift is None else [d.as_json() for d in drift])
        return answer


def _reasons() -> dict[int, str]:
    from http import HTTPStatus

    return {status.value: status.phrase for status in HTTPStatus}


_REASONS = _reasons()
