"""Ollama's own API on the hub, so Ollama clients pointed at it get the whole fleet."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from aiohttp import web
from packaging.version import InvalidVersion, Version

from ollama_connector.hubd.errors import AllNodesFailed, HubError, NoHealthyNodes
from ollama_connector.hubd.fleet.fanout import ask_nodes, ask_online_nodes, online
from ollama_connector.hubd.guard.auth import may_run, who
from ollama_connector.hubd.guard.keyring import Key
from ollama_connector.hubd.guard.limits import check_model_name
from ollama_connector.hubd.jobs.dispatch import dispatch
from ollama_connector.hubd.jobs.job import new_job
from ollama_connector.hubd.jobs.keys import LEDGER
from ollama_connector.hubd.jobs.record import JobRecord, new_job_id
from ollama_connector.hubd.routing.keys import NODES, REGISTRY
from ollama_connector.shared import error_formats
from ollama_connector.shared.bodies import BadRequest, read_json_object
from ollama_connector.shared.modelnames import canonical
from ollama_connector.shared.wire import MAX_MODEL_NAME

routes = web.RouteTableDef()

# Route: does it stream unless the request says "stream": false?
INFERENCE = {
    "/api/generate": True,
    "/api/chat": True,
    "/api/embed": False,
    "/api/embeddings": False,
}
# Ollama's answer to a missing model name differs by route (the reference's error table).
EMPTY_MODEL_IS_404 = {"/api/generate", "/api/embed"}
ZERO_DURATION = re.compile(r"0+(\.0*)?(ns|us|µs|ms|s|m|h)?")


def sort_time(value: object) -> float:
    """A node's timestamp as a number to sort by; anything unreadable sorts first (0)."""
    if not isinstance(value, str):
        return 0.0
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def entries(answer: object) -> list[dict[str, Any]]:
    """The `models` list of a node's /api/tags or /api/ps answer, less anything that is not an object."""
    models = answer.get("models") if isinstance(answer, dict) else None
    return [m for m in models if isinstance(m, dict)] if isinstance(models, list) else []


def name_of(entry: dict[str, Any]) -> str | None:
    name = entry.get("model") or entry.get("name")
    return name if isinstance(name, str) else None


# Routes whose body takes options.num_ctx, so the hub may give a job the context of a loaded runner.
CONTEXT_SETTABLE = {"/api/generate", "/api/chat", "/api/embed", "/api/embeddings"}


async def relay_inference(request: web.Request) -> web.StreamResponse:
    body = await read_json_object(request)
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise BadRequest(
            f"json: cannot unmarshal {type(model).__name__} into Go struct field .model of type string"
        )
    if model:
        check_model_name(model)
    if not model:
        if request.path in EMPTY_MODEL_IS_404:
            raise HubError("model '' not found", status=404)
        raise BadRequest("model is required")
    if request.path in ("/api/generate", "/api/chat") and is_unload(request.path, body):
        return await unload_everywhere(request, model, await request.read())
    stream = INFERENCE[request.path] and body.get("stream") is not False
    job = await new_job(request, body, model, stream, context_settable=request.path in CONTEXT_SETTABLE)
    return await dispatch(request, job)


def is_unload(path: str, body: dict[str, Any]) -> bool:
    """Ollama's unload shortcut (what `ollama stop` sends): nothing to answer, and keep_alive 0."""
    empty = not body.get("prompt") if path == "/api/generate" else not body.get("messages")
    keep_alive = body.get("keep_alive")
    zero = keep_alive == 0 or (
        isinstance(keep_alive, str) and bool(ZERO_DURATION.fullmatch(keep_alive.strip()))
    )
    return empty and zero and not isinstance(keep_alive, bool)


async def unload_everywhere(request: web.Request, model: str, payload: bytes) -> web.StreamResponse:
    """keep_alive lives on each node, so an unload goes to every online node that has the model."""
    key = may_run(request, model)
    record = JobRecord(new_job_id(), request.path, model, key.caller_id, key=key.name or None)
    return await request.app[LEDGER].admitted(
        record, _unload(request, record, payload), concurrency=key.concurrency, share=key.share
    )


async def _unload(request: web.Request, record: JobRecord, payload: bytes) -> web.Response:
    registry, job_id, model = request.app[REGISTRY], record.job_id, record.model
    every = online(request.app, registry.holders(model))
    # Only Ollama unloads: an OpenAI-compatible engine (BACKEND=openai) keeps its models loaded.
    holders = [node for node in every if node.beat.backend == "ollama"]
    request.app[LEDGER].started(record)
    if every and not holders:
        raise BadRequest(f"model '{model}' runs only on OpenAI-compatible engines, which cannot unload it")
    if not holders:
        raise NoHealthyNodes(job_id, model, known=bool(registry.holders(model)))
    answers = await ask_nodes(request.app, holders, "POST", request.path, payload)
    done = [(node, body) for node, status, body in answers if status == 200]
    if not done:
        errors = [
            {
                "node_id": n.node_id,
                "message": error_formats.message_of(b) or b.decode(errors="replace")[:300],
                "status": s or 503,
            }
            for n, s, b in answers
        ]
        raise AllNodesFailed(job_id, errors)
    record.nodes = record.nodes or [node.node_id for node, _, _ in answers]
    record.node = done[0][0].node_id  # one node, as a metrics label must be; X-Node-Id names them all
    record.finish("done")
    headers = {"X-Job-Id": job_id, "X-Node-Id": ",".join(node.node_id for node, _ in done)}
    return web.Response(body=done[0][1], content_type="application/json", charset="utf-8", headers=headers)


for path in INFERENCE:
    routes.post(path)(relay_inference)


SHOW_TRIES = 3  # nodes asked in turn when one does not answer


@routes.post("/api/show")
async def show(request: web.Request) -> web.Response:
    """A model's details, from one node that has it: metadata, not a job. It takes no slot, waits in no
    queue, and changes nothing the hub believes of what is loaded where."""
    body = await read_json_object(request)
    model = body.get("model") or body.get("name")
    if not isinstance(model, str) or not model:
        raise BadRequest("model is required")
    check_model_name(model)
    may_run(request, model)
    registry = request.app[REGISTRY]
    holders = sorted(online(request.app, registry.holders(model)), key=lambda node: node.rank)
    if not holders:
        raise HubError(f"model '{model}' not found", status=404)
    payload, errors = await request.read(), []
    for node in holders[:SHOW_TRIES]:
        status, answer = await request.app[NODES].ask(node, "POST", "/api/show", payload)
        if status is not None and status < 500:
            headers = {"X-Node-Id": node.node_id}
            return web.Response(body=answer, status=status, content_type="application/json", headers=headers)
        reason = error_formats.message_of(answer) or answer.decode(errors="replace")[:300]
        errors.append({"node_id": node.node_id, "message": reason, "status": status or 503})
    raise AllNodesFailed(new_job_id(), errors)


async def merged_tags(app: web.Application, key: Key | None = None) -> list[dict[str, Any]]:
    """One entry per model across online nodes (the newest copy), newest first, as Ollama lists them; only
    the models `key` may use."""
    merged: dict[str, dict[str, Any]] = {}
    for _, answer in await ask_online_nodes(app, "/api/tags"):
        for entry in entries(answer):
            name = name_of(entry)
            if not name or len(name) > MAX_MODEL_NAME or (key is not None and not key.may_use(name)):
                continue
            model = canonical(name)
            if model not in merged or sort_time(entry.get("modified_at")) > sort_time(
                merged[model].get("modified_at")
            ):
                merged[model] = entry
    return sorted(merged.values(), key=lambda e: sort_time(e.get("modified_at")), reverse=True)


@routes.get("/api/tags")
async def tags(request: web.Request) -> web.Response:
    return web.json_response({"models": await merged_tags(request.app, who(request))})


@routes.get("/api/ps")
async def ps(request: web.Request) -> web.Response:
    key = who(request)
    loaded = [
        {**entry, "node_id": node.node_id}
        for node, answer in await ask_online_nodes(request.app, "/api/ps")
        for entry in entries(answer)
        if key.may_use(name_of(entry) or "")
    ]
    loaded.sort(key=lambda e: sort_time(e.get("expires_at")), reverse=True)
    return web.json_response({"models": loaded})


def readable(version: object) -> Version | None:
    """An Ollama version as packaging compares them (`0.5.10` after `0.5.9`, `0.6.0-rc1` before `0.6.0`);
    None for anything else."""
    try:
        return Version(version) if isinstance(version, str) else None
    except InvalidVersion:
        return None


@routes.get("/api/version")
async def version(request: web.Request) -> web.Response:
    """The lowest Ollama version in the fleet: what every node can be relied on to support."""
    registry = request.app[REGISTRY]
    versions = {
        str(version): parsed
        for r in registry.all()
        if (parsed := readable(version := r.beat.metadata.get("ollama_version"))) is not None
    }
    oldest = min(versions, key=versions.__getitem__) if versions else "0.0.0"  # as the node wrote it
    return web.json_response({"version": oldest})


# Ollama's sources of the cloud setting, from the least to the most decided (internal/cloud/policy.go).
CLOUD_SOURCES = ("none", "env", "config", "both")


@routes.get("/api/status")
async def status(request: web.Request) -> web.Response:
    """Ollama's cloud status for the fleet: the most conservative among the online Ollama nodes (disabled if
    any node has it disabled, with the most decided source among those)."""
    disabled, source = False, "none"
    for node, answer in await ask_online_nodes(request.app, "/api/status"):
        cloud = answer.get("cloud") if isinstance(answer, dict) and node.beat.backend == "ollama" else None
        if not isinstance(cloud, dict) or cloud.get("disabled") is not True:
            continue
        said = cloud.get("source") if cloud.get("source") in CLOUD_SOURCES else "env"
        if not disabled or CLOUD_SOURCES.index(said) > CLOUD_SOURCES.index(source):
            source = said
        disabled = True
    return web.json_response({"cloud": {"disabled": disabled, "source": source}})
