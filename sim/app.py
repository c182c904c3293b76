"""The simulator's app factory and its small control API under /_sim/."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

from aiohttp import web

from ollama_connector.shared import error_formats
from ollama_connector.shared.bodies import BadRequest, read_json_object
from ollama_connector.sim import anthropic, models_api, openai, responses
from ollama_connector.sim.behaviour import Behaviour
from ollama_connector.sim.catalog import Catalog
from ollama_connector.sim.engine import Engine
from ollama_connector.sim.generation import ApiError, SimulatedCrash
from ollama_connector.sim.keys import ENGINE, VERSION
from ollama_connector.sim.routes import OllamaError, routes
from ollama_connector.sim.scheduler import ServerBusy

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def ollama_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Errors in Ollama's shapes: each route's dialect (shared.error_formats), and gin's plain-text 404 and
    405."""
    try:
        return await handler(request)
    except SimulatedCrash:
        # The socket is already closed; this response only lets aiohttp finish the request quietly.
        return web.Response(status=500)
    except ApiError as exc:
        return exc.response(request.path)
    except ServerBusy as exc:
        return error_formats.response(error_formats.stream_format(request.path), 503, str(exc))
    except OllamaError as exc:
        return error_formats.response(error_formats.Ollama, exc.status, exc.message)
    except BadRequest as exc:
        return error_formats.response(error_formats.stream_format(request.path), exc.status, str(exc))
    except web.HTTPNotFound:
        return web.Response(status=404, text="404 page not found")
    except web.HTTPMethodNotAllowed:
        return web.Response(status=405, text="405 method not allowed")
    except web.HTTPRequestEntityTooLarge as exc:
        return error_formats.response(error_formats.Ollama, 413, exc.text or "request body too large")


FLOODED = ("/api/generate", "/api/chat", "/v1/chat/completions", "/v1/completions")
FLOOD_CHUNK = b"x" * (1 << 20)


@web.middleware
async def floods(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A broken runner's answer (flood_rate): 200, then one line without end, a MiB at a time, until the
    caller goes. What a hub must not buffer."""
    behaviour = request.app[ENGINE].behaviour
    if (
        request.path not in FLOODED
        or not behaviour.flood_rate
        or behaviour.rng.random() >= behaviour.flood_rate
    ):
        return await handler(request)
    streamed = (await request.json()).get("stream", "/v1/" not in request.path) is not False
    kind = "application/x-ndjson" if streamed else "application/json"
    response = web.StreamResponse(headers={"Content-Type": kind})
    await response.prepare(request)
    try:
        while True:
            await response.write(FLOOD_CHUNK)
    except (ConnectionResetError, OSError):
        return response


async def sim_stats(request: web.Request) -> web.Response:
    return web.json_response(request.app[ENGINE].all_stats())


async def sim_requests(request: web.Request) -> web.Response:
    return web.json_response(list(request.app[ENGINE].recent))


async def sim_config(request: web.Request) -> web.Response:
    behaviour = request.app[ENGINE].behaviour
    if request.method == "POST":
        try:
            behaviour.update(await read_json_object(request, lone_surrogates="replace"))
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
    return web.json_response(behaviour.knobs(), dumps=json.dumps)


def create_app(
    models: list[str], behaviour: Behaviour | None = None, version: str = "0.33.0", api: str = "ollama"
) -> web.Application:
    """The simulator; `api="openai"` serves only OpenAI's routes (/v1), as llama.cpp's or vLLM's server."""
    app = web.Application(middlewares=[ollama_errors, floods], client_max_size=64 * 1024 * 1024)
    app[ENGINE] = Engine(Catalog(models), behaviour or Behaviour())
    app[VERSION] = version
    if api == "ollama":
        app.add_routes(routes)
        app.add_routes(models_api.routes)
        app.add_routes(anthropic.routes)
        app.add_routes(responses.routes)
    app.add_routes(openai.routes)
    app.router.add_get("/_sim/stats", sim_stats)
    app.router.add_get("/_sim/requests", sim_requests)
    app.router.add_route("*", "/_sim/config", sim_config)
    return app
