"""The simulator's OpenAI-compatible routes, shaped like Ollama's own /v1 middleware answers."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from typing import Any

from aiohttp import web

from ollama_connector.shared import error_formats
from ollama_connector.shared.bodies import read_json_object
from ollama_connector.sim.engine import Engine, embedding
from ollama_connector.sim.keys import ENGINE
from ollama_connector.sim.routes import SimulatedCrash, compact, reply

routes = web.RouteTableDef()
_ids = itertools.count()


class OpenAIError(Exception):
    def __init__(self, status: int, message: str, kind: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.kind = status, message, kind

    def response(self) -> web.Response:
        body = error_formats.OpenAI.body(self.message, self.status, self.kind)
        return web.json_response(body, status=self.status)


def find_model(engine: Engine, body: dict) -> str:
    name = body.get("model")
    if not isinstance(name, str) or not name:
        raise OpenAIError(400, "model is required")
    if engine.catalog.find(name) is None:
        raise OpenAIError(404, f'model "{name}" not found, try pulling it first')
    return name


def usage(prompt: str, produced: int) -> dict[str, int]:
    prompt_tokens = max(1, len(prompt.split()))
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": produced,
        "total_tokens": prompt_tokens + produced,
    }


async def completion(request: web.Request, chat: bool) -> web.StreamResponse:
    engine: Engine = request.app[ENGINE]
    body = await read_json_object(request)
    engine.recent.append({"route": request.path, **body})
    name = find_model(engine, body)
    if chat:
        prompt = " ".join(
            str(m.get("content", "")) for m in body.get("messages") or [] if isinstance(m, dict)
        )
    else:
        prompt = str(body.get("prompt", ""))
    limit = body.get("max_tokens")
    count = limit if isinstance(limit, int) and limit >= 0 else engine.behaviour.default_tokens
    finish = "length" if isinstance(limit, int) else "stop"
    ident = f"{'chatcmpl' if chat else 'cmpl'}-{next(_ids) % 999}"
    created = int(time.time())
    base = {"id": ident, "object": "", "created": created, "model": name, "system_fingerprint": "fp_ollama"}
    engine.stats.requests += 1
    engine.stats.in_flight += 1
    fault = engine.behaviour.draw_fault()
    async with contextlib.AsyncExitStack() as stack:
        try:
            if fault == "hang":
                await engine.hang()
            # Ollama's /v1 routes go through the same scheduler: queue, load, a slot held to the end.
            await stack.enter_async_context(engine.scheduler.slot(engine.catalog.find(name), None, None))
            if fault == "fail":
                engine.stats.failed += 1
                raise OpenAIError(500, "an error was encountered while running the model (simulated)")
            if not body.get("stream"):
                text = "".join([t async for t in engine.tokens(count, request, fault)])
                if fault == "die":
                    engine.stats.failed += 1
                    raise SimulatedCrash
                choice: dict[str, Any] = {"index": 0, "finish_reason": finish}
                if chat:
                    choice["message"] = {"role": "assistant", "content": text}
                else:
                    choice["text"] = text
                kind = "chat.completion" if chat else "text_completion"
                result = reply({**base, "object": kind, "choices": [choice], "usage": usage(prompt, count)})
                engine.stats.completed += 1
                return result
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            kind = "chat.completion.chunk" if chat else "text_completion"

            def event(text: str | None, finish_reason: str | None) -> bytes:
                if chat:
                    delta = {"role": "assistant", "content": text} if text is not None else {}
                    choice = {"index": 0, "delta": delta, "finish_reason": finish_reason}
                else:
                    choice = {"text": text or "", "index": 0, "finish_reason": finish_reason}
                return b"data: " + compact({**base, "object": kind, "choices": [choice]}) + b"\n\n"

            async for token in engine.tokens(count, request, fault):
                await response.write(event(token, None))
            if fault == "die":
                engine.stats.failed += 1
                raise SimulatedCrash
            await response.write(event(None if chat else "", finish))
            options = body.get("stream_options")
            if isinstance(options, dict) and options.get("include_usage"):  # OpenAI's last chunk: usage only
                chunk = {**base, "object": kind, "choices": [], "usage": usage(prompt, count)}
                await response.write(b"data: " + compact(chunk) + b"\n\n")
            await response.write(b"data: [DONE]\n\n")
            await response.write_eof()
            engine.stats.completed += 1
            return response
        except (asyncio.CancelledError, ConnectionResetError):
            engine.stats.cancelled += 1
            raise
        finally:
            engine.stats.in_flight -= 1


@routes.post("/v1/chat/completions")
async def chat_completions(request: web.Request) -> web.StreamResponse:
    return await completion(request, chat=True)


@routes.post("/v1/completions")
async def completions(request: web.Request) -> web.StreamResponse:
    return await completion(request, chat=False)


@routes.post("/v1/embeddings")
async def embeddings(request: web.Request) -> web.Response:
    engine: Engine = request.app[ENGINE]
    body = await read_json_object(request)
    engine.recent.append({"route": request.path, **body})
    name = find_model(engine, body)
    given = body.get("input", "")
    inputs = [given] if isinstance(given, str) else [str(item) for item in given]
    data = [
        {"object": "embedding", "embedding": embedding(text), "index": i} for i, text in enumerate(inputs)
    ]
    tokens = sum(len(text.split()) for text in inputs)
    return reply(
        {
            "object": "list",
            "data": data,
            "model": name,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
    )


@routes.get("/v1/models")
async def models(request: web.Request) -> web.Response:
    engine: Engine = request.app[ENGINE]
    data = [
        {"id": m.name, "object": "model", "created": int(time.time()), "owned_by": "library"}
        for m in engine.catalog.all()
    ]
    return web.Response(body=json.dumps({"object": "list", "data": data}), content_type="application/json")
