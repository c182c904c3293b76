"""API keys: with API_KEYS set, the hub's callers must present one of them as a bearer token (or, on
Anthropic's route, as Anthropic's clients send it: an `x-api-key` header)."""

from __future__ import annotations

import hashlib

from aiohttp import web

from ollama_connector.hubd.errors import Handler, Unauthorized
from ollama_connector.hubd.keys import SETTINGS
from ollama_connector.shared.auth import bearer_of, is_one_of

# What stays open with API_KEYS set: the agents' heartbeats (they carry CLUSTER_TOKEN), the health check,
# the plain `Ollama is running` / dashboard page (which holds no data; its script sends the key), and the
# API's description; and /metrics with METRICS_PUBLIC=1.
OPEN_PATHS = {"/healthz", "/nodes/heartbeat", "/", "/openapi.json"}
X_API_KEY_PATHS = {"/v1/messages"}
CALLER = web.RequestKey("caller", str)


def presented_keys(request: web.Request) -> list[str]:
    """The keys a request presents: its bearer token, and its x-api-key on Anthropic's route."""
    keys = [bearer_of(request)]
    if request.path in X_API_KEY_PATHS:
        keys.append(request.headers.get("x-api-key", "").strip() or None)
    return [key for key in keys if key]


@web.middleware
async def api_keys(request: web.Request, handler: Handler) -> web.StreamResponse:
    settings = request.app[SETTINGS]
    keys = settings.api_keys
    public = request.path in OPEN_PATHS or (request.path == "/metrics" and settings.metrics_public)
    if keys and not public and not any([is_one_of(key, keys) for key in presented_keys(request)]):
        how = "x-api-key: <key> or " if request.path in X_API_KEY_PATHS else ""
        raise Unauthorized(f"missing or wrong API key ({how}Authorization: Bearer <key>)")
    return await handler(request)


def caller_of(request: web.Request) -> str:
    """Who is calling, for rate limits and the queue's turns: the key presented (hashed: no secret is
    kept), or the caller's address."""
    if (known := request.get(CALLER)) is not None:  # asked several times a request: found once
        return known
    keys = request.app[SETTINGS].api_keys
    presented = [key for key in presented_keys(request) if is_one_of(key, keys)] if keys else []
    caller = "key:" + hashlib.sha256(presented[0].encode()).hexdigest()[:16] if presented else None
    request[CALLER] = caller or "addr:" + (request.remote or "?")
    return request[CALLER]
