"""Webhook delivery, for any provider that sends webhooks: the target policy, the events a provider sends
(queued through the delivery fault step), the deliverer.

Events are queued in the store in the same transaction as the change they announce, so they exist
exactly when the change does and survive a restart. Each process delivers from one background thread,
started when there is something to deliver; deliveries are leased, so several worker processes (or
replicas) never send the same attempt twice, and a subscription has one attempt in flight at a time: its
events reach it in the order they are due, and its slow receiver holds up nothing but itself. Attempts
run side by side, one thread each, up to MAX_IN_FLIGHT per process.

The mock sends nothing to a target it was not allowed to reach (`DeliveryPolicy.target`): loopback by
default (not when it listens beyond loopback), plus the hosts given to `serve --allow-webhook-host`; never
a link-local address, never any server's `/__admin`. A delivery to any other target is recorded as
`blocked` and nothing is sent.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import posixpath
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote, urlsplit

import orjson

from mockserver.contract import Problem
from mockserver.contract.errors import StoreError
from mockserver.domain.clock import Clock, isoformat, parse_instant, to_millis
from mockserver.domain.delivery_faults import DeliveryFaults
from mockserver.domain.events import Events
from mockserver.domain.ids import IdGenerator
from mockserver.domain.outbound import ExchangeFailed, exchange
from mockserver.store import Delivery, ReturnRecord, Store, Transaction

CONTROL_PLANE = "__admin"
"""The first path segment of a mock's control plane (this one's, another's, WireMock's): never a target."""


@dataclass(frozen=True)
class Target:
    """Where an attempt may go: the address to connect to, or why nothing may be sent."""

    address: str | None = None
    blocked: str | None = None


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
    exposed: bool = False
    """The mock listens beyond loopback: then loopback targets are blocked too, unless allowed by name."""
    subscriptions_per_account: int = 20
    """Webhook subscriptions one account may hold; the next is refused (409, WEBHOOK_LIMIT_REACHED)."""

    def target(self, url: str, *, resolve: bool = True) -> Target:
        """The address an attempt to `url` connects to, or why it is blocked. A name is resolved only when
        allowed by name (or `localhost`), and each of its addresses checked, so that the address connected
        to is the address checked."""
        parts = urlsplit(url)
        if _control_plane(parts.path):
            return Target(blocked=f"{parts.path} is a mock's control plane (/{CONTROL_PLANE}): never a webhook "
                                  "target")
        host = (parts.hostname or "").lower()
        named = host in self.allowed_hosts
        try:
            addresses = [ipaddress.ip_address(host)]
        except ValueError:
            if not named and host != "localhost":
                return Target(blocked=f"host {host} not allowed (serve --allow-webhook-host)")
            if not resolve:
                return Target(address=host)
            addresses = _resolved(host, parts.port)
        kinds = [_kind(a) for a in addresses]
        if "link-local" in kinds:
            return Target(blocked=f"host {host} is a link-local address (such as a cloud's metadata service): "
                                  "never a webhook target")
        if not named:
            if kinds[0] != "loopback":
                return Target(blocked=f"host {host} not allowed (serve --allow-webhook-host)")
            if self.exposed:
                return Target(blocked=f"host {host} is loopback, and the mock listens beyond loopback: loopback "
                                      "targets are not allowed unless named with serve --allow-webhook-host")
        return Target(address=str(addresses[0]))


def _control_plane(path: str) -> bool:
    """Whether a URL path reaches /__admin as a server would route it (percent-decoded, dot segments and
    doubled slashes resolved, any case)."""
    normal = posixpath.normpath("/" + unquote(path).replace("\\", "/"))
    return normal.lstrip("/").split("/", 1)[0].lower() == CONTROL_PLANE


def _kind(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_link_local:
        return "link-local"
    if address.is_loopback or address.is_unspecified:  # 0.0.0.0 and :: reach this machine
        return "loopback"
    return "private" if address.is_private else "public"


def _resolved(host: str, port: int | None) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        found = socket.getaddrinfo(host, port or 80, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise AttemptFailed(f"cannot resolve {host}: {getattr(exc, 'strerror', None) or exc}") from None
    return [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in found]


Headers = Callable[[Delivery], dict[str, str]]
"""The provider's own headers for one delivery (signature, event name, ...)."""

Send = Callable[[str, dict[str, str], bytes], int]
"""One attempt made some other way than over HTTP (a test's or a fuzzer's handler): the URL, the headers and
the raw body in; the receiver's status out (AttemptFailed: no answer)."""


class AttemptFailed(Exception):
    """An attempt that got no complete answer: the reason, as the delivery's record shows it."""


def post(url: str, body: bytes, headers: dict[str, str], timeout: float, address: str | None = None) -> int:
    """POST `body` to `url` and answer the status, the whole exchange (connect, TLS, send, the answer)
    within `timeout` seconds: a receiver that drips its answer cannot hold an attempt (mockserver.domain.outbound).
    Only the status counts, so at most ANSWER_LIMIT bytes of the body are read."""
    try:
        return exchange("POST", url, list(headers.items()), body, timeout=timeout, limit=ANSWER_LIMIT, cut=True,
                        address=address).status
    except ExchangeFailed as exc:
        raise AttemptFailed(exc.reason) from None


ANSWER_LIMIT = 64 * 1024
"""How much of a receiver's answer is read: its status is what counts; a longer body is not waited for."""


class Deliverer:
    """Sends due deliveries from a background thread; retries with exponential backoff in real time.

    Each attempt runs in a thread of its own, bounded as a whole by the timeout (so it always ends within its
    lease: no other process can claim and send it again meanwhile). The store gives each subscription one
    attempt in flight at a time (DeliveryQueue.claim_delivery), so a slow receiver's attempts wait on each
    other and on nothing else: no subscription takes another's place. MAX_IN_FLIGHT bounds the threads of
    one process, not any subscription's share.
    """

    POLL_SECONDS = 0.1
    MAX_IN_FLIGHT = 512

    def __init__(self, store: Store, policy: DeliveryPolicy, headers: Headers, clock: Clock,
                 ids: IdGenerator | None = None, faults: DeliveryFaults | None = None,
                 subject: Callable[[Delivery], str | None] | None = None) -> None:
        self.clock = clock
        """The mock's clock: an attempt's `at` is on it, as the event's created_at is (retries wait real time)."""
        self.store = store
        self.policy = policy
        self.headers = headers
        self.ids = ids or IdGenerator()
        self.faults = faults
        """The delivery fault rules, applied to a delivery when it is first claimed (a step of the deliverer)."""
        self.subject = subject or (lambda delivery: None)
        """The id of the resource a delivery's event speaks of (out-of-order delivery groups by it)."""
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(self.MAX_IN_FLIGHT)

    def start(self) -> None:
        if not self.policy.send:
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._stop.clear()
                self._slots = threading.BoundedSemaphore(self.MAX_IN_FLIGHT)  # a forked worker starts afresh
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
            try:
                ready = self.shaped(delivery)
            except StoreError:  # its lease runs out, and it is claimed (and shaped) again
                ready = False
            if not ready:
                self._slots.release()
                continue
            threading.Thread(target=self._attempt_and_release, args=(delivery,), daemon=True,
                             name="returns-mock-webhook-attempt").start()

    def _attempt_and_release(self, delivery: Delivery) -> None:
        try:
            self.attempt(delivery)
        except StoreError:
            pass  # the outcome could not be saved: the lease runs out and the attempt is made again
        finally:
            self._slots.release()
            self._wake.set()

    def deliver_due(self, send: Send | None = None, limit: int = 10_000) -> list[Delivery]:
        """Attempt every delivery due now, in this thread, one after another (each subscription's in the order
        they are due), and answer them as they ended; with `send`, each attempt goes to it instead of over
        HTTP (and the target policy, which guards the network, does not apply). For tests and fuzzers that
        drive delivery themselves: a mock with `send_webhooks=False` has no background thread taking them."""
        done: list[Delivery] = []
        while len(done) < limit:
            delivery = self.store.claim_delivery(int(time.time() * 1000), self.lease_ms)
            if delivery is None:
                break
            if self.shaped(delivery):
                self.attempt(delivery, send)
                done.append(delivery)
        return done

    def shaped(self, delivery: Delivery) -> bool:
        """A claimed delivery through the fault rules, the first time it is claimed (outside any transaction
        of the provider's, so that a rule's `times` is counted under the settings' own lock): whether to
        attempt it now (else it is held, or queued again behind others, and its lease is released)."""
        if delivery.shaped or self.faults is None:
            return True
        shaping = self.faults.shape(delivery.event_type, delivery.account, delivery.webhook_id)
        delivery.shaped = True  # stored with the attempt's outcome
        if shaping is None:
            return True
        moment = to_millis(parse_instant(delivery.created_at)) if delivery.created_at else to_millis(self.clock.now())
        with self.store.transaction() as tx:
            return self.faults.apply(tx, delivery, shaping, self.subject(delivery), moment,
                                     to_millis(self.clock.now()), int(time.time() * 1000), self.ids)

    def attempt(self, delivery: Delivery, send: Send | None = None) -> None:
        started = time.time()
        record: dict[str, Any] = {"at": self._now(), "status_code": None, "error": None}
        if delivery.fault:
            record["fault"] = delivery.fault
        headers = {"Content-Type": "application/json", **self.headers(delivery)}
        try:
            target = self.policy.target(delivery.url) if send is None else Target()
            if target.blocked is not None:
                delivery.status = "blocked"
                record["error"] = f"{target.blocked}: nothing was sent"
            else:
                status = send(delivery.url, headers, delivery.body) if send is not None else \
                    post(delivery.url, delivery.body, headers, self.policy.timeout_ms / 1000, target.address)
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
        if delivery.status == "delivered" and delivery.replay_after_ms:
            self._replay(delivery)
        self.store.save_delivery(delivery)

    def _replay(self, delivery: Delivery) -> None:
        """Queue the replay of an acknowledged delivery: the same event again, held on the mock's clock."""
        replay = dataclasses.replace(
            delivery, id=self.ids.new("dlv"), status="held", attempts=[], group="", rank=0.0, replay_after_ms=0,
            created_at=self._now(),
            next_at=to_millis(self.clock.now()) + delivery.replay_after_ms,
            fault=f"replay of {delivery.id}, acknowledged at {self._now()}")
        with self.store.transaction() as tx:
            tx.add_delivery(replay)

    def _now(self) -> str:
        try:
            return isoformat(self.clock.now())
        except StoreError:  # the clock lives in a store that is away: the wall clock says when
            return isoformat(datetime.now(UTC))


class TriggerRefused(Exception):
    """A trigger's overrides make an event its schema refuses: the problems, each naming its field."""

    def __init__(self, found: list[Problem]) -> None:
        super().__init__(found[0].message)
        self.problems = found


class Webhooks:
    """A provider's webhook subscriptions (kept with its returns, in their transactions) and their deliveries:
    the events it sends (their shapes from its contract), through the delivery fault step, to the deliverer."""

    def __init__(self, provider: str, store: Store, clock: Clock, ids: IdGenerator, policy: DeliveryPolicy,
                 headers: Headers, faults: DeliveryFaults | None = None) -> None:
        self.store = store
        self.queue = store
        self.clock = clock
        self.ids = ids
        self.policy = policy
        self.faults = faults
        self.events = Events(provider)
        self.deliverer = Deliverer(store, policy, headers, clock, ids, faults,
                                   lambda d: self.events.subject(d.event_type, orjson.loads(d.body)))

    def emit(self, tx: Transaction, account: str, event_type: str, resource: dict[str, Any],
             at: datetime) -> list[Delivery]:
        """Queue `event_type` (it happened at `at`) for every active subscription of the account to it,
        inside the caller's transaction (the delivery faults shape each when the deliverer first claims it)."""
        return self._queue(tx, account, event_type, lambda: self.events.build(
            event_type, resource, self.ids.new(self.events.id_prefix(event_type)), at))

    def _queue(self, tx: Transaction, account: str, event_type: str,
               event: Callable[[], dict[str, Any]]) -> list[Delivery]:
        queued: list[Delivery] = []
        for webhook in tx.webhooks(account):
            if not webhook["active"] or event_type not in webhook["events"]:
                continue
            built = event()
            delivery = Delivery(id=self.ids.new("dlv"), webhook_id=webhook["id"], account=account,
                                event_id=str(built.get("id", "")), event_type=event_type, url=webhook["url"],
                                secret=webhook["secret"], body=orjson.dumps(built), next_at=int(time.time() * 1000),
                                created_at=isoformat(self.clock.now()))
            tx.add_delivery(delivery)
            queued.append(delivery)
        if queued:
            self.deliverer.start()
        return queued

    def trigger(self, event_type: str, record: ReturnRecord, override: dict[str, Any] | None = None) -> list[Delivery]:
        """The event built from a stored return, as the provider's own move would send it (dated when the
        return entered the state it announces, else now), `override` merged in (JSON merge patch) and
        checked against the event's schema, queued for the account's subscriptions to it like any event."""
        moment = self.events.moment_of(event_type, record.resource, record.history)
        at = parse_instant(moment) if moment is not None else self.clock.now()

        def built() -> dict[str, Any]:
            event = self.events.build(event_type, record.resource, self.ids.new(self.events.id_prefix(event_type)), at)
            return merged(event, override) if override else event

        found = self.events.problems(event_type, built(), ("override",)) if override else []
        if found:
            raise TriggerRefused(found)
        with self.store.transaction() as tx:
            return self._queue(tx, record.account, event_type, built)

    def redeliver(self, delivery: Delivery) -> Delivery:
        """A delivery sent again as it was: the same event (id and body) to the same subscription, now, past
        the fault rules."""
        again = dataclasses.replace(delivery, id=self.ids.new("dlv"), status="pending", attempts=[], group="",
                                    rank=0.0, replay_after_ms=0, next_at=int(time.time() * 1000), shaped=True,
                                    created_at=isoformat(self.clock.now()), fault=f"redelivery of {delivery.id}")
        with self.store.transaction() as tx:
            tx.add_delivery(again)
        self.deliverer.start()
        return again


def merged(target: Any, patch: Any) -> Any:
    """JSON merge patch (RFC 7396): objects merged key by key, null removes a key, anything else replaces."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merged(result.get(key), value)
    return result

