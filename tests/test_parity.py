"""One scenario suite through the in-process mock and through the real server: same statuses, same bodies."""

from __future__ import annotations

import re
from typing import Any

import pytest
import requests
from helpers import Server, fixture

from mockserver import mock_providers

pytestmark = pytest.mark.system

A = ("Basic", "shop-a", "pw")
B = ("Basic", "shop-b", "pw")
K = ("Bearer", "zl_test_parity")
L = ("Bearer", "zl_live_other")

BODY_35UP = fixture("35up/create-return.request.json")
BODY_3PL = fixture("3plship/create-return.request.json")

# (provider, method, path, auth, json body); {rid} is the id of the last 3plship return created.
SCENARIO: list[tuple[str, str, str, Any, Any]] = [
    ("35up", "POST", "/returns", A, BODY_35UP),
    ("35up", "POST", "/returns", A, BODY_35UP),
    ("35up", "POST", "/returns", B, BODY_35UP),
    ("35up", "PATCH", "/returns/42346434", A, {"status": "approved"}),
    ("35up", "PATCH", "/returns/42346434", A, {"status": "refunded"}),
    *[("35up", "PATCH", "/returns/42346434", A, {"status": s}) for s in
      ["awaiting_return", "customer_shipped", "vendor_received", "not_confirmed", "awaiting_dispute",
       "awaiting_refund", "refunded", "closed", "cancelled"]],
    ("35up", "PATCH", "/returns/42346434", B, {"status": "closed"}),
    ("35up", "PATCH", "/returns/unknown", A, {"status": "closed"}),
    ("35up", "POST", "/returns", None, BODY_35UP),
    ("35up", "POST", "/returns", A, {"orderId": "x", "items": [{"itemId": "1", "sku": "nosku", "quantity": 0}]}),
    ("35up", "DELETE", "/returns/42346434", A, None),
    ("3plship", "POST", "/returns", K, BODY_3PL),
    ("3plship", "PATCH", "/returns/{rid}/status", K, {"status": "inspected"}),
    ("3plship", "POST", "/returns/{rid}/refund", K, None),
    ("3plship", "PATCH", "/returns/{rid}/status", K, {"status": "received", "notes": "ok"}),
    ("3plship", "PATCH", "/returns/{rid}/status", K, {"status": "inspected"}),
    ("3plship", "PATCH", "/returns/{rid}/status", L, {"status": "completed"}),
    ("3plship", "POST", "/returns/{rid}/refund", K, {"amount": 500}),
    ("3plship", "POST", "/returns/{rid}/refund", K, {"amount": 10}),
    ("3plship", "POST", "/returns/{rid}/refund", K, None),
    ("3plship", "POST", "/returns", K, fixture("3plship/create-return.minimal.request.json")),
    ("3plship", "GET", "/returns?limit=1&page=2", K, None),
    ("3plship", "GET", "/returns?status=inspected", K, None),
    ("3plship", "GET", "/returns", L, None),
    ("3plship", "GET", "/returns?limit=0", K, None),
    ("3plship", "GET", "/returns", ("Bearer", "sk_bad"), None),
    ("3plship", "POST", "/returns", K, {**BODY_3PL, "reason": "other"}),
]

VOLATILE = [
    (re.compile(r"ret_[A-Za-z0-9]+"), "ret_*"),
    (re.compile(r"req_[A-Za-z0-9]+"), "req_*"),
    (re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z"), "<time>"),
]


def drive(base_urls: dict[str, str]) -> list[tuple[int, str, str]]:
    answers = []
    rid = ""
    with requests.Session() as session:
        for provider, method, path, auth, body in SCENARIO:
            headers = {}
            if auth is not None:
                scheme, *cred = auth
                token = requests.auth._basic_auth_str(*cred).split(" ", 1)[1] if scheme == "Basic" else cred[0]
                headers["Authorization"] = f"{scheme} {token}"
            response = session.request(method, base_urls[provider] + path.replace("{rid}", rid), json=body,
                                       headers=headers, timeout=10)
            if provider == "3plship" and method == "POST" and path == "/returns" and response.status_code == 201:
                rid = response.json()["data"]["id"]
            text = response.text
            for pattern, placeholder in VOLATILE:
                text = pattern.sub(placeholder, text)
            answers.append((response.status_code, response.headers.get("Content-Type", ""), text))
    return answers


def test_in_process_and_live_server_answer_alike() -> None:
    with mock_providers() as mock:
        in_process = drive(mock.base_urls)
    server = Server("--store", "memory").start()
    try:
        live = drive({"35up": server.url + "/35up/v1", "3plship": server.url + "/3plship/api/v1"})
    finally:
        server.stop()
    assert len(in_process) == len(SCENARIO)
    for step, (mine, theirs) in enumerate(zip(in_process, live, strict=True)):
        assert mine == theirs, (step, SCENARIO[step])
    statuses = [status for status, _, _ in in_process]
    assert {200, 201, 401, 404, 405, 409, 422} <= set(statuses)
