"""One fixed client flow over both providers, recorded exchange by exchange.

``run_flow(base_35up, base_3plship)`` sends the 56 requests of ``STEPS`` in order, with ``requests``,
taking ids from the answers, and returns one record per exchange (index, label, method, path, path
template, status, headers, body, ...), so that findings of a drift detector can be matched by index.

Accounts are fresh for every run (a random tag goes into the 3plship keys and the 35up usernames), so the
flow can run many times against the same server and every list starts empty.

Command line::

    python client_flow.py --base-35up http://127.0.0.1:8765/v1 --base-3plship http://127.0.0.1:8765/api/v1
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import requests

ProviderName = Literal["3plship", "35up"]
PLACEHOLDER_ID = "ret_missing0"


@dataclass(frozen=True)
class Step:
    label: str
    provider: ProviderName
    method: str
    template: str
    expect: int
    what: str


def _t(label: str, method: str, template: str, expect: int, what: str) -> Step:
    return Step(label, "3plship", method, template, expect, what)


def _u(label: str, method: str, template: str, expect: int, what: str) -> Step:
    return Step(label, "35up", method, template, expect, what)


STEPS: tuple[Step, ...] = (
    _t("t.create.A", "POST", "/returns", 201, "key 1 creates A: the documented full body (usps, 49.99)"),
    _t("t.create.B", "POST", "/returns", 201, "key 1 creates B: carrier UPS, refund 20, restocking_fee 2.5"),
    _t("t.create.C", "POST", "/returns", 201, "key 1 creates C: reason other with notes, refund 10, no shipping"),
    _t("t.create.D", "POST", "/returns", 201, "key 1 creates D: dhl without tracking number, mixed-case e-mail"),
    _t("t.list.all", "GET", "/returns", 200, "key 1 lists everything: D, C, B, A"),
    _t("t.list.page1", "GET", "/returns", 200, "page 1 of 2 (limit 2): D, C"),
    _t("t.list.page2", "GET", "/returns", 200, "page 2 of 2: B, A"),
    _t("t.list.page3_empty", "GET", "/returns", 200, "page 3: empty"),
    _t("t.list.order_b", "GET", "/returns", 200, "filter by order_id: B"),
    _t("t.A.received", "PATCH", "/returns/{id}/status", 200, "A: initiated -> received (with notes)"),
    _t("t.list.received", "GET", "/returns", 200, "filter by status received: A"),
    _t("t.B.refund_not_inspected", "POST", "/returns/{id}/refund", 409, "refund of an initiated return"),
    _t("t.B.skip_to_inspected", "PATCH", "/returns/{id}/status", 409, "B: initiated -> inspected (skipped step)"),
    _t("t.A.inspected", "PATCH", "/returns/{id}/status", 200, "A: received -> inspected"),
    _t("t.A.backward_received", "PATCH", "/returns/{id}/status", 409, "A: inspected -> received (backward)"),
    _t("t.A.refund_too_much", "POST", "/returns/{id}/refund", 409, "refund 60 of a refundable 49.99"),
    _t("t.A.refund_40", "POST", "/returns/{id}/refund", 200, "refund 40 of A"),
    _t("t.A.refund_again", "POST", "/returns/{id}/refund", 409, "a second refund of A"),
    _t("t.B.received", "PATCH", "/returns/{id}/status", 200, "B: initiated -> received"),
    _t("t.B.inspected", "PATCH", "/returns/{id}/status", 200, "B: received -> inspected"),
    _t("t.B.refund_full", "POST", "/returns/{id}/refund", 200, "refund of B without a body: 20 - 2.5 = 17.5"),
    _t("t.list.inspected", "GET", "/returns", 200, "filter by status inspected: B, A"),
    _t("t.create.missing_order_id", "POST", "/returns", 422, "create without order_id"),
    _t("t.create.bad_reason", "POST", "/returns", 422, "create with reason 'broken'"),
    _t("t.create.unknown_field", "POST", "/returns", 422, "create with an unknown field 'colour'"),
    _t("t.list.bad_status", "GET", "/returns", 422, "list with status=shipped"),
    _t("t.create.bad_key", "POST", "/returns", 401, "create with a zl_prod_ key"),
    _t("t.live.create.E", "POST", "/returns", 201, "the zl_live_ key creates E (fedex, no restocking_fee)"),
    _t("t.live.list", "GET", "/returns", 200, "the live key lists: E only"),
    _t("t.live.A.status_other_account", "PATCH", "/returns/{id}/status", 404, "the live key moves key 1's A"),
    _t("t.k3.A.refund_other_account", "POST", "/returns/{id}/refund", 404, "key 3 refunds key 1's A"),
    _t("t.k3.list_empty", "GET", "/returns", 200, "key 3 lists: nothing"),
    _t("t.unknown_path", "GET", "/refunds", 404, "an unknown path"),
    _t("t.wrong_method", "DELETE", "/returns", 405, "DELETE on /returns"),
    _t("t.webhook.create", "POST", "/webhooks", 201, "subscribe an inactive loopback URL to the return events"),
    _t("t.webhook.bad_event", "POST", "/webhooks", 422, "subscribe to an undocumented event type"),
    _t("t.list.since_2020", "GET", "/returns", 200, "start_date=2020-01-01, limit 3: D, C, B"),
    _u("u.create.main", "POST", "/returns", 201, "shop-a requests the guide's return (order 42346434, 2 items)"),
    _u("u.main.approved", "PATCH", "/returns/{orderId}", 422, "the guide's own example: status approved"),
    _u("u.main.awaiting_return", "PATCH", "/returns/{orderId}", 200, "created -> awaiting_return"),
    _u("u.main.refunded_too_early", "PATCH", "/returns/{orderId}", 409, "awaiting_return -> refunded"),
    _u("u.main.customer_shipped", "PATCH", "/returns/{orderId}", 200, "awaiting_return -> customer_shipped"),
    _u("u.main.vendor_received", "PATCH", "/returns/{orderId}", 200, "customer_shipped -> vendor_received"),
    _u("u.main.confirmed", "PATCH", "/returns/{orderId}", 200, "vendor_received -> confirmed"),
    _u("u.main.awaiting_refund", "PATCH", "/returns/{orderId}", 200, "confirmed -> awaiting_refund"),
    _u("u.main.refunded", "PATCH", "/returns/{orderId}", 200, "awaiting_refund -> refunded"),
    _u("u.main.closed", "PATCH", "/returns/{orderId}", 200, "refunded -> closed"),
    _u("u.main.after_closed", "PATCH", "/returns/{orderId}", 409, "closed -> cancelled (closed is final)"),
    _u("u.create.duplicate", "POST", "/returns", 409, "shop-a requests the same order again"),
    _u("u.create.no_credentials", "POST", "/returns", 401, "a create without credentials"),
    _u("u.b.create.same_order", "POST", "/returns", 201, "shop-b requests the same order id: its own return"),
    _u("u.create.second", "POST", "/returns", 201, "shop-a requests order A-55501"),
    _u("u.b.second.other_account", "PATCH", "/returns/{orderId}", 404, "shop-b moves shop-a's A-55501"),
    _u("u.create.bad_quantity", "POST", "/returns", 422, "a create with quantity 0"),
    _u("u.second.rejected", "PATCH", "/returns/{orderId}", 200, "A-55501: created -> rejected"),
    _u("u.second.get_not_allowed", "GET", "/returns/{orderId}", 405, "GET a return: no read endpoint"),
)

STEP_INDEX: dict[str, int] = {step.label: index for index, step in enumerate(STEPS)}

GUIDE_ITEMS: list[dict[str, Any]] = [
    {"itemId": "412412", "sku": "vendor_id/FEI60XX114014XXAPIP80", "quantity": 2},
    {"itemId": "100397", "sku": "vendor_id/FEI60XX114014XXAPIP81", "quantity": 1},
]


class _Runner:
    def __init__(self, base_35up: str, base_3plship: str, session: requests.Session, timeout: float) -> None:
        self.bases: dict[ProviderName, str] = {"35up": base_35up.rstrip("/"), "3plship": base_3plship.rstrip("/")}
        self.session = session
        self.timeout = timeout
        self.records: list[dict[str, Any]] = []

    def call(
        self,
        label: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        body: Any = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
    ) -> dict[str, Any]:
        index = len(self.records)
        step = STEPS[index]
        if step.label != label:
            raise RuntimeError(f"flow out of step: expected {step.label} at {index}, got {label}")
        url = self.bases[step.provider] + path
        sent_at = time.time()
        response = self.session.request(
            step.method,
            url,
            params=params,
            json=body,
            headers=headers,
            auth=auth,
            timeout=self.timeout,
            allow_redirects=False,
        )
        received_at = time.time()
        parsed: Any = None
        try:
            parsed = json.loads(response.text) if response.text else None
        except ValueError:
            parsed = None
        record: dict[str, Any] = {
            "index": index,
            "label": label,
            "provider": step.provider,
            "method": step.method,
            "path": path,
            "template": step.template,
            "query": dict(params or {}),
            "request_body": body,
            "status": response.status_code,
            "expected_status": step.expect,
            "headers": dict(response.headers.items()),
            "body": parsed,
            "text": response.text,
            "sent_at": sent_at,
            "received_at": received_at,
        }
        self.records.append(record)
        return record


def return_id(record: dict[str, Any]) -> str:
    """The 3plship return id an answer carries, or a placeholder when the create was refused."""
    body = record.get("body")
    if 200 <= int(record["status"]) < 300 and isinstance(body, dict):
        data = body.get("data")
        if isinstance(data, dict) and isinstance(data.get("id"), str):
            return str(data["id"])
    return PLACEHOLDER_ID


def run_flow(
    base_35up: str,
    base_3plship: str,
    *,
    tag: str | None = None,
    session: requests.Session | None = None,
    timeout: float = 15.0,
) -> list[dict[str, Any]]:
    """Run the fixed flow against the two base URLs; one record per exchange, in order."""
    tag = tag or secrets.token_hex(4)
    own_session = session is None
    http = session or requests.Session()
    http.trust_env = False  # no proxies from the environment, no ~/.netrc credentials
    try:
        run = _Runner(base_35up, base_3plship, http, timeout)
        _flow_3plship(run, tag)
        _flow_35up(run, tag)
    finally:
        if own_session:
            http.close()
    if len(run.records) != len(STEPS):
        raise RuntimeError("the flow did not run every step")
    return run.records


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _flow_3plship(run: _Runner, tag: str) -> None:
    k1 = _bearer(f"zl_test_flow_{tag}_one")
    k2 = _bearer(f"zl_live_flow_{tag}_two")
    k3 = _bearer(f"zl_test_flow_{tag}_three")
    bad = _bearer(f"zl_prod_{tag}")

    created_a = run.call(
        "t.create.A",
        "/returns",
        headers=k1,
        body={
            "order_id": "ord_abc123",
            "reason": "defective",
            "items": [
                {"sku": "PROD-001", "quantity": 1, "condition": "damaged", "notes": "Product arrived with broken seal"}
            ],
            "return_shipping": {
                "carrier": "usps",
                "tracking_number": "9400111899562712345678",
                "label_url": "https://...",
            },
            "refund_amount": 49.99,
            "refund_shipping": True,
            "restocking_fee": 0.0,
            "customer_email": "customer@example.com",
        },
    )
    created_b = run.call(
        "t.create.B",
        "/returns",
        headers=k1,
        body={
            "order_id": "ord_b2002",
            "reason": "wrong_item",
            "items": [{"sku": "PROD-002", "quantity": 2, "condition": "new"}],
            "return_shipping": {"carrier": "UPS", "tracking_number": "1Z999AA10123456784"},
            "refund_amount": 20,
            "restocking_fee": 2.5,
        },
    )
    run.call(
        "t.create.C",
        "/returns",
        headers=k1,
        body={
            "order_id": "ord_c3003",
            "reason": "other",
            "items": [{"sku": "PROD-003", "quantity": 1, "notes": "A gift the customer did not want"}],
            "refund_amount": 10,
            "refund_shipping": False,
            "restocking_fee": 0,
        },
    )
    run.call(
        "t.create.D",
        "/returns",
        headers=k1,
        body={
            "order_id": "ord_d4004",
            "reason": "customer_remorse",
            "items": [{"sku": "PROD-004", "quantity": 3}],
            "return_shipping": {"carrier": "dhl"},
            "refund_amount": 15.5,
            "refund_shipping": False,
            "restocking_fee": 0,
            "customer_email": "Dana.Buyer@Example.COM",
        },
    )
    a_id = return_id(created_a)
    b_id = return_id(created_b)

    run.call("t.list.all", "/returns", headers=k1)
    run.call("t.list.page1", "/returns", headers=k1, params={"page": "1", "limit": "2"})
    run.call("t.list.page2", "/returns", headers=k1, params={"page": "2", "limit": "2"})
    run.call("t.list.page3_empty", "/returns", headers=k1, params={"page": "3", "limit": "2"})
    run.call("t.list.order_b", "/returns", headers=k1, params={"order_id": "ord_b2002"})

    run.call("t.A.received", f"/returns/{a_id}/status", headers=k1, body={"status": "received", "notes": "Box intact"})
    run.call("t.list.received", "/returns", headers=k1, params={"status": "received"})
    run.call("t.B.refund_not_inspected", f"/returns/{b_id}/refund", headers=k1)
    run.call("t.B.skip_to_inspected", f"/returns/{b_id}/status", headers=k1, body={"status": "inspected"})
    run.call("t.A.inspected", f"/returns/{a_id}/status", headers=k1, body={"status": "inspected"})
    run.call("t.A.backward_received", f"/returns/{a_id}/status", headers=k1, body={"status": "received"})
    run.call("t.A.refund_too_much", f"/returns/{a_id}/refund", headers=k1, body={"amount": 60})
    run.call("t.A.refund_40", f"/returns/{a_id}/refund", headers=k1, body={"amount": 40})
    run.call("t.A.refund_again", f"/returns/{a_id}/refund", headers=k1, body={"amount": 5})
    run.call("t.B.received", f"/returns/{b_id}/status", headers=k1, body={"status": "received"})
    run.call("t.B.inspected", f"/returns/{b_id}/status", headers=k1, body={"status": "inspected"})
    run.call("t.B.refund_full", f"/returns/{b_id}/refund", headers=k1)
    run.call("t.list.inspected", "/returns", headers=k1, params={"status": "inspected"})

    run.call(
        "t.create.missing_order_id",
        "/returns",
        headers=k1,
        body={
            "reason": "defective",
            "items": [{"sku": "PROD-005", "quantity": 1}],
            "refund_amount": 5,
        },
    )
    run.call(
        "t.create.bad_reason",
        "/returns",
        headers=k1,
        body={
            "order_id": "ord_x6006",
            "reason": "broken",
            "items": [{"sku": "PROD-006", "quantity": 1}],
            "refund_amount": 5,
        },
    )
    run.call(
        "t.create.unknown_field",
        "/returns",
        headers=k1,
        body={
            "order_id": "ord_x7007",
            "reason": "defective",
            "items": [{"sku": "PROD-007", "quantity": 1}],
            "refund_amount": 5,
            "colour": "red",
        },
    )
    run.call("t.list.bad_status", "/returns", headers=k1, params={"status": "shipped"})
    run.call(
        "t.create.bad_key",
        "/returns",
        headers=bad,
        body={
            "order_id": "ord_x8008",
            "reason": "defective",
            "items": [{"sku": "PROD-008", "quantity": 1}],
            "refund_amount": 5,
        },
    )

    run.call(
        "t.live.create.E",
        "/returns",
        headers=k2,
        body={
            "order_id": "ord_e5005",
            "reason": "defective",
            "items": [{"sku": "LIVE-001", "quantity": 1, "condition": "damaged"}],
            "return_shipping": {"carrier": "fedex", "tracking_number": "794612345678"},
            "refund_amount": 99.5,
            "refund_shipping": True,
        },
    )
    run.call("t.live.list", "/returns", headers=k2)
    run.call("t.live.A.status_other_account", f"/returns/{a_id}/status", headers=k2, body={"status": "received"})
    run.call("t.k3.A.refund_other_account", f"/returns/{a_id}/refund", headers=k3)
    run.call("t.k3.list_empty", "/returns", headers=k3)

    run.call("t.unknown_path", "/refunds", headers=k1)
    run.call("t.wrong_method", "/returns", headers=k1)
    run.call(
        "t.webhook.create",
        "/webhooks",
        headers=k1,
        body={
            "url": "http://127.0.0.1:9/hooks/3plship",
            "events": ["return.created", "return.received"],
            "description": "Returns to the ERP (flow)",
            "active": False,
        },
    )
    run.call(
        "t.webhook.bad_event",
        "/webhooks",
        headers=k1,
        body={
            "url": "http://127.0.0.1:9/hooks/3plship",
            "events": ["return.refunded"],
        },
    )
    run.call("t.list.since_2020", "/returns", headers=k1, params={"start_date": "2020-01-01", "limit": "3"})


def _flow_35up(run: _Runner, tag: str) -> None:
    shop_a = (f"shop-a-{tag}", "secret-a")
    shop_b = (f"shop-b-{tag}", "secret-b")
    guide = {"orderId": "42346434", "items": GUIDE_ITEMS}

    created = run.call("u.create.main", "/returns", auth=shop_a, body=guide)
    body = created.get("body")
    main_id = str(body["id"]) if isinstance(body, dict) and isinstance(body.get("id"), str) else "42346434"
    path = f"/returns/{main_id}"
    run.call("u.main.approved", path, auth=shop_a, body={"status": "approved"})
    run.call("u.main.awaiting_return", path, auth=shop_a, body={"status": "awaiting_return"})
    run.call("u.main.refunded_too_early", path, auth=shop_a, body={"status": "refunded"})
    for status in ("customer_shipped", "vendor_received", "confirmed", "awaiting_refund", "refunded", "closed"):
        run.call(f"u.main.{status}", path, auth=shop_a, body={"status": status})
    run.call("u.main.after_closed", path, auth=shop_a, body={"status": "cancelled"})
    run.call("u.create.duplicate", "/returns", auth=shop_a, body=guide)
    run.call(
        "u.create.no_credentials",
        "/returns",
        body={
            "orderId": "88888",
            "items": [{"itemId": "1", "sku": "vendor_id/NOAUTH1", "quantity": 1}],
        },
    )
    run.call("u.b.create.same_order", "/returns", auth=shop_b, body=guide)
    run.call(
        "u.create.second",
        "/returns",
        auth=shop_a,
        body={
            "orderId": "A-55501",
            "items": [{"itemId": "900001", "sku": "vendor_id/SKU55501", "quantity": 1}],
        },
    )
    run.call("u.b.second.other_account", "/returns/A-55501", auth=shop_b, body={"status": "awaiting_return"})
    run.call(
        "u.create.bad_quantity",
        "/returns",
        auth=shop_a,
        body={
            "orderId": "77777",
            "items": [{"itemId": "1", "sku": "vendor_id/X1", "quantity": 0}],
        },
    )
    run.call("u.second.rejected", "/returns/A-55501", auth=shop_a, body={"status": "rejected"})
    run.call("u.second.get_not_allowed", "/returns/A-55501", auth=shop_a)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the fixed client flow against two base URLs.")
    parser.add_argument("--base-35up", required=True, help="e.g. http://127.0.0.1:8765/v1")
    parser.add_argument("--base-3plship", required=True, help="e.g. http://127.0.0.1:8765/api/v1")
    parser.add_argument("--tag", help="account tag (default: random)")
    parser.add_argument("--json", action="store_true", help="print every record as JSON")
    args = parser.parse_args(argv)
    records = run_flow(args.base_35up, args.base_3plship, tag=args.tag)
    if args.json:
        print(json.dumps(records, indent=2))
    else:
        for record in records:
            mark = "" if record["status"] == record["expected_status"] else f"  (expected {record['expected_status']})"
            print(
                f"{record['index']:2d} {record['provider']:7s} {record['method']:6s} {record['path']:40s} "
                f"{record['status']}{mark}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
