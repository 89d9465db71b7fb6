"""Webhooks as they really arrive: delivery fault rules, a step of the deliverer as request faults are a
step of the pipeline, reproducible by seed.

A rule (contracts/admin/webhook-fault-rule.json) matches an event by type, subscription and account (all
optional), fires with `probability` and at most `times` times, and shapes that event's delivery to that
subscription:

- `duplicate: k`: delivered k times in all, each time the same event id and body (at-least-once senders do);
- `delay: "PT1H"`: held until the mock's clock has passed the event by that long;
- `out_of_order: true` (or "reverse", "shuffle"): held with the other events of the same resource (its
  `x-identifier`) for the same subscription until `events` of them (default 2) are held, or `window`
  (default PT1M) has passed on the mock's clock since the first; then released newest first, or in a
  seeded random order;
- `replay_after: "PT2H"`: once acknowledged, delivered again that long after, on the mock's clock (a replay
  of an event already acknowledged, same id and body).

Without a rule that fires, an event is delivered once, in order. Rules live in the settings, so every worker
and replica applies the same ones; the draws come from one seeded generator per process (`--deterministic`).
The deliverer (mockserver.domain.webhooks) applies them to a delivery the first time it claims it, outside
any transaction of the provider's: `shape` decides what the rules make of it (counting `times` with the
settings' own lock), `apply` queues it so shaped, `release_order` orders a released group. For a test or a
fuzzer, `Deliverer.deliver_due` delivers what is due, in the caller's thread, to any function.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from mockserver.contract import Problem, contract
from mockserver.domain.clock import parse_duration
from mockserver.domain.faults import Rules, each_rule
from mockserver.domain.ids import IdGenerator
from mockserver.store import Delivery, Settings, Transaction

KEY = "webhook-faults"
ID_KEY = "webhook-fault-ids"
KINDS = ("duplicate", "delay", "out_of_order", "replay_after")
DEFAULT_WINDOW = "PT1M"
DEFAULT_EVENTS = 2


@dataclass
class Shaping:
    """What the fault rules make of one event's delivery to one subscription."""

    copies: int = 1
    hold_ms: int = 0
    order: str | None = None
    """reverse or shuffle: held with the other events of its resource, released reordered."""
    events: int = DEFAULT_EVENTS
    window_ms: int = 60_000
    replay_after_ms: int = 0
    labels: dict[str, str] = field(default_factory=dict)
    """Each fault kind that applies, as the delivery shows it (`duplicate 2 (w1)`)."""


def _millis(duration: str) -> int:
    return parse_duration(duration) // timedelta(milliseconds=1)


def chaos_profile(name: str) -> list[dict[str, Any]]:
    profiles: dict[str, list[dict[str, Any]]] = contract("admin").documents["webhook-chaos.json"]["profiles"]
    return [dict(rule) for rule in profiles[name]]


def chaos_profiles() -> list[str]:
    return sorted(contract("admin").documents["webhook-chaos.json"]["profiles"])


def rule_problems(body: Any, events: Collection[str]) -> list[Problem]:
    """What makes rules (one, or a list) unable ever to fire: an event type the mock never sends."""
    found = []
    for where, rule in each_rule(body):
        name = rule.get("event")
        if name is not None and name not in events:
            found.append(Problem(f"{where}event", f"{where}event: {name!r} is not an event this mock sends: "
                                                  f"{', '.join(events)}", "body", tuple(events)))
        for key in ("delay", "window", "replay_after"):
            # The schema's pattern lets "P", "PT" and "P1DT" through, and a length past any date range: refused
            # here, named, rather than raising in the deliverer when the rule first shapes a delivery.
            if key not in rule:
                continue
            try:
                length = parse_duration(rule[key])
            except ValueError as exc:
                found.append(Problem(f"{where}{key}", f"{where}{key}: {exc}", "body"))
                continue
            if key == "window" and length.total_seconds() <= 0:
                found.append(Problem(f"{where}window", f"{where}window: give a positive duration such as PT1M",
                                     "body"))
    return found


class DeliveryFaults(Rules):
    """The delivery fault rules of a mock, and the seeded draws that decide which fire."""

    def __init__(self, store: Settings, rng: random.Random) -> None:
        super().__init__(store, KEY, ID_KEY, "w", rng)

    def shape(self, event_type: str, account: str, subscription: str) -> Shaping | None:
        """What the rules make of this event's delivery to this subscription (None: delivered once, as is).
        For each kind of fault, the first rule that fires applies; a rule with `times` counts once."""
        if self._set() is None:
            return None
        rules = self.rules()
        fired: dict[str, dict[str, Any]] = {}
        with self._lock:  # one sequence of draws per process, so --deterministic runs repeat
            for rule in rules:
                if _matches(rule, event_type, account, subscription) and \
                        self.rng.random() < float(rule.get("probability", 1)):
                    for kind in KINDS:
                        if kind in rule:
                            fired.setdefault(kind, rule)
        counted = [rule["id"] for rule in {r["id"]: r for r in fired.values()}.values() if "times" in rule]
        if counted:
            applied = self.spend(counted)
            fired = {kind: rule for kind, rule in fired.items() if "times" not in rule or rule["id"] in applied}
        if not fired:
            return None
        shaping = Shaping()
        for kind, rule in fired.items():
            value = rule[kind]
            if kind == "duplicate":
                shaping.copies = int(value)
                shaping.labels[kind] = f"duplicate x{value} ({rule['id']})"
            elif kind == "delay":
                shaping.hold_ms = _millis(value)
                shaping.labels[kind] = f"delay {value} ({rule['id']})"
            elif kind == "out_of_order":
                shaping.order = "reverse" if value is True else str(value)
                shaping.events = int(rule.get("events", DEFAULT_EVENTS))
                shaping.window_ms = _millis(rule.get("window", DEFAULT_WINDOW))
                shaping.labels[kind] = f"out of order: {shaping.order} ({rule['id']})"
            else:
                shaping.replay_after_ms = _millis(value)
                shaping.labels[kind] = f"replay after {value} ({rule['id']})"
        return shaping

    def apply(self, tx: Transaction, delivery: Delivery, shaping: Shaping, subject: str | None, moment_ms: int,
              clock_ms: int, now_ms: int, ids: IdGenerator) -> bool:
        """Shape, in `tx`, a delivery claimed for the first time (stored, and leased to the caller) as `shaping`
        says: its copies queued after it, itself held (a delay, or with its out-of-order group) or released
        with its group. Answers whether it is to be attempted now (then it stays leased and unchanged in the
        store: the attempt saves it). `subject`: the id of the resource the event speaks of; `moment_ms`:
        when the event happened, `clock_ms` the mock's clock now (both on the mock's clock); `now_ms`: real
        time."""
        copies = [dataclasses.replace(delivery, id=ids.new("dlv"), attempts=[]) for _ in range(shaping.copies - 1)]
        now = True
        for number, item in enumerate([delivery, *copies], 1):
            labels = [label if kind != "duplicate" else f"{label}: copy {number} of {shaping.copies}"
                      for kind, label in shaping.labels.items()]
            item.fault, item.shaped, item.replay_after_ms = "; ".join(labels), True, shaping.replay_after_ms
            hold = moment_ms + shaping.hold_ms
            if shaping.hold_ms and hold > clock_ms:
                item.status, item.next_at = "held", hold
            if shaping.order is not None and subject is not None:
                group = self._join(tx, item, shaping, f"{item.webhook_id}|{subject}", max(hold, moment_ms))
                if group:  # complete: released at once, reordered, behind what is queued
                    for member in group:
                        member.status, member.next_at = "pending", now_ms
                    tx.requeue(group)
                    now = now and delivery.id not in {m.id for m in group}
                    continue
            if item is not delivery:
                tx.add_delivery(item)
            elif item.status == "held":
                tx.update_delivery(item)
                now = False
        return now

    def _join(self, tx: Transaction, delivery: Delivery, shaping: Shaping, group: str, start_ms: int) -> list[Delivery]:
        """Hold a delivery with its group (opened now if there is none, until `window` after `start_ms`): the
        group, ordered, if it is now as large as the rule says, else nothing (the caller stores it held)."""
        members = tx.held(group)
        delivery.status, delivery.group = "held", group
        delivery.next_at = members[0].next_at if members else start_ms + shaping.window_ms
        with self._lock:
            delivery.rank = -len(members) if shaping.order == "reverse" else self.rng.random()
        if len(members) + 1 < shaping.events:
            return []
        return self.release_order([*members, delivery])

    @staticmethod
    def release_order(held: list[Delivery]) -> list[Delivery]:
        """Held deliveries in the order they are released: each out-of-order group together, by rank (and
        labelled with its place), the others as they were queued."""
        ordered: list[Delivery] = []
        done: set[str] = set()
        for delivery in held:
            if not delivery.group:
                ordered.append(delivery)
            elif delivery.group not in done:
                done.add(delivery.group)
                group = sorted((d for d in held if d.group == delivery.group), key=lambda d: d.rank)
                for place, member in enumerate(group, 1):
                    member.fault += f", released {place} of {len(group)}"
                ordered += group
        return ordered


def _matches(rule: dict[str, Any], event_type: str, account: str, subscription: str) -> bool:
    return (rule.get("event") in (None, event_type) and rule.get("account") in (None, account)
            and rule.get("subscription") in (None, subscription))
