"""The simulator's OpenAI-compatible routes, shaped like Ollama's own /v1 middleware answers."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from typing import Any

from aiohttp import web

from ollama_connector.shared import sse
from ollama_connector.shared.bodies import read_json_object
from ollama_connector.sim.engine import Engine, embedding
from ollama_connector.sim.generation import (
    ApiError,
    MidStreamError,
    find_model,
    generation,
    prompt_tokens,
    tokens,
)
from ollama_connector.sim.keys import ENGINE
from ollama_connector.sim.prompt_cache import chat_turns, rendered
from ollama_connector.sim.routes import reply

routes = web.RouteTableDef()
_ids = itertools.count()
NOT_FOUND = 'model "{}" not found, try pulling it first'  # the scheduler's words (chat and completions)


def usage(prompt: str, produced: int) -> dict[str, int]:
    prompt_count = prompt_tokens(prompt)
    return {
        "prompt_tokens": prompt_count,
        "completion_tokens": produced,
        "total_tokens": prompt_count + produced,
    }


async def completion(request: web.Request, chat: bool) -> web.StreamResponse:
    engine: Engine = request.app[ENGINE]
    body = await read_json_object(request, lone_surrogates="replace")
    engine.recent.append({"route": request.path, **body})
    name = find_model(engine, body.get("model"), NOT_FOUND)
    if chat:
        prompt = " ".join(
            str(m.get("content", "")) for m in body.get("messages") or [] if isinstance(m, dict)
        )
    else:
        prompt = str(body.get("prompt", ""))
    limit = body.get("max_tokens")
    valid = isinstance(limit, int) and not isinstance(limit, bool) and limit >= 0
    count, cut = engine.length(prompt, limit if valid else None)
    finish = "length" if cut else "stop"
    ident = f"{'chatcmpl' if chat else 'cmpl'}-{next(_ids) % 999}"
    created = int(time.time())
    base = {"id": ident, "object": "", "created": created, "model": name, "system_fingerprint": "fp_ollama"}
    # Ollama's /v1 routes go through the same scheduler: queue, load, a slot held to the end.
    seen = rendered(chat_turns(body.get("messages"))) if chat else str(body.get("prompt", ""))
    async with generation(engine, name, prompt=seen) as run:
        if not body.get("stream"):
            text = "".join([t async for t in tokens(engine, count, request, run, prompt)])
            choice: dict[str, Any] = {"index": 0, "finish_reason": finish}
            if chat:
                choice["message"] = {"role": "assistant", "content": text}
            else:
                choice["text"] = text
            kind = "chat.completion" if chat else "text_completion"
            return reply({**base, "object": kind, "choices": [choice], "usage": usage(prompt, count)})
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        kind = "chat.completion.chunk" if chat else "text_completion"

        def event(text: str | None, finish_reason: str | None) -> bytes:
            if chat:
                delta = {"role": "assistant", "content": text} if text is not None else {}
                choice = {"index": 0, "delta": delta, "finish_reason": finish_reason}
            else:
                choice = {"text": text or "", "index": 0, "finish_reason": finish_reason}
            return sse.data({**base, "object": kind, "choices": [choice]})

        try:
            async for token in tokens(engine, count, request, run, prompt):
                await response.write(event(token, None))
        except MidStreamError as exc:  # as vLLM ends a failed stream: the error, then [DONE] in a later write
            await response.write(sse.data({"error": {"message": str(exc), "type": "api_error", "code": 500}}))
            await asyncio.sleep(0.05)
            await response.write(sse.DONE)
            await response.write_eof()
            return response
        end = event(None if chat else "", finish)
        options = body.get("stream_options")
        if isinstance(options, dict) and options.get("include_usage"):  # OpenAI's last chunk: usage only
            chunk = {**base, "object": kind, "choices": [], "usage": usage(prompt, count)}
            end += sse.data(chunk)
        await response.write(end + sse.DONE)
        await response.write_eof()
        return response


@routes.post("/v1/chat/completions")
async def chat_completions(request: web.Request) -> web.StreamResponse:
    return await completion(request, chat=True)


@routes.post("/v1/completions")
async def completions(request: web.Request) -> web.StreamResponse:
    return await completion(request, chat=False)


@routes.post("/v1/embeddings")
async def embeddings(request: web.Request) -> web.Response:
    engine: Engine = request.app[ENGINE]
    body = await read_json_object(request, lone_surrogates="replace")
    engine.recent.append({"route": request.path, **body})
    name = find_model(engine, body.get("model"), NOT_FOUND)
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


@routes.post("/v1/audio/transcriptions")
async def transcriptions(request: web.Request) -> web.Response:
    """A form with the audio; Ollama runs it as a chat and answers the whole text (`TranscriptionWriter`)."""
    engine: Engine = request.app[ENGINE]
    try:
        form = await request.post()
    except ValueError as exc:
        raise ApiError(400, f"failed to parse multipart form: {exc}") from None
    model, audio = form.get("model"), form.get("file")
    engine.recent.append({"route": request.path, "model": model, "fields": sorted(form.keys())})
    if not isinstance(model, str) or not model:
        raise ApiError(400, "model is required")
    if not isinstance(audio, web.FileField):
        raise ApiError(400, "file is required: http: no such file")
    if not audio.file.read(1):
        raise ApiError(400, "audio file is empty")
    name = find_model(engine, model)
    async with generation(engine, name) as run:
        text = "".join([t async for t in tokens(engine, engine.length("", None)[0], request, run)]).strip()
    if form.get("response_format") == "text":
        return web.Response(text=text, content_type="text/plain")
    return reply({"text": text})
