"""Background upkeep of the registry: offline and removal by TTL, and health probes of degraded nodes."""

from __future__ import annotations

import asyncio
import logging
import time

from aiohttp import web

from ollama_connector.hubd.keys import SETTINGS
from ollama_connector.hubd.routing.keys import NODES, PLACEMENT, REGISTRY
from ollama_connector.hubd.routing.node import NodeRecord
from ollama_connector.hubd.routing.registry import Registry
from ollama_connector.shared.lifecycle import background, said_if_crashed

log = logging.getLogger(__name__)


MAX_PROBE_BACKOFF = 300.0


async def probe(app: web.Application, record: NodeRecord) -> None:
    """A degraded node comes back once its agent's /healthz says its Ollama answers; else it is probed again
    later, twice as late each time (MAX_PROBE_BACKOFF at most)."""
    healthy, detail = await app[NODES].healthy(record)
    if healthy:
        record.degraded = False
        record.consecutive_failures = 0
        log.info("node %s passed its health probe and is back in rotation", record.node_id)
        return
    record.probe_backoff = min(record.probe_backoff * 2, MAX_PROBE_BACKOFF)
    record.next_probe = time.monotonic() + record.probe_backoff
    log.debug(
        "node %s still unhealthy (%s); next probe in %.0f s", record.node_id, detail, record.probe_backoff
    )


def due_probes(registry: Registry) -> list[NodeRecord]:
    now = time.monotonic()
    return [
        r
        for r in registry.all()
        if r.degraded and r.next_probe <= now and registry.status(r, now) != "offline"
    ]


async def upkeep_loop(app: web.Application) -> None:
    settings, registry = app[SETTINGS], app[REGISTRY]
    # Tick often enough that the shortest window is honoured within a third of itself.
    period = max(0.05, min(5.0, settings.heartbeat_ttl / 3, settings.probe_interval / 3))
    probing: dict[str, asyncio.Task[None]] = {}
    try:
        while True:
            registry.sweep()
            placement = app[PLACEMENT]
            placement.demand.forget_quiet(time.monotonic())
            placement.speeds.forget(registry.known_models())
            for record in due_probes(registry):
                if record.node_id not in probing:
                    task = asyncio.create_task(probe(app, record), name=f"probe of {record.node_id}")
                    task.add_done_callback(said_if_crashed)
                    probing[record.node_id] = task
                    task.add_done_callback(lambda _, node_id=record.node_id: probing.pop(node_id, None))
            await asyncio.sleep(period)
    finally:
        for task in list(probing.values()):
            task.cancel()
        await asyncio.gather(*probing.values(), return_exceptions=True)


upkeep_ctx = background(upkeep_loop)
