"""Flask as a door to the pipeline: its request as a pipeline `Request`, an `Answer` as its response.

The mock's app and the proxy's both serve their providers' paths this way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Request, Response, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from mockserver.contract import Operation
from mockserver.contract.validation import query_values
from mockserver.pipeline import Answer, BodyRefused, Pipeline
from mockserver.pipeline import Request as PipelineRequest
from mockserver.web.admin import MAX_BODY
from mockserver.web.direct import CLIENT_TIMEOUT
from mockserver.web.guard import REFUSED
from mockserver.web.serving import BODY_TIMED_OUT, DEFERRED_DELAY, RAW_PATH


def _reader(req: Request) -> Callable[[], bytes]:
    def read() -> bytes:
        limit = req.environ.get(MAX_BODY)
        if limit is not None:  # the limit the server held the body to (a proxy's app sets none of its own)
            req.max_content_length = limit
        try:
            return req.get_data(cache=True)
        except RequestEntityTooLarge:
            raise BodyRefused(413, f"Request body is larger than {req.max_content_length} bytes.") from None
        except HTTPException as exc:
            raise BodyRefused(exc.code or 400, exc.description or "The request body could not be read.") from None

    return read


def run(pipeline: Pipeline, req: Request, route: tuple[Operation, dict[str, Any]] | None = None) -> Response:
    """Run the request through the pipeline; `req` is Flask's request itself, not its context-local proxy
    (each read through the proxy costs a lookup)."""
    environ = req.environ
    query = req.query_string
    args, undecodable = query_values(query)
    answer = pipeline.run(PipelineRequest(
        method=req.method, path=req.path, query_string=query.decode("latin-1"), args=args,
        query_problems=undecodable, headers=req.headers, content_type=req.content_type,
        remote_addr=req.remote_addr, read_body=_reader(req), route=route, timed_out=bool(environ.get(BODY_TIMED_OUT)),
        defers_delays=DEFERRED_DELAY in environ, refused=environ.get(REFUSED), raw_path=environ.get(RAW_PATH),
        client_timeout_s=environ.get(CLIENT_TIMEOUT)))
    if answer.deferred_s:
        environ[DEFERRED_DELAY] += answer.deferred_s
    return response(answer)


def current() -> Request:
    """Flask's request object itself (each read through its context-local proxy costs a lookup)."""
    req: Request = request._get_current_object()  # type: ignore[attr-defined]
    return req


def response(answer: Answer) -> Response:
    return Response(answer.body, answer.status, headers=answer.headers)
