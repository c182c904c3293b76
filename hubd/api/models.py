"""Managing models across the fleet through Ollama's own routes: pull, delete, copy and create, on many nodes.

- The nodes: every online node (pull), or every online node that has the model (delete, copy, create's
  `from`); or the nodes named by an `X-Nodes: a,b` header or a `nodes` body field.
- Pulls and creates stream Ollama's progress lines, each with a `node_id`, then one line per node saying how
  it ended; a last line answers for the whole: `{"status": "success"}`, or Ollama's `{"error": ...}` naming
  the nodes that failed (so `ollama pull` exits non-zero). With `"stream": false`, one answer at the end.
- A pull of a model on a node is one download however many callers ask for it (hubd.fleet.transfers); a
  caller who hangs up leaves it running.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from aiohttp import web

from ollama_connector.hubd.errors import HubError, ModelManagementPerNode
from ollama_connector.hubd.fleet.fanout import ask_nodes, online
from ollama_connector.hubd.fleet.transfers import Outcome, Transfer
from ollama_connector.hubd.guard.limits import check_model_name
from ollama_connector.hubd.keys import REGISTRY, SESSION, SETTINGS, TRANSFERS
from ollama_connector.hubd.routing.admission import node_headers
from ollama_connector.hubd.routing.registry import NodeRecord
from ollama_connector.shared.bodies import BadRequest, read_json_object
from ollama_connector.shared.error_formats import NDJSON, Ollama
from ollama_connector.shared.modelnames import canonical

routes = web.RouteTableDef()
QUICK_TIMEOUT = aiohttp.ClientTimeout(total=60.0)  # a delete or a copy, on every node
NEITHER = "neither 'from' or 'files' was specified"  # Ollama's own text
ROOM_MARGIN = 1_000_000_000  # bytes a pull must leave free on the node's disk
MAX_TRANSFERS = 256  # pulls and creates in progress over the fleet at once, whoever asked


def named_nodes(request: web.Request, body: dict[str, Any]) -> list[str] | None:
    """The nodes the caller named (`X-Nodes`, or `nodes` in the body, which is not sent on), or None."""
    names: object = body.pop("nodes", None)
    if header := request.headers.get("X-Nodes"):
        names = [name.strip() for name in header.split(",") if name.strip()]
    if names is None:
        return None
    limit = request.app[SETTINGS].max_nodes
    if (
        not isinstance(names, list)
        or not names
        or len(names) > limit
        or not all(isinstance(n, str) and 0 < len(n) <= 253 for n in names)
    ):
        raise BadRequest(f"nodes must be a non-empty list of at most {limit} node ids")
    return list(dict.fromkeys(names))


def targets(request: web.Request, body: dict[str, Any], model: str | None) -> list[NodeRecord]:
    """The named nodes (each must be online), else the online nodes (that have `model`, when given)."""
    registry = request.app[REGISTRY]
    names = named_nodes(request, body)
    if names is None:  # model management is Ollama's: nodes with another engine are left out
        nodes = online(request.app, registry.holders(model) if model is not None else None)
        return [node for node in nodes if node.beat.backend == "ollama"]
    records = {name: registry.get(name) for name in names}
    if unknown := [name for name, record in records.items() if record is None]:
        raise BadRequest(f"no such node: {', '.join(unknown)}")
    chosen = [r for r in records.values() if r is not None]
    if away := [f"{r.node_id} ({registry.status(r)})" for r in chosen if registry.status(r) != "online"]:
        raise HubError(f"not online: {', '.join(away)}", status=409)
    return chosen


def not_too_many(request: web.Request) -> None:
    """A bound on the transfers callers may start (each holds a connection to a node until it ends)."""
    if len(request.app[TRANSFERS]) >= MAX_TRANSFERS:
        raise HubError(
            f"{MAX_TRANSFERS} pulls and creates are in progress; retry when some are done",
            status=503,
            headers={"Retry-After": "30"},
        )


def model_field(body: dict[str, Any], *names: str) -> str:
    for name in names:
        value = body.get(name)
        if isinstance(value, str) and value:
            check_model_name(value)
            return value
    raise BadRequest(f"{names[0]} is required")


@routes.post("/api/pull")
async def pull(request: web.Request) -> web.StreamResponse:
    body = await read_json_object(request)
    model = model_field(body, "model", "name")
    not_too_many(request)
    nodes = targets(request, body, None)
    if not nodes:
        raise HubError("no node is online to pull to", status=503)
    payload = json.dumps({**body, "stream": True}).encode()
    size = max((n.sizes.get(canonical(model), 0) for n in request.app[REGISTRY].all()), default=0)
    transfers = [
        request.app[TRANSFERS].refused(node.node_id, "/api/pull", model, lacking)
        if (lacking := no_room(node, canonical(model), size))
        else start(request.app, node, "/api/pull", model, payload)
        for node in nodes
    ]
    return await answer(request, transfers, body.get("stream") is not False)


@routes.post("/api/create")
async def create(request: web.Request) -> web.StreamResponse:
    body = await read_json_object(request)
    model = model_field(body, "model", "name")
    if body.get("files") or body.get("adapters"):
        raise ModelManagementPerNode(
            "creating from files is not available through the hub: Ollama needs the blobs on the same "
            "server. Run `ollama create` on each node, or create from a model the nodes have (`from`)."
        )
    base = body.get("from")
    if not isinstance(base, str) or not base:
        raise BadRequest(NEITHER)
    check_model_name(base)
    not_too_many(request)
    nodes = targets(request, body, base)
    if not nodes:
        raise HubError(f"model '{base}' not found", status=404)
    payload = json.dumps({**body, "model": model, "stream": True}).encode()
    transfers = [start(request.app, node, "/api/create", model, payload) for node in nodes]
    return await answer(request, transfers, body.get("stream") is not False)


@routes.delete("/api/delete")
async def delete(request: web.Request) -> web.Response:
    body = await read_json_object(request)
    model = model_field(body, "model", "name")
    nodes = targets(request, body, model)
    if not nodes:
        raise HubError(f"model '{model}' not found", status=404)
    return await on_each(request, nodes, "DELETE", body)


@routes.post("/api/copy")
async def copy(request: web.Request) -> web.Response:
    body = await read_json_object(request)
    source = model_field(body, "source")
    model_field(body, "destination")
    nodes = targets(request, body, source)
    if not nodes:
        raise HubError(f'model "{source}" not found', status=404)
    return await on_each(request, nodes, "POST", body)


async def on_each(request: web.Request, nodes: list[NodeRecord], method: str, body: dict) -> web.Response:
    """A quick change on each node at once: 200 with an empty body (as Ollama) when every node made it."""
    answers = await ask_nodes(
        request.app, nodes, method, request.path, json.dumps(body).encode(), limit=QUICK_TIMEOUT
    )
    outcomes = {node.node_id: Outcome.of(status, payload) for node, status, payload in answers}
    if all(o.ok for o in outcomes.values()):
        return web.Response(headers={"X-Node-Id": ",".join(outcomes)})
    status = 404 if all(o.status == 404 for o in outcomes.values() if not o.ok) else 502
    return web.json_response(summary(outcomes), status=status)


def summary(outcomes: dict[str, Outcome]) -> dict[str, Any]:
    """The whole, in Ollama's shape (success, or an error naming the failed nodes), and each node's end."""
    nodes = {node: o.view() for node, o in outcomes.items()}
    failed = {node: o for node, o in outcomes.items() if not o.ok}
    if not failed:
        return {"status": "success", "nodes": nodes}
    reasons = "; ".join(f"{node}: {o.error}" for node, o in failed.items())
    done = [node for node, o in outcomes.items() if o.ok]
    tail = f"; done on {', '.join(done)}" if done else ""
    return {
        **Ollama.body(f"failed on {len(failed)} of {len(outcomes)} node(s): {reasons}{tail}"),
        "nodes": nodes,
    }


async def answer(request: web.Request, transfers: list[Transfer], stream: bool) -> web.StreamResponse:
    """Each transfer's lines as they come, then each one's end, then the whole; or only the whole."""
    queue: asyncio.Queue[tuple[Transfer, bytes | None]] = asyncio.Queue()
    for transfer in transfers:
        transfer.listen(queue)
    try:
        if not stream:
            outcomes = {t.node_id: await t.outcome() for t in transfers}
            body = summary(outcomes)
            return web.json_response(body, status=200 if "error" not in body else 502)
        response = web.StreamResponse(headers={"Content-Type": NDJSON})
        await response.prepare(request)
        pending = {t for t in transfers if not t.finished}
        for transfer in transfers:
            if transfer.finished:  # a shared pull that ended before this caller came
                await response.write(transfer.end_line())
        while pending:
            transfer, line = await queue.get()
            if line is None:
                pending.discard(transfer)
                await response.write(transfer.end_line())
            else:
                await response.write(line)
        outcomes = {t.node_id: await t.outcome() for t in transfers}
        await response.write(json.dumps(summary(outcomes)).encode() + b"\n")
        await response.write_eof()
        return response
    finally:
        for transfer in transfers:
            transfer.unlisten(queue)


async def per_node_only(request: web.Request) -> web.Response:
    what = "push" if request.path == "/api/push" else "blob uploads"
    raise ModelManagementPerNode(
        f"{what} are not available through the hub: a model is pushed from, and blobs go to, one Ollama. "
        f"Run `ollama {'push' if what == 'push' else 'create'}` on the node itself."
    )


routes.post("/api/push")(per_node_only)
routes.post("/api/blobs/{digest}")(per_node_only)
routes.head("/api/blobs/{digest}")(per_node_only)


def no_room(node: NodeRecord, key: str, size: int) -> str | None:
    """Why a node cannot take a pull of a model of `size` bytes (its size elsewhere in the fleet), if so."""
    free = node.beat.disk_free_bytes
    if not size or free is None or key in node.model_keys or free >= size + ROOM_MARGIN:
        return None
    return (
        f"no room: the model takes {size / 1e9:.1f} GB, and {free / 1e9:.1f} GB are free for Ollama's models"
    )


def start(app: web.Application, node: NodeRecord, path: str, model: str, payload: bytes) -> Transfer:
    headers = {"Content-Type": "application/json", **node_headers(app)}
    return app[TRANSFERS].start(app[SESSION], node.base_url, headers, node.node_id, path, model, payload)


async def transfers_ctx(app: web.Application) -> AsyncIterator[None]:
    yield
    await app[TRANSFERS].close()
