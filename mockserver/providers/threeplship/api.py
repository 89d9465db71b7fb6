"""3plship over HTTP: Bearer API keys (each key is an account), the documented envelopes."""

from __future__ import annotations

import re
from typing import Any

from mockserver.contract import contract
from mockserver.contract.errors import ProviderError
from mockserver.providers.face import UNAUTHORIZED, Call, Face, Handler
from mockserver.providers.threeplship import PROVIDER
from mockserver.providers.threeplship.core import Returns3plship

API_KEY = re.compile(contract(PROVIDER).schema("api-key.json")["pattern"])
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="3plship"'}


class Api3plship(Face[Returns3plship]):
    name = PROVIDER
    rate_limited = True
    secret_accounts = True

    def __init__(self, keys: list[str] | None = None) -> None:
        self.keys = frozenset(keys) if keys is not None else None
        self.contract = contract(PROVIDER)

    def handlers(self, backend: Returns3plship) -> dict[str, Handler]:
        def create_return(call: Call) -> tuple[int, Any]:
            return 201, backend.create_return(call.account, call.body)

        def list_returns(call: Call) -> tuple[int, Any]:
            q = call.query
            data, pagination = backend.list_returns(call.account, status=q.get("status"), order_id=q.get("order_id"),
                                                    page=q["page"], limit=q["limit"], start_date=q.get("start_date"),
                                                    end_date=q.get("end_date"))
            return 200, _Page(data, pagination)

        def update_status(call: Call) -> tuple[int, Any]:
            return 200, backend.update_status(call.account, call.path["id"], call.body["status"],
                                              call.body.get("notes"))

        def process_refund(call: Call) -> tuple[int, Any]:
            return 200, backend.process_refund(call.account, call.path["id"], call.body.get("amount"))

        def create_webhook(call: Call) -> tuple[int, Any]:
            return 201, _Versioned(backend.subscribe(call.account, call.body))

        return {"createReturn": create_return, "listReturns": list_returns, "updateReturnStatus": update_status,
                "processRefund": process_refund, "createWebhook": create_webhook}

    def authenticate(self, authorization: str | None) -> str:
        if not authorization:
            raise self._unauthorized("Authorization header is missing: send 'Bearer zl_live_...'.")
        scheme, _, key = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise self._unauthorized("Authorization must use the Bearer scheme with an API key.")
        key = key.strip()
        if not API_KEY.search(key):
            raise self._unauthorized("Invalid API key: keys look like zl_live_... or zl_test_....")
        if self.keys is not None and key not in self.keys:
            raise self._unauthorized("Invalid API key: this key is not known.")
        return key

    def _unauthorized(self, message: str) -> ProviderError:
        return self.error(401, UNAUTHORIZED, message,
                          [{"field": "Authorization", "location": "header", "message": message}], CHALLENGE)

    def code(self, kind: str) -> str:
        return kind.upper()

    def success_body(self, payload: Any, request_id: str, timestamp: str) -> Any:
        if isinstance(payload, _Versioned):  # the documented webhook answer: the errors' meta
            return {"success": True, "data": payload.data,
                    "meta": {"timestamp": timestamp, "requestId": request_id, "version": "v1"}}
        meta: dict[str, Any] = {"request_id": request_id, "timestamp": timestamp}
        if isinstance(payload, _Page):
            meta["pagination"] = payload.pagination
            payload = payload.data
        return {"success": True, "data": payload, "meta": meta}

    def error_body(self, error: ProviderError, request_id: str, timestamp: str) -> Any:
        # requestId (camelCase) on errors against request_id on success: the real API's inconsistency.
        return {"success": False,
                "error": {"code": error.code, "message": error.message, "details": details(error)},
                "meta": {"timestamp": timestamp, "requestId": request_id, "version": "v1"}}


def _problem(detail: dict[str, Any]) -> dict[str, Any]:
    problem = {"field": detail.get("field"), "issue": detail["message"], "location": detail.get("location"),
               "allowed": detail.get("allowed")}
    return {key: value for key, value in problem.items() if value is not None}


def details(error: ProviderError) -> dict[str, Any]:
    """The documented object, {field, issue}, for the first problem; location, allowed and every problem
    (contracts/3plship/error-detail.json) beside those keys."""
    problems = [_problem(d) for d in error.details if d.get("message")]
    if not problems:
        return {"issue": error.message}
    return {**problems[0], "problems": problems}


class _Page:
    def __init__(self, data: list[dict[str, Any]], pagination: dict[str, Any]) -> None:
        self.data = data
        self.pagination = pagination


class _Versioned:
    """An answer whose meta is {timestamp, requestId, version} (POST /webhooks, as documented)."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
