"""Heartbeats in, and the registry out: /nodes/heartbeat, /nodes, /nodes/{node_id}, /healthz."""

from __future__ import annotations

import logging
import time

from aiohttp import web

from ollama_connector.hubd.errors import HubError
from ollama_connector.hubd.guard.auth import node_credential
from ollama_connector.hubd.keys import SETTINGS
from ollama_connector.hubd.routing.admission import admit, bounded
from ollama_connector.hubd.routing.keys import REGISTRY
from ollama_connector.hubd.routing.node_view import node_view
from ollama_connector.shared.bodies import parse_body_as, read_json_object
from ollama_connector.shared.wire import Heartbeat

log = logging.getLogger(__name__)
routes = web.RouteTableDef()
HEARTBEAT_MAX_BYTES = 256 * 1024  # a thousand long model names and full metadata fit many times over


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


@routes.post("/nodes/heartbeat")
async def heartbeat(request: web.Request) -> web.Response:
    body = await read_json_object(request, max_bytes=HEARTBEAT_MAX_BYTES)
    beat = parse_body_as(Heartbeat, body)
    credential = node_credential(request, beat.node_id)
    beat = bounded(beat, request.app[SETTINGS].node_max_slots)
    registry = request.app[REGISTRY]
    peer = request.remote or "127.0.0.1"
    if (holder := registry.claimed_elsewhere(beat.node_id, peer, credential)) is not None:
        log.warning("refused a heartbeat as %s from %s: that id is %s's", beat.node_id, peer, holder.source)
        raise HubError(
            f"node id {beat.node_id!r} is taken by the agent at {holder.source}, which is online; give this"
            " agent another NODE_ID (cloned machines share a host name, the default)",
            status=409,
        )
    await admit(request, beat.node_id, beat.address, peer, beat.port)
    record = registry.heartbeat(beat, peer, credential)
    return web.json_response({"status": registry.status(record), "node_id": beat.node_id})


@routes.get("/nodes")
async def list_nodes(request: web.Request) -> web.Response:
    registry = request.app[REGISTRY]
    now = time.monotonic()
    return web.json_response([node_view(registry, r, now) for r in registry.all()])


# Not /nodes/heartbeat: that path is for POST only (a node named "heartbeat" is read in GET /nodes).
@routes.get(r"/nodes/{node_id:(?!heartbeat$)[^/]+}")
async def get_node(request: web.Request) -> web.Response:
    registry = request.app[REGISTRY]
    record = registry.get(request.match_info["node_id"])
    if record is None:
        raise HubError(f"Node {request.match_info['node_id']!r} not found", status=404)
    return web.json_response(node_view(registry, record))
