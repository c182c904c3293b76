"""Anthropic's Messages API (`POST /v1/messages`), which Claude Code and other Anthropic clients speak:
relayed to the nodes' own Ollama, which translates it. The hub checks what Ollama's middleware checks
first, so a malformed request is answered at once, in Anthropic's format, without taking a node's slot."""

from __future__ import annotations

from aiohttp import web

from ollama_connector.hubd.guard.limits import required_model
from ollama_connector.hubd.jobs.dispatch import dispatch
from ollama_connector.hubd.jobs.job import new_job
from ollama_connector.shared.bodies import BadRequest, read_json_object

routes = web.RouteTableDef()


@routes.post("/v1/messages")
async def messages(request: web.Request) -> web.StreamResponse:
    body = await read_json_object(request)
    model = required_model(body.get("model"))
    max_tokens = body.get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens <= 0:
        raise BadRequest("max_tokens is required and must be positive")
    if not isinstance(body.get("messages"), list) or not body["messages"]:
        raise BadRequest("messages is required")
    stream = body.get("stream") is True  # Anthropic's default is not to stream
    return await dispatch(request, await new_job(request, body, model, stream, options=False))
