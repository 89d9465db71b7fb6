"""Scripted lifecycle scenarios: the documented rules, not only the shapes.

Each scenario drives a real target (this mock, a sandbox, a provider account) through a lifecycle with
`requests`; every response is also checked against the contract. The first broken expectation ends the
scenario (later steps depend on it) and becomes a violation with a curl reproducer. Against a real
account these scenarios create real returns: point verify at a sandbox or a test key.
"""

from __future__ import annotations

import secrets
import shlex
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import requests

from .exchange import Exchange, check_exchange
from .report import Report, Violation


class ScenarioFailed(Exception):
    def __init__(self, check: str, message: str, reproducer: str) -> None:
        super().__init__(message)
        self.check = check
        self.message = message
        self.reproducer = reproducer


def curl(prepared: requests.PreparedRequest) -> str:
    parts = ["curl", "-X", str(prepared.method), shlex.quote(str(prepared.url))]
    for name, value in prepared.headers.items():
        if name.lower() in ("user-agent", "accept-encoding", "accept", "connection", "content-length"):
            continue
        shown = "[Filtered]" if name.lower() == "authorization" else value
        parts += ["-H", shlex.quote(f"{name}: {shown}")]
    if prepared.body:
        body = prepared.body.decode() if isinstance(prepared.body, bytes) else str(prepared.body)
        parts += ["-d", shlex.quote(body)]
    return " ".join(parts)


class Client:
    """requests, pointed at one provider's base URL, checking every answer against the contract."""

    def __init__(self, provider: str, base_url: str, auth_headers: dict[str, str], timeout: float) -> None:
        self.provider = provider
        self.base_url = base_url.rstrip("/")
        self.base_path = urlsplit(self.base_url).path
        self.auth_headers = auth_headers
        self.timeout = timeout
        self.session = requests.Session()
        self.checks = 0

    def call(self, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None,
             authenticated: bool = True) -> requests.Response:
        headers = dict(self.auth_headers) if authenticated else {}
        response = self.session.request(method, self.base_url + path, json=json, params=params, headers=headers,
                                        timeout=self.timeout)
        request = response.request
        body = request.body.encode() if isinstance(request.body, str) else request.body
        exchange = Exchange(
            method=method, path=urlsplit(response.url).path[len(self.base_path):] or "/",
            query={k: str(v) for k, v in (params or {}).items()},
            request_content_type=request.headers.get("Content-Type"), request_body=body,
            status=response.status_code, response_content_type=response.headers.get("Content-Type"),
            response_body=response.content)
        self.checks += 1
        _, findings = check_exchange(self.provider, exchange)
        response_findings = [f for f in findings if f.side == "response"]
        if response_findings:
            detail = "; ".join(f"{f.field + ': ' if f.field else ''}{f.message}" for f in response_findings)
            raise ScenarioFailed("response_conformance", f"{method} {path} -> {response.status_code}: {detail}",
                                 curl(request))
        return response

    def expect(self, response: requests.Response, status: int, why: str) -> Any:
        self.checks += 1
        if response.status_code != status:
            raise ScenarioFailed("status_code", f"{why}: expected {status}, got {response.status_code}: "
                                                f"{response.text[:300]}", curl(response.request))
        return response.json() if response.content else None

    def require(self, condition: bool, check: str, message: str, response: requests.Response) -> None:
        self.checks += 1
        if not condition:
            raise ScenarioFailed(check, message, curl(response.request))


Scenario = Callable[[Client], None]


def _order_id() -> str:
    return f"rm{secrets.randbelow(10**12):012d}"


# --- 35up ----------------------------------------------------------------------------------------


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


# --- 3plship -------------------------------------------------------------------------------------


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


SCENARIOS: dict[str, list[Scenario]] = {
    "35up": [up35_create_duplicate_and_unknown, up35_lifecycle_to_closed, up35_refuses_what_the_lifecycle_forbids,
             up35_requires_credentials],
    "3plship": [pl_create_and_list, pl_status_flow_and_refund, pl_webhook_subscription, pl_requires_an_api_key],
}


def run_scenarios(provider: str, base_url: str, auth_headers: dict[str, str], report: Report,
                  timeout: float = 10.0) -> None:
    for scenario in SCENARIOS[provider]:
        client = Client(provider, base_url, auth_headers, timeout)
        name = scenario.__name__
        try:
            scenario(client)
        except ScenarioFailed as failed:
            report.add(Violation("scenario", name, failed.check, failed.message, failed.reproducer))
        except (requests.RequestException, ValueError, KeyError, TypeError) as exc:
            report.add(Violation("scenario", name, "unusable_response", f"{type(exc).__name__}: {exc}"))
        report.ran("scenario", name, client.checks)
