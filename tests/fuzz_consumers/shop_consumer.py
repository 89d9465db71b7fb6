"""The independent shop's webhook consumer (tests/independent/shop/handlers.py) under the consumer fuzzer:
tests/test_fuzz_consumer.py runs this file with --returns-mock-fuzz, HANDLER_BUG naming a planted bug
(unset: the correct consumer) and CONSUMER_FORM the form it is delivered to (handler, wsgi, asgi or url)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "independent" / "shop"))

from handlers import Shop, check_invariants, make_asgi_app, make_handler, make_wsgi_app

from mockserver.live import ThreadedServer

BUG = os.environ.get("HANDLER_BUG") or None
FORM = os.environ.get("CONSUMER_FORM", "handler")


@pytest.fixture
def shop() -> Shop:
    return Shop.with_orders("ord_1001", "ord_1002", "ord_1003")


@pytest.fixture
def consumer(returns_mock_webhooks: Any, shop: Shop) -> Iterator[dict[str, Any]]:
    secret = returns_mock_webhooks.secret
    if FORM == "url":
        with ThreadedServer(make_wsgi_app(secret, shop, BUG)) as server:
            yield {"url": server.url + "/webhooks"}
        return
    make = {"handler": make_handler, "wsgi": make_wsgi_app, "asgi": make_asgi_app}[FORM]
    yield {FORM: make(secret, shop, BUG)}


def test_each_return_received_is_credited_once(returns_mock_webhooks: Any, shop: Shop,
                                               consumer: dict[str, Any]) -> None:
    for order_id in ("ord_1001", "ord_1002"):
        returns_mock_webhooks.create(order_id, "received")
    returns_mock_webhooks.create("ord_1003")
    returns_mock_webhooks.deliver(**consumer)
    check_invariants(shop)
    assert set(shop.refunds) >= {r.return_id for r in shop.returns.values()
                                 if r.order_id in ("ord_1001", "ord_1002")}
