"""Rate limits: per API key, over one or more sliding windows, on the mock's clock, shared by all workers.

The window is the usual sliding-window counter: the count of the current fixed bucket plus the
previous bucket's count weighted by how much of it still overlaps the window. Counts live in the
store, so every worker process sees the same ones. Refused requests are not counted.
"""

from __future__ import annotations

import functools
import json
import math
import re
from dataclasses import asdict, dataclass
from typing import Any

from mockserver.domain.clock import Clock, to_millis
from mockserver.store import RateCounters, Settings, Window

PERIODS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
STANDARD_TIER = "1000/hour"


@dataclass(frozen=True)
class RateWindow:
    limit: int
    period: str

    @property
    def seconds(self) -> int:
        return PERIODS[self.period]


_WINDOW = re.compile(r"\s*([0-9]{1,9})\s*/\s*(second|minute|hour|day)s?\s*")


@dataclass(frozen=True)
class RatePolicy:
    """Limits per API key over one or more sliding windows at once (3plship tracks per minute, per hour
    and per day). A request is refused when any window is full, and then counts in none."""

    windows: tuple[RateWindow, ...]
    enforce: bool

    @classmethod
    def parse(cls, text: str, enforce: bool = True) -> RatePolicy:
        """`1000/hour`, or several windows: `100/minute,5000/hour,50000/day`."""
        windows = []
        for part in text.split(","):
            found = _WINDOW.fullmatch(part)
            if not found or int(found.group(1)) < 1:
                raise ValueError(f"expected N/PERIOD with PERIOD one of {', '.join(PERIODS)} (e.g. 1000/hour; "
                                 f"several windows: 100/minute,1000/hour), got {part.strip()!r}")
            windows.append(RateWindow(int(found.group(1)), found.group(2)))
        return cls.of(windows, enforce)

    @classmethod
    def of(cls, windows: list[RateWindow], enforce: bool = True) -> RatePolicy:
        periods = [w.period for w in windows]
        twice = sorted({p for p in periods if periods.count(p) > 1})
        if twice:
            raise ValueError(f"one limit per period: {', '.join(twice)} is given more than once")
        return cls(tuple(sorted(windows, key=lambda w: w.seconds)), enforce)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RatePolicy:
        """contracts/admin/rate-limit.json: {windows: [{limit, period}...]} or one window {limit, period}."""
        raw = data.get("windows", [data])
        return cls.of([RateWindow(int(w["limit"]), str(w["period"])) for w in raw], bool(data.get("enforce", True)))

    def as_json(self) -> dict[str, Any]:
        return {"windows": [asdict(w) for w in self.windows], "enforce": self.enforce}

    def describe(self) -> str:
        return ", ".join(f"{w.limit} per {w.period}" for w in self.windows)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset: int
    """Unix seconds when the current bucket ends."""
    retry_after: int
    period: str
    """The window these figures are of."""

    def headers(self) -> dict[str, str]:
        headers = {"X-RateLimit-Limit": str(self.limit), "X-RateLimit-Remaining": str(self.remaining),
                   "X-RateLimit-Reset": str(self.reset)}
        if not self.allowed:
            headers["Retry-After"] = str(self.retry_after)
        return headers


@functools.lru_cache(maxsize=16)
def _policy(raw: str) -> RatePolicy:
    return RatePolicy.from_json(json.loads(raw))


class RateLimiter:
    KEY = "rate_limit"

    def __init__(self, counters: RateCounters, settings: Settings, clock: Clock,
                 default: RatePolicy | None = None) -> None:
        self.counters = counters
        self.settings = settings
        self.clock = clock
        self.default = default or RatePolicy.parse(STANDARD_TIER, enforce=False)

    def policy(self) -> RatePolicy:
        raw = self.settings.get_setting(self.KEY)
        return _policy(raw) if raw else self.default

    def set_policy(self, policy: RatePolicy) -> None:
        self.settings.set_setting(self.KEY, json.dumps(policy.as_json()))

    def hit(self, key: str) -> Decision:
        """Count one request of `key` in every window (unless refused) and say whether it may proceed.

        The headers describe one window: a refusing one (the longest wait) or, when admitted, the one
        closest to its limit (the fewest remaining; on a tie the longer window, which resets later)."""
        return self._decide(key, count=True)

    def peek(self, key: str) -> Decision:
        """The figures `hit` would answer for an admitted request, counting nothing (the headers of an
        answer that does not count: an injected fault, a body that never arrived)."""
        return self._decide(key, count=False)

    def _decide(self, key: str, count: bool) -> Decision:
        policy = self.policy()
        now_ms = to_millis(self.clock.now())
        placed = []
        for window in policy.windows:
            window_ms = window.seconds * 1000
            bucket, into = divmod(now_ms, window_ms)
            # how much of the previous bucket is still inside the window
            placed.append((window, window_ms, bucket, into, 1 - into / window_ms))
        # A limit of 0 admits nothing, so the store counts nothing and answers the counts as they are.
        counts, admitted = self.counters.count_requests([
            Window(f"{key}|{window.seconds}", bucket, overlap,
                   (window.limit if policy.enforce else None) if count else 0, window_ms)
            for window, window_ms, bucket, _, overlap in placed])
        if not count:
            admitted = True
        decisions = []
        for (window, window_ms, bucket, into, overlap), (previous, current) in zip(placed, counts, strict=True):
            used = previous * overlap + current
            full = policy.enforce and not admitted and used >= window.limit
            retry_after = _retry_after(window.limit, window_ms, into, previous, current) if full else 0
            decisions.append(Decision(not full, window.limit, max(0, window.limit - math.ceil(used)),
                                      (bucket + 1) * window.seconds, retry_after, window.period))
        if not admitted:
            return max((d for d in decisions if not d.allowed), key=lambda d: d.retry_after)
        return min(decisions, key=lambda d: (d.remaining, -PERIODS[d.period]))


def _retry_after(limit: int, window_ms: int, into: int, previous: int, current: int) -> int:
    """Whole seconds until one more request fits this window (in milliseconds first: floats would turn
    10 s into 10.000000000004 s, answered as 11)."""
    if current >= limit:
        # Not before the next bucket, where this bucket's count fades: c * (1 - x/W) < limit.
        fade = -(-window_ms * (current - limit) // current)
        wait_ms = (window_ms - into) + fade + 1
    else:  # the previous bucket's share has to fade: p * (1 - x/W) + c < limit
        fade = -(-window_ms * (previous - limit + current) // previous)
        wait_ms = fade - into + 1
    return max(1, -(-wait_ms // 1000))
