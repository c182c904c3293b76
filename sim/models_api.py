"""Ollama's model management as the real server answers it (reference §5): pull with progress, delete, copy,
and create from an existing model; and its cloud status. Push and blob uploads are not simulated.

Pulls take `pull_seconds` (0: at once) in ten steps of progress, and `pull_fail_rate` of them fail half-way
with an error line, as a dropped download does; the model is listed only once a pull succeeds.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from ollama_connector.shared.bodies import read_json_object
from ollama_connector.shared.modelnames import display
from ollama_connector.sim.catalog import SimModel
from ollama_connector.sim.engine import Engine
from ollama_connector.sim.keys import ENGINE
from ollama_connector.sim.routes import MODEL_NAME, OllamaError, compact, field, reply

routes = web.RouteTableDef()
PULL_STEPS = 10
NEITHER = "neither 'from' or 'files' was specified"  # Ollama's errNeitherFromOrFiles


async def progress(request: web.Request, stream: bool, steps: Any) -> web.StreamResponse:
    """Ollama's progress lines as they come; with stream false, only the last (an error: its status)."""
    if not stream:
        last: dict[str, Any] = {}
        async for step in steps:
            last = step
        if "error" in last:
            raise OllamaError(500, last["error"])
        return reply(last)
    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    await response.prepare(request)
    async for step in steps:
        await response.write(compact(step) + b"\n")
    await response.write_eof()
    return response


@routes.post("/api/pull")
async def pull(request: web.Request) -> web.StreamResponse:
    engine: Engine = request.app[ENGINE]
    body = await read_json_object(request, lone_surrogates="replace")
    name = field(body, "model", str, "string") or field(body, "name", str, "string") or ""
    if not name or not MODEL_NAME.match(name):
        raise OllamaError(400, "invalid model name")
    engine.stats.pulls += 1
    fails = engine.behaviour.rng.random() < engine.behaviour.pull_fail_rate
    return await progress(request, field(body, "stream", bool, "bool", True), _pulling(engine, name, fails))


async def _pulling(engine: Engine, name: str, fails: bool) -> Any:
    model = engine.catalog.find(name) or SimModel(display(name))
    total, digest = model.size, "sha256:" + model.digest
    pause = engine.behaviour.pull_seconds / PULL_STEPS
    yield {"status": "pulling manifest"}
    for step in range(1, PULL_STEPS + 1):
        await asyncio.sleep(pause)
        if fails and step > PULL_STEPS // 2:
            yield {"error": f"max retries exceeded: read tcp: connection reset by peer ({name})"}
            return
        yield {
            "status": f"pulling {model.digest[:12]}",
            "digest": digest,
            "total": total,
            "completed": total * step // PULL_STEPS,
        }
    for status in ("verifying sha256 digest", "writing manifest"):
        yield {"status": status}
    if engine.behaviour.rng.random() >= engine.behaviour.lost_pull_rate:
        engine.catalog.add(f"{name}={total}")
    yield {"status": "success"}


@routes.delete("/api/delete")
async def delete(request: web.Request) -> web.Response:
    body = await read_json_object(request, lone_surrogates="replace")
    name = field(body, "model", str, "string") or field(body, "name", str, "string") or ""
    if not request.app[ENGINE].catalog.remove(name):
        raise OllamaError(404, f"model '{name}' not found")
    return web.Response()


@routes.post("/api/copy")
async def copy(request: web.Request) -> web.Response:
    catalog = request.app[ENGINE].catalog
    body = await read_json_object(request, lone_surrogates="replace")
    source = field(body, "source", str, "string", "")
    destination = field(body, "destination", str, "string", "")
    if not MODEL_NAME.match(source):
        raise OllamaError(400, f'source "{source}" is invalid')
    if not MODEL_NAME.match(destination):
        raise OllamaError(400, f'destination "{destination}" is invalid')
    found = catalog.find(source)
    if found is None:
        raise OllamaError(404, f'model "{source}" not found')
    catalog.add(f"{destination}={found.size}")
    return web.Response()


@routes.post("/api/create")
async def create(request: web.Request) -> web.StreamResponse:
    catalog = request.app[ENGINE].catalog
    body = await read_json_object(request, lone_surrogates="replace")
    name = field(body, "model", str, "string") or field(body, "name", str, "string") or ""
    if not name or not MODEL_NAME.match(name):
        raise OllamaError(400, "invalid model name")
    base = field(body, "from", str, "string", "")
    if not base and not body.get("files"):
        raise OllamaError(400, NEITHER)
    found = catalog.find(base) if base else None

    async def creating() -> Any:
        if found is None:  # Ollama would pull a missing base; the simulator has no registry to pull from
            yield {"error": f"pull model manifest: file does not exist ({base or 'files'})"}
            return
        yield {"status": f"using existing layer sha256:{found.digest}"}
        for extra in ("system", "template", "parameters"):
            if body.get(extra):
                yield {"status": f"creating new layer sha256:{SimModel(name + extra).digest}"}
        yield {"status": "writing manifest"}
        catalog.add(f"{name}={found.size}")
        yield {"status": "success"}

    return await progress(request, field(body, "stream", bool, "bool", True), creating())


@routes.get("/api/status")
async def status(request: web.Request) -> web.Response:
    """Ollama's cloud setting: disabled by OLLAMA_NO_CLOUD (source `env`), or not (`none`)."""
    disabled = bool(request.app[ENGINE].behaviour.cloud_disabled)
    return reply({"cloud": {"disabled": disabled, "source": "env" if disabled else "none"}})
