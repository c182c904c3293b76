"""The node agent's app factory."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web
from yarl import URL

from ollama_connector.noded import metrics, routes
from ollama_connector.noded.heartbeat import heartbeat_ctx, tell_every_hub
from ollama_connector.noded.keys import SESSION, SETTINGS, STATE, TASKS, AgentState
from ollama_connector.noded.proxy import refusal
from ollama_connector.noded.pulls import pull_ctx
from ollama_connector.noded.settings import NodeSettings
from ollama_connector.noded.slots import Slots
from ollama_connector.shared.agent_contract import (
    CHALLENGE_HEADER,
    IN_FLIGHT_HEADER,
    PROOF_HEADER,
    Reason,
    in_flight_header,
    proof,
)
from ollama_connector.shared.auth import is_authorized
from ollama_connector.shared.bodies import BadRequest
from ollama_connector.shared.settings import warn_if_open
from ollama_connector.shared.tls import client_context, server_context

log = logging.getLogger("noded")


@web.middleware
async def error_bodies(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Errors in the dialect of the route, since the agent speaks for its Ollama."""
    try:
        return await handler(request)
    except BadRequest as exc:
        return refusal(request.path, exc.status, Reason.CALLER_ERROR, str(exc))
    except web.HTTPRequestEntityTooLarge:
        return refusal(request.path, 413, Reason.TOO_LARGE, "request body too large")


async def client_session_ctx(app: web.Application) -> AsyncIterator[None]:
    # An https:// hub is verified against HUB_CA_FILE (or the system's CAs when it is unset).
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, ssl=client_context(app[SETTINGS].hub_ca_file))
    async with aiohttp.ClientSession(connector=connector, auto_decompress=False) as session:
        app[SESSION] = session
        yield


async def sign_answer(request: web.BaseRequest, response: web.StreamResponse) -> None:
    """Prove to the hub that its call reached this agent (shared.agent_contract): only to a caller that
    presented our credential, so that nobody else can use us to sign. With the proof, the jobs in flight
    here per model, so that every hub's picture of the node stays current between heartbeats."""
    token = request.app[SETTINGS].hub_token
    if (challenge := request.headers.get(CHALLENGE_HEADER)) and is_authorized(request, token):
        response.headers[PROOF_HEADER] = proof(token.get_secret_value() if token else None, challenge)
        response.headers[IN_FLIGHT_HEADER] = in_flight_header(request.app[STATE].slots.view())


def create_app(settings: NodeSettings) -> web.Application:
    if settings.hub_token is None:
        warn_if_open(log, settings.hosts, "anyone who reaches this agent can run prompts on its Ollama")
    ollama_host = URL(settings.ollama_url).host or ""
    if ollama_host not in ("localhost", "::1") and not ollama_host.startswith("127."):
        log.warning(
            "OLLAMA_BASE_URL points at %s: keep Ollama on loopback, so that the agent is the only way in",
            ollama_host,
        )
    app = web.Application(middlewares=[error_bodies], client_max_size=64 * 1024 * 1024)
    app[SETTINGS] = settings
    app[STATE] = state = AgentState(port=settings.port)
    several = len(settings.server_url) > 1
    state.slots = Slots(settings.num_parallel, settings.max_loaded_models or 3, state.wake.set, several)
    app[TASKS] = {}
    app.on_response_prepare.append(sign_answer)
    app.cleanup_ctx.extend([client_session_ctx, heartbeat_ctx, pull_ctx])
    app[metrics.METRICS] = metrics.metrics_registry(app[STATE], settings.node_id)
    app.add_routes(routes.routes)
    app.add_routes(metrics.routes)
    return app


async def drain(app: web.Application) -> None:
    """Before stopping: refuse new jobs and tell the hub at once, so it sends them elsewhere."""
    state = app[STATE]
    state.draining = True
    log.info("draining: telling the hub; %d job(s) in flight will finish first", state.active_jobs)
    await tell_every_hub(app)


def runner_options(settings: NodeSettings) -> dict[str, Any]:
    """HTTPS when NODE_TLS_CERT is set."""
    return {"ssl_context": server_context(settings.tls_cert, settings.tls_key)}


def mark_listening(app: web.Application, port: int) -> None:
    """Called once the port accepts connections: heartbeats may now advertise it."""
    app[STATE].port = port
    app[STATE].listening.set()
