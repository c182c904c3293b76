"""Model management across the fleet: which nodes a change goes to, whether a node has room for a pull,
starting transfers, quick changes on many nodes at once, and what the whole came to.

The routes that call it are hubd.api.models; FLEET_MODELS (hubd.fleet.desired) starts its pulls here too.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from ollama_connector.hubd.errors import Forbidden, HubError
from ollama_connector.hubd.fleet.fanout import ask_nodes, online
from ollama_connector.hubd.fleet.keys import TRANSFERS
from ollama_connector.hubd.fleet.transfers import ROOM_MARGIN, Outcome, Transfer
from ollama_connector.hubd.fleet.transfers import no_room as no_room_for
from ollama_connector.hubd.guard.auth import who
from ollama_connector.hubd.guard.keyring import share_of
from ollama_connector.hubd.keys import SETTINGS
from ollama_connector.hubd.routing.keys import NODES, REGISTRY
from ollama_connector.hubd.routing.node import NodeRecord
from ollama_connector.hubd.routing.node_client import CHANGE
from ollama_connector.shared.bodies import BadRequest
from ollama_connector.shared.error_formats import Ollama
from ollama_connector.shared.modelnames import canonical

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


def pull_allowed(request: web.Request, body: dict[str, Any], model: str) -> None:
    """A pull names a registry the operator allows, and asks for no insecure transfer unless allowed."""
    settings = request.app[SETTINGS]
    registry = canonical(model).split("/", 1)[0]
    if registry not in settings.allowed_registries:
        allowed = ", ".join(settings.allowed_registries) or "none"
        raise Forbidden(f"pulls from {registry} are not allowed here (ALLOWED_REGISTRIES: {allowed})")
    if body.get("insecure") is True and not settings.allow_insecure_pulls:
        raise Forbidden("insecure pulls are not allowed here (ALLOW_INSECURE_PULLS=1 allows them)")


def not_too_many(request: web.Request) -> None:
    """A bound on the transfers callers may start (each holds a connection to a node until it ends): all of
    them, and each caller's share of it (CALLER_SHARE, or its key's own)."""
    transfers, key = request.app[TRANSFERS], who(request)
    if len(transfers) >= MAX_TRANSFERS:
        raise HubError(
            f"{MAX_TRANSFERS} pulls and creates are in progress; retry when some are done",
            status=503,
            headers={"Retry-After": "30"},
        )
    share = key.share if key.share is not None else request.app[SETTINGS].caller_share
    if transfers.held(key.caller_id) >= (allowed := share_of(MAX_TRANSFERS, share)):
        raise HubError(
            f"this caller's share: {allowed} of the {MAX_TRANSFERS} pulls and creates at once; retry later",
            status=429,
            headers={"Retry-After": "30"},
        )


async def on_each(
    request: web.Request,
    nodes: list[NodeRecord],
    method: str,
    body: dict,
    added: tuple[str, ...] = (),
    removed: tuple[str, ...] = (),
) -> web.Response:
    """A quick change on each node at once: 200 with an empty body (as Ollama) when every node made it."""
    answers = await ask_nodes(
        request.app, nodes, method, request.path, json.dumps(body).encode(), limit=CHANGE
    )
    outcomes = {node.node_id: Outcome.of(status, payload) for node, status, payload in answers}
    registry = request.app[REGISTRY]
    for node, _, _ in answers:
        if outcomes[node.node_id].ok:  # known before the answer leaves: the next request sees the change
            registry.change_models(node, added, removed)
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


def no_room(node: NodeRecord, key: str, size: int) -> str | None:
    """Why a node cannot take a pull of a model of `size` bytes (its size elsewhere in the fleet), if so."""
    free = node.beat.disk_free_bytes
    if not size or free is None or key in node.model_keys or free >= size + ROOM_MARGIN:
        return None
    return no_room_for(size, free)


def start(
    app: web.Application, node: NodeRecord, path: str, model: str, payload: bytes, caller: str = ""
) -> Transfer:
    registry = app[REGISTRY]
    transfer = app[TRANSFERS].start(
        app[NODES], node, path, model, payload, lambda: registry.change_models(node, added=(model,))
    )
    transfer.callers.add(caller)  # who holds it, for their share (a shared pull: each who asked)
    return transfer


async def transfers_ctx(app: web.Application) -> AsyncIterator[None]:
    yield
    await app[TRANSFERS].close()
