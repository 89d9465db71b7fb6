"""The mock's terminal: the provider's handler over its backend, answered in the provider's envelope."""

from __future__ import annotations

from collections.abc import Mapping

from mockserver.contract.hints import unknown_path
from mockserver.pipeline.context import Context
from mockserver.pipeline.exchange import Answer, json_answer
from mockserver.providers.face import METHOD_NOT_ALLOWED, NOT_FOUND, Call, Handler


class Serve:
    def __init__(self, handlers: Mapping[str, Mapping[str, Handler]]) -> None:
        self.handlers = handlers
        """Provider name -> operationId -> handler."""

    def __call__(self, ctx: Context) -> Answer:
        face, op, req = ctx.face, ctx.op, ctx.request
        if op is None:
            allowed = face.contract.methods_at(ctx.relative) if req.path.startswith(face.contract.mock_prefix) else []
            if not allowed:
                prefix = face.contract.mock_prefix
                raise face.error(404, NOT_FOUND, unknown_path(req.method, req.path, {face.name: prefix}, [
                    prefix + op.path for op in face.contract.operations]))
            allowed = sorted({*allowed, *(["HEAD"] if "GET" in allowed else [])})
            raise face.error(405, METHOD_NOT_ALLOWED,
                             f"{req.method} is not allowed on {req.path}; allowed: {', '.join(allowed)}.",
                             headers={"Allow": ", ".join(allowed)})
        checked = ctx.checked
        assert checked is not None and ctx.account is not None
        status, payload = self.handlers[face.name][op.operation_id](
            Call(account=ctx.account, path=checked.path, query=checked.query, body=checked.body))
        return json_answer(status, face.success_body(payload, ctx.request_id, ctx.at))
