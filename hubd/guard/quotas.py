"""Each named key's own limits (`ollama-hubd keys add --rpm --concurrency --tokens-per-day`): past one, 429
with Retry-After in the route's own dialect, saying which limit. Requests a minute are a token bucket per key;
tokens a day are the prompt and output tokens of the key's jobs (Ollama's counts) over a rolling 24 hours,
learned as jobs end (the quotas watch the ledger) and, at start, from the journal; jobs at once are counted by
the ledger, which asks `concurrency_of` at each job's admission.
"""

from __future__ import annotations

import math
import time
from collections import deque
from typing import Any

from ollama_connector.hubd.errors import HubError
from ollama_connector.hubd.guard.buckets import Buckets
from ollama_connector.hubd.guard.keyring import Key

DAY = 24 * 3600.0


class TooMuch(HubError):
    """A key past one of its limits: 429, with when to retry."""

    status = 429

    def __init__(self, limit: str, retry: float) -> None:
        seconds = max(1, math.ceil(retry))
        super().__init__(
            f"this key's limit: {limit}; retry in {seconds} s", headers={"Retry-After": str(seconds)}
        )


class Quotas:
    def __init__(self) -> None:
        self._minute: dict[str, Buckets] = {}  # by key name, made for its rpm
        self._tokens: dict[str, deque[tuple[float, int]]] = {}  # by key name: (ended, tokens) of its jobs
        self._sums: dict[str, int] = {}

    def take_request(self, key: Key, now: float | None = None) -> None:
        if not key.rpm:
            return
        buckets = self._minute.get(key.name)
        if buckets is None or buckets.capacity != key.rpm:  # a new key, or its limit changed
            buckets = self._minute[key.name] = Buckets(key.rpm, key.rpm)
        allowed, _, wait = buckets.take(key.caller_id, now)
        if not allowed:
            raise TooMuch(f"{key.rpm} requests a minute", wait)

    def check_tokens(self, key: Key, now: float | None = None) -> None:
        """Refused while the key's jobs of the last 24 hours used its tokens a day."""
        if not key.tokens_per_day:
            return
        now = time.time() if now is None else now
        used = self.tokens_used(key.name, now)
        if used < key.tokens_per_day:
            return
        over, retry = used - key.tokens_per_day, DAY
        for ended, tokens in self._tokens[key.name]:  # oldest first: when enough of them leave the window
            over -= tokens
            if over < 0:
                retry = ended + DAY - now
                break
        raise TooMuch(f"{key.tokens_per_day} tokens a day (prompt and output, over the last 24 hours)", retry)

    def tokens_used(self, name: str, now: float | None = None) -> int:
        now = time.time() if now is None else now
        spent = self._tokens.get(name)
        while spent and spent[0][0] <= now - DAY:
            self._sums[name] -= spent.popleft()[1]
        return self._sums.get(name, 0)

    def spent(self, name: str, ended: float, tokens: int) -> None:
        if tokens > 0:
            self._tokens.setdefault(name, deque()).append((ended, tokens))
            self._sums[name] = self._sums.get(name, 0) + tokens

    # The ledger's watcher: tokens are counted as jobs end.

    def queued(self, record: Any) -> None:
        pass

    def failed_over(self, reason: str) -> None:
        pass

    def job_ended(self, record: Any) -> None:
        if record.key:
            tokens = (record.prompt_tokens or 0) + (record.output_tokens or 0)
            self.spent(record.key, record.ended or time.time(), tokens)
