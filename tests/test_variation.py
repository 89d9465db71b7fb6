"""Answers varied within the contract (serve --vary, /__admin/vary, the variation step): valid, consistent
with the state and the request, reproducible."""

from __future__ import annotations

import collections
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import requests
from helpers import Server, basic, bearer, fixture
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
            if pointer in ("latency", "status", "state"):
                kinds[pointer] += 1
            elif value in ("absent", "null"):
                kinds[value] += 1
            else:
                kinds[value.rpartition(" (")[2].split(" ")[0].rstrip(")")] += 1  # the drawn value's type
    # A free string of these answers is the provider's own words only in its errors (none here).
    assert set(kinds) == {"latency", "status", "state", "absent", "null", "number"}, kinds


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


# --- only values the provider could hold (issue 41, items 2, 3 and 6) ----------------------------------

SCENARIO_RETURN = {"order_id": "ord_seeded", "reason": "wrong_item", "customer_email": "bo@example.com",
                   "items": [{"sku": "MUG-RED", "quantity": 3, "condition": "unopened"}], "refund_amount": 35.5,
                   "restocking_fee": 2, "return_shipping": {"carrier": "dhl", "tracking_number": "JD0146000"}}


def test_what_a_request_put_there_never_varies_on_returns_the_client_did_not_create() -> None:
    """On e98ac54 a seeded return's fields were drawn from the response schema: `order_id: ""`, an e-mail
    without @, a tracking number in another script."""
    for seed in range(1, 41):
        with mock_providers(config=FROZEN, vary=seed) as mock:
            mock.state.seed({"returns": [{"provider": "3plship", "account": "zl_test_vary", "status": "received",
                                          "return": SCENARIO_RETURN}]})
            page = send("GET", f"{BASE_3PL}/returns?order_id=ord_seeded", headers=KEY).json()["data"]
            (seeded,) = page
            for name, sent in SCENARIO_RETURN.items():
                if name != "return_shipping":
                    assert seeded[name] == sent, (seed, name, seeded[name])
            shipping = seeded["return_shipping"]
            assert (shipping["carrier"], shipping["tracking_number"]) == ("dhl", "JD0146000"), seed


def refund_rules_broken(data: dict[str, Any]) -> str | None:
    """The refund rules, written here apart from the contract: a refund object exactly when the refund
    status says one exists, completed exactly when it says so."""
    status, refund = data["refund_status"], data.get("refund", "absent")
    if refund == "absent":
        return None
    if (status == "pending") != (refund is None):
        return f"refund {refund!r} while {status}"
    if refund is not None and (status == "completed") != (refund["completed_at"] is not None):
        return f"completed_at {refund['completed_at']!r} while {status}"
    return None


def test_varied_answers_keep_the_refund_rules() -> None:
    """On e98ac54 a varied answer could say `refund: null` while the refund was processing."""
    for seed in range(1, 61):
        for step, status, body in varied_run(seed)[0]:
            if status < 300 and not step.startswith(("35up", "webhook")):
                returns = body["data"] if isinstance(body["data"], list) else [body["data"]]
                for data in returns:
                    assert refund_rules_broken(data) is None, (seed, step, refund_rules_broken(data))


def test_the_self_check_holds_answers_to_the_contracts_cross_field_rules() -> None:
    from mockserver.contract import contract, problems

    validator = contract("3plship").validator("return.json")
    created = fixture("3plship/create-return.response.json")["data"]
    assert problems(validator, created) == []
    for broken in ({"refund_status": "processing", "refund": None},
                   {"refund_status": "completed", "status": "inspected", "refund": {
                       "amount": 1, "requested_at": created["created_at"], "expected_at": created["created_at"],
                       "completed_at": None}},
                   {"status": "completed"}):
        assert problems(validator, {**created, **broken}), broken


def pages(key: dict[str, str], limit: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every page of an account's returns, read as a careful client would, and each page's pagination."""
    found: list[dict[str, Any]] = []
    metas: list[dict[str, Any]] = []
    for page in range(1, 100):
        answer = send("GET", f"{BASE_3PL}/returns?page={page}&limit={limit}", headers=key).json()
        found += answer["data"]
        metas.append({**answer["meta"]["pagination"], "length": len(answer["data"])})
        if not answer["meta"]["pagination"]["has_more"]:
            return found, metas
    raise AssertionError("more than 99 pages")


def test_an_account_may_hold_returns_the_client_did_not_make_and_every_page_agrees() -> None:
    """On e98ac54 a page always held exactly the client's own returns: never empty, never longer."""
    grown, full_then_empty, fractions = 0, 0, 0
    for seed in range(1, 41):
        with mock_providers(config=FROZEN, vary=seed) as mock:
            own = {send("POST", f"{BASE_3PL}/returns", headers=KEY, json={**SENT, "order_id": f"ord_{n}"})
                   .json()["data"]["id"] for n in range(3)}
            found, metas = pages(KEY, 4)
            ids = [r["id"] for r in found]
            total = metas[0]["total"]
            assert len(ids) == len(set(ids)) == total and own <= set(ids), (seed, metas)
            for number, meta in enumerate(metas, start=1):
                assert meta["page"] == number and meta["total"] == total
                assert meta["length"] == max(0, min(4, total - 4 * (number - 1))), (seed, metas)
            grown += total > 3
            full_then_empty += metas[-1]["length"] == 0
            others = [r for r in found if r["id"] not in own]
            for other in others:  # drawn within the create request's schema, held to the provider's rules
                assert other["order_id"] and not other["order_id"].startswith("ord_"), other
                assert refund_rules_broken(other) is None, other
                for amount in (other["refund_amount"], other["restocking_fee"]):
                    assert round(amount, 2) == amount, amount  # whole cents (x-decimal-places)
                    fractions += amount != int(amount)
            notes = [v for e in mock.journal for v in e.varied if v.startswith("state: ")]
            assert bool(notes) == bool(others), seed
            assert all(r["id"] in " ".join(notes) for r in others[:2])
    assert grown >= 8 and full_then_empty >= 1 and fractions >= 3, (grown, full_then_empty, fractions)


def test_the_same_seed_draws_the_same_state() -> None:
    def listed() -> list[Any]:
        with mock_providers(config=FROZEN, vary=3):
            send("POST", f"{BASE_3PL}/returns", headers=KEY, json=SENT)
            return pages(KEY, 3)[0]

    assert listed() == listed()


def test_35up_errors_vary_in_the_providers_own_words_only() -> None:
    body = {"orderId": "1001", "items": [{"itemId": "i1", "sku": "shop/sku-1", "quantity": 1}]}
    worded = 0
    for seed in range(1, 21):
        with mock_providers(config=FROZEN, vary=seed) as mock:
            send("POST", f"{BASE_35UP}/returns", auth=("shop", "pw"), json=body)
            again = send("POST", f"{BASE_35UP}/returns", auth=("shop", "pw"), json=body)
            assert again.status_code == 409
            error = again.json()["error"]
            assert error["code"] == "duplicate_return"  # what a client acts on stays
            assert all(set(d) <= {"field", "location", "message", "allowed"} for d in error["details"])
            varied = [v for e in mock.journal for v in e.varied if v.startswith("/error/")]
            assert all(v.split(": ")[0] in ("/error/message", "/error/details/0/message") for v in varied), varied
            worded += bool(varied)
    assert worded >= 5


def test_notes_escape_what_cannot_be_seen_and_name_the_drawn_values_type() -> None:
    """On e98ac54 a drawn "\x80" read `sku: ""`, and 10 and 10.0 read alike."""
    from mockserver.domain.variation import ABSENT, Change

    def shown(value: Any) -> str:
        return Change("/data/sku", value).describe()

    assert shown("\x80") == '/data/sku: "\\x80" (string of 1 character)'
    assert shown("a\u200bb") == '/data/sku: "a\\u200bb" (string of 3 characters)'
    assert shown("\u202eevil") == '/data/sku: "\\u202eevil" (string of 5 characters)'
    assert shown("\U000e0001") == '/data/sku: "\\U000e0001" (string of 1 character)'
    assert shown('say "hi"\n') == '/data/sku: "say \\"hi\\"\\x0a" (string of 9 characters)'
    assert shown("中文 ok") == '/data/sku: "中文 ok" (string of 5 characters)'
    assert shown("") == '/data/sku: "" (string of 0 characters)'
    assert shown(10) == "/data/sku: 10 (integer)"
    assert shown(10.0) == "/data/sku: 10.0 (number with a decimal point)"
    assert shown(None) == "/data/sku: null"
    assert shown(ABSENT) == "/data/sku: absent"


# --- time that varies (issue 41, item 4) -----------------------------------------------------------


def test_latencies_reach_the_clients_own_timeout_and_beyond_never_past_the_ceiling() -> None:
    def levels(timeout_ms: float | None, ceiling: int = 5000) -> set[int]:
        variation = Variation(SeededChooser(1))
        return {variation.latency_ms(ceiling, timeout_ms) for _ in range(400)} - {0}

    assert max(levels(None)) == 5000 and min(levels(None)) == 5  # over HTTP: up to the documented ceiling
    short = levels(50)
    assert any(ms <= 50 for ms in short) and any(50 < ms <= 5000 for ms in short)
    assert max(levels(10_000)) == 5000  # a client waiting longer than the ceiling never times out
    assert max(levels(float("inf"))) == 5000
    assert max(levels(None, ceiling=100)) == 100
