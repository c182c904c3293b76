"""API keys: with API_KEYS set, the hub's callers must present one of them as a bearer token."""

from __future__ import annotations

import hashlib

from aiohttp import web

from ollama_connector.hubd.errors import Handler, Unauthorized
from ollama_connector.hubd.keys import SETTINGS
from ollama_connector.shared.auth import carries_one_of

# What stays open with API_KEYS set: the agents' heartbeats (they carry CLUSTER_TOKEN), the health check,
# the plain `Ollama is running` / dashboard page (which holds no data; its script sends the key), and the
# API's description; and /metrics with METRICS_PUBLIC=1.
OPEN_PATHS = {"/healthz", "/nodes/heartbeat", "/", "/openapi.json"}


@web.middleware
async def api_keys(request: web.Request, handler: Handler) -> web.StreamResponse:
    settings = request.app[SETTINGS]
    keys = settings.api_keys
    public = request.path in OPEN_PATHS or (request.path == "/metrics" and settings.metrics_public)
    if keys and not public and not carries_one_of(request, keys):
        raise Unauthorized("missing or wrong API key (Authorization: Bearer <key>)")
    return await handler(request)


def caller_of(request: web.Request) -> str:
    """Who is calling, for rate limits and the queue's turns: the key presented (hashed: no secret is
    kept), or the caller's address."""
    scheme, _, key = request.headers.get("Authorization", "").partition(" ")
    if request.app[SETTINGS].api_keys and scheme.lower() == "bearer" and key:
        return "key:" + hashlib.sha256(key.strip().encode()).hexdigest()[:16]
    return "addr:" + (request.remote or "?")
