"""35up lifecycle scenarios: `returns-mock verify` drives an implementation through these; every answer is also
checked against the contract. Against a real account they create real returns."""

from __future__ import annotations

import secrets
from typing import Any

from mockserver.providers.provider import ScenarioClient as Client


def _order_id() -> str:
    return f"rm{secrets.randbelow(10**12):012d}"


def _35up_body(order_id: str) -> dict[str, Any]:
    return {"orderId": order_id, "items": [{"itemId": "412412", "sku": "vendor_id/FEI60XX114014XXAPIP80",
                                            "quantity": 2}]}


def up35_create_duplicate_and_unknown(c: Client) -> None:
    order = _order_id()
    r = c.call("POST", "/returns", json=_35up_body(order))
    data = c.expect(r, 201, "a new return for an order")
    c.require(data["id"] == order == data["orderId"], "id_is_order_id", f"id {data['id']!r} is not {order!r}", r)
    c.require(data["status"] == "created", "initial_status", f"a new return is {data['status']!r}", r)
    c.require([h["status"] for h in data["history"]] == ["created"], "history", "history must start at created", r)
    c.expect(c.call("POST", "/returns", json=_35up_body(order)), 409, "a second return for the same order")
    c.expect(c.call("PATCH", f"/returns/{_order_id()}", json={"status": "awaiting_return"}), 404,
             "an order without a return")


def up35_lifecycle_to_closed(c: Client) -> None:
    order = _order_id()
    c.expect(c.call("POST", "/returns", json=_35up_body(order)), 201, "create")
    route = ["awaiting_return", "customer_shipped", "vendor_received", "confirmed", "awaiting_refund", "refunded",
             "closed"]
    for status in route:
        r = c.call("PATCH", f"/returns/{order}", json={"status": status})
        data = c.expect(r, 200, f"the lifecycle allows {status} here")
        c.require(data["status"] == status, "status_applied", f"status is {data['status']!r}, not {status!r}", r)
    c.require([h["status"] for h in data["history"]] == ["created", *route], "history",
              f"history is {[h['status'] for h in data['history']]}", r)
    r = c.call("PATCH", f"/returns/{order}", json={"status": "awaiting_return"})
    c.expect(r, 409, "closed is final")


def up35_refuses_what_the_lifecycle_forbids(c: Client) -> None:
    order = _order_id()
    c.expect(c.call("POST", "/returns", json=_35up_body(order)), 201, "create")
    c.expect(c.call("PATCH", f"/returns/{order}", json={"status": "approved"}), 422,
             "'approved' (the guide's own example) is not a 35up status")
    c.expect(c.call("PATCH", f"/returns/{order}", json={"status": "refunded"}), 409,
             "created cannot move straight to refunded")


def up35_requires_credentials(c: Client) -> None:
    r = c.call("POST", "/returns", json=_35up_body(_order_id()), authenticated=False)
    c.expect(r, 401, "no credentials")
    c.require(r.headers.get("WWW-Authenticate", "").lower().startswith("basic"), "www_authenticate",
              "a 401 must carry WWW-Authenticate: Basic", r)


SCENARIOS = [up35_create_duplicate_and_unknown, up35_lifecycle_to_closed, up35_refuses_what_the_lifecycle_forbids,
             up35_requires_credentials]
