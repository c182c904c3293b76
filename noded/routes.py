"""The agent's API: /execute for the hub's jobs, /healthz for probes."""

from __future__ import annotations

import logging

import aiohttp
from aiohttp import web

from noded.keys import SETTINGS, STATE
from noded.ollama import ollama_json
from noded.proxy import forward, ollama_error
from shared.auth import is_authorized
from shared.relay import describe

log = logging.getLogger(__name__)
routes = web.RouteTableDef()


def check_token(request: web.Request) -> None:
    if not is_authorized(request, request.app[SETTINGS].cluster_token):
        raise web.HTTPUnauthorized(
            text='{"error": "missing or wrong cluster token"}', content_type="application/json"
        )


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    """200 when the local Ollama answers, 503 when it does not."""
    state = request.app[STATE]
    try:
        version = await ollama_json(request.app, "/api/version")
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        return web.json_response(
            {"status": "unhealthy", "ollama": "down", "detail": describe(exc)}, status=503
        )
    return web.json_response(
        {
            "status": "draining" if state.draining else "ok",
            "ollama": "up",
            "ollama_version": version.get("version"),
            "active_jobs": state.active_jobs,
        }
    )


async def run_job(request: web.Request, ollama_path: str) -> web.StreamResponse:
    check_token(request)
    # Relayed as sent: the hub has validated it, and Ollama answers anything malformed itself.
    body = await request.read()
    state = request.app[STATE]
    if state.draining:
        return ollama_error(503, "node is draining and takes no new jobs")
    state.active_jobs += 1
    try:
        log.debug("job %s on %s", request.headers.get("X-Job-Id", "-"), ollama_path)
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
)
READ_ROUTES = ("/api/tags", "/api/ps", "/api/version", "/v1/models")


async def job_route(request: web.Request) -> web.StreamResponse:
    return await run_job(request, request.path)


async def read_route(request: web.Request) -> web.StreamResponse:
    check_token(request)
    return await forward(request, request.path, None, method="GET")


for path in JOB_ROUTES:
    routes.post(path)(job_route)
for path in READ_ROUTES:
    routes.get(path, allow_head=False)(read_route)
