"""Acme: a throw-away third provider, added through the registry alone (its contracts sit beside it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mockserver.clock import isoformat
from mockserver.contracts import contract
from mockserver.errors import ProviderError
from mockserver.http import UNAUTHORIZED, Call, Handler, ProviderApi
from mockserver.provider import Provider, Services
from mockserver.store import ReturnRecord

NAME = "acme"


class AcmeApi(ProviderApi):
    name = NAME

    def __init__(self, services: Services) -> None:
        self.services = services
        self.contract = contract(NAME)

    @property
    def handlers(self) -> dict[str, Handler]:
        return {"createReturn": self.create_return, "getReturn": self.get_return}

    def create_return(self, call: Call) -> tuple[int, Any]:
        s = self.services
        resource = {"id": s.ids.new("acr"), "order": call.body["order"], "reason": call.body["reason"],
                    "state": "open", "opened": isoformat(s.clock.now())}
        with s.store.transaction() as tx:
            tx.insert(ReturnRecord(NAME, call.account, resource["id"], resource["order"], "open", resource))
        return 201, resource

    def get_return(self, call: Call) -> tuple[int, Any]:
        record = self.services.store.get(NAME, call.account, call.path["id"])
        if record is None:
            raise self.error(404, "not_found", f"No return {call.path['id']}.")
        return 200, record.resource

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

    def build(self, services: Services) -> AcmeApi:
        return AcmeApi(services)
