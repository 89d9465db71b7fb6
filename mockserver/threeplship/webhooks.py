"""3plship webhooks: subscriptions, signed events, and their delivery with retries, off the request path.

Events are queued in the store in the same transaction as the change they announce, so they exist
exactly when the change does and survive a restart. Each process delivers from one background
thread, started when there is something to deliver; deliveries are leased, so several worker
processes never send the same attempt twice. The mock never sends anything to a host it was not
allowed to reach: loopback by default, plus the hosts given to serve --allow-webhook-host.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import orjson
import requests

from .. import __version__
from ..clock import Clock, isoformat
from ..errors import ProviderError
from ..ids import IdGenerator
from ..store import Delivery, Store, Transaction

SIGNATURE_HEADER = "X-3plship-Signature"


def sign(body: bytes, secret: str) -> str:
    """Hex HMAC-SHA256 of the raw body, keyed with the subscription's secret."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class DeliveryPolicy:
    allowed_hosts: tuple[str, ...] = ()
    attempts: int = 6
    backoff_ms: int = 1000
    """Wait before the first retry; it doubles for each next one."""
    timeout_ms: int = 5000

    def allows(self, url: str) -> bool:
        host = (urlsplit(url).hostname or "").lower()
        if host in self.allowed_hosts or host == "localhost":
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False


class Webhooks:
    def __init__(self, store: Store, clock: Clock, ids: IdGenerator, policy: DeliveryPolicy) -> None:
        self.store = store
        self.clock = clock
        self.ids = ids
        self.policy = policy
        self.deliverer = Deliverer(store, policy)

    def subscribe(self, account: str, body: dict[str, Any]) -> dict[str, Any]:
        if not self.policy.allows(body["url"]):
            host = urlsplit(body["url"]).hostname
            message = (f"url: the mock delivers webhooks only to loopback hosts and to hosts it was started with "
                       f"(serve --allow-webhook-host); {host} is neither.")
            raise ProviderError(422, "VALIDATION_ERROR", message,
                                [{"field": "url", "location": "body", "message": message}])
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
            event = {"id": event_id, "type": event_type, "created_at": created_at, "data": resource}
            tx.add_delivery(Delivery(id=self.ids.new("dlv"), webhook_id=webhook["id"], account=account,
                                     event_id=event_id, event_type=event_type, url=webhook["url"],
                                     secret=webhook["secret"], body=orjson.dumps(event),
                                     next_at=int(time.time() * 1000), created_at=created_at))
            queued = True
        if queued:
            self.deliverer.start()


class Deliverer:
    """Sends due deliveries from a background thread; retries with exponential backoff in real time."""

    POLL_SECONDS = 0.1

    def __init__(self, store: Store, policy: DeliveryPolicy) -> None:
        self.store = store
        self.policy = policy
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._stop.clear()
                self._thread = threading.Thread(target=self._run, name="returns-mock-webhooks", daemon=True)
                self._thread.start()
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=self.policy.timeout_ms / 1000 + 5)

    def _run(self) -> None:
        with requests.Session() as session:
            while not self._stop.is_set():
                delivery = self.store.claim_delivery(int(time.time() * 1000), self.policy.timeout_ms + 10_000)
                if delivery is None:
                    self._wake.wait(self.POLL_SECONDS)
                    self._wake.clear()
                    continue
                self.attempt(delivery, session)

    def attempt(self, delivery: Delivery, session: requests.Session) -> None:
        started = time.time()
        record: dict[str, Any] = {"at": isoformat_real(started), "status_code": None, "error": None}
        if not self.policy.allows(delivery.url):
            delivery.status = "blocked"
            record["error"] = "host not allowed: nothing was sent"
        else:
            try:
                answer = session.post(delivery.url, data=delivery.body, timeout=self.policy.timeout_ms / 1000,
                                      allow_redirects=False, headers={
                                          "Content-Type": "application/json",
                                          SIGNATURE_HEADER: sign(delivery.body, delivery.secret),
                                          "X-3plship-Event": delivery.event_type,
                                          "X-3plship-Delivery": delivery.id,
                                          "User-Agent": f"returns-mock/{__version__} (3plship webhooks)"})
                record["status_code"] = answer.status_code
                if 200 <= answer.status_code < 300:
                    delivery.status = "delivered"
            except requests.Timeout:
                record["error"] = f"no answer within {self.policy.timeout_ms} ms"
            except requests.RequestException as exc:
                record["error"] = f"{type(exc).__name__}: {exc}"[:300]
        record["duration_ms"] = round((time.time() - started) * 1000, 1)
        delivery.attempts.append(record)
        if delivery.status == "pending":
            if len(delivery.attempts) >= self.policy.attempts:
                delivery.status = "failed"
            else:
                wait = self.policy.backoff_ms * 2 ** (len(delivery.attempts) - 1)
                delivery.next_at = int(time.time() * 1000) + wait
                record["next_attempt_in_ms"] = wait
        self.store.save_delivery(delivery)


def isoformat_real(epoch: float) -> str:
    return isoformat(datetime.fromtimestamp(epoch, UTC))
