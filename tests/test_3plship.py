"""3plship: envelopes, create, list, status flow, refunds in business days, auth, isolation, errors."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from helpers import PL, bearer, fixture

from mockserver.domain.clock import FrozenClock
from mockserver.domain.config import Config
from mockserver.store import MemoryStore
from mockserver.web import create_app, mock_of

KEY_A = "zl_test_keyA"
KEY_B = "zl_live_keyB"


def create(client: FlaskClient, key: str = KEY_A, **overrides: Any) -> dict[str, Any]:
    payload = {**fixture("3plship/create-return.minimal.request.json"), **overrides}
    response = client.post(f"{PL}/returns", json=payload, headers=bearer(key))
    assert response.status_code == 201, response.get_json()
    data: dict[str, Any] = response.get_json()["data"]
    return data


def set_status(client: FlaskClient, rid: str, status: str, key: str = KEY_A) -> Any:
    return client.patch(f"{PL}/returns/{rid}/status", json={"status": status}, headers=bearer(key))


def refund(client: FlaskClient, rid: str, key: str = KEY_A, **payload: Any) -> Any:
    if payload:
        return client.post(f"{PL}/returns/{rid}/refund", json=payload, headers=bearer(key))
    return client.post(f"{PL}/returns/{rid}/refund", headers=bearer(key))


def inspected(client: FlaskClient, key: str = KEY_A, **overrides: Any) -> str:
    rid: str = create(client, key, **overrides)["id"]
    assert set_status(client, rid, "received", key).status_code == 200
    assert set_status(client, rid, "inspected", key).status_code == 200
    return rid


def test_documented_create_gets_the_documented_response_structure(client: FlaskClient) -> None:
    response = client.post(f"{PL}/returns", json=fixture("3plship/create-return.request.json"),
                           headers=bearer("zl_live_abc123"))
    assert response.status_code == 201
    got = response.get_json()
    documented = fixture("3plship/create-return.response.json")
    assert got["success"] is True
    assert set(got["meta"]) == set(documented["meta"])
    assert got["meta"]["request_id"].startswith("req_")
    assert set(documented["data"]) <= set(got["data"])
    assert set(got["data"]) - set(documented["data"]) == {"refund"}
    for key in ("order_id", "status", "reason", "items", "refund_amount", "refund_shipping", "restocking_fee",
                "refund_status", "customer_email"):
        assert got["data"][key] == documented["data"][key], key
    assert got["data"]["id"].startswith("ret_")
    shipping = got["data"]["return_shipping"]
    assert shipping["status"] == "in_transit"
    assert shipping["tracking_url"] == ("https://tools.usps.com/go/TrackConfirmAction"
                                        "?tLabels=9400111899562712345678")
    assert got["data"]["created_at"] == got["meta"]["timestamp"] == "2026-01-05T10:00:00.000Z"


def test_minimal_create_fills_defaults(client: FlaskClient) -> None:
    data = create(client)
    assert data["return_shipping"] is None
    assert data["refund_shipping"] is False and data["restocking_fee"] == 0
    assert data["customer_email"] is None and data["refund"] is None
    assert data["status"] == "initiated" and data["refund_status"] == "pending"


@pytest.mark.parametrize(("carrier", "url"), [
    ("UPS", "https://www.ups.com/track?tracknum=1Z999"),
    ("acme-freight", None),
])
def test_tracking_url_is_derived_from_the_carrier(client: FlaskClient, carrier: str, url: str | None) -> None:
    data = create(client, return_shipping={"carrier": carrier, "tracking_number": "1Z999"})
    assert data["return_shipping"]["tracking_url"] == url
    assert data["return_shipping"]["status"] == "in_transit"


def test_shipping_without_tracking_number_is_pending(client: FlaskClient) -> None:
    data = create(client, return_shipping={"carrier": "usps"})
    assert data["return_shipping"] == {"carrier": "usps", "tracking_number": None, "tracking_url": None,
                                       "status": "pending"}


def test_reason_other_needs_notes_on_every_item(client: FlaskClient) -> None:
    payload = {**fixture("3plship/create-return.minimal.request.json"), "reason": "other"}
    response = client.post(f"{PL}/returns", json=payload, headers=bearer())
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert error["details"]["field"] == "items[0].notes"
    assert [d["field"] for d in error["details"]["problems"]] == ["items[0].notes"]
    payload["items"] = [{"sku": "P", "quantity": 1, "notes": "Gift duplicate"}]
    assert client.post(f"{PL}/returns", json=payload, headers=bearer()).status_code == 201


@pytest.mark.parametrize(("change", "field"), [
    ({"reason": "broken"}, "reason"),
    ({"refund_amount": -1}, "refund_amount"),
    ({"refund_amount": "49.99"}, "refund_amount"),
    ({"items": [{"sku": "P", "quantity": 0}]}, "items[0].quantity"),
    ({"customer_email": "not-an-email"}, "customer_email"),
    ({"return_shipping": {"carrier": "usps", "tracking_url": "x"}}, "return_shipping.tracking_url"),
    ({"orderId": "ord_1"}, "orderId"),
])
def test_invalid_create_is_422_in_the_error_envelope_naming_the_field(client: FlaskClient, change: Any,
                                                                      field: str) -> None:
    payload = {**fixture("3plship/create-return.minimal.request.json"), **change}
    response = client.post(f"{PL}/returns", json=payload, headers=bearer())
    assert response.status_code == 422
    got = response.get_json()
    assert got["success"] is False
    assert set(got["meta"]) == {"timestamp", "requestId", "version"} and got["meta"]["version"] == "v1"
    assert field in [d.get("field") for d in got["error"]["details"]["problems"]]


def test_error_details_is_the_documented_object_with_every_problem_beside_it(client: FlaskClient) -> None:
    """3plship's errors page: details is an object, e.g. {"field": "order_id", "issue": "Order ID is required"}."""
    payload = fixture("3plship/create-return.minimal.request.json")
    del payload["order_id"]
    payload["reason"] = "broken"
    details = client.post(f"{PL}/returns", json=payload, headers=bearer()).get_json()["error"]["details"]
    assert details["field"] == "order_id" and details["issue"] == "order_id is required"
    assert details["location"] == "body"
    problems = [(p["field"], p["issue"].split(":")[0]) for p in details["problems"]]
    assert problems == [("order_id", "order_id is required"), ("reason", "reason")]
    assert details["problems"][1]["allowed"][0] == "defective"
    # Without a field to name, the context is still an object with an issue.
    missing = client.patch(f"{PL}/returns/ret_nope/status", json={"status": "received"}, headers=bearer())
    assert missing.get_json()["error"]["details"]["field"] == "id"
    unknown = client.get(f"{PL}/nowhere", headers=bearer()).get_json()["error"]["details"]
    assert unknown == {"issue": f"No such resource: GET {PL}/nowhere. This mock serves 3plship under {PL}."}


@pytest.mark.parametrize("field", ["order_id", "reason", "items", "refund_amount"])
def test_required_fields(client: FlaskClient, field: str) -> None:
    payload = fixture("3plship/create-return.minimal.request.json")
    del payload[field]
    response = client.post(f"{PL}/returns", json=payload, headers=bearer())
    assert response.status_code == 422
    assert response.get_json()["error"]["details"]["field"] == field


@pytest.mark.parametrize("authorization", [
    None, "Bearer", "Bearer sk_live_abc", "Bearer zl_prod_abc", "Bearer zl_live_", "Token zl_live_abc",
    "Basic dXNlcjpwdw==", "Bearer zl_live_abc def",
])
def test_bad_or_missing_api_keys_are_401_in_the_error_envelope(client: FlaskClient,
                                                               authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    for response in (client.get(f"{PL}/returns", headers=headers),
                     client.post(f"{PL}/returns", json={}, headers=headers),
                     client.patch(f"{PL}/returns/ret_x/status", json={"status": "received"}, headers=headers),
                     client.post(f"{PL}/returns/ret_x/refund", headers=headers)):
        assert response.status_code == 401
        got = response.get_json()
        assert got["success"] is False and got["error"]["code"] == "UNAUTHORIZED"
        assert got["meta"]["requestId"].startswith("req_")
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_live_and_test_keys_are_both_accepted_and_are_separate_accounts(client: FlaskClient) -> None:
    create(client, "zl_live_same")
    assert client.get(f"{PL}/returns", headers=bearer("zl_test_same")).get_json()["data"] == []
    assert len(client.get(f"{PL}/returns", headers=bearer("zl_live_same")).get_json()["data"]) == 1


def test_status_flow_one_step_at_a_time(client: FlaskClient, clock: FrozenClock) -> None:
    rid = create(client, return_shipping={"carrier": "usps", "tracking_number": "94001"})["id"]
    assert set_status(client, rid, "inspected").status_code == 409  # skipped step
    clock.advance(timedelta(hours=2))
    response = set_status(client, rid, "received")
    assert response.status_code == 200
    data = response.get_json()["data"]
    assert data["status"] == "received" and data["updated_at"] == "2026-01-05T12:00:00.000Z"
    assert data["return_shipping"]["status"] == "delivered"
    assert set_status(client, rid, "initiated").status_code == 409  # backward
    assert set_status(client, rid, "received").status_code == 409  # not a move
    assert set_status(client, rid, "inspected").status_code == 200
    response = set_status(client, rid, "completed")  # only a refund completes a return
    assert response.status_code == 409
    error = response.get_json()["error"]
    assert error["code"] == "INVALID_STATUS_TRANSITION" and "refund" in error["message"]


def test_status_update_with_notes_and_unknown_status(client: FlaskClient) -> None:
    rid = create(client)["id"]
    ok = client.patch(f"{PL}/returns/{rid}/status", json={"status": "received", "notes": "Box intact"},
                      headers=bearer())
    assert ok.status_code == 200
    bad = client.patch(f"{PL}/returns/{rid}/status", json={"status": "approved"}, headers=bearer())
    assert bad.status_code == 422
    assert bad.get_json()["error"]["details"]["allowed"] == ["initiated", "received", "inspected", "completed"]


def test_refund_needs_an_inspected_return(client: FlaskClient) -> None:
    rid = create(client)["id"]
    for _ in range(2):
        response = refund(client, rid)
        assert response.status_code == 409
        assert response.get_json()["error"]["code"] == "REFUND_NOT_ALLOWED"
        set_status(client, rid, "received")


def test_unknown_query_parameters_are_ignored_and_recorded_as_violations(app: Flask, client: FlaskClient) -> None:
    """A real API ignores a query parameter it does not know; the client's typo is still caught."""
    mine = create(client, order_id="ord_mine")
    create(client, order_id="ord_other")
    response = client.get(f"{PL}/returns?orderId=ord_mine&created_after=2026-01-01&limit=1", headers=bearer())
    assert response.status_code == 200
    got = response.get_json()
    assert got["meta"]["pagination"]["total"] == 2 and len(got["data"]) == 1  # filtered by nothing unknown
    violations = mock_of(app).journal.violations()
    assert [(v.field, v.location, v.status) for v in violations] == [("orderId", "query", 200),
                                                                     ("created_after", "query", 200)]
    assert "not a known query parameter (ignored)" in violations[0].message and "order_id" in violations[0].message
    assert mine["order_id"] == "ord_mine"


def test_list_filters_by_creation_date_range(client: FlaskClient, clock: FrozenClock) -> None:
    """start_date and end_date: ISO-8601 dates or date-times, inclusive, on created_at (inferred names)."""
    ids = []
    for _ in range(3):  # Monday 5, Tuesday 6 and Wednesday 7 January 2026, 10:00 UTC
        ids.append(create(client)["id"])
        clock.advance(timedelta(days=1))

    def listed(query: str) -> list[str]:
        page = client.get(f"{PL}/returns?{query}", headers=bearer()).get_json()
        assert page["meta"]["pagination"]["total"] == len(page["data"])
        return [r["id"] for r in reversed(page["data"])]

    assert listed("start_date=2026-01-06") == ids[1:]
    assert listed("end_date=2026-01-06") == ids[:2]  # a date as the end takes its whole day
    assert listed("start_date=2026-01-06&end_date=2026-01-06") == [ids[1]]
    assert listed("start_date=2026-01-06T10:00:00Z&end_date=2026-01-07T09:59:59.999Z") == [ids[1]]
    assert listed("start_date=2026-01-06T11:00:00%2B01:00") == ids[1:]  # an offset is honoured
    assert listed("start_date=2026-01-08") == []
    assert listed("end_date=2026-01-05&status=initiated&limit=1&page=1") == [ids[0]]
    assert listed("start_date=2026-01-07&end_date=2026-01-05") == []


def test_refunds_can_take_up_to_seven_business_days(clock: FrozenClock) -> None:
    app = create_app(Config(self_check=True, providers={"3plship": {"refund_business_days": 7}}),
                     store=MemoryStore(), clock=clock)
    client = app.test_client()
    rid = inspected(client)
    data = refund(client, rid).get_json()["data"]  # Monday 2026-01-05
    assert data["refund"]["expected_at"] == "2026-01-14T10:00:00.000Z"  # + 7 business days
    with pytest.raises(ValueError, match="5 to 7 business days"):
        create_app(Config(providers={"3plship": {"refund_business_days": 8}}), store=MemoryStore())


def test_refund_completes_after_five_business_days(client: FlaskClient, clock: FrozenClock) -> None:
    rid = inspected(client, refund_amount=49.99, restocking_fee=5)
    clock.advance(timedelta(days=3))  # Thursday 2026-01-08
    response = refund(client, rid)
    assert response.status_code == 200
    data = response.get_json()["data"]
    assert data["refund_status"] == "processing" and data["status"] == "inspected"
    assert data["refund"] == {"amount": 44.99, "requested_at": "2026-01-08T10:00:00.000Z",
                              "expected_at": "2026-01-15T10:00:00.000Z", "completed_at": None}
    assert refund(client, rid).get_json()["error"]["code"] == "REFUND_ALREADY_PROCESSED"

    def listed() -> dict[str, Any]:
        page: list[dict[str, Any]] = client.get(f"{PL}/returns", headers=bearer()).get_json()["data"]
        return next(r for r in page if r["id"] == rid)

    clock.set(clock.now() + timedelta(days=7) - timedelta(milliseconds=1))  # a moment before the 5th day
    assert listed()["refund_status"] == "processing"
    clock.advance(timedelta(milliseconds=1))
    done = listed()
    assert done["refund_status"] == "completed" and done["status"] == "completed"
    assert done["refund"]["completed_at"] == done["updated_at"] == "2026-01-15T10:00:00.000Z"
    completed = client.get(f"{PL}/returns?status=completed", headers=bearer()).get_json()
    assert [r["id"] for r in completed["data"]] == [rid]
    response = refund(client, rid)
    assert response.status_code == 409 and response.get_json()["error"]["code"] == "REFUND_ALREADY_PROCESSED"
    assert set_status(client, rid, "received").status_code == 409


def test_weekend_refund_counts_from_monday(client: FlaskClient, clock: FrozenClock) -> None:
    rid = inspected(client)
    clock.advance(timedelta(days=5))  # Saturday
    response = refund(client, rid)
    assert response.get_json()["data"]["refund"]["expected_at"] == "2026-01-16T10:00:00.000Z"  # next Friday


def test_refund_of_part_of_the_refundable_amount(client: FlaskClient) -> None:
    rid = inspected(client, refund_amount=49.99)
    response = refund(client, rid, amount=20)
    assert response.status_code == 200
    assert response.get_json()["data"]["refund"]["amount"] == 20


def test_refund_over_the_refundable_amount_is_409(client: FlaskClient) -> None:
    rid = inspected(client, refund_amount=49.99, restocking_fee=10)
    response = refund(client, rid, amount=40)
    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "REFUND_EXCEEDS_REFUNDABLE"
    assert "39.99" in response.get_json()["error"]["message"]
    assert refund(client, rid, amount=39.99).status_code == 200


@pytest.mark.parametrize("payload", [{"amount": 0}, {"amount": -5}, {"amount": "10"}, {"total": 10}])
def test_invalid_refund_body_is_422(client: FlaskClient, payload: Any) -> None:
    rid = inspected(client)
    assert refund(client, rid, **payload).status_code == 422


def test_unknown_and_foreign_returns_are_404(client: FlaskClient) -> None:
    rid = inspected(client, KEY_A)
    for response in (set_status(client, "ret_nope", "received"), refund(client, "ret_nope"),
                     set_status(client, rid, "received", KEY_B), refund(client, rid, KEY_B)):
        assert response.status_code == 404
        assert response.get_json()["error"]["code"] == "NOT_FOUND"
    # The owner's return is untouched.
    assert refund(client, rid, KEY_A).get_json()["data"]["refund_status"] == "processing"


def test_list_is_per_key_newest_first_with_pagination(client: FlaskClient, clock: FrozenClock) -> None:
    ids = []
    for n in range(7):
        clock.advance(timedelta(seconds=1))
        ids.append(create(client, order_id=f"ord_{n % 3}")["id"])
    create(client, KEY_B)
    response = client.get(f"{PL}/returns?limit=3&page=2", headers=bearer())
    assert response.status_code == 200
    got = response.get_json()
    assert [r["id"] for r in got["data"]] == list(reversed(ids))[3:6]
    assert got["meta"]["pagination"] == {"page": 2, "limit": 3, "total": 7, "total_pages": 3, "has_more": True}
    assert got["meta"]["request_id"].startswith("req_")
    last = client.get(f"{PL}/returns?limit=3&page=3", headers=bearer()).get_json()
    assert len(last["data"]) == 1 and last["meta"]["pagination"]["has_more"] is False
    beyond = client.get(f"{PL}/returns?limit=3&page=9", headers=bearer()).get_json()
    assert beyond["data"] == [] and beyond["meta"]["pagination"]["total"] == 7
    default = client.get(f"{PL}/returns", headers=bearer()).get_json()["meta"]["pagination"]
    assert default == {"page": 1, "limit": 50, "total": 7, "total_pages": 1, "has_more": False}


def test_list_filters_by_status_and_order_id(client: FlaskClient) -> None:
    first = create(client, order_id="ord_x")["id"]
    create(client, order_id="ord_y")
    set_status(client, first, "received")
    by_order = client.get(f"{PL}/returns?order_id=ord_x", headers=bearer()).get_json()
    assert [r["id"] for r in by_order["data"]] == [first]
    by_status = client.get(f"{PL}/returns?status=received", headers=bearer()).get_json()
    assert [r["id"] for r in by_status["data"]] == [first]
    both = client.get(f"{PL}/returns?status=initiated&order_id=ord_x", headers=bearer()).get_json()
    assert both["data"] == [] and both["meta"]["pagination"]["total_pages"] == 0


@pytest.mark.parametrize(("query", "field"), [
    ("limit=0", "limit"), ("limit=101", "limit"), ("limit=abc", "limit"), ("page=0", "page"),
    ("page=1.5", "page"), ("status=approved", "status"), ("order_id=", "order_id"),
    ("page=99999999999999999999999", "page"), ("start_date=2026-02-30", "start_date"),
    ("end_date=yesterday", "end_date"), ("start_date=2026-01-05T10:00", "start_date"),
])
def test_out_of_range_query_parameters_are_422_naming_them(client: FlaskClient, query: str, field: str) -> None:
    response = client.get(f"{PL}/returns?{query}", headers=bearer())
    assert response.status_code == 422
    detail = response.get_json()["error"]["details"]
    assert detail["field"] == field and detail["location"] == "query"


def test_unusable_bodies_get_the_3plship_error_envelope(client: FlaskClient) -> None:
    for data, content_type in (("{", "application/json"), ("a=1", "application/x-www-form-urlencoded"),
                               (b"\xc3\x28", "application/json"), ("", "application/json")):
        response = client.post(f"{PL}/returns", data=data, content_type=content_type, headers=bearer())
        assert response.status_code == 400
        got = response.get_json()
        assert got["success"] is False and got["error"]["code"] == "BAD_REQUEST"


def test_unknown_path_and_method(client: FlaskClient) -> None:
    response = client.get(f"{PL}/returns/ret_1", headers=bearer())
    assert response.status_code == 404 and response.get_json()["error"]["code"] == "NOT_FOUND"
    response = client.put(f"{PL}/returns", headers=bearer())
    assert response.status_code == 405 and response.get_json()["error"]["code"] == "METHOD_NOT_ALLOWED"
    assert response.headers["Allow"] == "GET, HEAD, POST"


def test_registered_api_keys_are_the_only_ones_accepted(clock: FrozenClock) -> None:
    from mockserver.domain.config import Config
    from mockserver.store import MemoryStore
    from mockserver.web import create_app

    app = create_app(Config(self_check=True, providers={"3plship": {"keys": ["zl_live_known"]}}), store=MemoryStore(),
                     clock=clock)
    client = app.test_client()
    assert client.get(f"{PL}/returns", headers=bearer("zl_live_known")).status_code == 200
    response = client.get(f"{PL}/returns", headers=bearer("zl_live_unknown"))
    assert response.status_code == 401 and "not known" in response.get_json()["error"]["message"]
