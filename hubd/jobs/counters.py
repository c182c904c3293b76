"""Job counters since the hub started, and the fleet's recent rates."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

RATE_WINDOW = 60.0  # seconds the rates in /stats are averaged over


@dataclass
class JobCounters:
    """`served`: answered by a node; `failed`: ended in an error the hub reported to the caller."""

    served: int = 0
    failed: int = 0
    running: int = 0  # jobs the hub is working on now, for MAX_CONCURRENT_JOBS
    started_at: float = field(default_factory=time.monotonic)
    _recent: deque[tuple[float, int]] = field(default_factory=deque)  # (when, tokens) of jobs served

    def served_one(self, tokens: int | None, now: float | None = None) -> None:
        self.served += 1
        now = now if now is not None else time.monotonic()
        self._recent.append((now, tokens or 0))
        self._forget(now)

    def _forget(self, now: float) -> None:
        while self._recent and self._recent[0][0] < now - RATE_WINDOW:
            self._recent.popleft()

    def rates(self, now: float) -> dict[str, float]:
        """Jobs served and tokens generated per second over the last RATE_WINDOW (or since the start)."""
        self._forget(now)
        window = max(1.0, min(RATE_WINDOW, now - self.started_at))
        return {
            "jobs_per_second": round(len(self._recent) / window, 2),
            "tokens_per_second": round(sum(tokens for _, tokens in self._recent) / window, 1),
        }
