"""3plship's registry entry: its backend, its `serve` flags, how it is seeded and verified."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from typing import Any

from mockserver.providers.provider import Credentials, Provider, Scenario, Services
from mockserver.providers.threeplship import PROVIDER
from mockserver.providers.threeplship.api import API_KEY, Api3plship
from mockserver.providers.threeplship.core import Returns3plship
from mockserver.providers.threeplship.webhooks import Webhooks


def _api_key(text: str) -> str:
    if not API_KEY.search(text):
        raise argparse.ArgumentTypeError(f"3plship keys look like zl_live_... or zl_test_..., got {text!r}")
    return text


def _days(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        if not (text.isascii() and text.isdigit()) or not low <= int(text) <= high:
            raise argparse.ArgumentTypeError(f"expected {low} to {high} business days, got {text!r}")
        return int(text)

    return parse


class Provider3plship(Provider):
    name = PROVIDER
    credentials = ("api_key",)

    def backend(self, services: Services) -> Returns3plship:
        webhooks = Webhooks(services.store, services.clock, services.ids, services.delivery_policy,
                            services.delivery_faults)
        backend = Returns3plship(services.store, services.clock, services.ids, webhooks=webhooks,
                                 refund_business_days=services.options.get("refund_business_days"),
                                 autopilot=services.autopilot)
        backend.on_moves = services.on_moves
        return backend

    def face(self, options: Mapping[str, Any]) -> Api3plship:
        return Api3plship(keys=options.get("keys"))

    def recorded_resources(self, body: Any) -> list[Any]:
        data = body.get("data") if isinstance(body, dict) else None
        return data if isinstance(data, list) else [data] if isinstance(data, dict) else []

    def seed_item(self, resource: dict[str, Any]) -> dict[str, Any]:
        from mockserver.providers.recorded import project

        item: dict[str, Any] = {"id": resource["id"], "status": resource["status"],
                                "return": project(resource, self.contract.schema("return-create-request.json"),
                                                  self.contract)}
        refund = resource.get("refund")
        if resource.get("refund_status") == "processing" and isinstance(refund, dict):
            item["status"], item["refund"] = "inspected", {"amount": refund["amount"]}
        return item

    def add_arguments(self, serve: argparse.ArgumentParser) -> None:
        serve.add_argument("--3plship-key", dest="keys_3plship", action="append", type=_api_key, metavar="KEY",
                           help="accept only these 3plship API keys (repeatable; default: any zl_live_/zl_test_ key)")

        rules = self.contract.lifecycle["refund"]
        low, high = rules["business_days_documented"]
        serve.add_argument("--refund-business-days", type=_days(low, high), metavar="N", default=None,
                           help=f"3plship: business days a refund takes to complete, {low} to {high} as "
                                f"documented (default {rules['business_days']})")

    def options(self, args: argparse.Namespace) -> dict[str, Any]:
        options: dict[str, Any] = {"keys": list(args.keys_3plship)} if args.keys_3plship else {}
        if args.refund_business_days is not None:
            options["refund_business_days"] = args.refund_business_days
        return options

    def auth_headers(self, credentials: Credentials) -> dict[str, str]:
        return {"Authorization": f"Bearer {credentials.api_key}"}

    def probe(self) -> tuple[str, str, Any, dict[str, Any] | None]:
        return "GET", "/returns", None, {"limit": 1}

    def scenarios(self) -> list[Scenario]:
        from mockserver.providers.threeplship.scenarios import SCENARIOS

        return list(SCENARIOS)
