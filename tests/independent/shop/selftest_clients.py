"""Shows each planted client bug failing on the contract-valid answer that exposes it, and the correct
client surviving them all, without the fuzzer: the in-process mock (mockserver.mock_providers) answers,
and a scripted variation rewrites its answers within the 3plship contract.

    /work/main/.venv/bin/python selftest_clients.py      # exit 0 when every expectation holds
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import requests
from mockserver import mock_providers

from clients import BUGS, DEFAULT_API_KEY, DEFAULT_BASE_URL, CorrectClient, Params, instant, money

Vary = Callable[["Script", str, str, requests.Response], requests.Response]


@dataclass
class Script:
    """One variation of the provider's answers, with the state it needs."""

    vary: Vary
    read_timeout: float = 0.0  # the client's, as passed to requests
    done: set[str] = field(default_factory=set)


def _rewrite(answer: requests.Response, edit: Callable[[dict[str, Any]], None]) -> requests.Response:
    if not answer.ok:
        return answer
    body = answer.json()
    edit(body)
    answer._content = json.dumps(body, ensure_ascii=False).encode("utf-8")
    return answer


def _returns(body: dict[str, Any]) -> list[dict[str, Any]]:
    data = body.get("data")
    return data if isinstance(data, list) else [data] if isinstance(data, dict) else []


def each_return(edit: Callable[[dict[str, Any]], None]) -> Vary:
    def edit_all(body: dict[str, Any]) -> None:
        for ret in _returns(body):
            edit(ret)

    def vary(script: Script, method: str, path: str, answer: requests.Response) -> requests.Response:
        return _rewrite(answer, edit_all)
    return vary


def error_once(status: int, code: str, on: str) -> Vary:
    """The first answer to `on` (e.g. "GET /returns") replaced by a documented error envelope."""
    def vary(script: Script, method: str, path: str, answer: requests.Response) -> requests.Response:
        if f"{method} {path}" != on or on in script.done:
            return answer
        script.done.add(on)
        error = requests.Response()
        error.status_code = status
        error.headers["Content-Type"] = "application/json"
        error.headers["Retry-After"] = "1"
        error._content = json.dumps({"success": False, "error": {"code": code, "message": "Slow down, please",
                                     "details": {"issue": "try again later"}},
                                     "meta": {"timestamp": "2026-01-05T10:00:00.000Z",
                                              "requestId": "req_abc123", "version": "v1"}}).encode()
        return error
    return vary


def last_page_says_more(script: Script, method: str, path: str, answer: requests.Response) -> requests.Response:
    def edit(body: dict[str, Any]) -> None:
        pagination = body.get("meta", {}).get("pagination")
        if pagination and pagination["page"] == 1:  # has_more on page 1: page 2 is (really) empty
            pagination["has_more"] = True
    return _rewrite(answer, edit)


def long_request_id(script: Script, method: str, path: str, answer: requests.Response) -> requests.Response:
    return _rewrite(answer, lambda body: body["meta"].update(request_id="req_" + "Q" * 60))


def slow_first(latency: float) -> Vary:
    """The first answer arrives `latency` seconds late (after the provider acted on the request)."""
    def vary(script: Script, method: str, path: str, answer: requests.Response) -> requests.Response:
        if "slow" not in script.done:
            script.done.add("slow")
            if script.read_timeout < latency:
                raise requests.ReadTimeout(f"read timed out (scripted latency {latency} s)")
        return answer
    return vary


def unchanged(script: Script, method: str, path: str, answer: requests.Response) -> requests.Response:
    return answer


def _set_shipping(r: dict[str, Any], key: str, value: object) -> None:
    if isinstance(r.get("return_shipping"), dict):
        r["return_shipping"][key] = value


SCENARIOS: dict[str, Vary] = {
    "ordinary": unchanged,
    "fractional restocking_fee": each_return(lambda r: r.update(restocking_fee=0.5)),
    "empty page after has_more": last_page_says_more,
    "a 200 ms answer": slow_first(0.2),
    "a 15 s answer": slow_first(15.0),
    "tracking_url null": each_return(lambda r: _set_shipping(r, "tracking_url", None)),
    "return_shipping null": each_return(lambda r: r.update(return_shipping=None)),
    "refund absent": each_return(lambda r: r.pop("refund", None)),
    "503 on the list": error_once(503, "SERVICE_UNAVAILABLE", "GET /returns"),
    "429 on a create": error_once(429, "RATE_LIMIT_EXCEEDED", "POST /returns"),
    "returns of other orders": unchanged,  # the account is seeded, see FOREIGN
    "non-ASCII tracking_url": each_return(lambda r: _set_shipping(r, "tracking_url", "https://trk.example/追跡")),
    "restocking_fee as 0.0": each_return(lambda r: r.update(restocking_fee=0.0)),
    "refund_amount in integer form": each_return(lambda r: r.update(refund_amount=int(r["refund_amount"]))),
    "an older return updated last": unchanged,  # the warehouse receives ord_1001 meanwhile
    "long request id": long_request_id,
}
EXPOSES = {
    "int_amount": "fractional restocking_fee", "first_of_page": "empty page after has_more",
    "short_timeout": "a 200 ms answer", "nullable_tracking": "tracking_url null",
    "nullable_shipping": "return_shipping null", "optional_refund": "refund absent",
    "error_envelope": "503 on the list", "no_retry_429": "429 on a create", "one_page": "returns of other orders",
    "known_statuses": "returns of other orders", "unknown_order": "returns of other orders",
    "ascii_export": "non-ASCII tracking_url", "integer_fee": "restocking_fee as 0.0",
    "float_amount": "refund_amount in integer form", "list_order": "an older return updated last",
    "long_request_id": "long request id", "error_request_id": "503 on the list",
}


def scripted(cls: type[CorrectClient], script: Script) -> CorrectClient:
    class Scripted(cls):  # type: ignore[valid-type,misc]
        def _send(self, method: str, path: str, params: Params | None,
                  body: object | None) -> requests.Response:
            script.read_timeout = self.timeout[1]
            return script.vary(script, method, path, super()._send(method, path, params, body))
    client: CorrectClient = Scripted(max_retry_wait=0.0)
    return client


def seed_foreign() -> None:
    """24 returns of other orders (two of them inspected), made by another channel while the shop works."""
    key = {"Authorization": f"Bearer {DEFAULT_API_KEY}"}
    for n in range(24):
        body = {"order_id": f"pos_{n}", "reason": "wrong_item", "items": [{"sku": "X", "quantity": 1}],
                "refund_amount": 9.0}
        created = requests.post(f"{DEFAULT_BASE_URL}/returns", headers=key, json=body, timeout=10).json()["data"]
        if n < 2:
            for status in ("received", "inspected"):
                requests.patch(f"{DEFAULT_BASE_URL}/returns/{created['id']}/status", headers=key,
                               json={"status": status}, timeout=10).raise_for_status()


def receive_oldest() -> None:
    """The warehouse receives the shop's oldest return (ord_1001) after the newest was received."""
    key = {"Authorization": f"Bearer {DEFAULT_API_KEY}"}
    time.sleep(0.005)  # a later millisecond
    found = requests.get(f"{DEFAULT_BASE_URL}/returns", headers=key, params={"order_id": "ord_1001"}, timeout=10)
    return_id = found.json()["data"][0]["id"]
    requests.patch(f"{DEFAULT_BASE_URL}/returns/{return_id}/status", headers=key, json={"status": "received"},
                   timeout=10).raise_for_status()


def shop_flow(client: CorrectClient, meanwhile: Callable[[], None]) -> None:
    """What test_shop_clients.py does, in one go; `meanwhile` runs between the creates and the sync."""
    orders = {"ord_1001": 20.0, "ord_1002": 35.0, "ord_1003": 80.0}
    created = {o: client.create_return(o, [{"sku": "MUG", "quantity": 1}], a, carrier="usps",
                                       tracking_number=f"94001{n}") for n, (o, a) in enumerate(orders.items())}
    client.update_status(created["ord_1003"], "received")
    meanwhile()
    synced = client.sync_returns()
    matched = client.match_orders(synced, orders)
    assert all(created[o]["id"] in {r["id"] for r in matched[o]} for o in orders)
    total = client.refund_total(synced)
    assert total == sum((max(Decimal(0), money(r["refund_amount"]) - money(r["restocking_fee"]))
                         for r in synced if r["status"] != "initiated"), Decimal(0))
    assert created["ord_1003"]["id"] in {r["id"] for r in synced if r["status"] == "received"}
    for ret in [*created.values(), *synced]:
        client.tracking_link(ret), client.carrier_of(ret), client.refund_state(ret), client.shop_status(ret)
    assert created["ord_1002"]["id"] in client.export_csv(synced).decode("utf-8")
    last = client.last_updated(synced)
    assert last is not None and instant(last["updated_at"]) == max(instant(r["updated_at"]) for r in synced)
    assert client.find_return("ord_1003") is not None


def run(cls: type[CorrectClient], scenario: str) -> str | None:
    """None if the flow went through, else the failure."""
    with mock_providers():
        meanwhile = {"returns of other orders": seed_foreign, "an older return updated last": receive_oldest}
        try:
            shop_flow(scripted(cls, Script(SCENARIOS[scenario])), meanwhile.get(scenario, lambda: None))
        except Exception as exc:  # a planted bug's failure, whatever it is
            return f"{type(exc).__name__}: {str(exc)[:90]}"
    return None


def main() -> int:
    problems = []
    for scenario in SCENARIOS:
        failure = run(CorrectClient, scenario)
        print(f"correct          {scenario:32} {failure or 'ok'}")
        if failure:
            problems.append(f"correct client fails on {scenario}: {failure}")
    for name, cls in BUGS.items():
        latent, exposed = run(cls, "ordinary"), run(cls, EXPOSES[name])
        print(f"{name:16} {EXPOSES[name]:32} {exposed or 'NOT EXPOSED'}")
        if latent:
            problems.append(f"{name} fails on ordinary answers: {latent}")
        if not exposed:
            problems.append(f"{name} survives {EXPOSES[name]}")
    print("\n".join(problems) or "every expectation holds")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
