"""The shop's integration tests against the in-process 3plship mock (`returns_mock` fixture).

SHOP_BUG=<name> runs them against a planted-bug variant of clients.py (unset: the correct client).
Every variant passes them against the mock's ordinary answers; the correct client must also pass them
against any answer the 3plship contract allows (pytest --returns-mock-fuzz=N). The assertions therefore
only use what the shop sent and what the provider answered, never the mock's habits: the account may hold
returns the shop did not create, amounts and strings may be any the contract allows, and an answer may be a
documented 429/500/503 or arrive late.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest

from clients import RECEIVED_OR_LATER, CorrectClient, Return, instant, make_client, money

BUG = os.environ.get("SHOP_BUG") or None


@dataclass
class ShopOrder:
    order_id: str
    sku: str
    amount: float  # what the shop refunds for it (whole units, written as JSON decimals)
    tracking_number: str
    return_id: str | None = None


@pytest.fixture
def client() -> CorrectClient:
    return make_client(BUG, max_retry_wait=0.05)  # honour Retry-After, but keep the suite quick


@pytest.fixture
def orders() -> dict[str, ShopOrder]:
    """The shop's own orders: a fresh dict for every test (and every fuzzed run)."""
    return {
        "ord_1001": ShopOrder("ord_1001", "MUG-RED", 20.0, "9400111899562712345601"),
        "ord_1002": ShopOrder("ord_1002", "MUG-BLUE", 35.0, "9400111899562712345602"),
        "ord_1003": ShopOrder("ord_1003", "TEAPOT-1", 80.0, "9400111899562712345603"),
        "ord_1004": ShopOrder("ord_1004", "SAUCER-9", 12.0, "9400111899562712345604"),
    }


@pytest.fixture
def synced() -> list[Return]:
    """Where the test collects what it synced: empty at the start of every run."""
    return []


def create_for(client: CorrectClient, order: ShopOrder) -> Return:
    assert order.return_id is None, "the orders fixture must be fresh"
    created = client.create_return(order.order_id, [{"sku": order.sku, "quantity": 1}], order.amount,
                                   carrier="usps", tracking_number=order.tracking_number)
    assert created["order_id"] == order.order_id
    order.return_id = created["id"]
    return created


def test_synced_returns_match_the_shops_orders(returns_mock: Any, client: CorrectClient,
                                               orders: dict[str, ShopOrder], synced: list[Return]) -> None:
    assert synced == []
    for order_id in ("ord_1001", "ord_1002", "ord_1003"):
        create_for(client, orders[order_id])

    synced.extend(client.sync_returns())
    ids = [r["id"] for r in synced]
    assert len(ids) == len(set(ids)), "a return synced twice"
    matched = client.match_orders(synced, orders)
    with_returns = {order_id for order_id, rets in matched.items() if rets}
    assert {"ord_1001", "ord_1002", "ord_1003"} <= with_returns <= set(orders)
    for order_id in ("ord_1001", "ord_1002", "ord_1003"):
        assert orders[order_id].return_id in {r["id"] for r in matched[order_id]}
    assert returns_mock.violations == []


def test_refund_total_of_received_returns(returns_mock: Any, client: CorrectClient,
                                          orders: dict[str, ShopOrder], synced: list[Return]) -> None:
    first = create_for(client, orders["ord_1001"])
    create_for(client, orders["ord_1002"])
    received = client.update_status(first, "received")
    assert received["status"] == "received"

    synced.extend(client.sync_returns())
    total = client.refund_total(synced)
    expected = sum((max(Decimal(0), money(r["refund_amount"]) - money(r["restocking_fee"]))
                    for r in synced if r["status"] in RECEIVED_OR_LATER), Decimal(0))
    assert total == expected
    assert first["id"] in {r["id"] for r in synced if r["status"] in RECEIVED_OR_LATER}
    assert returns_mock.violations == []


def test_tracking_link_and_carrier(returns_mock: Any, client: CorrectClient, orders: dict[str, ShopOrder]) -> None:
    created = create_for(client, orders["ord_1003"])
    for ret in [created, *client.sync_returns()]:
        link = client.tracking_link(ret)
        assert link is None or link.startswith(("https://", "http://"))
        carrier = client.carrier_of(ret)
        assert carrier is None or isinstance(carrier, str)


def test_refund_state_along_the_refund(returns_mock: Any, client: CorrectClient,
                                       orders: dict[str, ShopOrder]) -> None:
    ret = create_for(client, orders["ord_1002"])
    states = [client.refund_state(ret)]
    for status in ("received", "inspected"):
        ret = client.update_status(ret, status)
        states.append(client.refund_state(ret))
    ret = client.request_refund(ret)
    states.append(client.refund_state(ret))
    states += [client.refund_state(r) for r in client.sync_returns()]
    assert all(isinstance(s, str) and s for s in states)


def test_shop_labels_for_synced_returns(returns_mock: Any, client: CorrectClient,
                                        orders: dict[str, ShopOrder], synced: list[Return]) -> None:
    first = create_for(client, orders["ord_1001"])
    create_for(client, orders["ord_1004"])
    client.update_status(first, "received")
    synced.extend(client.sync_returns())
    labels = {r["id"]: client.shop_status(r) for r in synced}
    assert labels[first["id"]] == "parcel arrived"
    assert all(isinstance(label, str) for label in labels.values())


def test_export_of_synced_returns(returns_mock: Any, client: CorrectClient,
                                  orders: dict[str, ShopOrder], synced: list[Return]) -> None:
    created = [create_for(client, orders[o]) for o in ("ord_1001", "ord_1002")]
    synced.extend(client.sync_returns())
    report = client.export_csv(synced).decode("utf-8")
    assert report.startswith("id,order_id,")
    for ret in created:
        assert ret["id"] in report


def test_last_updated_return(returns_mock: Any, client: CorrectClient,
                              orders: dict[str, ShopOrder], synced: list[Return]) -> None:
    made = [create_for(client, orders[order_id]) for order_id in ("ord_1001", "ord_1002", "ord_1003")]
    client.update_status(made[-1], "received")
    synced.extend(client.sync_returns())
    last = client.last_updated(synced)
    assert last is not None
    assert instant(last["updated_at"]) == max(instant(r["updated_at"]) for r in synced)


def test_slow_answers_and_request_ids(returns_mock: Any, client: CorrectClient,
                                      orders: dict[str, ShopOrder]) -> None:
    """Every call of the client passes timeout= to requests explicitly: a late answer is a ReadTimeout."""
    created = create_for(client, orders["ord_1004"])
    found = client.find_return("ord_1004")
    assert found is not None and found["id"] == created["id"]
    assert client.sync_returns()
    assert client.request_ids and all(isinstance(rid, str) and rid for rid in client.request_ids)
