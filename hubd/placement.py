"""Which node runs a job, and when: the routing policy (ROUTING_POLICY), in one place.

`capacity` (the default) routes on what makes an Ollama node fast or slow (reference §8):
1. a node that has the model loaded (with a compatible num_ctx) and a free slot (fewer running jobs for the
   model than its NUM_PARALLEL); among those, the best ranked (hubd.ranking);
2. else a node that can load it without evicting anything (fewer loaded models than MAX_LOADED_MODELS, and
   room in its VRAM when the agent reports it) and is not already loading one (Ollama loads one model at a
   time and queues the rest behind it);
3. else a node that can load it by evicting an idle model (no job running for it);
4. else no node can take it now without queueing it inside Ollama, behind loads or busy slots the hub cannot
   see: the job waits **at the hub**, in arrival order, and goes to the first suitable node that frees
   (QUEUE_MAX jobs and QUEUE_TIMEOUT_SECONDS at most; past either, 503 with Retry-After).
Affinity therefore holds only while a node has free slots: a loaded node never attracts everything.

`least-busy` is the previous policy (fewest active jobs, CPU, failures, least recently used); `round-robin`
takes the nodes that have the model in turn. Neither waits at the hub.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from ollama_connector.hubd.errors import HubError
from ollama_connector.hubd.registry import NodeRecord, Registry
from ollama_connector.shared.modelnames import canonical, display

BUSY = "server busy, please try again.  maximum pending requests exceeded"  # Ollama's own text


@dataclass(eq=False)
class Waiter:
    since: float
    woken: asyncio.Event = field(default_factory=asyncio.Event)


class QueueFull(HubError):
    status = 503


class Placement:
    def __init__(self, registry: Registry, policy: str, queue_max: int, queue_timeout: float) -> None:
        self.registry = registry
        self.policy = policy
        self.queue_max = queue_max
        self.queue_timeout = queue_timeout
        self.waiting = 0
        # Jobs waiting at the hub, per model, in arrival order. A job that ends wakes the first of each model
        # only (not every waiter: with dozens waiting, waking all made each job cost the hub O(waiters)).
        self._waiters: dict[str, deque[Waiter]] = {}
        self._turns: dict[str, itertools.count] = {}
        registry.job_ended.append(self._on_job_ended)

    def _on_job_ended(self) -> None:
        for queue in self._waiters.values():
            for waiter in queue:
                if not waiter.woken.is_set():
                    waiter.woken.set()
                    break

    async def choose(
        self, model: str, num_ctx: int | None, tried: set[str], job_id: str
    ) -> NodeRecord | None:
        """The node to run the job on now; None when no node left to try has the model."""
        pick = self._picker()
        node, anyone = pick(model, num_ctx, tried)
        if node is not None or not anyone or self.policy != "capacity":
            return node
        if self.waiting >= self.queue_max:
            raise QueueFull(BUSY, headers=self._retry(job_id))  # QUEUE_MAX jobs are waiting already
        key = canonical(model)
        waiter = Waiter(time.monotonic())
        queue = self._waiters.setdefault(key, deque())
        queue.append(waiter)
        self.waiting += 1
        deadline = waiter.since + self.queue_timeout
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:  # no node freed within QUEUE_TIMEOUT_SECONDS
                    raise QueueFull(BUSY, headers=self._retry(job_id))
                # Heartbeats change the picture too, so look again at least once a second.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(waiter.woken.wait(), min(remaining, 1.0))
                waiter.woken.clear()
                node, anyone = pick(model, num_ctx, tried)
                if node is not None or not anyone:
                    return node
        finally:
            self.waiting -= 1
            queue.remove(waiter)
            if not queue:
                del self._waiters[key]
            elif waiter.woken.is_set():
                self._on_job_ended()  # it was woken but leaves: pass the turn on

    def queue_view(self, now: float) -> dict:
        """For /stats: jobs waiting at the hub, and how long the oldest has waited, by model."""
        return {
            "waiting": self.waiting,
            "oldest_wait_seconds": {
                display(key): round(now - queue[0].since, 1) for key, queue in sorted(self._waiters.items())
            },
        }

    def _retry(self, job_id: str) -> dict[str, str]:
        return {"Retry-After": str(max(1, round(self.queue_timeout / 4))), "X-Job-Id": job_id}

    def _picker(self) -> Callable[[str, int | None, set[str]], tuple[NodeRecord | None, bool]]:
        return {"capacity": self._by_capacity, "round-robin": self._in_turn}.get(
            self.policy, self._least_busy
        )

    def _least_busy(self, model: str, num_ctx: int | None, tried: set[str]) -> tuple[NodeRecord | None, bool]:
        for node in self.registry.candidates(model):
            if node.node_id not in tried:
                return node, True
        return None, False

    def _in_turn(self, model: str, num_ctx: int | None, tried: set[str]) -> tuple[NodeRecord | None, bool]:
        nodes = sorted(
            (n for n in self.registry.candidates(model) if n.node_id not in tried), key=lambda n: n.node_id
        )
        if not nodes:
            return None, False
        turn = next(self._turns.setdefault(canonical(model), itertools.count()))
        return nodes[turn % len(nodes)], True

    def _by_capacity(
        self, model: str, num_ctx: int | None, tried: set[str]
    ) -> tuple[NodeRecord | None, bool]:
        key = canonical(model)
        can_load = can_evict = None
        anyone = False
        for node in self.registry.candidates(model):  # best ranked first
            if node.node_id in tried:
                continue
            anyone = True
            capacity = self.registry.capacity(node)
            context = node.loaded.get(key, -1)
            if context != -1 and (num_ctx is None or context in (None, num_ctx)):
                if node.running.get(key, 0) < capacity.num_parallel:
                    return node, True  # loaded, with a free slot
                continue
            if node.loading:
                continue  # a load is under way there: another would queue behind it
            if can_load is None and self.registry.fits(node, key):
                can_load = node
            elif can_evict is None and any(not node.running.get(k) for k in node.loaded if k != key):
                can_evict = node
        return can_load or can_evict, anyone
