"""The simulator's Anthropic Messages API (`POST /v1/messages`), shaped as Ollama's middleware answers it
(ollama/ollama `middleware/anthropic.go`, `anthropic/anthropic.go`): its checks, its message object, and its
named event stream."""

from __future__ import annotations

import secrets
from typing import Any

from aiohttp import web

from ollama_connector.shared import sse
from ollama_connector.shared.bodies import read_json_object
from ollama_connector.sim.engine import Engine
from ollama_connector.sim.generation import ApiError, find_model, generation, prompt_tokens, tokens
from ollama_connector.sim.keys import ENGINE
from ollama_connector.sim.prompt_cache import chat_turns, rendered
from ollama_connector.sim.routes import reply

routes = web.RouteTableDef()


def text_of(content: Any) -> str:
    """A message's or the system prompt's text: a string, or the text of its content blocks."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            str(b.get("text", "")) for b in content if isinstance(b, dict) and b.get("type") == "text"
        )
    return ""


def event(name: str, data: dict[str, Any]) -> bytes:
    return sse.named(name, {"type": name, **data})


@routes.post("/v1/messages")
async def messages(request: web.Request) -> web.StreamResponse:
    engine: Engine = request.app[ENGINE]
    body = await read_json_object(request, lone_surrogates="replace")
    engine.recent.append({"route": request.path, **body})
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise ApiError(400, "model is required")
    max_tokens = body.get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens <= 0:
        raise ApiError(400, "max_tokens is required and must be positive")
    said = body.get("messages")
    if not isinstance(said, list) or not said:
        raise ApiError(400, "messages is required")
    name = find_model(engine, body["model"])
    prompt = " ".join(
        [text_of(body.get("system"))] + [text_of(m.get("content")) for m in said if isinstance(m, dict)]
    )
    # Ollama maps max_tokens to num_predict; a simulated model says what it has to say within it.
    count, cut = engine.length(prompt, max_tokens, cap=True)
    stop_reason = "max_tokens" if cut else "end_turn"
    ident = "msg_" + secrets.token_hex(12)
    usage = {"input_tokens": prompt_tokens(prompt), "output_tokens": count}
    message: dict[str, Any] = {"id": ident, "type": "message", "role": "assistant", "model": body["model"]}
    seen = rendered([("system", text_of(body.get("system"))), *chat_turns(said)])
    async with generation(engine, name, prompt=seen) as run:
        if body.get("stream") is not True:
            text = "".join([t async for t in tokens(engine, count, request, run, prompt)])
            content = [{"type": "text", "text": text}]
            return reply({**message, "content": content, "stop_reason": stop_reason, "usage": usage})
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        # Ollama writes message_start with the model's first chunk, not before: the load comes first.
        start = event(
            "message_start", {"message": {**message, "content": [], "usage": {**usage, "output_tokens": 0}}}
        )
        opening = event("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}})
        first = True
        async for token in tokens(engine, count, request, run, prompt):
            delta = event("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": token}})
            await response.write(start + opening + delta if first else delta)
            first = False
        end = start if first else event("content_block_stop", {"index": 0})
        end += event("message_delta", {"delta": {"stop_reason": stop_reason}, "usage": usage})
        await response.write(end + event("message_stop", {}))
        await response.write_eof()
        return response
