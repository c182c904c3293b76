"""The simulated model: produces tokens at a set rate, loads models, and injects faults."""

from __future__ import annotations

import asyncio
import hashlib
import math
import random
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiohttp import web

from ollama_connector.sim.answers import answer_for
from ollama_connector.sim.behaviour import Behaviour, Fault
from ollama_connector.sim.catalog import Catalog
from ollama_connector.sim.scheduler import Scheduler

WORDS = [
    "The",
    "sky",
    "looks",
    "blue",
    "because",
    "air",
    "molecules",
    "scatter",
    "short",
    "blue",
    "wavelengths",
    "of",
    "sunlight",
    "far",
    "more",
    "than",
    "long",
    "red",
    "ones,",
    "so",
    "blue",
    "light",
    "reaches",
    "the",
    "eye",
    "from",
    "every",
    "direction",
    "while",
    "the",
    "sun",
    "itself",
    "looks",
    "slightly",
    "yellow.",
]


@dataclass
class Stats:
    """Counters a test or an operator can read at GET /_sim/stats."""

    requests: int = 0
    in_flight: int = 0
    completed: int = 0
    cancelled: int = 0
    failed: int = 0  # injected 500s and dropped connections
    pulls: int = 0
    prompt_tokens: int = 0  # of every prompt, cached or not
    prompt_tokens_processed: int = 0  # those not found in a slot's cache or the host cache
    prompt_tokens_restored: int = 0  # those brought back from the host cache

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


class ModelNotFound(Exception):
    pass


class Engine:
    """Token production shared by every inference route of the simulator."""

    def __init__(self, catalog: Catalog, behaviour: Behaviour) -> None:
        self.catalog = catalog
        self.behaviour = behaviour
        self.stats = Stats()
        self.recent: deque[dict] = deque(maxlen=50)  # the last request bodies, for GET /_sim/requests
        self.scheduler = Scheduler(behaviour)
        self.generating = 0  # streams producing tokens now, sharing the node's compute

    def all_stats(self) -> dict[str, int]:
        """GET /_sim/stats: requests, and what the scheduler did."""
        return {
            **self.stats.as_dict(),
            **self.scheduler.stats.__dict__,
            "queue_depth": self.scheduler.queue_depth,
        }

    def token_count(self, options: dict | None, prompt: str = "") -> tuple[int, str]:
        """How many tokens to produce for Ollama's routes, and the done_reason that goes with it."""
        limit = (options or {}).get("num_predict")
        limit = limit if isinstance(limit, int) and not isinstance(limit, bool) and limit >= 0 else None
        count, cut = self.length(prompt, limit)
        return count, "length" if cut else "stop"

    def length(self, prompt: str, limit: int | None, cap: bool = False) -> tuple[int, bool]:
        """Tokens to produce, and whether the limit cut the answer short. A natural answer ends where its
        last sentence does, within `limit`; an exact one (the tests') is `limit` tokens, else default_tokens
        (`cap`: at most `limit`)."""
        if self.behaviour.natural:
            natural = len(answer_for(prompt))
            return (limit, True) if limit is not None and limit < natural else (natural, False)
        if limit is None:
            return self.behaviour.default_tokens, False
        if cap:
            return min(limit, self.behaviour.default_tokens), limit <= self.behaviour.default_tokens
        return limit, True

    async def tokens(
        self, count: int, request: web.Request, fault: Fault, prompt: str = ""
    ) -> AsyncIterator[str]:
        """Yield `count` tokens at the configured rate; a "die" fault drops the connection halfway, a
        "stall" fault goes silent there."""
        rate = self.behaviour.tokens_per_second
        words = answer_for(prompt) if self.behaviour.natural else None
        due = time.monotonic()
        self.generating += 1
        try:
            for i in range(count):
                if fault == "die" and i == count // 2:
                    drop_connection(request)
                    return
                if (
                    fault == "stall" and i == count // 2
                ):  # a wedged runner: the connection stays, nothing comes
                    await self.hang()
                if rate > 0:
                    due += self.token_seconds(rate)
                    if (delay := due - time.monotonic()) > 0:
                        await asyncio.sleep(delay)
                else:
                    await asyncio.sleep(0)
                if words is not None:
                    yield words[i % len(words)]
                else:
                    yield ("" if i == 0 else " ") + WORDS[i % len(WORDS)]
        finally:
            self.generating -= 1

    def token_seconds(self, rate: float) -> float:
        """One stream's time a token while `generating` streams share the node's compute: batching makes
        the node's total grow as the square root of the streams (the shared_compute knob), so each slows as
        sqrt(n)/n of a lone stream (4 at once: each at half speed, twice the total)."""
        n = max(1, self.generating) if self.behaviour.shared_compute else 1
        return math.sqrt(n) / rate

    async def hang(self) -> None:
        await asyncio.Event().wait()


def drop_connection(request: web.Request) -> None:
    """Close the socket under a response, as a crashing server would."""
    if request.transport is not None:
        request.transport.abort()


def embedding(text: str, dimensions: int = 384) -> list[float]:
    """A deterministic, L2-normalised vector for a text."""
    rng = random.Random(hashlib.sha256(text.encode()).digest())
    vector = [rng.gauss(0.0, 1.0) for _ in range(dimensions)]
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [v / norm for v in vector]
