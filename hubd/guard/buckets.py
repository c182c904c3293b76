"""Token buckets, one per caller, for hubd.guard.ratelimit."""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass

MAX_CALLERS = 10_000  # buckets kept; the least recently seen goes first (it comes back full)


@dataclass
class Bucket:
    tokens: float
    updated: float


class Buckets:
    """One bucket per caller, in a bounded LRU, so a flood of addresses cannot grow memory without end."""

    def __init__(self, per_minute: int, burst: int) -> None:
        self.rate = per_minute / 60.0
        self.capacity = float(burst)
        self._buckets: OrderedDict[str, Bucket] = OrderedDict()

    def wait(self, caller: str, now: float | None = None) -> float:
        """Seconds until the caller's bucket holds a token again (0: it holds one now); nothing is taken."""
        bucket = self._buckets.get(caller)
        if bucket is None:
            return 0.0
        now = time.monotonic() if now is None else now
        tokens = min(self.capacity, bucket.tokens + (now - bucket.updated) * self.rate)
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate

    def take(self, caller: str, now: float | None = None) -> tuple[bool, float, float]:
        """Take a token: (allowed, tokens left, seconds until the next token when refused)."""
        now = time.monotonic() if now is None else now
        bucket = self._buckets.pop(caller, None) or Bucket(self.capacity, now)
        bucket.tokens = min(self.capacity, bucket.tokens + (now - bucket.updated) * self.rate)
        bucket.updated = now
        self._buckets[caller] = bucket
        while len(self._buckets) > MAX_CALLERS:
            self._buckets.popitem(last=False)
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return True, bucket.tokens, 0.0
        return False, bucket.tokens, (1.0 - bucket.tokens) / self.rate

    def seconds_to_full(self, tokens: float) -> float:
        return (self.capacity - tokens) / self.rate
