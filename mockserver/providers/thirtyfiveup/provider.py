"""35up's registry entry: its backend, its `serve` flags, how it is seeded and verified."""

from __future__ import annotations

import argparse
import base64
from collections.abc import Mapping
from typing import Any

from mockserver.domain.flags import positive
from mockserver.domain.lifecycle import MODES
from mockserver.providers.provider import Credentials, Provider, Scenario, Services
from mockserver.providers.thirtyfiveup import PROVIDER
from mockserver.providers.thirtyfiveup.api import Api35up
from mockserver.providers.thirtyfiveup.core import Returns35up

MAX_WINDOW_DAYS = 36_500
"""The longest return window --return-window-days takes (inferred: the guide says 30 days)."""


def _window_days(text: str) -> int:
    value = positive(text)
    if value > MAX_WINDOW_DAYS:  # deadlines must stay within what a date can express
        raise argparse.ArgumentTypeError(f"at most {MAX_WINDOW_DAYS:,} days (100 years), got {text!r}")
    return value


def _credentials(text: str) -> tuple[str, str]:
    username, colon, password = text.partition(":")
    if not colon or not username or not password:
        raise argparse.ArgumentTypeError(f"expected USER:PASSWORD, got {text!r}")
    return username, password


class Provider35up(Provider):
    name = PROVIDER
    credentials = ("username", "password")

    def backend(self, services: Services) -> Returns35up:
        options = services.options
        backend = Returns35up(services.store, services.clock, mode=options.get("lifecycle", "strict"),
                              return_window_days=options.get("return_window_days"), autopilot=services.autopilot)
        backend.on_moves = services.on_moves
        return backend

    def face(self, options: Mapping[str, Any]) -> Api35up:
        return Api35up(users=options.get("users"))

    def recorded_resources(self, body: Any) -> list[Any]:
        return [body] if isinstance(body, dict) else []

    def seed_item(self, resource: dict[str, Any]) -> dict[str, Any]:
        from mockserver.providers.recorded import project

        body = project(resource, self.contract.schema("return-create-request.json"), self.contract)
        return {"return": body, "status": resource["status"]}

    def add_arguments(self, serve: argparse.ArgumentParser) -> None:
        serve.add_argument("--lifecycle", choices=MODES, default="strict",
                           help="35up transitions: strict graph (default) or permissive (anything but out of closed)")
        serve.add_argument("--return-window-days", type=_window_days, default=None,
                           help="35up: days in awaiting_return before a return expires (default 30)")
        serve.add_argument("--35up-user", dest="users_35up", action="append", type=_credentials,
                           metavar="USER:PASSWORD",
                           help="accept only these 35up credentials (repeatable; default: any well-formed pair)")

    def options(self, args: argparse.Namespace) -> dict[str, Any]:
        options: dict[str, Any] = {"lifecycle": args.lifecycle}
        if args.return_window_days is not None:
            options["return_window_days"] = args.return_window_days
        if args.users_35up:
            options["users"] = dict(args.users_35up)
        return options

    def auth_headers(self, credentials: Credentials) -> dict[str, str]:
        token = base64.b64encode(f"{credentials.username}:{credentials.password}".encode()).decode()
        return {"Authorization": f"Basic {token}"}

    def probe(self) -> tuple[str, str, Any, dict[str, Any] | None]:
        import uuid

        # An order that cannot exist: 404 with good credentials, 401 with bad ones.
        return "PATCH", f"/returns/verify-{uuid.uuid4().hex[:12]}", {"status": "closed"}, None

    def scenarios(self) -> list[Scenario]:
        from mockserver.providers.thirtyfiveup.scenarios import SCENARIOS

        return list(SCENARIOS)
