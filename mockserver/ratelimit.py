"""3plship rate limits: per API key, over a sliding window, on the mock's clock, shared by all workers.

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

from .clock import Clock, to_millis
from .store import Store

PERIODS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
STANDARD_TIER = "1000/hour"


@dataclass(frozen=True)
class RatePolicy:
    limit: int
    period: str
    enforce: bool

    @property
    def seconds(self) -> int:
        return PERIODS[self.period]

    @classmethod
    def parse(cls, text: str, enforce: bool = True) -> RatePolicy:
        """`1000/hour`, `5000/hour`, `25000/hour`, `10/second`, ..."""
        found = re.fullmatch(r"\s*([0-9]{1,9})\s*/\s*(second|minute|hour|day)s?\s*", text)
        if not found or int(found.group(1)) < 1:
            raise ValueError(f"expected N/PERIOD with PERIOD one of {', '.join(PERIODS)} (e.g. 1000/hour), "
                             f"got {text!r}")
        return cls(int(found.group(1)), found.group(2), enforce)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset: int
    """Unix seconds when the current bucket ends."""
    retry_after: int

    def headers(self) -> dict[str, str]:
        headers = {"X-RateLimit-Limit": str(self.limit), "X-RateLimit-Remaining": str(self.remaining),
                   "X-RateLimit-Reset": str(self.reset)}
        if not self.allowed:
            headers["Retry-After"] = str(self.retry_after)
        return headers


@functools.lru_cache(maxsize=16)
def _policy(raw: str) -> RatePolicy:
    return RatePolicy(**json.loads(raw))


class RateLimiter:
    KEY = "rate_limit"

    def __init__(self, store: Store, clock: Clock, default: RatePolicy | None = None) -> None:
        self.store = store
        self.clock = clock
        self.default = default or RatePolicy.parse(STANDARD_TIER, enforce=False)

    def policy(self) -> RatePolicy:
        raw = self.store.get_setting(self.KEY)
        return _policy(raw) if raw else self.default

    def set_policy(self, policy: RatePolicy) -> None:
        self.store.set_setting(self.KEY, json.dumps(policy.as_json()))

    def hit(self, key: str) -> Decision:
        """Count one request of `key` (unless refused) and say whether it may proceed."""
        policy = self.policy()
        window_ms = policy.seconds * 1000
        now_ms = to_millis(self.clock.now())
        bucket, into = divmod(now_ms, window_ms)
        overlap = 1 - into / window_ms  # how much of the previous bucket is still inside the window

        previous, current, allowed = self.store.count_request(key, bucket, overlap,
                                                              policy.limit if policy.enforce else None)
        used = previous * overlap + current
        reset = (bucket + 1) * policy.seconds
        retry_after = 0
        if not allowed:
            # In whole milliseconds (floats would turn 10 s into 10.000000000004 s, answered as 11).
            if current >= policy.limit:
                # Not before the next bucket, where this bucket's count fades: c * (1 - x/W) < limit.
                fade = -(-window_ms * (current - policy.limit) // current)
                wait_ms = (window_ms - into) + fade + 1
            else:  # the previous bucket's share has to fade: p * (1 - x/W) + c < limit
                fade = -(-window_ms * (previous - policy.limit + current) // previous)
                wait_ms = fade - into + 1
            retry_after = max(1, -(-wait_ms // 1000))
        return Decision(allowed, policy.limit, max(0, policy.limit - math.ceil(used)), reset, retry_after)
