"""Webhook delivery, for any provider that sends webhooks: the host policy and the background deliverer.

Events are queued in the store in the same transaction as the change they announce, so they exist
exactly when the change does and survive a restart. Each process delivers from one background
thread, started when there is something to deliver; deliveries are leased, so several worker
processes never send the same attempt twice. The mock never sends anything to a host it was not
allowed to reach: loopback by default, plus the hosts given to serve --allow-webhook-host.
"""

from __future__ import annotations

import contextlib
import ipaddress
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from mockserver.contract.errors import StoreError
from mockserver.domain.clock import Clock, isoformat
from mockserver.domain.outbound import ExchangeFailed, exchange
from mockserver.store import Delivery, DeliveryQueue


@dataclass(frozen=True)
class DeliveryPolicy:
    allowed_hosts: tuple[str, ...] = ()
    attempts: int = 6
    backoff_ms: int = 1000
    """Wait before the first retry; it doubles for each next one."""
    timeout_ms: int = 5000
    send: bool = True
    """False: deliveries are queued (and shown) but never sent: a mock that mirrors a provider (the shadow
    proxy's) must not deliver the provider's events a second time."""

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


class AttemptFailed(Exception):
    """An attempt that got no complete answer: the reason, as the delivery's record shows it."""


def post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
    """POST `body` to `url` and answer the status, the whole exchange (connect, TLS, send, the answer)
    within `timeout` seconds: a receiver that drips its answer cannot hold an attempt (mockserver.domain.outbound).
    Only the status counts, so at most ANSWER_LIMIT bytes of the body are read."""
    try:
        return exchange("POST", url, list(headers.items()), body, timeout=timeout, limit=ANSWER_LIMIT, cut=True).status
    except ExchangeFailed as exc:
        raise AttemptFailed(exc.reason) from None


ANSWER_LIMIT = 64 * 1024
"""How much of a receiver's answer is read: its status is what counts; a longer body is not waited for."""


class Deliverer:
    """Sends due deliveries from a background thread; retries with exponential backoff in real time.

    Attempts run side by side (up to MAX_ATTEMPTS at once, and MAX_PER_SUBSCRIPTION for one subscription),
    each bounded as a whole by the timeout, so a slow receiver never holds up another's deliveries, and an
    attempt always ends within its lease: no other process can claim and send it again meanwhile.
    """

    POLL_SECONDS = 0.1
    MAX_ATTEMPTS = 16
    MAX_PER_SUBSCRIPTION = 2
    BUSY_DELAY_MS = 250
    """A delivery claimed while its subscription has attempts in flight waits this long, unsent."""

    def __init__(self, store: DeliveryQueue, policy: DeliveryPolicy, headers: Headers, clock: Clock) -> None:
        self.clock = clock
        """The mock's clock: an attempt's `at` is on it, as the event's created_at is (retries wait real time)."""
        self.store = store
        self.policy = policy
        self.headers = headers
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(self.MAX_ATTEMPTS)
        self._in_flight: dict[str, int] = {}

    def start(self) -> None:
        if not self.policy.send:
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._stop.clear()
                self._slots = threading.BoundedSemaphore(self.MAX_ATTEMPTS)  # a forked worker starts afresh
                self._in_flight = {}
                self._thread = threading.Thread(target=self._run, name="returns-mock-webhooks", daemon=True)
                self._thread.start()
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=self.policy.timeout_ms / 1000 + 5)

    @property
    def lease_ms(self) -> int:
        return self.policy.timeout_ms + 10_000

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self._slots.acquire(timeout=self.POLL_SECONDS):
                continue
            try:
                delivery = self.store.claim_delivery(int(time.time() * 1000), self.lease_ms)
            except StoreError:  # the database is away: try again later, the deliveries wait in it
                self._slots.release()
                self._wake.wait(1.0)
                continue
            if delivery is None:
                self._slots.release()
                self._wake.wait(self.POLL_SECONDS)
                self._wake.clear()
                continue
            with self._lock:
                busy = self._in_flight.get(delivery.webhook_id, 0) >= self.MAX_PER_SUBSCRIPTION
                if not busy:
                    self._in_flight[delivery.webhook_id] = self._in_flight.get(delivery.webhook_id, 0) + 1
            if busy:  # back to the queue, unsent, for a little while
                self._slots.release()
                delivery.next_at = int(time.time() * 1000) + self.BUSY_DELAY_MS
                with contextlib.suppress(StoreError):
                    self.store.save_delivery(delivery)
                continue
            threading.Thread(target=self._attempt_and_release, args=(delivery,), daemon=True,
                             name="returns-mock-webhook-attempt").start()

    def _attempt_and_release(self, delivery: Delivery) -> None:
        try:
            self.attempt(delivery)
        except StoreError:
            pass  # the outcome could not be saved: the lease runs out and the attempt is made again
        finally:
            with self._lock:
                left = self._in_flight.get(delivery.webhook_id, 1) - 1
                if left:
                    self._in_flight[delivery.webhook_id] = left
                else:
                    self._in_flight.pop(delivery.webhook_id, None)
            self._slots.release()
            self._wake.set()

    def attempt(self, delivery: Delivery) -> None:
        started = time.time()
        record: dict[str, Any] = {"at": self._now(), "status_code": None, "error": None}
        if not self.policy.allows(delivery.url):
            delivery.status = "blocked"
            record["error"] = "host not allowed: nothing was sent"
        else:
            try:
                status = post(delivery.url, delivery.body, {"Content-Type": "application/json",
                                                            **self.headers(delivery)}, self.policy.timeout_ms / 1000)
                record["status_code"] = status
                if 200 <= status < 300:
                    delivery.status = "delivered"
            except AttemptFailed as exc:
                record["error"] = str(exc)
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


    def _now(self) -> str:
        try:
            return isoformat(self.clock.now())
        except StoreError:  # the clock lives in a store that is away: the wall clock says when
            return isoformat(datetime.now(UTC))
