"""GET /stats, the fleet in one small answer (for ollama-top and the dashboard); GET /metrics."""

from __future__ import annotations

import time

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ollama_connector.hubd.fleet.desired import DESIRED
from ollama_connector.hubd.fleet.keys import TRANSFERS
from ollama_connector.hubd.jobs.keys import COUNTERS
from ollama_connector.hubd.ops.keys import METRICS
from ollama_connector.hubd.routing.keys import PLACEMENT, REGISTRY
from ollama_connector.hubd.routing.node_view import hubs_of
from ollama_connector.hubd.routing.registry import Registry
from ollama_connector.shared.cli import package_version
from ollama_connector.shared.modelnames import display

routes = web.RouteTableDef()


@routes.get("/stats")
async def stats(request: web.Request) -> web.Response:
    registry, counters = request.app[REGISTRY], request.app[COUNTERS]
    now = time.monotonic()
    by_status = {"online": 0, "offline": 0, "degraded": 0, "draining": 0}
    models: dict[str, dict[str, list[str]]] = {}
    in_flight = 0
    for record in registry.all():
        status = registry.status(record, now)
        by_status[status] += 1
        in_flight += record.active_jobs
        for key in record.model_keys:
            where = models.setdefault(display(key), {"nodes": [], "online": []})
            where["nodes"].append(record.node_id)
            if status == "online":
                where["online"].append(record.node_id)
    return web.json_response(
        {
            "nodes": {"total": len(registry), **by_status},
            "jobs": {
                "in_flight": in_flight,
                "served": counters.served,
                "failed": counters.failed,
                **counters.rates(now),
            },
            "models": {name: models[name] for name in sorted(models)},
            "queue": request.app[PLACEMENT].queue_view(now),
            "hubs": hubs_view(registry),
            "transfers": request.app[TRANSFERS].view(),
            "fleet_models": desired.state if (desired := request.app.get(DESIRED)) else {},
            "uptime_seconds": round(now - counters.started_at, 1),
            "version": package_version(),
        }
    )


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    """Prometheus' text format (hubd.ops.metrics)."""
    request.app[METRICS].forget_gone()
    body = generate_latest(request.app[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def hubs_view(registry: Registry) -> dict:
    """The hubs each node reaches (its last heartbeat says), and the nodes below EXPECTED_HUBS."""
    hubs = {record.node_id: hubs_of(registry, record) for record in registry.all()}
    return {
        "expected": registry.expected_hubs,
        "by_node": {node: seen["reached"] for node, seen in hubs.items()},
        "short": sorted(node for node, seen in hubs.items() if seen["short"]),
    }
