"""Answers varied within the contract (serve --vary, /__admin/vary, the variation step): valid, consistent
with the state and the request, reproducible."""

from __future__ import annotations

import collections
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import requests
from helpers import Server, basic, bearer
from jsonschema import Draft202012Validator
from referencing import Registry

from mockserver import mock_providers
from mockserver.domain.config import Config
from mockserver.domain.variation import SeededChooser, Variation
from mockserver.web import served

BASE_3PL = "https://app.3plship.com/api/v1"
BASE_35UP = "https://api.35up.io/v1"
KEY = bearer("zl_test_vary")
SENT = {"order_id": "ord_vary", "reason": "defective", "customer_email": "ana@example.com",
        "items": [{"sku": "PROD-001", "quantity": 2, "condition": "damaged"}], "refund_amount": 49.99,
        "return_shipping": {"carrier": "usps", "tracking_number": "9400111899562712345678"}}
TRANSIENT = (429, 500, 503)
FROZEN = Config(self_check=True, seed=5, clock="frozen", clock_start="2026-03-02T09:00:00Z")


def send(method: str, url: str, **kwargs: Any) -> requests.Response:
    """Retries the documented transient errors a varied answer may be (each counted by the caller)."""
    for _ in range(20):
        answer = requests.request(method, url, timeout=10, **kwargs)
        if answer.status_code not in TRANSIENT:
            return answer
        assert answer.headers.get("Retry-After") == "1" or answer.status_code == 500
    raise AssertionError(f"{method} {url}: 20 transient errors in a row")


def flow(mock: mock_providers) -> Iterator[tuple[str, int, Any]]:
    """Every operation of both providers, through whole lifecycles, refunds and webhooks included."""
    created = send("POST", f"{BASE_3PL}/returns", headers=KEY, json=SENT)
    yield "create", created.status_code, created.json()
    return_id = created.json()["data"]["id"]
    page = send("GET", f"{BASE_3PL}/returns?order_id=ord_vary", headers=KEY)
    yield "list", page.status_code, page.json()
    for status in ("received", "inspected"):
        moved = send("PATCH", f"{BASE_3PL}/returns/{return_id}/status", headers=KEY, json={"status": status})
        yield status, moved.status_code, moved.json()
    refund = send("POST", f"{BASE_3PL}/returns/{return_id}/refund", headers=KEY, json={"amount": 20})
    yield "refund", refund.status_code, refund.json()
    mock.clock.advance(timedelta(days=10))  # type: ignore[attr-defined]
    later = send("GET", f"{BASE_3PL}/returns?order_id=ord_vary", headers=KEY)
    yield "list after the refund completed", later.status_code, later.json()
    hook = send("POST", f"{BASE_3PL}/webhooks", headers=KEY,
                json={"url": "http://127.0.0.1:9/hook", "events": ["return.created"]})
    yield "webhook", hook.status_code, hook.json()
    auth = basic()
    made = send("POST", f"{BASE_35UP}/returns", headers=auth,
                json={"orderId": "1001", "items": [{"itemId": "i1", "sku": "shop/sku-1", "quantity": 1}]})
    yield "35up create", made.status_code, made.json()
    for status in ("awaiting_return", "customer_shipped"):
        patched = send("PATCH", f"{BASE_35UP}/returns/1001", headers=auth, json={"status": status})
        yield f"35up {status}", patched.status_code, patched.json()


def varied_run(seed: int, config: Config = FROZEN) -> tuple[list[tuple[str, int, Any]], list[str], list[str]]:
    with mock_providers(config=config) as mock:
        mock.state.varying.use(Variation(SeededChooser(seed)))
        answers = list(flow(mock))
        varied = [v for e in mock.journal for v in e.varied]
        return answers, varied, list(served(mock.app).self_check_failures)


@pytest.mark.parametrize("seed", range(1, 41))
def test_every_varied_answer_keeps_the_contract_and_the_rules(seed: int) -> None:
    answers, _, failures = varied_run(seed)
    assert failures == []  # the self-check validated every varied answer against the contract
    statuses = {step: status for step, status, _ in answers}
    assert statuses == {"create": 201, "list": 200, "received": 200, "inspected": 200, "refund": 200,
                        "list after the refund completed": 200, "webhook": 201, "35up create": 201,
                        "35up awaiting_return": 200, "35up customer_shipped": 200}
    body = dict((step, b) for step, _, b in answers)
    # What the provider's rules decide, and what the client sent, stay as they are.
    assert body["inspected"]["data"]["status"] == "inspected"
    assert body["list after the refund completed"]["data"][0]["refund_status"] == "completed"
    assert body["35up customer_shipped"]["status"] == "customer_shipped"
    created = body["create"]["data"]
    for name in ("order_id", "reason", "customer_email", "items", "refund_amount"):
        assert created[name] == SENT[name], name
    assert created["return_shipping"]["carrier"] == "usps"
    assert body["35up create"]["id"] == body["35up create"]["orderId"] == "1001"


def test_the_variations_cover_what_the_contract_lets_vary() -> None:
    kinds: collections.Counter[str] = collections.Counter()
    for seed in range(1, 41):
        for line in varied_run(seed)[1]:
            pointer, _, value = line.partition(": ")
            if pointer in ("latency", "status"):
                kinds[pointer] += 1
            elif value == "absent":
                kinds["absent"] += 1
            elif value == "null":
                kinds["null"] += 1
            elif value.startswith('"'):
                kinds["string"] += 1
            else:
                kinds["number"] += 1
    # No free string of these answers is the provider's own (the client sent each): none varies.
    assert set(kinds) == {"latency", "status", "absent", "null", "number"}, kinds


def test_a_free_string_goes_to_its_bounds_and_to_other_scripts() -> None:
    schema = {"$id": "https://example.test/label.json", "type": "object", "required": ["label", "code"],
              "properties": {"label": {"type": "string", "minLength": 2, "maxLength": 40},
                             "code": {"type": "string", "pattern": "^[A-Z]{3}$"}}}
    validator = Draft202012Validator(schema, registry=Registry())
    drawn = set()
    for seed in range(60):
        body, changes = Variation(SeededChooser(seed)).answer(validator, Registry(), {"label": "Parcel", "code": "ABC"},
                                                              None)
        assert validator.is_valid(body)
        assert body["code"] == "ABC"  # patterned: stays
        drawn.add(len(body["label"]))
        if changes:
            assert [c.pointer for c in changes] == ["/label"]
            assert len(body["label"]) in (2, 40) or not body["label"].isascii()
    assert {2, 6, 40} <= drawn


def test_a_later_read_shows_the_return_as_it_was_varied() -> None:
    seen_varied = 0
    for seed in range(1, 31):
        with mock_providers(config=FROZEN) as mock:
            mock.state.varying.use(Variation(SeededChooser(seed)))
            created = send("POST", f"{BASE_3PL}/returns", headers=KEY, json=SENT)
            varied = [v for v in mock.journal[-1].varied if v.startswith("/data/")]
            seen_varied += bool(varied)
            for _ in range(3):  # read it three times: the same return each time
                page = send("GET", f"{BASE_3PL}/returns?order_id=ord_vary", headers=KEY)
                assert page.json()["data"] == [created.json()["data"]], (seed, varied)
    assert seen_varied >= 10  # most runs varied the created return


def test_the_same_seed_gives_the_same_answers_and_another_seed_others() -> None:
    first, second, other = varied_run(21)[0], varied_run(21)[0], varied_run(22)[0]
    assert first == second
    assert first != other


@pytest.fixture
def varied_server() -> Iterator[Server]:
    server = Server("--store", "memory", "--vary", "11", "--self-check").start()
    yield server
    server.stop()


def test_serve_vary_varies_reproducibly_and_the_journal_says_what(varied_server: Server) -> None:
    url = varied_server.url
    assert requests.get(f"{url}/__admin/vary", timeout=10).json() == {"seed": 11}
    for n in range(20):
        send("POST", f"{url}/3plship/api/v1/returns", headers=KEY, json={**SENT, "order_id": f"ord_{n}"})
    journal = requests.get(f"{url}/__admin/journal", timeout=10).json()["entries"]
    varied = [v for e in journal for v in e["varied"]]
    assert any(v.startswith("/data/") for v in varied), varied
    assert any(v.startswith("status: ") for v in varied) and any(e["status"] in TRANSIENT for e in journal)
    assert all(e["status"] in (201, *TRANSIENT) for e in journal)

    # Starting the seed over replays the same sequence of answers.
    def answers() -> list[tuple[int, list[str]]]:
        requests.post(f"{url}/__admin/reset", timeout=10).raise_for_status()
        requests.post(f"{url}/__admin/vary", json={"seed": 11}, timeout=10).raise_for_status()
        for n in range(10):
            requests.post(f"{url}/3plship/api/v1/returns", headers=KEY, json={**SENT, "order_id": f"ord_{n}"},
                          timeout=10)
        journal = requests.get(f"{url}/__admin/journal", timeout=10).json()["entries"]
        return [(e["status"], e["varied"]) for e in journal]
        return [(e["status"], e["varied"]) for e in journal]

    assert answers() == answers()

    assert requests.delete(f"{url}/__admin/vary", timeout=10).status_code == 204
    assert requests.get(f"{url}/__admin/vary", timeout=10).json() == {"seed": None}
    requests.delete(f"{url}/__admin/journal", timeout=10)
    for n in range(10):
        assert requests.post(f"{url}/3plship/api/v1/returns", headers=KEY, json={**SENT, "order_id": f"x{n}"},
                             timeout=10).status_code == 201
    assert all(e["varied"] == [] for e in requests.get(f"{url}/__admin/journal", timeout=10).json()["entries"])


def test_a_bad_vary_request_names_the_field(varied_server: Server) -> None:
    answer = requests.post(f"{varied_server.url}/__admin/vary", json={"seed": "lots"}, timeout=10)
    assert answer.status_code == 422
    assert "seed" in answer.text
    assert requests.get(f"{varied_server.url}/__admin/vary", timeout=10).json() == {"seed": 11}


def test_mock_providers_takes_a_vary_seed_as_serve_does() -> None:
    def run() -> list[tuple[int, tuple[str, ...], bytes]]:
        with mock_providers(config=FROZEN, vary=33) as mock:
            for n in range(15):
                requests.post(f"{BASE_3PL}/returns", headers=KEY, json={**SENT, "order_id": f"o{n}"}, timeout=10)
            return [(e.status, e.varied, e.response_body) for e in mock.journal]

    first = run()
    assert first == run()
    assert any(varied for _, varied, _ in first)
    with mock_providers(config=FROZEN) as mock:  # without it, nothing varies
        requests.post(f"{BASE_3PL}/returns", headers=KEY, json=SENT, timeout=10)
        assert mock.journal[-1].varied == ()
