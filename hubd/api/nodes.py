"""Heartbeats in, and the registry out: /nodes/heartbeat, /nodes, /nodes/{node_id}, /healthz."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter

from aiohttp import web

from ollama_connector.hubd.api.stats import hubs_view
from ollama_connector.hubd.errors import Forbidden, HubError, Unauthorized
from ollama_connector.hubd.guard.auth import may_be_node, node_credential
from ollama_connector.hubd.guard.keys import WRONG_KEYS
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
    """The seed's `{"status": "ok"}`; with EXPECTED_HUBS set, how many nodes reach how many hubs beside it
    (counts only: this route is open to probes, so it names no node)."""
    registry = request.app[REGISTRY]
    if registry.expected_hubs is None:
        return web.json_response({"status": "ok"})
    view = hubs_view(registry)
    reached = Counter(str(n) for n in view["by_node"].values())
    hubs = {"expected": view["expected"], "nodes_by_hubs_reached": dict(sorted(reached.items()))}
    return web.json_response({"status": "ok", "hubs": {**hubs, "nodes_short": len(view["short"])}})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    """Ready for callers once a node has sent a heartbeat since the hub started (or HEARTBEAT_TTL_SECONDS
    have passed without one: a hub with no fleet says so itself). A front sends callers only to a ready hub,
    so a hub started again after a crash, which knows no node yet, does not answer 404 for every model."""
    registry, ttl = request.app[REGISTRY], request.app[SETTINGS].heartbeat_ttl
    waited = time.monotonic() - registry.started
    if registry.heard_since_start or waited >= ttl:
        return web.json_response({"status": "ready"})
    raise HubError(
        f"starting: no node has sent a heartbeat since the hub started {waited:.0f} s ago (ready at the"
        f" first, or after HEARTBEAT_TTL_SECONDS={ttl:g})",
        status=503,
        headers={"Retry-After": "1"},
    )


@routes.post("/nodes/heartbeat")
async def heartbeat(request: web.Request) -> web.Response:
    address, wrong = request.remote or "?", request.app[WRONG_KEYS]
    wrong.check(address)  # guessing node tokens goes at a minute's pace too
    claimed = f"node {request.headers.get('X-Node-Id', '?')[:253]!r}"  # the agent's word, before any body
    try:
        credential = node_credential(request)  # before the body is read: no stranger's body is buffered
        try:
            async with asyncio.timeout(request.app[SETTINGS].client_timeout):
                body = await read_json_object(request, max_bytes=HEARTBEAT_MAX_BYTES)
        except TimeoutError:
            raise HubError("the heartbeat did not arrive within CLIENT_TIMEOUT", status=408) from None
        beat = parse_body_as(Heartbeat, body)
        claimed = f"node {beat.node_id!r}"
        may_be_node(request, credential, beat.node_id)
    except (Unauthorized, Forbidden) as exc:  # said once per source until it gets in
        wrong.wrong(address, request.path, what=f"refused a heartbeat claiming {claimed} ({exc})")
        raise
    wrong.forgive(address)
    beat = bounded(beat, request.app[SETTINGS].node_max_slots)
    registry = request.app[REGISTRY]
    peer = request.remote or "127.0.0.1"
    if (holder := registry.claimed_elsewhere(beat.node_id, peer, credential)) is not None:
        log.warning("refused a heartbeat as %s from %s: that id is %s's", beat.node_id, peer, holder.source)
        raise HubError(
            f"node id {beat.node_id!r} is taken by the agent at {holder.source} (until it has been silent for"
            " HEARTBEAT_OFFLINE_SECONDS); give this agent another NODE_ID (cloned machines share a host name,"
            " the default), or each node its own token (ollama-hubd nodes add NAME)",
            status=409,
        )
    await admit(request, beat.node_id, beat.address, peer, beat.port)
    if request.query.get("check") == "1":  # `ollama-noded --check`: all judged, nothing registered
        return web.json_response({"status": "checked", "node_id": beat.node_id})
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
