"""Acme: a throw-away third provider, added through the registry alone (its contracts sit beside it)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mockserver.contract import contract
from mockserver.contract.errors import ProviderError
from mockserver.domain.backend import Backend
from mockserver.domain.clock import isoformat
from mockserver.providers.face import UNAUTHORIZED, Call, Face, Handler
from mockserver.providers.provider import Provider, Services
from mockserver.store import ReturnRecord

NAME = "acme"


class AcmeBackend(Backend):
    name = NAME

    def __init__(self, services: Services) -> None:
        self.services = services

    def open(self, account: str, body: dict[str, Any]) -> dict[str, Any]:
        s = self.services
        resource = {"id": s.ids.new("acr"), "order": body["order"], "reason": body["reason"],
                    "state": "open", "opened": isoformat(s.clock.now())}
        with s.store.transaction() as tx:
            tx.insert(ReturnRecord(NAME, account, resource["id"], resource["order"], "open", resource))
        return resource

    def get(self, account: str, return_id: str) -> dict[str, Any] | None:
        record = self.services.store.get(NAME, account, return_id)
        return None if record is None else record.resource


class AcmeApi(Face[AcmeBackend]):
    name = NAME

    def __init__(self) -> None:
        self.contract = contract(NAME)

    def handlers(self, backend: AcmeBackend) -> dict[str, Handler]:
        def create_return(call: Call) -> tuple[int, Any]:
            return 201, backend.open(call.account, call.body)

        def get_return(call: Call) -> tuple[int, Any]:
            found = backend.get(call.account, call.path["id"])
            if found is None:
                raise self.error(404, "not_found", f"No return {call.path['id']}.")
            return 200, found

        return {"createReturn": create_return, "getReturn": get_return}

    def authenticate(self, authorization: str | None) -> str:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme != "Bearer" or not token.startswith("acme-"):
            raise self.error(401, UNAUTHORIZED, "Send Authorization: Bearer acme-<account>.",
                             [{"field": "Authorization", "location": "header"}])
        return token

    def code(self, kind: str) -> str:
        return kind.upper().replace("_", "-")

    def success_body(self, payload: Any, request_id: str, timestamp: str) -> Any:
        return payload

    def error_body(self, error: ProviderError, request_id: str, timestamp: str) -> Any:
        return {"fault": {"code": error.code, "text": error.message, "fields": error.details}}


class AcmeProvider(Provider):
    name = NAME
    contracts_folder = Path(__file__).parent / "contracts"

    def backend(self, services: Services) -> AcmeBackend:
        return AcmeBackend(services)

    def face(self, options: Mapping[str, Any]) -> AcmeApi:
        return AcmeApi()
