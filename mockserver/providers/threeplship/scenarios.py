"""3plship lifecycle scenarios: `returns-mock verify` drives an implementation through these; every answer is also
checked against the contract. Against a real account they create real returns."""

from __future__ import annotations

import secrets
from typing import Any

from mockserver.providers.provider import ScenarioClient as Client


def _order_id() -> str:
    return f"rm{secrets.randbelow(10**12):012d}"


def _3pl_body(order_id: str, refund_amount: float = 49.99) -> dict[str, Any]:
    return {"order_id": order_id, "reason": "defective",
            "items": [{"sku": "PROD-001", "quantity": 1, "condition": "damaged"}],
            "return_shipping": {"carrier": "usps", "tracking_number": "9400111899562712345678"},
            "refund_amount": refund_amount, "restocking_fee": 5.0}


def pl_create_and_list(c: Client) -> None:
    order = f"ord_{_order_id()}"
    r = c.call("POST", "/returns", json=_3pl_body(order))
    data = c.expect(r, 201, "a new return")["data"]
    c.require(data["status"] == "initiated" and data["refund_status"] == "pending", "initial_status",
              f"a new return is {data['status']!r}/{data['refund_status']!r}", r)
    r = c.call("GET", "/returns", params={"order_id": order, "limit": 10})
    page = c.expect(r, 200, "list by order_id")
    c.require([x["id"] for x in page["data"]] == [data["id"]], "list_filter",
              "the list filtered by order_id must hold exactly the new return", r)
    c.require(page["meta"]["pagination"]["total"] == 1, "pagination", "pagination.total must be 1", r)
    c.expect(c.call("PATCH", "/returns/ret_doesnotexist0/status", json={"status": "received"}), 404,
             "an unknown return")


def pl_status_flow_and_refund(c: Client) -> None:
    rid = c.expect(c.call("POST", "/returns", json=_3pl_body(f"ord_{_order_id()}")), 201, "create")["data"]["id"]
    c.expect(c.call("PATCH", f"/returns/{rid}/status", json={"status": "inspected"}), 409,
             "initiated cannot skip to inspected")
    c.expect(c.call("POST", f"/returns/{rid}/refund"), 409, "no refund before inspection")
    for status in ("received", "inspected"):
        r = c.call("PATCH", f"/returns/{rid}/status", json={"status": status})
        data = c.expect(r, 200, f"the next step is {status}")["data"]
        c.require(data["status"] == status, "status_applied", f"status is {data['status']!r}", r)
    c.expect(c.call("PATCH", f"/returns/{rid}/status", json={"status": "received"}), 409, "no step backwards")
    c.expect(c.call("POST", f"/returns/{rid}/refund", json={"amount": 45.0}), 409,
             "45.00 is more than refund_amount 49.99 - restocking_fee 5.00")
    r = c.call("POST", f"/returns/{rid}/refund", json={"amount": 44.99})
    data = c.expect(r, 200, "refund of the refundable amount")["data"]
    c.require(data["refund_status"] == "processing", "refund_status",
              f"refund_status is {data['refund_status']!r}, not processing", r)
    c.expect(c.call("POST", f"/returns/{rid}/refund"), 409, "a second refund")


def pl_webhook_subscription(c: Client) -> None:
    # Inactive and on loopback: nothing is ever delivered, even by a real provider.
    body = {"url": "http://127.0.0.1:9/returns-mock-verify", "events": ["return.created", "return.received"],
            "description": "returns-mock verify (inactive)", "active": False}
    r = c.call("POST", "/webhooks", json=body)
    data = c.expect(r, 201, "a webhook subscription")["data"]
    c.require(data["secret"].startswith("whsec_") and data["id"].startswith("wh_"), "webhook_secret",
              "the answer carries the id (wh_...) and the signing secret (whsec_...)", r)
    c.require(data["events"] == body["events"] and data["active"] is False, "webhook_echo",
              "the subscription echoes its events and active flag", r)


def pl_requires_an_api_key(c: Client) -> None:
    r = c.call("GET", "/returns", authenticated=False)
    body = c.expect(r, 401, "no API key")
    c.require(body.get("success") is False and "requestId" in body.get("meta", {}), "error_envelope",
              "errors use {success: false, error, meta: {timestamp, requestId, version}}", r)


SCENARIOS = [pl_create_and_list, pl_status_flow_and_refund, pl_webhook_subscription, pl_requires_an_api_key]
