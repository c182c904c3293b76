"""The agent's API: /execute and Ollama's inference routes for the hub's jobs, its model management routes,
/healthz for probes."""

from __future__ import annotations

import logging

import aiohttp
from aiohttp import web

from ollama_connector.noded import openai_backend
from ollama_connector.noded.keys import SETTINGS, STATE, TASKS
from ollama_connector.noded.ollama import ollama_json
from ollama_connector.noded.proxy import forward, forward_for_hub, refusal
from ollama_connector.noded.slots import model_of
from ollama_connector.shared.agent_contract import KEEPALIVE_HEADER, MODEL_HEADER, Reason
from ollama_connector.shared.auth import is_authorized
from ollama_connector.shared.relay import describe

log = logging.getLogger(__name__)
routes = web.RouteTableDef()


def wrong_token(request: web.Request) -> web.Response | None:
    if is_authorized(request, request.app[SETTINGS].hub_token):
        return None
    return refusal(request.path, 401, Reason.UNAUTHORIZED, "missing or wrong cluster token")


def keepalive_interval(request: web.Request) -> float | None:
    """Seconds between keep-alives the hub asked for; None for a caller that did not ask (or asked oddly)."""
    try:
        every = float(request.headers.get(KEEPALIVE_HEADER, ""))
    except ValueError:
        return None
    return min(every, 300.0) if every >= 0.05 else None


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    """200 when the local Ollama answers, 503 when it does not."""
    state = request.app[STATE]
    openai = request.app[SETTINGS].backend == "openai"
    try:
        version = await ollama_json(request.app, "/v1/models" if openai else "/api/version")
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        return web.json_response(
            {"status": "unhealthy", "ollama": "down", "detail": describe(exc)}, status=503
        )
    stopped = [task for task in request.app[TASKS].values() if task.crashed]
    if stopped:  # a loop that crashed (and waits to start again): the hub may not hear of this node
        detail = "; ".join(f"{task.name} is not running ({task.last_crash})" for task in stopped)
        return web.json_response({"status": "unhealthy", "ollama": "up", "detail": detail}, status=503)
    return web.json_response(
        {
            "status": "draining" if state.draining else "ok",
            "ollama": "up",
            "ollama_version": version.get("version"),
            "active_jobs": state.active_jobs,
        }
    )


async def run_job(request: web.Request, ollama_path: str) -> web.StreamResponse:
    if refused := wrong_token(request):
        return refused
    # Relayed as sent: the hub has validated it, and Ollama answers anything malformed itself.
    body = await request.read()
    state = request.app[STATE]
    if request.path == "/api/show":  # metadata, not a job: counted nowhere, refused to no one
        if request.app[SETTINGS].backend == "openai":
            return await openai_backend.show(request, body)
        return await forward(request, ollama_path, body)
    if state.draining:
        return refusal(request.path, 503, Reason.DRAINING, "node is draining and takes no new jobs")
    key = model_of(request.headers, body, MODEL_HEADER)
    if (full := state.slots.why_full(key)) is not None:
        state.slots.refuse()
        return refusal(request.path, 503, Reason.NODE_FULL, full, {"Retry-After": "1"})
    with state.slots.taken(key):
        return await _relay_job(request, ollama_path, body)


async def _relay_job(request: web.Request, ollama_path: str, body: bytes) -> web.StreamResponse:
    state = request.app[STATE]
    state.active_jobs += 1
    state.jobs[ollama_path] = state.jobs.get(ollama_path, 0) + 1
    try:
        log.debug("job %s on %s", request.headers.get("X-Job-Id", "-"), ollama_path)
        if request.app[SETTINGS].backend == "openai" and not ollama_path.startswith("/v1/"):
            return await openai_backend.translated(request, request.path, body, keepalive_interval(request))
        if (every := keepalive_interval(request)) is not None:
            return await forward_for_hub(request, ollama_path, body, every)
        return await forward(request, ollama_path, body)
    finally:
        state.active_jobs -= 1


@routes.post("/execute")
async def execute(request: web.Request) -> web.StreamResponse:
    """The seed's job route: the body is an Ollama /api/generate request."""
    return await run_job(request, "/api/generate")


# Exactly the Ollama routes the hub needs, and nothing else: the agent is the only way in to Ollama.
JOB_ROUTES = (
    "/api/generate",
    "/api/chat",
    "/api/embed",
    "/api/embeddings",
    "/api/show",
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
    "/v1/responses",
    "/v1/messages",
    "/v1/audio/transcriptions",
)
READ_ROUTES = ("/api/tags", "/api/ps", "/api/version", "/api/status", "/v1/models")


async def job_route(request: web.Request) -> web.StreamResponse:
    return await run_job(request, request.path)


async def read_route(request: web.Request) -> web.StreamResponse:
    if refused := wrong_token(request):
        return refused
    if request.app[SETTINGS].backend == "openai" and request.path.startswith("/api/"):
        return openai_backend.read_answer(request)
    return await forward(request, request.path, None, method="GET")


# Model management, for the hub's fleet-wide routes (hubd.api.models): not counted as jobs, not refused
# while draining, and with no timeout of the agent's (a large pull takes as long as it takes).
MANAGE_ROUTES = (
    ("POST", "/api/pull"),
    ("POST", "/api/create"),
    ("POST", "/api/copy"),
    ("DELETE", "/api/delete"),
)


async def manage_route(request: web.Request) -> web.StreamResponse:
    if refused := wrong_token(request):
        return refused
    state = request.app[STATE]
    state.jobs[request.path] = state.jobs.get(request.path, 0) + 1
    try:
        return await forward(request, request.path, await request.read(), method=request.method)
    finally:
        state.refreshed_at = 0.0  # its models may have changed: a heartbeat now, with a fresh look, tells
        state.wake.set()  # every hub


for path in JOB_ROUTES:
    routes.post(path)(job_route)
for method, path in MANAGE_ROUTES:
    routes.route(method, path)(manage_route)
for path in READ_ROUTES:
    routes.get(path, allow_head=False)(read_route)
