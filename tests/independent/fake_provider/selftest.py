"""Self-test of the fake provider, the client flow and the manifest.

1. Serves the default fake on a free loopback port, runs the flow, checks every answer against the
   contracts' response schemas and headers (OpenAPI documents + JSON Schemas), and checks the documented
   behaviour exchange by exchange (statuses, codes, order, pagination, tracking, refunds, history, clock).
2. Runs the flow against every deviation and every noise variation and compares each run with a second
   default run using a small reference comparison that follows the README's rules (ids adopted, request
   ids / messages / secrets by presence, timestamps within 5 s, numbers by value where the contract says
   number, rate-limit header values ignored): every expected root finding of the manifest must show, and
   nothing may differ outside the roots and the listed consequences; noise must give no difference at all,
   must stay valid against the contracts, and must visibly be in effect.
3. Checks that ``manifest.json`` is what the catalogue and the flow say (``--write-manifest`` rewrites it).
4. Smoke-tests both command lines in subprocesses on loopback.

Exit status 0 when everything holds, 1 otherwise.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import requests
from jsonschema import Draft202012Validator
from werkzeug.test import Client

import fake_provider
from client_flow import STEP_INDEX, STEPS, run_flow
from variations import DEVIATIONS, NOISES, Finding, Variation

HERE = Path(__file__).resolve().parent
MANIFEST = HERE / "manifest.json"
PYTHON = sys.executable
Record = dict[str, Any]
Diff = tuple[str, str]  # (pointer, kind)

TS_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
PRESENCE_ONLY = tuple(
    re.compile(pattern)
    for pattern in (
        r"^/error/message$",
        r"^/error/details/issue$",
        r"^/error/details/problems/\d+/issue$",
        r"^/error/details/\d+/message$",
        r"^/meta/request_id$",
        r"^/meta/requestId$",
        r"^/data/secret$",
    )
)
MONEY_KEYS = frozenset({"refund_amount", "restocking_fee", "amount"})
TIMESTAMP_TOLERANCE = 5.0


# ---------------------------------------------------------------------------------------------------
# Running the fake
# ---------------------------------------------------------------------------------------------------


@contextmanager
def served(deviation: str | None = None, noise: str | None = None) -> Iterator[fake_provider.RunningServer]:
    server = fake_provider.serve_in_thread(fake_provider.make_app(deviation=deviation, noise=noise))
    try:
        yield server
    finally:
        server.stop()


def flow_against(deviation: str | None = None, noise: str | None = None) -> list[Record]:
    with served(deviation, noise) as server:
        return run_flow(server.base_35up, server.base_3plship)


def parse_ts(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()


def header(record: Record, name: str) -> str | None:
    for key, value in record["headers"].items():
        if key.lower() == name.lower():
            return str(value)
    return None


# ---------------------------------------------------------------------------------------------------
# Contract checks of answers
# ---------------------------------------------------------------------------------------------------


class ContractChecker:
    def __init__(self) -> None:
        self.contracts = fake_provider.load_contracts()
        root = self.contracts.root
        self.openapi: dict[str, Any] = {
            provider: json.loads((root / provider / "openapi.json").read_text(encoding="utf-8"))
            for provider in ("35up", "3plship")
        }
        self._validators: dict[str, Draft202012Validator] = {}

    def _resolve(self, doc: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in node and str(node["$ref"]).startswith("#/"):
            target: Any = doc
            for part in str(node["$ref"])[2:].split("/"):
                target = target[part]
            node = target
        return node

    def _validator(self, uri: str) -> Draft202012Validator:
        if uri not in self._validators:
            self._validators[uri] = Draft202012Validator(
                {"$ref": uri},
                registry=self.contracts.registry,
                format_checker=Draft202012Validator.FORMAT_CHECKER,
            )
        return self._validators[uri]

    def check(self, record: Record) -> list[str]:
        provider = str(record["provider"])
        doc = self.openapi[provider]
        status = int(record["status"])
        where = f"#{record['index']} {record['label']} ({record['method']} {record['template']} -> {status})"
        path_item = doc["paths"].get(record["template"])
        operation = path_item.get(str(record["method"]).lower()) if isinstance(path_item, dict) else None
        response: dict[str, Any] | None
        if operation is not None:
            response = operation["responses"].get(str(status))
        elif path_item is not None and status == 405:
            response = doc["components"]["responses"]["MethodNotAllowed"]
        elif path_item is None and status == 404:
            response = doc["components"]["responses"]["NotFound"]
        else:
            response = None
        if response is None:
            return [f"{where}: status not documented for this operation"]
        response = self._resolve(doc, response)
        problems: list[str] = []
        for name, spec in response.get("headers", {}).items():
            spec = self._resolve(doc, spec)
            value = header(record, name)
            if value is None:
                if spec.get("required"):
                    problems.append(f"{where}: required header {name} missing")
                continue
            pattern = spec.get("schema", {}).get("pattern")
            if pattern and not re.search(pattern, value):
                problems.append(f"{where}: header {name}={value!r} does not match {pattern}")
        if provider == "3plship":
            for name in ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"):
                value = header(record, name)
                if value is None or not re.fullmatch(r"[0-9]+", value):
                    problems.append(f"{where}: {name} missing or not digits ({value!r})")
        if status == 405 and not header(record, "Allow"):
            problems.append(f"{where}: 405 without Allow")
        content_type = (header(record, "Content-Type") or "").split(";")[0].strip().lower()
        content = response.get("content", {})
        if "application/json" in content:
            if content_type != "application/json":
                problems.append(f"{where}: Content-Type {content_type!r}, expected application/json")
            ref = str(content["application/json"]["schema"]["$ref"])
            uri = fake_provider.SCHEMA_BASE + f"{provider}/{ref}"
            for error in self._validator(uri).iter_errors(record["body"]):
                pointer = "/" + "/".join(str(part) for part in error.absolute_path)
                problems.append(f"{where}: body {pointer}: {error.message[:200]}")
        return problems


# ---------------------------------------------------------------------------------------------------
# The documented behaviour, exchange by exchange (default fake)
# ---------------------------------------------------------------------------------------------------


def check_default_behaviour(run: list[Record]) -> list[str]:
    problems: list[str] = []
    carriers = fake_provider.load_contracts().carriers
    statuses_35up = fake_provider.load_contracts().statuses_35up

    def expect(label: str, condition: bool, what: str) -> None:
        if not condition:
            problems.append(f"#{STEP_INDEX[label]} {label}: {what}")

    def rec(label: str) -> Record:
        return run[STEP_INDEX[label]]

    def data(label: str) -> Any:
        body = rec(label)["body"]
        return body.get("data") if isinstance(body, dict) else None

    def error(label: str) -> dict[str, Any]:
        body = rec(label)["body"]
        return body.get("error", {}) if isinstance(body, dict) else {}

    def orders(label: str) -> list[str]:
        return [item["order_id"] for item in data(label) or []]

    def pagination(label: str) -> dict[str, Any]:
        body = rec(label)["body"]
        return dict(body["meta"]["pagination"]) if isinstance(body, dict) else {}

    for record in run:
        expect(record["label"], record["status"] == record["expected_status"], f"status {record['status']}")
    if problems:
        return problems

    a = data("t.create.A")
    usps = carriers["usps"].replace("{tracking_number}", "9400111899562712345678")
    expect("t.create.A", a["status"] == "initiated" and a["refund_status"] == "pending", "initial statuses")
    expect("t.create.A", a["return_shipping"]["tracking_url"] == usps, "usps tracking_url")
    expect("t.create.A", a["return_shipping"]["status"] == "in_transit", "in_transit with a tracking number")
    expect("t.create.A", a["return_shipping"].get("label_url") == "https://...", "label_url echoed")
    expect("t.create.A", a["refund"] is None and a["created_at"] == a["updated_at"], "refund null, times equal")
    expect("t.create.A", re.fullmatch(r"ret_[a-z0-9]{14}", a["id"]) is not None, "own ret_ id form")
    b = data("t.create.B")
    ups = carriers["ups"].replace("{tracking_number}", "1Z999AA10123456784")
    expect("t.create.B", b["return_shipping"]["tracking_url"] == ups, "carrier matched case-insensitively")
    expect("t.create.B", b["refund_shipping"] is False and b["restocking_fee"] == 2.5, "defaults and echo")
    c = data("t.create.C")
    expect("t.create.C", c["return_shipping"] is None and c["customer_email"] is None, "absent optionals are null")
    d = data("t.create.D")
    expect("t.create.D", d["return_shipping"]["status"] == "pending", "pending without tracking number")
    expect("t.create.D", d["return_shipping"]["tracking_url"] is None, "no tracking_url without number")
    expect("t.create.D", d["customer_email"] == "Dana.Buyer@Example.COM", "e-mail kept as sent")

    expect("t.list.all", orders("t.list.all") == ["ord_d4004", "ord_c3003", "ord_b2002", "ord_abc123"], "newest first")
    expect(
        "t.list.all",
        pagination("t.list.all") == {"page": 1, "limit": 50, "total": 4, "total_pages": 1, "has_more": False},
        "pagination",
    )
    expect("t.list.page1", orders("t.list.page1") == ["ord_d4004", "ord_c3003"], "page 1")
    expect(
        "t.list.page1",
        pagination("t.list.page1") == {"page": 1, "limit": 2, "total": 4, "total_pages": 2, "has_more": True},
        "page 1 pagination",
    )
    expect("t.list.page2", orders("t.list.page2") == ["ord_b2002", "ord_abc123"], "page 2")
    expect("t.list.page2", pagination("t.list.page2")["has_more"] is False, "page 2 is the last")
    expect("t.list.page3_empty", orders("t.list.page3_empty") == [], "empty page")
    expect("t.list.page3_empty", pagination("t.list.page3_empty")["page"] == 3, "page 3 named")
    expect("t.list.order_b", orders("t.list.order_b") == ["ord_b2002"], "order_id filter")

    received = data("t.A.received")
    expect("t.A.received", received["status"] == "received", "received")
    expect("t.A.received", received["return_shipping"]["status"] == "delivered", "delivered once received")
    expect("t.A.received", received["updated_at"] >= received["created_at"], "updated_at moved")
    expect("t.list.received", orders("t.list.received") == ["ord_abc123"], "status filter")
    expect("t.B.refund_not_inspected", error("t.B.refund_not_inspected").get("code") == "REFUND_NOT_ALLOWED", "code")
    skip = error("t.B.skip_to_inspected")
    expect("t.B.skip_to_inspected", skip.get("code") == "INVALID_STATUS_TRANSITION", "code")
    expect("t.B.skip_to_inspected", skip.get("details", {}).get("allowed") == ["received"], "allowed next")
    expect("t.A.backward_received", error("t.A.backward_received").get("code") == "INVALID_STATUS_TRANSITION", "code")
    expect("t.A.refund_too_much", error("t.A.refund_too_much").get("code") == "REFUND_EXCEEDS_REFUNDABLE", "code")
    refund = data("t.A.refund_40")
    expect("t.A.refund_40", refund["refund_status"] == "processing" and refund["status"] == "inspected", "processing")
    expect("t.A.refund_40", refund["refund"]["amount"] == 40 and refund["refund"]["completed_at"] is None, "refund")
    requested = datetime.fromtimestamp(parse_ts(refund["refund"]["requested_at"]), UTC)
    five = fake_provider.iso(fake_provider.add_business_days(requested, 5))
    expect("t.A.refund_40", refund["refund"]["expected_at"] == five, "expected 5 business days later")
    expect("t.A.refund_again", error("t.A.refund_again").get("code") == "REFUND_ALREADY_PROCESSED", "code")
    expect("t.B.refund_full", data("t.B.refund_full")["refund"]["amount"] == 17.5, "refund_amount - restocking_fee")
    expect("t.list.inspected", orders("t.list.inspected") == ["ord_b2002", "ord_abc123"], "inspected, newest first")

    missing = error("t.create.missing_order_id")
    expect("t.create.missing_order_id", missing.get("code") == "VALIDATION_ERROR", "code")
    expect("t.create.missing_order_id", missing.get("details", {}).get("field") == "order_id", "details.field")
    bad_reason = error("t.create.bad_reason").get("details", {})
    expect(
        "t.create.bad_reason",
        bad_reason.get("field") == "reason" and len(bad_reason.get("allowed", [])) == 6,
        "details names reason and the six reasons",
    )
    expect(
        "t.create.unknown_field",
        error("t.create.unknown_field").get("details", {}).get("field") == "colour",
        "details.field names the unknown field",
    )
    bad_status = error("t.list.bad_status").get("details", {})
    expect(
        "t.list.bad_status",
        bad_status.get("field") == "status" and bad_status.get("location") == "query",
        "query details",
    )
    expect("t.create.bad_key", error("t.create.bad_key").get("code") == "UNAUTHORIZED", "code")
    expect(
        "t.create.bad_key",
        (header(rec("t.create.bad_key"), "WWW-Authenticate") or "").startswith("Bearer"),
        "Bearer challenge",
    )
    live = data("t.live.create.E")
    expect("t.live.create.E", live["restocking_fee"] == 0 and live["refund_shipping"] is True, "defaults")
    fedex = carriers["fedex"].replace("{tracking_number}", "794612345678")
    expect("t.live.create.E", live["return_shipping"]["tracking_url"] == fedex, "fedex tracking_url")
    expect("t.live.list", orders("t.live.list") == ["ord_e5005"], "account isolation")
    expect(
        "t.live.A.status_other_account",
        error("t.live.A.status_other_account").get("code") == "NOT_FOUND",
        "another key's return is 404",
    )
    expect("t.k3.A.refund_other_account", error("t.k3.A.refund_other_account").get("code") == "NOT_FOUND", "404")
    expect(
        "t.k3.list_empty",
        orders("t.k3.list_empty") == [] and pagination("t.k3.list_empty")["total"] == 0,
        "empty account",
    )
    expect("t.unknown_path", error("t.unknown_path").get("code") == "NOT_FOUND", "code")
    expect("t.wrong_method", error("t.wrong_method").get("code") == "METHOD_NOT_ALLOWED", "code")
    expect("t.wrong_method", header(rec("t.wrong_method"), "Allow") == "GET, POST", "Allow")
    hook = rec("t.webhook.create")["body"]
    expect("t.webhook.create", set(hook["meta"]) == {"timestamp", "requestId", "version"}, "versioned meta")
    expect(
        "t.webhook.create",
        hook["data"]["active"] is False and hook["data"]["secret"].startswith("whsec_"),
        "subscription",
    )
    expect(
        "t.webhook.bad_event",
        error("t.webhook.bad_event").get("details", {}).get("field") == "events[0]",
        "details.field",
    )
    expect(
        "t.list.since_2020",
        orders("t.list.since_2020") == ["ord_d4004", "ord_c3003", "ord_b2002"],
        "date filter with limit",
    )
    expect("t.list.since_2020", pagination("t.list.since_2020")["has_more"] is True, "has_more")

    main = rec("u.create.main")["body"]
    expect("u.create.main", main["id"] == main["orderId"] == "42346434", "id == orderId")
    expect("u.create.main", main["status"] == "created" and main["createdAt"] == main["updatedAt"], "created")
    expect("u.create.main", main["history"] == [{"status": "created", "at": main["createdAt"]}], "history")
    approved = error("u.main.approved")
    expect("u.main.approved", approved.get("code") == "validation_error", "code")
    expect("u.main.approved", approved.get("details", [{}])[0].get("allowed") == statuses_35up, "valid values")
    moved = rec("u.main.awaiting_return")["body"]
    expect(
        "u.main.awaiting_return",
        [h["status"] for h in moved["history"]] == ["created", "awaiting_return"],
        "history appended",
    )
    early = error("u.main.refunded_too_early")
    expect("u.main.refunded_too_early", early.get("code") == "invalid_transition", "code")
    expect(
        "u.main.refunded_too_early",
        early.get("details", [{}])[0].get("allowed")
        == ["customer_shipped", "seller_received", "vendor_received", "expired", "cancelled"],
        "allowed next",
    )
    closed = rec("u.main.closed")["body"]
    expect("u.main.closed", closed["status"] == "closed" and len(closed["history"]) == 8, "closed")
    expect(
        "u.main.after_closed",
        error("u.main.after_closed").get("details", [{}])[0].get("allowed") == [],
        "closed is final",
    )
    expect("u.create.duplicate", error("u.create.duplicate").get("code") == "duplicate_return", "code")
    expect(
        "u.create.no_credentials",
        (header(rec("u.create.no_credentials"), "WWW-Authenticate") or "").startswith("Basic"),
        "Basic challenge",
    )
    expect("u.b.create.same_order", rec("u.b.create.same_order")["body"]["id"] == "42346434", "own return")
    expect("u.b.second.other_account", error("u.b.second.other_account").get("code") == "not_found", "404")
    quantity = error("u.create.bad_quantity")
    expect("u.create.bad_quantity", quantity.get("details", [{}])[0].get("field") == "items[0].quantity", "field")
    expect("u.second.rejected", rec("u.second.rejected")["body"]["status"] == "rejected", "rejected")
    expect("u.second.get_not_allowed", header(rec("u.second.get_not_allowed"), "Allow") == "PATCH", "Allow")

    first = rec("t.create.A")
    ahead = parse_ts(first["body"]["meta"]["timestamp"]) - first["sent_at"]
    slack = first["received_at"] - first["sent_at"]
    expect("t.create.A", 1.2 <= ahead <= 1.3 + slack + 0.1, f"clock 1.3 s ahead (saw {ahead:.3f} s)")
    return problems


# ---------------------------------------------------------------------------------------------------
# Edge cases the flow does not reach (in-process, every answer also checked against the contracts)
# ---------------------------------------------------------------------------------------------------


def check_edge_cases(checker: ContractChecker) -> list[str]:
    app = fake_provider.make_app()
    client = Client(app)
    problems: list[str] = []
    try:
        _edge_cases(app, client, checker, problems)
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        problems.append(f"edge: an answer did not have the expected shape: {exc!r}")
    return problems


def _edge_cases(app: fake_provider.FakeProvider, client: Client, checker: ContractChecker, problems: list[str]) -> None:
    key = {"Authorization": "Bearer zl_test_edge_cases"}
    shop = {"Authorization": "Basic " + base64.b64encode(b"edge-shop:pw").decode()}

    def call(
        provider: str,
        method: str,
        path: str,
        template: str,
        expect: int,
        *,
        body: Any = None,
        data: str | None = None,
        content_type: str | None = None,
        headers: dict[str, str] | None = None,
        query: dict[str, str] | None = None,
    ) -> Record:
        base = "/api/v1" if provider == "3plship" else "/v1"
        response = client.open(
            base + path,
            method=method,
            json=body,
            data=data,
            content_type=content_type,
            headers=headers,
            query_string=query,
        )
        text = response.get_data(as_text=True)
        record: Record = {
            "index": -1,
            "label": f"edge {method} {path} {query or ''}",
            "provider": provider,
            "method": method,
            "template": template,
            "status": response.status_code,
            "headers": dict(response.headers.items()),
            "body": json.loads(text) if text else None,
            "text": text,
        }
        if response.status_code != expect:
            problems.append(f"{record['label']}: status {response.status_code}, expected {expect}: {text[:300]}")
        problems.extend(checker.check(record))
        return record

    def code(record: Record) -> Any:
        return record["body"]["error"]["code"]

    def field(record: Record) -> Any:
        details = record["body"]["error"]["details"]
        return details.get("field") if isinstance(details, dict) else details[0].get("field")

    def expect(condition: bool, what: str) -> None:
        if not condition:
            problems.append(f"edge: {what}")

    # 3plship: 400s
    bad = call(
        "3plship", "POST", "/returns", "/returns", 400, data="{not json", content_type="application/json", headers=key
    )
    expect(code(bad) == "BAD_REQUEST", "malformed JSON is BAD_REQUEST")
    call(
        "3plship", "POST", "/returns", "/returns", 400, data='{"order_id": "x"}', content_type="text/plain", headers=key
    )
    call("3plship", "POST", "/returns", "/returns", 400, headers=key)
    # 3plship: 422s and query rules
    other = call(
        "3plship",
        "POST",
        "/returns",
        "/returns",
        422,
        headers=key,
        body={"order_id": "o1", "reason": "other", "items": [{"sku": "S", "quantity": 1}], "refund_amount": 1},
    )
    expect(field(other) == "items[0].notes", "reason other needs notes on each item")
    typed = call(
        "3plship",
        "POST",
        "/returns",
        "/returns",
        422,
        headers=key,
        body={"order_id": "o1", "reason": "defective", "items": [{"sku": "S", "quantity": "2"}], "refund_amount": 1},
    )
    expect(field(typed) == "items[0].quantity", "a string quantity is named")
    for query, name in (
        ({"page": "0"}, "page"),
        ({"limit": "101"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"start_date": "yesterday"}, "start_date"),
        ({"end_date": "2026-13-40"}, "end_date"),
    ):
        refused = call("3plship", "GET", "/returns", "/returns", 422, headers=key, query=query)
        expect(field(refused) == name and refused["body"]["error"]["details"]["location"] == "query", f"{query}")
    call("3plship", "GET", "/returns", "/returns", 200, headers=key, query={"colour": "red"})
    call(
        "3plship",
        "GET",
        "/returns",
        "/returns",
        200,
        headers=key,
        query={"start_date": "2020-01-01T00:00:00Z", "end_date": "2099-12-31"},
    )
    # 3plship: 401s
    for headers in ({}, {"Authorization": "Basic dTpw"}, {"Authorization": "Bearer sk_live_123"}):
        call("3plship", "GET", "/returns", "/returns", 401, headers=headers)
    # 3plship: webhook defaults
    hook = call(
        "3plship",
        "POST",
        "/webhooks",
        "/webhooks",
        201,
        headers=key,
        body={"url": "https://example.com/h", "events": ["order.shipped"]},
    )
    expect(hook["body"]["data"]["active"] is True and hook["body"]["data"]["description"] is None, "hook defaults")
    # 3plship: the refund completes after 5 business days on the provider's clock
    created = call(
        "3plship",
        "POST",
        "/returns",
        "/returns",
        201,
        headers=key,
        body={
            "order_id": "o-refund",
            "reason": "defective",
            "items": [{"sku": "S", "quantity": 1}],
            "refund_amount": 30,
            "restocking_fee": 5,
        },
    )
    if created["status"] != 201:
        return
    rid = created["body"]["data"]["id"]
    expect(created["body"]["data"]["return_shipping"] is None, "no shipping given: null")
    call(
        "3plship",
        "PATCH",
        f"/returns/{rid}/status",
        "/returns/{id}/status",
        409,
        headers=key,
        body={"status": "completed"},
    )
    call(
        "3plship",
        "PATCH",
        f"/returns/{rid}/status",
        "/returns/{id}/status",
        422,
        headers=key,
        body={"status": "received", "colour": "red"},
    )
    for status in ("received", "inspected"):
        call(
            "3plship",
            "PATCH",
            f"/returns/{rid}/status",
            "/returns/{id}/status",
            200,
            headers=key,
            body={"status": status},
        )
    call("3plship", "POST", f"/returns/{rid}/refund", "/returns/{id}/refund", 422, headers=key, body={"amount": 0})
    refunded = call("3plship", "POST", f"/returns/{rid}/refund", "/returns/{id}/refund", 200, headers=key)
    expect(refunded["body"]["data"]["refund"]["amount"] == 25, "whole refundable amount: 30 - 5")
    app.offset += timedelta(days=9)
    done = call("3plship", "GET", "/returns", "/returns", 200, headers=key, query={"status": "completed"})
    listed = done["body"]["data"]
    expect(len(listed) == 1 and listed[0]["refund_status"] == "completed", "refund completed after 5 business days")
    if listed:
        refund = listed[0]["refund"]
        expect(refund["completed_at"] == refund["expected_at"] == listed[0]["updated_at"], "completed at expected_at")
    again = call("3plship", "POST", f"/returns/{rid}/refund", "/returns/{id}/refund", 409, headers=key)
    expect(code(again) == "REFUND_ALREADY_PROCESSED", "a completed refund cannot be repeated")
    # 35up
    call("35up", "POST", "/returns", "/returns", 400, data="{", content_type="application/json", headers=shop)
    call(
        "35up",
        "POST",
        "/returns",
        "/returns",
        401,
        headers={"Authorization": "Basic !!!"},
        body={"orderId": "1", "items": [{"itemId": "1", "sku": "v/S", "quantity": 1}]},
    )
    call("35up", "PATCH", "/returns/404404", "/returns/{orderId}", 404, headers=shop, body={"status": "cancelled"})
    call("35up", "GET", "/returns", "/returns", 405, headers=shop)
    call("35up", "GET", "/nothing", "/nothing", 404, headers=shop)
    extra = call(
        "35up",
        "POST",
        "/returns",
        "/returns",
        422,
        headers=shop,
        body={"orderId": "1", "items": [{"itemId": "1", "sku": "v/S", "quantity": 1, "colour": "red"}]},
    )
    expect(field(extra) == "items[0].colour", "35up names an unknown item field")
    call(
        "35up",
        "POST",
        "/returns",
        "/returns",
        201,
        headers=shop,
        body={"orderId": "exp-1", "items": [{"itemId": "1", "sku": "v/S", "quantity": 1}]},
    )
    waiting = call(
        "35up", "PATCH", "/returns/exp-1", "/returns/{orderId}", 200, headers=shop, body={"status": "awaiting_return"}
    )
    app.offset += timedelta(days=31)
    late = call(
        "35up", "PATCH", "/returns/exp-1", "/returns/{orderId}", 409, headers=shop, body={"status": "customer_shipped"}
    )
    expect(late["body"]["error"]["details"][0].get("allowed") == ["closed"], "expired after the return window")
    closed = call("35up", "PATCH", "/returns/exp-1", "/returns/{orderId}", 200, headers=shop, body={"status": "closed"})
    history = closed["body"]["history"]
    deadline = parse_ts(waiting["body"]["updatedAt"]) + 30 * 86400
    expect([h["status"] for h in history] == ["created", "awaiting_return", "expired", "closed"], "expiry in history")
    expect(len(history) == 4 and abs(parse_ts(history[2]["at"]) - deadline) < 0.002, "expired at the deadline")


# ---------------------------------------------------------------------------------------------------
# A reference comparison, following the README's rules for what is compared
# ---------------------------------------------------------------------------------------------------


def id_labels(run: list[Record]) -> dict[str, str]:
    """3plship ids (returns, webhooks) -> the label of the step that created them."""
    labels: dict[str, str] = {}
    for record in run:
        body = record["body"]
        created = record["provider"] == "3plship" and record["method"] == "POST" and 200 <= record["status"] < 300
        if created and isinstance(body, dict) and isinstance(body.get("data"), dict):
            identifier = body["data"].get("id")
            if isinstance(identifier, str) and record["template"] in ("/returns", "/webhooks"):
                labels[identifier] = record["label"]
    return labels


def _category(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


class Differ:
    def __init__(self, mock_run: list[Record], provider_run: list[Record]) -> None:
        self.mock_ids = id_labels(mock_run)
        self.provider_ids = id_labels(provider_run)

    def exchange(self, mock: Record, provider: Record) -> list[Diff]:
        if mock["status"] != provider["status"]:
            mock_ok = 200 <= mock["status"] < 300
            provider_ok = 200 <= provider["status"] < 300
            if provider_ok and not mock_ok:
                return [("", "mock_refuses")]
            if mock_ok and not provider_ok:
                return [("", "mock_accepts")]
            return [("", "status")]
        out: list[Diff] = []
        self._value(mock["body"], provider["body"], "", mock, provider, out)
        out.extend(self._headers(mock, provider))
        return out

    def _value(self, mock: Any, provider: Any, pointer: str, m_rec: Record, p_rec: Record, out: list[Diff]) -> None:
        if any(pattern.match(pointer) for pattern in PRESENCE_ONLY):
            if _category(mock) != _category(provider):
                out.append((pointer, "type"))
            return
        m_cat, p_cat = _category(mock), _category(provider)
        if m_cat != p_cat:
            out.append((pointer, "type"))
            return
        if m_cat == "string":
            if mock.startswith(("ret_", "wh_")) or provider.startswith(("ret_", "wh_")):
                same = self.mock_ids.get(mock, mock) == self.provider_ids.get(provider, provider)
            elif TS_RE.match(mock) and TS_RE.match(provider):
                m_off = parse_ts(mock) - float(m_rec["sent_at"])
                p_off = parse_ts(provider) - float(p_rec["sent_at"])
                same = abs(m_off - p_off) <= TIMESTAMP_TOLERANCE
            else:
                same = mock == provider
            if not same:
                out.append((pointer, "error_code" if pointer == "/error/code" else "value"))
            return
        if m_cat == "number":
            last = pointer.rsplit("/", 1)[-1]
            if last in MONEY_KEYS:
                if Decimal(str(mock)) != Decimal(str(provider)):
                    out.append((pointer, "value"))
            elif type(mock) is not type(provider):
                out.append((pointer, "type"))
            elif mock != provider:
                out.append((pointer, "value"))
            return
        if m_cat == "object":
            for key in mock:
                if key not in provider:
                    out.append((f"{pointer}/{key}", "extra"))
            for key in provider:
                if key not in mock:
                    out.append((f"{pointer}/{key}", "missing"))
                else:
                    self._value(mock[key], provider[key], f"{pointer}/{key}", m_rec, p_rec, out)
            return
        if m_cat == "array":
            for index in range(max(len(mock), len(provider))):
                if index >= len(provider):
                    out.append((f"{pointer}/{index}", "extra"))
                elif index >= len(mock):
                    out.append((f"{pointer}/{index}", "missing"))
                else:
                    self._value(mock[index], provider[index], f"{pointer}/{index}", m_rec, p_rec, out)
            return
        if mock != provider:
            out.append((pointer, "value"))

    def _headers(self, mock: Record, provider: Record) -> list[Diff]:
        out: list[Diff] = []

        def media(record: Record) -> str:
            return (header(record, "Content-Type") or "").split(";")[0].strip().lower()

        if media(mock) != media(provider):
            out.append(("Content-Type", "header"))
        m_auth, p_auth = header(mock, "WWW-Authenticate"), header(provider, "WWW-Authenticate")
        if (m_auth is None) != (p_auth is None) or (
            m_auth is not None and p_auth is not None and m_auth.split()[0].lower() != p_auth.split()[0].lower()
        ):
            out.append(("WWW-Authenticate", "header"))
        m_allow, p_allow = header(mock, "Allow"), header(provider, "Allow")

        def methods(value: str | None) -> set[str] | None:
            return None if value is None else {part.strip().upper() for part in value.split(",") if part.strip()}

        if methods(m_allow) != methods(p_allow):
            out.append(("Allow", "header"))
        if (header(mock, "Retry-After") is None) != (header(provider, "Retry-After") is None):
            out.append(("Retry-After", "header"))
        if mock["provider"] == "3plship":
            for name in ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"):
                if (header(mock, name) is None) != (header(provider, name) is None):
                    out.append((name, "header"))
        return out


def all_diffs(mock_run: list[Record], provider_run: list[Record]) -> dict[int, list[Diff]]:
    differ = Differ(mock_run, provider_run)
    found: dict[int, list[Diff]] = {}
    for index, (mock, provider) in enumerate(zip(mock_run, provider_run, strict=True)):
        diffs = differ.exchange(mock, provider)
        if diffs:
            found[index] = diffs
    return found


def matches(finding: Finding, diff: Diff) -> bool:
    pointer, kind = diff
    if finding.match == "prefix":
        return pointer == finding.pointer or pointer.startswith(finding.pointer + "/")
    return pointer == finding.pointer and kind == finding.kind


def check_deviation(variation: Variation, diffs: dict[int, list[Diff]]) -> list[str]:
    problems: list[str] = []
    roots: dict[int, list[Finding]] = {}
    for finding in variation.findings:
        roots.setdefault(STEP_INDEX[finding.step], []).append(finding)
    consequences = {STEP_INDEX[label] for label in variation.consequence_steps}
    for index, findings in roots.items():
        for finding in findings:
            if not any(matches(finding, diff) for diff in diffs.get(index, [])):
                problems.append(
                    f"{variation.name}: root #{index} {finding.pointer!r} {finding.kind} not observed "
                    f"(saw {diffs.get(index, [])})"
                )
    for index, found in sorted(diffs.items()):
        if index in consequences:
            continue
        if index not in roots:
            problems.append(f"{variation.name}: unexpected difference at #{index} {STEPS[index].label}: {found}")
            continue
        unlisted = [diff for diff in found if not any(matches(f, diff) for f in roots[index])]
        if unlisted:
            problems.append(f"{variation.name}: unlisted difference at root #{index}: {unlisted}")
    if not variation.findings:
        problems.append(f"{variation.name}: a deviation without expected findings")
    return problems


# ---------------------------------------------------------------------------------------------------
# Noise: proof that each variation is in effect
# ---------------------------------------------------------------------------------------------------


def noise_in_effect(name: str, default: list[Record], run: list[Record]) -> str | None:
    """None when the noise visibly changed the answers; otherwise what is missing."""
    first = run[STEP_INDEX["t.create.A"]]
    base = default[STEP_INDEX["t.create.A"]]
    german = {pair[1] for key, pair in fake_provider.MESSAGES.items() if key.startswith("m.")}
    checks: dict[str, Callable[[], bool]] = {
        "noise_ids_alt": lambda: (
            re.fullmatch(r"ret_[A-Za-z0-9]{26}", first["body"]["data"]["id"]) is not None
            and len(run[STEP_INDEX["t.webhook.create"]]["body"]["data"]["secret"]) == 6 + 48
        ),
        "noise_request_ids_alt": lambda: (
            re.fullmatch(r"req_[0-9A-F]{32}", first["body"]["meta"]["request_id"]) is not None
        ),
        "noise_messages_german": lambda: (
            all(
                record["body"]["error"]["message"] in german
                for record in run
                if isinstance(record["body"], dict) and isinstance(record["body"].get("error"), dict)
            )
            and "muss"
            in run[STEP_INDEX["t.create.missing_order_id"]]["body"]["error"]["details"]["problems"][0]["issue"]
        ),
        "noise_clock_4s": lambda: 3.9 <= parse_ts(first["body"]["meta"]["timestamp"]) - first["sent_at"] <= 4.6,
        "noise_money_float": lambda: (
            '"refund_amount": 10.0' in run[STEP_INDEX["t.create.C"]]["text"]
            and '"refund_amount": 49.99' in first["text"]
            and '"amount": 40.0' in run[STEP_INDEX["t.A.refund_40"]]["text"]
        ),
        "noise_key_order": lambda: list(first["body"]["data"]) != list(base["body"]["data"]),
        "noise_ratelimit_remaining": lambda: (
            header(first, "X-RateLimit-Remaining") != header(base, "X-RateLimit-Remaining")
        ),
        "noise_header_casing": lambda: "content-type" in first["headers"] and "x-ratelimit-limit" in first["headers"],
        "noise_json_layout": lambda: '\n  "success"' in first["text"],
        "noise_infra_headers": lambda: header(first, "CF-Ray") is not None and header(first, "Via") is not None,
    }
    check = checks.get(name)
    if check is None:
        return "no evidence check for this noise"
    try:
        return None if check() else "the variation is not visible in the answers"
    except (KeyError, TypeError, IndexError, ValueError) as exc:
        return f"evidence check failed: {exc!r}"


# ---------------------------------------------------------------------------------------------------
# Manifest
# ---------------------------------------------------------------------------------------------------

BASELINE_GUESSES: list[dict[str, Any]] = [
    {
        "labels": [
            "t.B.refund_not_inspected",
            "t.B.skip_to_inspected",
            "t.A.backward_received",
            "t.A.refund_too_much",
            "t.A.refund_again",
            "t.create.bad_key",
            "t.live.A.status_other_account",
            "t.k3.A.refund_other_account",
            "t.unknown_path",
            "t.wrong_method",
        ],
        "what": "3plship error details other than VALIDATION_ERROR: only the codes and statuses are documented. "
        "This fake sends {field, issue} plus: location 'path' (404s), 'header' (401), 'request' (405), "
        "'body' (transition, amount); allowed ['received'] / [] for transitions and ['inspected'] for "
        "REFUND_NOT_ALLOWED; field 'refund_status' for REFUND_ALREADY_PROCESSED; no field for an unknown "
        "path or a wrong method.",
    },
    {
        "labels": [
            "t.create.missing_order_id",
            "t.create.bad_reason",
            "t.create.unknown_field",
            "t.list.bad_status",
            "t.webhook.bad_event",
        ],
        "what": "VALIDATION_ERROR details: field/issue documented; location, allowed (enum errors only, in schema "
        "order) and problems (always, one entry per problem) follow the README's description; an unknown "
        "body field is named by its own name ('colour') without allowed.",
    },
    {
        "labels": [
            "u.main.approved",
            "u.main.refunded_too_early",
            "u.main.after_closed",
            "u.create.duplicate",
            "u.create.no_credentials",
            "u.b.second.other_account",
            "u.create.bad_quantity",
            "u.second.get_not_allowed",
        ],
        "what": "35up error details: the invalid_transition shape is documented in the README; the others are "
        "guesses: [{field: Authorization, location: header}] for 401, [{field: orderId, location: path}] "
        "for 404, [{field: orderId, location: body}] for the duplicate, [] for 405 and unknown paths.",
    },
    {
        "labels": ["t.create.bad_key", "u.create.no_credentials", "t.wrong_method", "u.second.get_not_allowed"],
        "what": "Header values: WWW-Authenticate 'Bearer realm=\"3plship\"' and 'Basic realm=\"35up\"' (contract: "
        "^Bearer / ^Basic); Allow 'GET, POST' and 'PATCH'.",
    },
    {
        "labels": ["t.A.refund_40", "t.B.refund_full", "t.list.inspected"],
        "what": "refund.expected_at: 5 business days counted by stepping one calendar day at a time and counting "
        "Monday-Friday (a refund on a Saturday or Sunday completes on Friday, same time of day). Another "
        "convention differs only for refunds requested at weekends.",
    },
    {
        "labels": ["t.create.A", "t.create.B", "t.create.C", "t.create.D", "t.live.create.E"],
        "what": "Absent optional request fields: return_shipping and customer_email null, refund_shipping false, "
        "restocking_fee 0, refund null until requested; label_url only when sent; money echoed as the "
        "client wrote it (0.0 stays 0.0, 10 stays 10).",
    },
]


def build_manifest() -> dict[str, Any]:
    def finding_entry(finding: Finding) -> dict[str, Any]:
        index = STEP_INDEX[finding.step]
        step = STEPS[index]
        entry: dict[str, Any] = {
            "index": index,
            "label": step.label,
            "provider": step.provider,
            "method": step.method,
            "path_template": step.template,
            "pointer": finding.pointer,
            "kind": finding.kind,
        }
        if finding.match != "exact":
            entry["match"] = finding.match
        return entry

    variations: list[dict[str, Any]] = []
    for variation in (*DEVIATIONS, *NOISES):
        entry: dict[str, Any] = {
            "name": variation.name,
            "role": variation.role,
            "category": variation.category,
            "description": variation.description,
            "expected_findings": [finding_entry(f) for f in variation.findings],
        }
        if variation.role == "deviation":
            entry["consequences"] = variation.consequences or "None: nothing later depends on it."
            entry["consequence_indices"] = sorted(STEP_INDEX[label] for label in variation.consequence_steps)
        if variation.note:
            entry["note"] = variation.note
        variations.append(entry)
    return {
        "about": "Variations of the independent fake provider (fake_provider.py) and the findings a drift "
        "detector should report for the flow of client_flow.py. Generated by selftest.py "
        "--write-manifest from variations.py and client_flow.STEPS.",
        "serve": {
            "3plship_base": "/api/v1",
            "35up_base": "/v1",
            "command": "python fake_provider.py --port PORT [--deviation NAME | --noise NAME]",
        },
        "kinds": {
            "status": "both refused (or both accepted) with other statuses",
            "mock_refuses": "the provider accepted (2xx), the mock refuses",
            "mock_accepts": "the provider refused, the mock accepts (2xx)",
            "error_code": "same status, another error code (pointer /error/code)",
            "missing": "a field the provider sends and the mock does not (pointer into the provider's answer)",
            "extra": "a field the mock sends and the provider does not (pointer into the mock's answer)",
            "type": "another JSON type (a string for a number, a float where the contract says integer, null)",
            "value": "another value (timestamps: more than 5 s apart)",
            "header": "a header missing, or with another media type / scheme / method set (pointer = header name)",
        },
        "matching": "Findings are matched by exchange index (or label), pointer and kind. 'match': 'prefix' means "
        "any pointer under the given one counts, whatever its kind (list order and membership). An "
        "exchange in 'consequence_indices' may legitimately differ too: count findings there neither "
        "as hits nor as false alarms. Run the default fake first: any finding there is a disagreement "
        "on an undocumented choice (see baseline_guesses), not a property of a variation.",
        "flow": [
            {
                "index": index,
                "label": step.label,
                "provider": step.provider,
                "method": step.method,
                "path_template": step.template,
                "expected_status": step.expect,
                "what": step.what,
            }
            for index, step in enumerate(STEPS)
        ],
        "baseline_guesses": [
            {"indices": [STEP_INDEX[label] for label in guess["labels"]], **guess} for guess in BASELINE_GUESSES
        ],
        "variations": variations,
    }


def manifest_text() -> str:
    return json.dumps(build_manifest(), indent=2, ensure_ascii=False) + "\n"


# ---------------------------------------------------------------------------------------------------
# Command lines
# ---------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def check_command_lines() -> list[str]:
    problems: list[str] = []
    port = free_port()
    process = subprocess.Popen(
        [
            PYTHON,
            str(HERE / "fake_provider.py"),
            "--port",
            str(port),
            "--deviation",
            "status_3pl_webhook_200",
            "--quiet",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=HERE,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        session = requests.Session()
        session.trust_env = False
        deadline = time.monotonic() + 20
        while True:
            try:
                answer = session.post(
                    base + "/api/v1/webhooks",
                    headers={"Authorization": "Bearer zl_test_cli"},
                    json={"url": "http://127.0.0.1:9/x", "events": ["return.created"]},
                    timeout=5,
                )
                break
            except requests.ConnectionError:
                if time.monotonic() > deadline or process.poll() is not None:
                    problems.append("fake_provider.py did not start")
                    return problems
                time.sleep(0.1)
        if answer.status_code != 200:
            problems.append(f"fake_provider.py --deviation status_3pl_webhook_200: got {answer.status_code}")
        flow = subprocess.run(
            [PYTHON, str(HERE / "client_flow.py"), "--base-35up", base + "/v1", "--base-3plship", base + "/api/v1"],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=HERE,
            check=False,
        )
        if flow.returncode != 0 or len(flow.stdout.strip().splitlines()) != len(STEPS):
            problems.append(f"client_flow.py failed: {flow.returncode} {flow.stderr[-500:]}")
        listed = subprocess.run(
            [PYTHON, str(HERE / "fake_provider.py"), "--list"],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=HERE,
            check=False,
        )
        if listed.returncode != 0 or "noise_clock_4s" not in listed.stdout:
            problems.append("fake_provider.py --list failed")
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
    return problems


# ---------------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Self-test of the fake provider, its flow and its manifest.")
    parser.add_argument("--write-manifest", action="store_true", help="(re)write manifest.json first")
    parser.add_argument("--only", help="run only this variation (and the defaults)")
    parser.add_argument("--skip-cli", action="store_true", help="skip the command-line smoke test")
    args = parser.parse_args(argv)
    os.chdir(HERE)
    failures: list[str] = []

    if args.write_manifest:
        MANIFEST.write_text(manifest_text(), encoding="utf-8")
        print(f"wrote {MANIFEST}")
    if not MANIFEST.is_file() or MANIFEST.read_text(encoding="utf-8") != manifest_text():
        failures.append("manifest.json is stale: run selftest.py --write-manifest")

    checker = ContractChecker()
    default = flow_against()
    second = flow_against()
    for run in (default, second):
        for record in run:
            failures.extend(checker.check(record))
    failures.extend(check_default_behaviour(default))
    failures.extend(check_edge_cases(checker))
    baseline = all_diffs(default, second)
    if baseline:
        failures.append(f"two default runs differ under the reference comparison: {baseline}")
    print(f"default: {len(default)} exchanges, contract and behaviour checked")

    for variation in (*DEVIATIONS, *NOISES):
        if args.only and variation.name != args.only:
            continue
        if variation.role == "deviation":
            run = flow_against(deviation=variation.name)
            problems = check_deviation(variation, all_diffs(default, run))
        else:
            run = flow_against(noise=variation.name)
            found = all_diffs(default, run)
            problems = [f"{variation.name}: difference at #{i} {STEPS[i].label}: {d}" for i, d in found.items()]
            for record in run:
                problems.extend(f"{variation.name}: {problem}" for problem in checker.check(record))
            evidence = noise_in_effect(variation.name, default, run)
            if evidence:
                problems.append(f"{variation.name}: {evidence}")
        status = "ok" if not problems else "FAIL"
        print(f"{variation.role:9s} {variation.name:42s} {status}")
        failures.extend(problems)

    if not args.skip_cli:
        failures.extend(check_command_lines())
        print("command lines checked")

    if failures:
        print(f"\n{len(failures)} problem(s):", file=sys.stderr)
        for failure in failures:
            print("  " + failure, file=sys.stderr)
        return 1
    print(f"\nall good: {len(DEVIATIONS)} deviations, {len(NOISES)} noise variations, {len(STEPS)} exchanges")
    return 0


if __name__ == "__main__":
    sys.exit(main())
