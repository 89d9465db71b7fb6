"""The pipeline: a request in, an answer out, through ordered steps around one terminal.

`before` runs in the steps' order ahead of the terminal (a step may answer the request itself, or raise
the provider's error); `after` runs in the same order on every answer, errors included. The terminal is
the mock's handler (`Serve`) or, in the proxy, the upstream forwarder. Every failure on a provider's
path, whoever raised it, is answered here in that provider's own format: one renderer for all.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from mockserver.contract import Problem
from mockserver.contract.errors import ProviderError, SettingsChanged, StoreUnavailable
from mockserver.domain.clock import Clock
from mockserver.domain.ids import IdGenerator
from mockserver.pipeline.context import Context
from mockserver.pipeline.exchange import Answer, BodyRefused, Request, json_answer
from mockserver.providers.face import Face, kind_of
from mockserver.store.sqlite_file import store_away

LOG = logging.getLogger("mockserver")

CLIENT_FAULTS = frozenset({400, 401, 405, 413, 422})
"""Refusals that are the client's fault against the contract (not a refusal for a reason of state)."""


class ContractViolation(AssertionError):
    """The mock answered something its own contract does not allow (response self-check)."""


class Step:
    """One step of the pipeline; `before` may answer the request itself, `after` may change the answer,
    `finish` runs last, whatever happened."""

    def before(self, ctx: Context) -> Answer | None:
        return None

    def after(self, ctx: Context, answer: Answer) -> Answer:
        return answer

    def finish(self, ctx: Context) -> None:
        return None


class Terminal(Protocol):
    def __call__(self, ctx: Context) -> Answer: ...


class Pipeline:
    def __init__(self, faces: Mapping[str, Face[Any]], steps: Sequence[Step], terminal: Terminal, clock: Clock,
                 ids: IdGenerator, *, raise_unexpected: Callable[[], bool] = lambda: False) -> None:
        self.faces = dict(faces)
        self._roots = tuple((f"/{name}", f"/{name}/", face) for name, face in self.faces.items())
        self.steps = tuple(steps)
        # Only the steps that do something at each stage are called there (a request passes every stage).
        self._before = tuple(s.before for s in self.steps if type(s).before is not Step.before)
        self._after = tuple(s.after for s in self.steps if type(s).after is not Step.after)
        self._finish = tuple(s.finish for s in self.steps if type(s).finish is not Step.finish)
        self.terminal = terminal
        self.clock = clock
        self.ids = ids
        self.raise_unexpected = raise_unexpected

    def face_for(self, path: str) -> Face[Any] | None:
        """The provider whose path the request is under, and whose format its errors are answered in."""
        for root, under, face in self._roots:
            if path == root or path.startswith(under):
                return face
        return None

    def run(self, request: Request) -> Answer:
        """Answer a request under a provider's path (`/<provider>/...`: the doors route nothing else here)."""
        try:
            return self._run(request)
        except SettingsChanged:  # nothing it did was kept; answered again on the settings as they are now
            return self._run(request)

    def _run(self, request: Request) -> Answer:
        face = self.face_for(request.path)
        if face is None:
            raise ValueError(f"{request.path} is under no provider's path")
        ctx = Context(request, face, self.clock, self.ids)
        prefix = face.contract.mock_prefix
        ctx.relative = request.path[len(prefix):] or "/"
        route = request.route
        if route is None and request.path.startswith(prefix):
            route = face.contract.match("GET" if request.method == "HEAD" else request.method, ctx.relative)
        if route is not None:
            ctx.op, ctx.path_values = route
        try:
            try:
                answer = self._answer(ctx)
            except ProviderError as error:
                answer = self.render(ctx, error)
            except BodyRefused as refused:
                answer = self.render(ctx, self._error(ctx, refused.status, refused.message))
            except StoreUnavailable as error:
                answer = self._unavailable(ctx, error)
            except (ContractViolation, SettingsChanged):
                raise
            except Exception as error:
                if store_away(error):  # a read from a store file that cannot be used now (a write says so itself)
                    answer = self._unavailable(ctx, error)
                elif self.raise_unexpected():
                    raise
                else:
                    LOG.exception("unexpected error")
                    answer = self.render(ctx, self._error(ctx, 500, f"Internal error in the mock: {error!r}."))
            for after in self._after:
                answer = after(ctx, answer)
            answer.deferred_s = ctx.deferred_s
            return answer
        finally:
            for finish in self._finish:
                finish(ctx)

    def _answer(self, ctx: Context) -> Answer:
        for before in self._before:
            answer = before(ctx)
            if answer is not None:
                return answer
        return self.terminal(ctx)

    @staticmethod
    def _error(ctx: Context, status: int, message: str, headers: dict[str, str] | None = None) -> ProviderError:
        return ctx.face.error(status, kind_of(status), message, [], headers)

    def _unavailable(self, ctx: Context, error: Exception) -> Answer:
        return self.render(ctx, self._error(ctx, 503, f"The mock's store is unavailable: {error}. Retry shortly.",
                                            {"Retry-After": "1"}))

    def render(self, ctx: Context, error: ProviderError) -> Answer:
        """The error as the provider answers it; a refusal that is the client's fault is recorded against it."""
        if error.status in CLIENT_FAULTS or (error.status == 404 and ctx.op is None):
            schemas = error.schema_locations + [""] * len(error.details)
            ctx.violations += [Problem(str(d.get("field", "")), str(d.get("message", error.message)),
                                       str(d.get("location", "")), schema=schema)
                               for d, schema in zip(error.details, schemas, strict=False)] or [
                                  Problem("", error.message, "request")]
        body = ctx.face.error_body(error, ctx.request_id, ctx.at)
        return json_answer(error.status, body, error.headers)
