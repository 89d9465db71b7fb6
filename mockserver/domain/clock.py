"""The mock's clock. Provider cores read time only from a Clock, never from datetime.now().

Time-based rules (35up expiry, 3plship refund completion) are evaluated against it, so tests and the
control plane can move time and see the rules apply at once.
"""

from __future__ import annotations

import functools
import json
import re
import threading
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...


class ControllableClock(Clock, Protocol):
    """A clock the control plane can move: `real` time (shifted by advance/set) or `frozen`."""

    @property
    def mode(self) -> str: ...

    def advance(self, delta: timedelta) -> datetime: ...

    def set(self, moment: datetime) -> datetime: ...


class FrozenClock:
    """Time that only moves when told to: for tests and reproducible runs."""

    mode = "frozen"

    def __init__(self, start: datetime | None = None) -> None:
        self._now = (start or datetime.now(UTC)).astimezone(UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> datetime:
        with self._lock:
            self._now = shifted(self._now, delta)
            return self._now

    def set(self, moment: datetime) -> datetime:
        with self._lock:
            self._now = in_range(moment.astimezone(UTC))
            return self._now


class StoreClock:
    """The clock of a served mock, kept in the store so that every worker process reads the same time.

    State: {"mode": "real", "offset_ms": N} (real time shifted by N ms) or {"mode": "frozen", "at": ms}.
    """

    KEY = "clock"

    def __init__(self, store: SettingsStore) -> None:
        self._store = store

    def _state(self) -> dict[str, Any]:
        return _parsed(self._store.get_setting(self.KEY) or '{"mode": "real", "offset_ms": 0}')

    def ensure(self, mode: str, start: datetime | None = None) -> None:
        """Set the clock's mode and start unless the store already has a clock (a worker joining a server)."""
        if self._store.get_setting(self.KEY) is None:
            self.reset(mode, start)

    def reset(self, mode: str, start: datetime | None = None) -> None:
        if mode == "frozen":
            at = start or datetime.now(UTC)
            self._store.set_setting(self.KEY, json.dumps({"mode": "frozen", "at": to_millis(at)}))
        else:
            offset = to_millis(start) - to_millis(datetime.now(UTC)) if start else 0
            self._store.set_setting(self.KEY, json.dumps({"mode": "real", "offset_ms": offset}))

    @property
    def mode(self) -> str:
        return str(self._state()["mode"])

    def now(self) -> datetime:
        state = self._state()
        if state["mode"] == "frozen":
            return from_millis(int(state["at"]))
        return datetime.now(UTC) + timedelta(milliseconds=int(state["offset_ms"]))

    def advance(self, delta: timedelta) -> datetime:
        return self.set(shifted(self.now(), delta))

    def set(self, moment: datetime) -> datetime:
        self.reset(self.mode, in_range(moment))
        return self.now()


@functools.lru_cache(maxsize=64)
def _parsed(raw: str) -> dict[str, Any]:
    """Settings are read on every request and change rarely: parse each distinct value once."""
    parsed: dict[str, Any] = json.loads(raw)
    return parsed


class SettingsStore(Protocol):
    def get_setting(self, key: str) -> str | None: ...

    def set_setting(self, key: str, value: str) -> None: ...


_DURATION = re.compile(r"(-)?P(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?")


def parse_duration(text: str) -> timedelta:
    """ISO-8601 durations in weeks, days, hours, minutes and seconds (P10D, PT36H, -P1DT2H30M, P2W).

    Years and months are refused: their length depends on the date they start from."""
    found = _DURATION.fullmatch(text.strip())
    if not found or text.strip() in ("P", "-P", "PT", "-PT") or text.strip().endswith("T"):
        raise ValueError(f"{text!r} is not an ISO-8601 duration in weeks, days, hours, minutes or seconds "
                         "(e.g. P10D, PT36H, -PT1S)")
    sign, weeks, days, hours, minutes, seconds = found.groups()
    try:
        delta = timedelta(weeks=int(weeks or 0), days=int(days or 0), hours=int(hours or 0),
                          minutes=int(minutes or 0), seconds=float(seconds or 0))
    except OverflowError:
        raise ValueError(f"{text!r} is longer than any date range") from None
    return -delta if sign else delta


def isoformat(moment: datetime) -> str:
    """2025-01-15T14:30:00.000Z: UTC, milliseconds, as the providers write instants."""
    # Not strftime: its %Y does not pad years before 1000 to four digits, which RFC 3339 requires.
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def parse_instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND = timedelta(milliseconds=1)


def to_millis(moment: datetime) -> int:
    # Integer arithmetic: through a float timestamp, 1 in 150 instants of 1970-2200 came out 1 ms early.
    if moment.tzinfo is None:  # a naive time from a clock given in code: local time, as timestamp() has it
        moment = moment.astimezone(UTC)
    return (moment - EPOCH) // _MILLISECOND


def from_millis(millis: int) -> datetime:
    return EPOCH + millis * _MILLISECOND


EARLIEST = EPOCH
LATEST = datetime(9000, 1, 1, tzinfo=UTC)
"""The mock's clock stays in [EARLIEST, LATEST) (inferred; the providers say nothing): rate-limit resets
are Unix seconds, and deadlines computed from the clock must stay within what a date can express."""


def in_range(moment: datetime) -> datetime:
    """`moment`, if the mock's clock may show it; ValueError saying the range otherwise."""
    if not EARLIEST <= moment < LATEST:
        raise ValueError(f"{isoformat(moment)} is outside the mock clock's range: from {isoformat(EARLIEST)} "
                         f"to before {isoformat(LATEST)}")
    return moment


def shifted(moment: datetime, delta: timedelta) -> datetime:
    """`moment + delta` within the clock's range; ValueError otherwise."""
    try:
        return in_range(moment + delta)
    except OverflowError:
        raise ValueError(f"moving the clock by {delta} leaves the range of dates") from None


def add_business_days(moment: datetime, days: int) -> datetime:
    """`days` business days (Monday to Friday; no holidays) after `moment`, same time of day."""
    remaining = days
    current = moment
    while remaining > 0:
        current += timedelta(days=1)
        if current.weekday() < 5:
            remaining -= 1
    return current
