"""Replicas that follow demand: a copy of a model loaded ahead of need, when its jobs would wait longer at the
hub than a load takes.

When a job of a model has to wait at the hub (every loaded slot busy), the capacity policy's figures say
how many slots the model needs: its jobs a second (hubd.routing.policy.Demand) times their job time. When
that is more than its loaded copies have, and the jobs waiting would wait longer than a load of it takes on a
node that lists it and can load it beside what it has loaded, the hub loads a copy there with an empty
request, as Ollama's clients preload. No model is unloaded for it (so none with jobs waiting), one copy of a
model loads at a time, and the waiting jobs keep waiting for whichever slot frees first. A copy that goes
unused leaves by its node's own keep-alive.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from ollama_connector.hubd.routing.node import NodeRecord
from ollama_connector.hubd.routing.policy import CapacityPolicy
from ollama_connector.shared.modelnames import display

log = logging.getLogger(__name__)
Load = Callable[[NodeRecord, str, int | None], Awaitable[bool]]  # the node, the model, its num_ctx: loaded?
EVERY = 1.0  # seconds between two looks at one model


class Replicas:
    def __init__(self, policy: CapacityPolicy) -> None:
        self.policy = policy
        self.load: Load | None = None  # set once the hub can call its nodes (hubd.app)
        self.loaded = 0  # copies loaded ahead of need, for /stats
        self._next: dict[str, float] = {}
        self._tasks: set[asyncio.Task] = set()

    def consider(self, key: str, num_ctx: int | None, waiting: int) -> None:
        """`waiting` jobs of the model wait at the hub: load another copy if that is the quicker way."""
        registry, now = self.policy.registry, time.monotonic()
        if self.load is None or now < self._next.get(key, 0.0):
            return
        self._next[key] = now + EVERY
        if len(self._next) > 4 * len(registry.known_models()) + 64:  # bounded by the models the fleet has
            self._next = {k: v for k, v in self._next.items() if v > now}
        holders = registry.holders(key)
        if any(key in node.loading for node in holders):
            return  # one load at a time: its slots come first
        slots = sum(n.capacity.num_parallel for n in registry.candidates(key) if n.compatible(key, num_ctx))
        job = self.policy.speeds.job(key)
        if self.policy.demand.rate((key, num_ctx), now) * job <= slots:
            return  # the loaded slots keep up with what is asked
        room = [n for n in registry.candidates(key) if key not in n.loaded and n.fits(key)]
        if not room:
            return
        node = min(room, key=lambda n: (self.policy.load_seconds(n, key), n.active_jobs))
        if (waiting + 1) * job / max(1, slots) <= self.policy.load_seconds(node, key):
            return  # the jobs waiting would be served before a copy could load
        node.expect_load(key, num_ctx)
        task = asyncio.create_task(self._load(node, key, num_ctx, slots))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _load(self, node: NodeRecord, key: str, num_ctx: int | None, slots: int) -> None:
        assert self.load is not None
        ok = False
        try:
            ok = await self.load(node, key, num_ctx)
        finally:
            node.loading.discard(key)
            if not ok and key in node.loaded and not node.busy(key):
                del node.loaded[key]  # the next heartbeat says what is there
        if ok:
            self.loaded += 1
            log.info(
                "loaded a copy of %s on %s ahead of need (%d slots were loaded)",
                display(key),
                node.node_id,
                slots,
            )
        else:
            log.info("could not load a copy of %s on %s ahead of need", display(key), node.node_id)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
