"""35up over HTTP: Basic auth (the username is the account), the bare resource, {"error": {...}}."""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from mockserver.contract import contract
from mockserver.contract.errors import ProviderError
from mockserver.domain.credentials import same_secret
from mockserver.providers.face import UNAUTHORIZED, Call, Face, Handler
from mockserver.providers.thirtyfiveup import PROVIDER
from mockserver.providers.thirtyfiveup.core import Returns35up

CHALLENGE = {"WWW-Authenticate": 'Basic realm="35up", charset="UTF-8"'}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class Api35up(Face[Returns35up]):
    name = PROVIDER

    def __init__(self, users: dict[str, str] | None = None) -> None:
        self.users = users
        self.contract = contract(PROVIDER)

    def handlers(self, backend: Returns35up) -> dict[str, Handler]:
        def create_return(call: Call) -> tuple[int, Any]:
            return 201, backend.create_return(call.account, call.body)

        def update_return(call: Call) -> tuple[int, Any]:
            return 200, backend.update_return(call.account, call.path["orderId"], call.body["status"])

        return {"createReturn": create_return, "updateReturn": update_return}

    def authenticate(self, authorization: str | None) -> str:
        if not authorization:
            raise self._unauthorized("Authorization header is missing: send Basic credentials.")
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "basic" or not token.strip():
            raise self._unauthorized("Authorization must be 'Basic base64(username:password)'.")
        try:
            raw = base64.b64decode(token.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise self._unauthorized("Basic credentials are not valid base64.") from None
        try:
            decoded = raw.decode("utf-8")  # RFC 7617 charset="UTF-8", as the challenge says
        except UnicodeDecodeError:  # what clients sent before RFC 7617 (requests still does): ISO-8859-1
            decoded = raw.decode("latin-1")
        username, colon, password = decoded.partition(":")
        if not colon or not username or not password:
            raise self._unauthorized("Basic credentials must be username:password, both non-empty.")
        if _CONTROL.search(decoded):  # RFC 7617 section 2
            raise self._unauthorized("Basic credentials may not hold control characters.")
        if self.users is not None and not same_secret(password.encode("utf-8", "surrogateescape"),
                                                      self.users.get(username, "")):
            raise self._unauthorized("Unknown username or wrong password.")
        return username

    def _unauthorized(self, message: str) -> ProviderError:
        return self.error(401, UNAUTHORIZED, message,
                          [{"field": "Authorization", "location": "header", "message": message}], CHALLENGE)

    def code(self, kind: str) -> str:
        return kind

    def success_body(self, payload: Any, request_id: str, timestamp: str) -> Any:
        return payload

    def error_body(self, error: ProviderError, request_id: str, timestamp: str) -> Any:
        return {"error": {"code": error.code, "message": error.message, "details": error.details}}
