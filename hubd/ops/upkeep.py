"""Background upkeep of the registry: offline and removal by TTL, and health probes of degraded nodes."""

from __future__ import annotations

import asyncio
import logging
import time

from aiohttp import web

from ollama_connector.hubd.keys import SETTINGS
from ollama_connector.hubd.routing.keys import NODES, PLACEMENT, REGISTRY
from ollama_connector.hubd.routing.node import NodeRecord
from ollama_connector.shared.lifecycle import background, said_if_crashed

log = logging.getLogger(__name__)


async def probe(app: web.Application, record: NodeRecord) -> None:
    """A degraded node comes back once its agent's /healthz says its Ollama answers."""
    healthy, detail = await app[NODES].healthy(record)
    app[REGISTRY].probe_result(record, healthy, detail)


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
            for record in registry.due_probes():
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
