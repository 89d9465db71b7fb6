"""3plship webhooks: subscriptions and signed events, delivered with retries off the request path
(`mockserver.domain.webhooks`)."""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any

import orjson

from mockserver.domain.clock import Clock, isoformat
from mockserver.domain.ids import IdGenerator
from mockserver.domain.webhooks import Deliverer, DeliveryPolicy
from mockserver.store import Delivery, DeliveryQueue, ReturnStore, Transaction
from mockserver.version import __version__

SIGNATURE_HEADER = "X-3plship-Signature"


def sign(body: bytes, secret: str) -> str:
    """Hex HMAC-SHA256 of the raw body, keyed with the subscription's secret."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def headers(delivery: Delivery) -> dict[str, str]:
    return {SIGNATURE_HEADER: sign(delivery.body, delivery.secret), "X-3plship-Event": delivery.event_type,
            "X-3plship-Delivery": delivery.id, "User-Agent": f"returns-mock/{__version__} (3plship webhooks)"}


class Webhooks:
    """Subscriptions (kept with the returns, in their transactions) and their deliveries (a queue)."""

    def __init__(self, store: ReturnStore, queue: DeliveryQueue, clock: Clock, ids: IdGenerator,
                 policy: DeliveryPolicy) -> None:
        self.store = store
        self.queue = queue
        self.clock = clock
        self.ids = ids
        self.policy = policy
        self.deliverer = Deliverer(queue, policy, headers, clock)

    def subscribe(self, account: str, body: dict[str, Any]) -> dict[str, Any]:
        # A URL the mock may not call is subscribed all the same (a schema-valid request is never refused
        # for the mock's own safety); its deliveries are recorded as blocked and nothing is sent.
        webhook = {"id": self.ids.new("wh"), "url": body["url"], "events": body["events"],
                   "description": body.get("description"), "secret": self.ids.new("whsec", 32),
                   "active": body.get("active", True), "created_at": isoformat(self.clock.now())}
        with self.store.transaction() as tx:
            tx.add_webhook(account, webhook)
        return webhook

    def emit(self, tx: Transaction, account: str, event_type: str, resource: dict[str, Any]) -> None:
        """Queue `event_type` for every active subscription of the account, inside the caller's transaction."""
        queued = False
        for webhook in tx.webhooks(account):
            if not webhook["active"] or event_type not in webhook["events"]:
                continue
            event_id, created_at = self.ids.new("evt"), isoformat(self.clock.now())
            event = {"id": event_id, "type": event_type, "created_at": created_at,
                     "data": {"object": "return", **resource}}
            tx.add_delivery(Delivery(id=self.ids.new("dlv"), webhook_id=webhook["id"], account=account,
                                     event_id=event_id, event_type=event_type, url=webhook["url"],
                                     secret=webhook["secret"], body=orjson.dumps(event),
                                     next_at=int(time.time() * 1000), created_at=created_at))
            queued = True
        if queued:
            self.deliverer.start()
