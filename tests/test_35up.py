"""35up: create, lifecycle, expiry, auth, isolation and every error, through the Flask app."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from helpers import UP35, basic, fixture

from mockserver.contract import contract
from mockserver.domain.clock import FrozenClock
from mockserver.domain.config import Config
from mockserver.store import MemoryStore
from mockserver.web import create_app

STATUSES = contract("35up").enum("status.json")
GRAPH = {s: e["to"] for s, e in contract("35up").lifecycle["transitions"].items()}


def body(order_id: str = "42346434") -> dict[str, Any]:
    return {"orderId": order_id, "items": [{"itemId": "412412", "sku": "vendor_id/FEI60XX", "quantity": 2}]}


def create(client: FlaskClient, order_id: str = "42346434", user: str = "shop-a") -> Any:
    response = client.post(f"{UP35}/returns", json=body(order_id), headers=basic(user))
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def move(client: FlaskClient, status: str, order_id: str = "42346434", user: str = "shop-a") -> Any:
    return client.patch(f"{UP35}/returns/{order_id}", json={"status": status}, headers=basic(user))


def test_create_answers_the_return_with_its_order_id_as_id(client: FlaskClient) -> None:
    response = client.post(f"{UP35}/returns", json=fixture("35up/create-return.request.json"), headers=basic())
    assert response.status_code == 201
    data = response.get_json()
    assert data["id"] == data["orderId"] == "42346434"
    assert data["status"] == "created"
    assert data["items"] == fixture("35up/create-return.request.json")["items"]
    assert data["createdAt"] == data["updatedAt"] == "2026-01-05T10:00:00.000Z"
    assert data["history"] == [{"status": "created", "at": "2026-01-05T10:00:00.000Z"}]


def test_second_return_for_the_same_order_is_409(client: FlaskClient) -> None:
    create(client)
    response = client.post(f"{UP35}/returns", json=body(), headers=basic())
    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "duplicate_return"
    assert response.get_json()["error"]["details"][0]["field"] == "orderId"


def test_the_same_order_id_in_two_accounts_is_two_returns(client: FlaskClient) -> None:
    create(client, user="shop-a")
    create(client, user="shop-b")
    assert move(client, "awaiting_return", user="shop-a").status_code == 200
    assert move(client, "awaiting_return", user="shop-b").get_json()["history"][-1]["status"] == "awaiting_return"


def test_the_documented_update_example_approved_is_422_naming_the_valid_statuses(client: FlaskClient) -> None:
    create(client)
    response = client.patch(f"{UP35}/returns/42346434", json=fixture("35up/update-return.documented.json"),
                            headers=basic())
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["code"] == "validation_error"
    assert "approved" in error["message"] and "awaiting_return" in error["message"]
    assert error["details"] == [{"field": "status", "location": "body", "allowed": STATUSES,
                                 "message": error["details"][0]["message"]}]


@pytest.mark.parametrize("status", ["approved", "APPROVED", "Awaiting_return", "shipped", ""])
def test_unknown_statuses_are_422(client: FlaskClient, status: str) -> None:
    create(client)
    assert move(client, status).status_code == 422


def test_a_known_status_not_allowed_from_the_current_one_is_409_naming_the_allowed(client: FlaskClient) -> None:
    create(client)
    response = move(client, "refunded")
    assert response.status_code == 409
    error = response.get_json()["error"]
    assert error["code"] == "invalid_transition"
    assert error["details"][0]["allowed"] == ["awaiting_return", "rejected", "cancelled"]
    assert "awaiting_return, rejected, cancelled" in error["message"]


def test_every_edge_of_the_graph_is_accepted_and_every_non_edge_refused(clock: FrozenClock) -> None:
    """Place a return in each status (via a path from created), then try every target status."""
    paths: dict[str, list[str]] = {"created": []}
    frontier = ["created"]
    while frontier:
        current = frontier.pop(0)
        for nxt in GRAPH[current]:
            if nxt not in paths:
                paths[nxt] = [*paths[current], nxt]
                frontier.append(nxt)
    app = create_app(Config(self_check=True), store=MemoryStore(), clock=clock)
    app.testing = True
    client = app.test_client()
    n = 0
    for source, path in paths.items():
        for target in STATUSES:
            n += 1
            order = f"o{n}"
            create(client, order)
            for step in path:
                assert move(client, step, order).status_code == 200
            expected = 200 if target in GRAPH[source] else 409
            assert move(client, target, order).status_code == expected, (source, target)
    assert n == len(STATUSES) ** 2


def test_full_lifecycle_to_closed_records_every_status_once_in_order(client: FlaskClient,
                                                                    clock: FrozenClock) -> None:
    create(client)
    route = ["awaiting_return", "customer_shipped", "vendor_received", "confirmed", "awaiting_refund",
             "refunded", "closed"]
    for status in route:
        clock.advance(timedelta(hours=1))
        response = move(client, status)
        assert response.status_code == 200
        assert response.get_json()["status"] == status
    data = response.get_json()
    assert [h["status"] for h in data["history"]] == ["created", *route]
    assert data["updatedAt"] == data["history"][-1]["at"] == "2026-01-05T17:00:00.000Z"


def test_closed_is_final(client: FlaskClient) -> None:
    create(client)
    for status in ["rejected", "closed"]:
        assert move(client, status).status_code == 200
    for status in STATUSES:
        response = move(client, status)
        assert response.status_code == 409
        assert response.get_json()["error"]["details"][0]["allowed"] == []


def test_dispute_path(client: FlaskClient) -> None:
    create(client)
    for status in ["awaiting_return", "seller_received", "seller_shipped", "vendor_received",
                   "not_confirmed", "awaiting_dispute", "awaiting_refund", "refunded", "closed"]:
        assert move(client, status).status_code == 200, status


def test_awaiting_return_expires_after_the_window_and_not_before(client: FlaskClient,
                                                                 clock: FrozenClock) -> None:
    create(client)
    assert move(client, "awaiting_return").status_code == 200
    clock.advance(timedelta(days=30) - timedelta(milliseconds=1))
    response = move(client, "customer_shipped", "42346434")
    assert response.status_code == 200  # one millisecond before the deadline: still allowed

    create(client, "o2")
    assert move(client, "awaiting_return", "o2").status_code == 200
    clock.advance(timedelta(days=30))
    response = move(client, "customer_shipped", "o2")
    assert response.status_code == 409
    assert "expired" in response.get_json()["error"]["message"]
    response = move(client, "closed", "o2")
    assert response.status_code == 200
    history = response.get_json()["history"]
    # The expiry is recorded at the deadline itself, not when it was noticed.
    assert history[-2] == {"status": "expired", "at": "2026-03-06T09:59:59.999Z"}
    assert [h["status"] for h in history] == ["created", "awaiting_return", "expired", "closed"]


def test_return_window_is_configurable(clock: FrozenClock) -> None:
    app = create_app(Config(self_check=True, providers={"35up": {"return_window_days": 2}}), store=MemoryStore(),
                     clock=clock)
    client = app.test_client()
    create(client)
    move(client, "awaiting_return")
    clock.advance(timedelta(days=2))
    assert move(client, "customer_shipped").status_code == 409


def test_permissive_mode_allows_any_move_except_out_of_closed(clock: FrozenClock) -> None:
    app = create_app(Config(self_check=True, providers={"35up": {"lifecycle": "permissive"}}), store=MemoryStore(),
                     clock=clock)
    client = app.test_client()
    create(client)
    assert move(client, "refunded").status_code == 200
    assert move(client, "created").status_code == 200
    assert move(client, "created").status_code == 409  # not a move
    assert move(client, "closed").status_code == 200
    assert move(client, "created").status_code == 409
    assert move(client, "approved").status_code == 422  # unknown is still unknown


def test_unknown_return_is_404(client: FlaskClient) -> None:
    response = move(client, "awaiting_return", "nope")
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"


def test_another_accounts_return_is_404_and_unchanged(client: FlaskClient) -> None:
    create(client, user="shop-a")
    assert move(client, "awaiting_return", user="intruder").status_code == 404
    # The owner sees no trace of the attempt.
    response = move(client, "awaiting_return", user="shop-a")
    assert [h["status"] for h in response.get_json()["history"]] == ["created", "awaiting_return"]


@pytest.mark.parametrize("authorization", [
    None,
    "Bearer zl_live_abc",
    "Basic",
    "Basic !!!notbase64",
    "Basic " + "dXNlcm9ubHk=",  # "useronly": no colon
    "Basic " + "OnB3",  # ":pw": empty username
    "Basic " + "dXNlcjo=",  # "user:": empty password
])
def test_missing_or_malformed_credentials_are_401_with_a_basic_challenge(client: FlaskClient,
                                                                        authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    for response in (client.post(f"{UP35}/returns", json=body(), headers=headers),
                     client.patch(f"{UP35}/returns/1", json={"status": "closed"}, headers=headers)):
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"].startswith("Basic")
        assert response.get_json()["error"]["code"] == "unauthorized"


def test_auth_is_checked_before_the_body(client: FlaskClient) -> None:
    response = client.post(f"{UP35}/returns", data="{not json", content_type="application/json")
    assert response.status_code == 401


@pytest.mark.parametrize(("payload", "field"), [
    ({"items": [{"itemId": "1", "sku": "v/s", "quantity": 1}]}, "orderId"),
    ({"orderId": "1"}, "items"),
    ({"orderId": "1", "items": []}, "items"),
    ({"orderId": "1", "items": [{"itemId": "1", "sku": "v/s", "quantity": 0}]}, "items[0].quantity"),
    ({"orderId": "1", "items": [{"itemId": "1", "sku": "v/s", "quantity": "2"}]}, "items[0].quantity"),
    ({"orderId": "1", "items": [{"itemId": "1", "sku": "no-vendor", "quantity": 1}]}, "items[0].sku"),
    ({"orderId": "1", "items": [{"sku": "v/s", "quantity": 1}]}, "items[0].itemId"),
    ({"orderId": 42346434, "items": [{"itemId": "1", "sku": "v/s", "quantity": 1}]}, "orderId"),
    ({"orderId": "a/b", "items": [{"itemId": "1", "sku": "v/s", "quantity": 1}]}, "orderId"),
    ({"order_id": "1", "orderId": "1", "items": [{"itemId": "1", "sku": "v/s", "quantity": 1}]}, "order_id"),
])
def test_invalid_create_bodies_are_422_naming_the_field(client: FlaskClient, payload: Any, field: str) -> None:
    response = client.post(f"{UP35}/returns", json=payload, headers=basic())
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["code"] == "validation_error"
    assert field in [d.get("field") for d in error["details"]]
    assert field in error["message"]


@pytest.mark.parametrize(("data", "content_type", "status"), [
    ("{not json", "application/json", 400),
    ('{"orderId": "1",}', "application/json", 400),  # the guide's trailing commas
    (b"\xff\xfe{}", "application/json", 400),
    ("", "application/json", 400),
    ("orderId=1", "application/x-www-form-urlencoded", 400),
    ('{"orderId": NaN}', "application/json", 400),
    ("null", "application/json", 422),
    ("[]", "application/json", 422),
])
def test_unusable_bodies_get_the_35up_error_format(client: FlaskClient, data: Any, content_type: str,
                                                   status: int) -> None:
    response = client.post(f"{UP35}/returns", data=data, content_type=content_type, headers=basic())
    assert response.status_code == status
    assert set(response.get_json()) == {"error"}
    assert response.get_json()["error"]["message"]


def test_nothing_is_stored_by_a_refused_create(client: FlaskClient) -> None:
    client.post(f"{UP35}/returns", json={"orderId": "1", "items": [{"itemId": "1", "sku": "x", "quantity": 1}]},
                headers=basic())
    assert move(client, "awaiting_return", "1").status_code == 404


def test_oversized_body_is_413(client: FlaskClient) -> None:
    response = client.post(f"{UP35}/returns", data="x" * (1024 * 1024 + 1), content_type="application/json",
                           headers=basic())
    assert response.status_code == 413
    assert response.get_json()["error"]["code"] == "payload_too_large"


def test_unsupported_method_is_405_with_allow(client: FlaskClient) -> None:
    response = client.delete(f"{UP35}/returns/1", headers=basic())
    assert response.status_code == 405
    assert response.headers["Allow"] == "PATCH"
    assert response.get_json()["error"]["code"] == "method_not_allowed"


def test_unknown_path_is_404_in_the_35up_format(client: FlaskClient) -> None:
    response = client.get(f"{UP35}/nothing", headers=basic())
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"


def test_registered_credentials_are_the_only_ones_accepted(clock: FrozenClock) -> None:
    app = create_app(Config(self_check=True, providers={"35up": {"users": {"shop-a": "right"}}}), store=MemoryStore(),
                     clock=clock)
    client = app.test_client()
    assert client.post(f"{UP35}/returns", json=body(), headers=basic("shop-a", "right")).status_code == 201
    for headers in (basic("shop-a", "wrong"), basic("shop-b", "right")):
        response = client.post(f"{UP35}/returns", json=body("o2"), headers=headers)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"].startswith("Basic")
        assert response.get_json()["error"]["message"] == "Unknown username or wrong password."
