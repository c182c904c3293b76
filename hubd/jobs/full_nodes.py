"""Nodes that refused a job as full (`node_full`: another hub's jobs take their slots), for one job.

Never a failure: the capacity policy sees the node busy from its agent's word (hubd.routing.node) and queues
the job at the hub like any job that waits for a slot, so the node stays a candidate. The other policies do
not wait at the hub: a full node is skipped for the job until none is left, then the job waits (up to
QUEUE_TIMEOUT_SECONDS) for a slot to free anywhere, and tries them again; past that, 503 as Ollama's own
"server busy", with Retry-After.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from ollama_connector.hubd.routing.node import NodeRecord
from ollama_connector.hubd.routing.placement import BUSY, Placement, QueueFull
from ollama_connector.hubd.routing.registry import Registry

ROOM_AWAITED = object()  # what an attempt returns when the only nodes left were full
RECHECK = 1.0  # seconds between looks while waiting, as the hub's queue does (a heartbeat may free a slot)


class FullNodes:
    def __init__(self, registry: Registry, placement: Placement, job_id: str) -> None:
        self.registry = registry
        self.placement = placement
        self.job_id = job_id
        self.nodes: set[str] = set()  # refused the job, and left out of its choices until room frees
        self.deadline = time.monotonic() + placement.queue_timeout

    def refused(self, node: NodeRecord, tried: set[str]) -> None:
        if self.placement.policy == "capacity":
            tried.discard(node.node_id)  # busy in the picture now: the hub's queue waits for it
        else:
            self.nodes.add(node.node_id)

    async def wait_for_room(self, tried: set[str]) -> None:
        """Until a slot may have freed (a job ended, or an agent said so), then the full nodes are choices
        again; QueueFull past QUEUE_TIMEOUT_SECONDS."""
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise QueueFull(BUSY, headers={"Retry-After": "1", "X-Job-Id": self.job_id})
        news = asyncio.Event()
        self.registry.job_ended.append(news.set)
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(remaining, RECHECK)):
                    await news.wait()
        finally:
            self.registry.job_ended.remove(news.set)
        tried -= self.nodes
        self.nodes.clear()
