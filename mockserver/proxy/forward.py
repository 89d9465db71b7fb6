"""The proxy's terminal and its own steps: forward to the upstream (and, shadowing, to the mirror),
refuse a path that would leave the provider's base path, record each exchange in a HAR file."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

from mockserver.contract import masking
from mockserver.contract.validation import check_response
from mockserver.domain import outbound
from mockserver.domain.clock import parse_instant
from mockserver.pipeline import Answer, Context, Step
from mockserver.pipeline.steps import shown
from mockserver.providers.face import BAD_GATEWAY, BAD_REQUEST, GATEWAY_TIMEOUT
from mockserver.proxy.config import ProxyConfig
from mockserver.proxy.recording import HarRecorder, account_fields, shown_account
from mockserver.web.mirror import Mirror

HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
                        "trailers", "transfer-encoding", "upgrade", "host", "content-length"})
"""Headers that belong to one connection, not to the exchange (content-length is recomputed)."""

TURNS = 64
"""Locks the shadowed accounts are spread over (two accounts may share one: they then wait for each other)."""

_PATH_SAFE = "/:@!$&'()*+,;=-._~"


def upstream_url(base: str, ctx: Context) -> str:
    """Where the request goes: the server hands over the path decoded; encoded again, a `%3F` stays in
    the path, not a query."""
    query = ctx.request.query_string
    return base.rstrip("/") + quote(ctx.relative, safe=_PATH_SAFE) + (f"?{query}" if query else "")


def forwarded_headers(ctx: Context) -> list[tuple[str, str]]:
    return [(k, v) for k, v in ctx.request.headers.items() if k.lower() not in HOP_BY_HOP]


class RefuseEscapes(Step):
    """A `.` or `..` segment (also encoded: the server decoded it) would leave the provider's base path
    upstream: 400, never forwarded."""

    def before(self, ctx: Context) -> Answer | None:
        if any(segment in ("..", ".") for segment in ctx.relative.split("/")):
            message = "The path leaves the provider's base path (a '.' or '..' segment); not forwarded."
            raise ctx.face.error(400, BAD_REQUEST, message, [{"field": "path", "location": "path", "message": message}])
        return None


class Forward:
    """Forward one request: the upstream's answer (decoded, capped, within the timeout as a whole), or the
    provider's 502/504 saying why there is none. The answer is checked against the contract (violations
    of source `response`); shadowing, the same request is applied to the mirror and the answers compared."""

    def __init__(self, config: ProxyConfig, shadow: Mirror | None) -> None:
        self.config = config
        self.shadow = shadow
        self._turns = tuple(threading.Lock() for _ in range(TURNS))

    def _turn(self, provider: str, credentials: str | None) -> contextlib.AbstractContextManager[Any]:
        """With --shadow, one account's exchanges one at a time, each applied to the mirror before the next
        reaches the upstream: the mock sees them in the upstream's order (a page read between two creates
        counts what the upstream counted). Other accounts go on in parallel. Without it, no wait."""
        if self.shadow is None:
            return contextlib.nullcontext()
        return self._turns[hash((provider, credentials)) % TURNS]

    def __call__(self, ctx: Context) -> Answer:
        face, req = ctx.face, ctx.request
        base = self.config.upstreams[face.name]
        headers = forwarded_headers(ctx)
        body = req.body()
        with self._turn(face.name, req.header("Authorization")):
            answer = self._exchange(ctx, masking.url(base), upstream_url(base, ctx), headers, body)
            ctx.forwarded = True
            if self.shadow is not None:
                ctx.drift = self.shadow.apply(face.name, req.method, req.path, req.query_string, headers, body,
                                              answer.status, answer.headers, answer.data,
                                              shown_account(face, ctx.account), parse_instant(ctx.at))
        if ctx.op is not None:
            ctx.violations += check_response(ctx.op, answer.status, answer.content_type, answer.data, answer.headers)
        return answer

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
            url=upstream_url(self.upstreams[face.name], ctx), request_headers=forwarded_headers(ctx),
            request_body=request_body, request_size=len(ctx.body() or b""),
            query=parse_qsl(req.query_string, keep_blank_values=True), status=answer.status,
            reason=answer.reason or _REASONS.get(answer.status, ""), response_headers=answer.headers,
            response_body=response_body, response_size=len(answer.data),
            drift=None if drift is None else [d.as_json() for d in drift])
        return answer


def _reasons() -> dict[int, str]:
    from http import HTTPStatus

    return {status.value: status.phrase for status in HTTPStatus}


_REASONS = _reasons()
