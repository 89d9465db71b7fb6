"""3plship webhooks: subscriptions and signed events, delivered with retries off the request path
(`mockserver.domain.webhooks`)."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from mockserver.contract.errors import ProviderError
from mockserver.domain.clock import Clock, isoformat
from mockserver.domain.delivery_faults import DeliveryFaults
from mockserver.domain.ids import IdGenerator
from mockserver.domain.webhooks import DeliveryPolicy
from mockserver.domain.webhooks import Webhooks as Deliveries
from mockserver.providers.threeplship import PROVIDER
from mockserver.store import Delivery, Store
from mockserver.version import __version__

SIGNATURE_HEADER = "X-3plship-Signature"


def sign(body: bytes, secret: str) -> str:
    """Hex HMAC-SHA256 of the raw body, keyed with the subscription's secret."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def headers(delivery: Delivery) -> dict[str, str]:
    return {SIGNATURE_HEADER: sign(delivery.body, delivery.secret), "X-3plship-Event": delivery.event_type,
            "X-3plship-Delivery": delivery.id, "User-Agent": f"returns-mock/{__version__} (3plship webhooks)"}


class Webhooks(Deliveries):
    """3plship's subscriptions (POST /webhooks, as documented) and their signed deliveries."""

    def __init__(self, store: Store, clock: Clock, ids: IdGenerator, policy: DeliveryPolicy,
                 faults: DeliveryFaults | None = None) -> None:
        super().__init__(PROVIDER, store, clock, ids, policy, headers, faults)

    def subscribe(self, account: str, body: dict[str, Any]) -> dict[str, Any]:
        # A URL the mock may not call is subscribed all the same (a schema-valid request is never refused
        # for the mock's own safety); its deliveries are recorded as blocked and nothing is sent.
        webhook = {"id": self.ids.new("wh"), "url": body["url"], "events": body["events"],
                   "description": body.get("description"), "secret": self.ids.new("whsec", 32),
                   "active": body.get("active", True), "created_at": isoformat(self.clock.now())}
        cap = self.policy.subscriptions_per_account
        with self.store.transaction() as tx:
            if tx.webhook_count(account) >= cap:  # a refusal for a reason of state: 409, as the mock's others
                message = (f"This API key has {cap} webhook subscriptions, the most one key may hold; "
                           "each event is delivered to every one of them.")
                raise ProviderError(409, "WEBHOOK_LIMIT_REACHED", message, [{"message": message}])
            tx.add_webhook(account, webhook)
        return webhook
