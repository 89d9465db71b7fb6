"""The mock's clock. Provider cores read time only from a Clock, never from datetime.now().

Time-based rules (35up expiry, 3plship refund completion) are evaluated against it, so tests and the
control plane can move time and see the rules apply at once.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    """Real time, optionally shifted by an offset."""

    def __init__(self, offset: timedelta = timedelta(0)) -> None:
        self.offset = offset

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset


class FrozenClock:
    """Time that only moves when told to: for tests and reproducible runs."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = (start or datetime.now(UTC)).astimezone(UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> datetime:
        with self._lock:
            self._now += delta
            return self._now

    def set(self, moment: datetime) -> datetime:
        with self._lock:
            self._now = moment.astimezone(UTC)
            return self._now


def isoformat(moment: datetime) -> str:
    """2025-01-15T14:30:00.000Z: UTC, milliseconds, as the providers write instants."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def to_millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def from_millis(millis: int) -> datetime:
    return datetime.fromtimestamp(millis / 1000, UTC)


def add_business_days(moment: datetime, days: int) -> datetime:
    """`days` business days (Monday to Friday; no holidays) after `moment`, same time of day."""
    remaining = days
    current = moment
    while remaining > 0:
        current += timedelta(days=1)
        if current.weekday() < 5:
            remaining -= 1
    return current
