"""Job counters since the hub started."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class JobCounters:
    """`served`: answered by a node; `failed`: ended in an error the hub reported to the caller."""

    served: int = 0
    failed: int = 0
    running: int = 0  # jobs the hub is working on now, for MAX_CONCURRENT_JOBS
    started_at: float = field(default_factory=time.monotonic)
