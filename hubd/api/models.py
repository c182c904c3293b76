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
from typing import Any

from aiohttp import web

from ollama_connector.hubd.errors import HubError, ModelManagementPerNode
from ollama_connector.hubd.fleet.keys import TRANSFERS
from ollama_connector.hubd.fleet.manage import (
    no_room,
    not_too_many,
    on_each,
    pull_allowed,
    start,
    summary,
    targets,
)
from ollama_connector.hubd.fleet.transfers import Transfer
from ollama_connector.hubd.guard.auth import who
from ollama_connector.hubd.guard.keys import AUDIT
from ollama_connector.hubd.guard.limits import check_model_name
from ollama_connector.hubd.routing.keys import REGISTRY
from ollama_connector.hubd.routing.node import NodeRecord
from ollama_connector.shared.bodies import BadRequest, read_json_object
from ollama_connector.shared.error_formats import NDJSON
from ollama_connector.shared.modelnames import canonical

routes = web.RouteTableDef()
NEITHER = "neither 'from' or 'files' was specified"  # Ollama's own text


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
    pull_allowed(request, body, model)
    not_too_many(request)
    nodes = targets(request, body, None)
    if not nodes:
        raise HubError("no node is online to pull to", status=503)
    audited(request, f"pull {model}", nodes)
    payload = json.dumps({**body, "stream": True}).encode()
    size = max((n.sizes.get(canonical(model), 0) for n in request.app[REGISTRY].all()), default=0)
    transfers = [
        request.app[TRANSFERS].refused(node.node_id, "/api/pull", model, lacking)
        if (lacking := no_room(node, canonical(model), size))
        else start(request.app, node, "/api/pull", model, payload, who(request).caller_id)
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
    audited(request, f"create {model} from {base}", nodes)
    payload = json.dumps({**body, "model": model, "stream": True}).encode()
    caller = who(request).caller_id
    transfers = [start(request.app, node, "/api/create", model, payload, caller) for node in nodes]
    return await answer(request, transfers, body.get("stream") is not False)


@routes.delete("/api/delete")
async def delete(request: web.Request) -> web.Response:
    body = await read_json_object(request)
    model = model_field(body, "model", "name")
    nodes = targets(request, body, model)
    if not nodes:
        raise HubError(f"model '{model}' not found", status=404)
    audited(request, f"delete {model}", nodes)
    return await on_each(request, nodes, "DELETE", body, removed=(model,))


@routes.post("/api/copy")
async def copy(request: web.Request) -> web.Response:
    body = await read_json_object(request)
    source = model_field(body, "source")
    model_field(body, "destination")
    nodes = targets(request, body, source)
    if not nodes:
        raise HubError(f'model "{source}" not found', status=404)
    audited(request, f"copy {source} to {body['destination']}", nodes)
    return await on_each(request, nodes, "POST", body, added=(body["destination"],))


def audited(request: web.Request, what: str, nodes: list[NodeRecord]) -> None:
    key = who(request)
    where = "on " + ", ".join(node.node_id for node in nodes)
    request.app[AUDIT].record(key.name or key.caller_id, what, where)


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
