"""Webhook delivery, for any provider that sends webhooks: the host policy and the background deliverer.

Events are queued in the store in the same transaction as the change they announce, so they exist
exactly when the change does and survive a restart. Each process delivers from one background
thread, started when there is something to deliver; deliveries are leased, so several worker
processes never send the same attempt twice. The mock never sends anything to a host it was not
allowed to reach: loopback by default, plus the hosts given to serve --allow-webhook-host.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import requests

from .clock import isoformat
from .errors import StoreError
from .store import Delivery, DeliveryQueue


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


Headers = Callable[[Delivery], dict[str, str]]
"""The provider's own headers for one delivery (signature, event name, ...)."""


class Deliverer:
    """Sends due deliveries from a background thread; retries with exponential backoff in real time."""

    POLL_SECONDS = 0.1

    def __init__(self, store: DeliveryQueue, policy: DeliveryPolicy, headers: Headers) -> None:
        self.store = store
        self.policy = policy
        self.headers = headers
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
                try:
                    delivery = self.store.claim_delivery(int(time.time() * 1000), self.policy.timeout_ms + 10_000)
                except StoreError:  # the database is away: try again later, the deliveries wait in it
                    self._wake.wait(1.0)
                    continue
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
                                          "Content-Type": "application/json", **self.headers(delivery)})
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
