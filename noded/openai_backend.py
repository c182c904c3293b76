"""Serving Ollama's routes from an engine that speaks only OpenAI's API (BACKEND=openai; noded.translate).

Jobs are translated there and back, with the same keep-alives for the hub as a relayed Ollama answer
(noded.keepalive). The read routes are answered from what the engine's /v1/models lists: `/api/tags` (no
sizes: the engine does not say), `/api/ps` (every model it lists: it serves them), `/api/show` (the name
only).
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

import aiohttp
from aiohttp import web

from ollama_connector.noded.keepalive import KeepAlive
from ollama_connector.noded.keys import STATE
from ollama_connector.noded.proxy import OllamaUnreachable, ask_engine, refusal
from ollama_connector.noded.translate import Clock, StreamTranslator, now, ollama_answer, openai_request
from ollama_connector.shared.agent_contract import REASON_HEADER, Head, Reason, reason_for_ollama_status
from ollama_connector.shared.error_formats import NDJSON, message_of
from ollama_connector.shared.modelnames import canonical
from ollama_connector.shared.relay import LineReader, UpstreamBroken

TRANSLATED = ("/execute", "/api/generate", "/api/chat", "/api/embed", "/api/embeddings")


async def translated(
    request: web.Request, path: str, payload: bytes, every: float | None
) -> web.StreamResponse:
    if (body := _body(payload)) is None:
        return refusal(path, 400, Reason.CALLER_ERROR, "invalid request body")
    model = body["model"]
    if (nothing := load_or_unload(path, body)) is not None:
        return web.json_response(nothing)
    route, sent, stream = openai_request(path, body)
    keepalive = KeepAlive(request, every) if every is not None else None
    clock = Clock()
    try:
        upstream = await ask_engine(request, route, json.dumps(sent).encode(), "POST")
    except OllamaUnreachable as exc:
        return await _answer(request, keepalive, 502, _error(str(exc)), Reason.OLLAMA_DOWN)
    except BaseException:
        if keepalive is not None:
            keepalive.cancel()
        raise
    async with upstream:
        if upstream.status >= 400:
            text = await upstream.content.read(64 * 1024)  # what an error says: its start is enough
            message = message_of(text) or text.decode(errors="replace")[:300] or f"HTTP {upstream.status}"
            if upstream.status == 404:
                message = (
                    f'model "{model}" not found, try pulling it first'  # Ollama's words, which clients read
                )
            return await _answer(request, keepalive, upstream.status, _error(message))
        if not stream:
            try:
                answer = json.loads(await LineReader(upstream.content).read_rest())  # bounded: MAX_REST_BYTES
            except UpstreamBroken as exc:
                return await _answer(request, keepalive, 502, _error(f"the engine failed: {exc}"))
            except ValueError:
                return await _answer(
                    request, keepalive, 502, _error("the engine answered something not JSON")
                )
            result = ollama_answer(path, model, answer if isinstance(answer, dict) else {}, clock)
            return await _answer(
                request, keepalive, 200, json.dumps(result).encode(), content_type="application/json"
            )
        return await _stream(request, keepalive, StreamTranslator(path, model, clock), upstream)


def load_or_unload(path: str, body: dict[str, Any]) -> dict[str, Any] | None:
    """Ollama's answer to a request with nothing to generate (a preload, or `ollama stop`'s unload), when
    it is one: such an engine keeps its models loaded, so nothing is sent to it and nothing is generated."""
    if path == "/api/generate" and not body.get("prompt"):
        piece: dict[str, Any] = {"response": ""}
    elif path == "/api/chat" and not body.get("messages"):
        piece = {"message": {"role": "assistant", "content": ""}}
    else:
        return None
    keep_alive = body.get("keep_alive")
    unload = keep_alive in (0, "0", "0s", "0m")
    reason = "unload" if unload else "load"
    return {"model": body["model"], "created_at": now(), **piece, "done": True, "done_reason": reason}


def _body(payload: bytes) -> dict[str, Any] | None:
    """The request's JSON object, when it is one with a model name."""
    try:
        body = json.loads(payload or b"{}")
    except ValueError:
        return None
    return body if isinstance(body, dict) and isinstance(body.get("model") or body.get("name"), str) else None


def _error(message: str) -> bytes:
    return json.dumps({"error": message}).encode()


async def _open(request: web.Request, keepalive: KeepAlive | None, head: Head) -> web.StreamResponse:
    """The response to write to: the keep-alives' (framed: the head line goes first), or a new one."""
    if keepalive is not None and await keepalive.stop():
        assert keepalive.response is not None
        await keepalive.response.write(head.line())
        return keepalive.response
    headers = {"Content-Type": head.content_type, **({REASON_HEADER: head.reason} if head.reason else {})}
    response = web.StreamResponse(status=head.status, headers=headers)
    await response.prepare(request)
    return response


async def _answer(
    request: web.Request,
    keepalive: KeepAlive | None,
    status: int,
    body: bytes,
    reason: Reason | None = None,
    content_type: str = "application/json",
) -> web.StreamResponse:
    head = Head(status, content_type, reason or reason_for_ollama_status(status))
    try:
        response = await _open(request, keepalive, head)
        await response.write(body)
        await response.write_eof()
    except ConnectionResetError:  # the hub hung up
        return keepalive.response if keepalive and keepalive.response else web.Response(status=499)
    return response


async def _stream(
    request: web.Request,
    keepalive: KeepAlive | None,
    translator: StreamTranslator,
    upstream: aiohttp.ClientResponse,
) -> web.StreamResponse:
    try:
        response = await _open(request, keepalive, Head(200, NDJSON))
    except ConnectionResetError:
        return keepalive.response if keepalive and keepalive.response else web.Response(status=499)
    reader = LineReader(upstream.content)
    try:
        while line := await reader.next_line():
            if chunk := translator.feed(line):
                await response.write(chunk)
        await response.write(translator.end())
    except UpstreamBroken as exc:
        request.app[STATE].relay_errors += 1
        with contextlib.suppress(ConnectionResetError):
            await response.write(_error(f"the engine failed mid-stream: {exc}") + b"\n")
    except ConnectionResetError:
        return response  # the hub hung up: leaving closes the engine's request, which stops it
    with contextlib.suppress(ConnectionResetError):
        await response.write_eof()
    return response


def read_answer(request: web.Request) -> web.Response:
    """Ollama's read routes for an OpenAI engine, from its model list."""
    state = request.app[STATE]
    if request.path == "/api/version":
        return web.json_response(
            {"version": "0.0.0"}
        )  # not an Ollama: the hub's lowest-version rule skips it
    if request.path == "/api/status":  # it runs no Ollama cloud models: nothing disables them either
        return web.json_response({"cloud": {"disabled": False, "source": "none"}})
    if request.path == "/api/ps":  # what it lists it serves, so all of it is loaded
        return web.json_response(
            {"models": [{"name": m, "model": m, "size": 0, "size_vram": 0} for m in state.models]}
        )
    models = [
        {
            "name": name,
            "model": name,
            "modified_at": now(),
            "size": 0,
            "digest": "",
            "details": {"format": "gguf"},
        }
        for name in state.models
    ]
    return web.json_response({"models": models})


async def show(request: web.Request, payload: bytes) -> web.Response:
    if (body := _body(payload)) is None:
        return refusal(request.path, 400, Reason.CALLER_ERROR, "invalid request body")
    name = body.get("model") or body.get("name")
    if not any(canonical(m) == canonical(str(name)) for m in request.app[STATE].models):
        return refusal(request.path, 404, Reason.MODEL_MISSING, f"model '{name}' not found")
    return web.json_response(
        {
            "modelfile": "",
            "parameters": "",
            "template": "",
            "details": {"format": "gguf"},
            "model_info": {},
            "capabilities": ["completion"],
        }
    )
