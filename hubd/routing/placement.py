"""Which node runs a job, and when (ROUTING_POLICY), and the hub's queue of jobs waiting for a node.

`capacity` (the default) asks hubd.routing.policy for the cheapest option, and while jobs wait, loads a copy
of their model ahead of need where that is quicker (hubd.routing.replicas). When that is to wait for a busy
slot, or no node can take the job now without queueing it inside Ollama, the job waits **at the hub**: per
model and context, in arrival order per caller and callers in turn (hubd.routing.waitqueue). Only the job
whose turn it is asks the policy again, when any job ends, when the job before it leaves, and at least once a
second (heartbeats change the picture). QUEUE_MAX jobs wait at most, each QUEUE_TIMEOUT_SECONDS at most; past
either, 503 with Retry-After estimated from the queue. A caller who hangs up leaves the queue at once.

`least-busy` is the hub's previous policy (fewest active jobs, CPU, failures, least recently used);
`round-robin` takes the nodes that have the model in turn; `affinity` is least-busy with fixed bonuses for
the node of a conversation and of a long system prompt (hubd.routing.affinity), for comparison. None of
them waits at the hub.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import time
from collections import OrderedDict

from ollama_connector.hubd.errors import HubError
from ollama_connector.hubd.routing.affinity import affinity
from ollama_connector.hubd.routing.node import NodeRecord
from ollama_connector.hubd.routing.policy import Ask, CapacityPolicy, Demand
from ollama_connector.hubd.routing.prefixes import Prompt
from ollama_connector.hubd.routing.registry import Registry
from ollama_connector.hubd.routing.replicas import Replicas
from ollama_connector.hubd.routing.speeds import FleetSpeeds
from ollama_connector.hubd.routing.waitqueue import ModelQueue, Waiter
from ollama_connector.shared.modelnames import canonical, display

BUSY = "server busy, please try again.  maximum pending requests exceeded"  # Ollama's own text
MAX_SESSIONS = 10_000  # conversations remembered for sticky routing, least recently used dropped first

QueueKey = tuple[str, int | None]  # canonical model name, num_ctx


class QueueFull(HubError):
    status = 503


class Placement:
    def __init__(
        self,
        registry: Registry,
        policy: str,
        queue_max: int,
        queue_timeout: float,
        sticky_sessions: bool = True,
    ) -> None:
        self.registry = registry
        self.policy = policy
        self.queue_max = queue_max
        self.queue_timeout = queue_timeout
        self.sticky_sessions = sticky_sessions
        self.speeds = FleetSpeeds()
        self.demand = Demand()
        self.capacity = CapacityPolicy(registry, self.speeds, self.demand)
        self.replicas = Replicas(self.capacity)  # copies loaded ahead of need (hubd.routing.replicas)
        self.waiting = 0
        self._queues: dict[QueueKey, ModelQueue] = {}
        self._sessions: OrderedDict[str, str] = OrderedDict()  # session key: the node that served it last
        self._turns: dict[str, itertools.count] = {}
        registry.job_ended.append(self._wake_heads)

    def _wake_heads(self) -> None:
        """A slot may have freed: the job whose turn it is, for each model, looks again."""
        for queue in self._queues.values():
            if (head := queue.head()) is not None:
                head.woken.set()

    async def choose(
        self,
        model: str,
        num_ctx: int | None,
        tried: set[str],
        job_id: str,
        caller: str = "",
        session: str | None = None,
        larger_context_ok: bool = False,
        prompt: Prompt | None = None,
    ) -> NodeRecord | None:
        """The node to run the job on now; None when no node left to try has the model."""
        if self.policy == "least-busy":
            return self._least_busy(model, tried)
        if self.policy == "round-robin":
            return self._in_turn(model, tried)
        session_node = self._sessions.get(session) if session else None
        if self.policy == "affinity":
            return self._assigned(affinity(self.registry, model, tried, session_node, prompt), session)
        key = canonical(model)
        if not tried:
            self.demand.note((key, num_ctx), time.monotonic())
        ask = Ask(key, num_ctx, larger_context_ok, session_node=session_node, prompt=prompt)
        queue_key = (key, num_ctx)
        queue = self._queues.get(queue_key)
        if not queue:  # nobody waiting for it: no turn to take
            option = self.capacity.choose(ask, tried)
            if option is None or option.node is not None:
                return self._assigned(option.node if option else None, session)
        if self.waiting >= self.queue_max:
            raise QueueFull(BUSY, headers=self._retry(queue_key, job_id))  # QUEUE_MAX jobs wait already
        queue = self._queues.setdefault(queue_key, ModelQueue())
        waiter = Waiter(caller)
        queue.add(waiter)
        self.waiting += 1
        deadline = waiter.since + self.queue_timeout
        served = False
        try:
            while True:
                if queue.head() is waiter:
                    ask.ahead = len(queue) - 1  # the whole queue's wait decides whether to load elsewhere
                    option = self.capacity.choose(ask, tried)
                    if option is None or option.node is not None:
                        served = True
                        return self._assigned(option.node if option else None, session)
                    self.replicas.consider(key, num_ctx, len(queue))
                remaining = deadline - time.monotonic()
                if remaining <= 0:  # no node freed within QUEUE_TIMEOUT_SECONDS
                    raise QueueFull(BUSY, headers=self._retry(queue_key, job_id))
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(remaining, 1.0)):  # no task per wait, as wait_for makes
                        await waiter.woken.wait()
                waiter.woken.clear()
        finally:
            self.waiting -= 1
            queue.remove(waiter, served)
            if not queue:
                del self._queues[queue_key]
            elif (head := queue.head()) is not None:
                head.woken.set()  # its turn now: it may not have to wait at all

    def _assigned(self, node: NodeRecord | None, session: str | None) -> NodeRecord | None:
        if node is not None and session and self.sticky_sessions:
            self._sessions[session] = node.node_id
            self._sessions.move_to_end(session)
            if len(self._sessions) > MAX_SESSIONS:
                self._sessions.popitem(last=False)
        return node

    def queue_view(self, now: float) -> dict:
        """For /stats: jobs waiting at the hub, and how long the oldest has waited, by model."""
        oldest: dict[str, float] = {}
        depth: dict[str, int] = {}
        for (key, _), queue in self._queues.items():
            name = display(key)
            oldest[name] = max(oldest.get(name, 0.0), round(now - queue.oldest(), 1))
            depth[name] = depth.get(name, 0) + len(queue)
        return {
            "waiting": self.waiting,
            "by_model": dict(sorted(depth.items())),
            "oldest_wait_seconds": dict(sorted(oldest.items())),
            "copies_loaded_ahead": self.replicas.loaded,  # replicas of waiting models (hubd.routing.replicas)
        }

    def _retry(self, queue_key: QueueKey, job_id: str) -> dict[str, str]:
        """Retry-After: how long the jobs already waiting for the model should take to start."""
        key = queue_key[0]
        slots = sum(
            node.capacity.num_parallel for node in self.registry.candidates(key) if key in node.loaded
        )
        queue = self._queues.get(queue_key)
        ahead = len(queue) if queue else 0
        estimate = (ahead + 1) * self.speeds.job(key) / max(1, slots)
        seconds = min(max(1, math.ceil(estimate)), max(1, math.ceil(self.queue_timeout)))
        return {"Retry-After": str(seconds), "X-Job-Id": job_id}

    def _least_busy(self, model: str, tried: set[str]) -> NodeRecord | None:
        return next((n for n in self.registry.candidates(model) if n.node_id not in tried), None)

    def _in_turn(self, model: str, tried: set[str]) -> NodeRecord | None:
        nodes = sorted(
            (n for n in self.registry.candidates(model) if n.node_id not in tried), key=lambda n: n.node_id
        )
        if not nodes:
            return None
        turn = next(self._turns.setdefault(canonical(model), itertools.count()))
        return nodes[turn % len(nodes)]
