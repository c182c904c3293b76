"""Ollama's native routes, as `../shared/reference/ollama-api.md` describes the real server."""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from ollama_connector.shared.bodies import num_ctx_of, read_json_object
from ollama_connector.sim.behaviour import parse_keep_alive
from ollama_connector.sim.catalog import SimModel, now_rfc3339
from ollama_connector.sim.engine import Engine, embedding
from ollama_connector.sim.generation import MidStreamError, Run, generation, tokens
from ollama_connector.sim.keys import ENGINE, VERSION
from ollama_connector.sim.prompt_cache import chat_turns, content_text, rendered
from ollama_connector.sim.scheduler import finite

routes = web.RouteTableDef()
MODEL_NAME = re.compile(
    r"^(?:[A-Za-z0-9_][A-Za-z0-9_.-]*/){0,2}[A-Za-z0-9_][A-Za-z0-9_.-]{0,79}(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,79})?$"
)
_THINK_LEVELS = {"low", "medium", "high", "max"}


class OllamaError(Exception):
    """An error Ollama answers with `{"error": message}`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def compact(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def reply(obj: Any) -> web.Response:
    return web.Response(body=compact(obj), content_type="application/json", charset="utf-8")


def field(body: dict, name: str, kind: type | tuple[type, ...], go_type: str, default: Any = None) -> Any:
    value = body.get(name, default)
    if value is not None and (not isinstance(value, kind) or (kind is not bool and isinstance(value, bool))):
        raise OllamaError(
            400,
            f"json: cannot unmarshal {type(value).__name__} into Go struct field .{name} of type {go_type}",
        )
    return value


@routes.route("GET", "/")
async def root(request: web.Request) -> web.Response:
    return web.Response(text="Ollama is running")


@routes.get("/api/version")
async def version(request: web.Request) -> web.Response:
    return reply({"version": request.app[VERSION]})


@routes.get("/api/tags")
async def tags(request: web.Request) -> web.Response:
    return reply({"models": [m.tag_entry() for m in request.app[ENGINE].catalog.all()]})


@routes.get("/api/ps")
async def ps(request: web.Request) -> web.Response:
    return reply({"models": request.app[ENGINE].scheduler.ps()})


@routes.post("/api/show")
async def show(request: web.Request) -> web.Response:
    body = await read_json_object(request, lone_surrogates="replace")
    name = field(body, "model", str, "string") or field(body, "name", str, "string") or ""
    if not name:
        raise OllamaError(400, "model is required")
    model = request.app[ENGINE].catalog.find(name)
    if model is None:
        raise OllamaError(404, f"model '{name if ':' in name else name + ':latest'}' not found")
    return reply(model.show())


@routes.post("/api/generate")
async def generate(request: web.Request) -> web.StreamResponse:
    return await inference(request, "generate")


@routes.post("/api/chat")
async def chat(request: web.Request) -> web.StreamResponse:
    return await inference(request, "chat")


@dataclass
class Ask:
    """One validated generate or chat request."""

    kind: str  # "generate" or "chat"
    name: str  # the model string as the caller wrote it, echoed in every chunk
    model: SimModel
    prompt: str
    seen: str  # what the model sees (sim.prompt_cache.rendered): what its prompt costs
    options: dict | None
    keep_alive: float | None  # None: not set (a loaded model keeps its own)
    stream: bool
    raw: bool


async def inference(request: web.Request, kind: str) -> web.StreamResponse:
    engine: Engine = request.app[ENGINE]
    body = await read_json_object(request, lone_surrogates="replace")
    engine.recent.append({"route": kind, **body})
    ask = validate(engine, body, kind)
    empty = not ask.prompt if kind == "generate" else ask.prompt is None
    if empty:  # Ollama's load and unload shortcuts
        if ask.keep_alive == 0:
            engine.scheduler.unload_now(ask.model)
        else:
            await engine.scheduler.load_only(
                ask.model, num_ctx_of({"options": ask.options}), finite(ask.keep_alive)
            )
        reason = "unload" if ask.keep_alive == 0 else "load"
        return reply(_chunk(kind, ask.name, "", done=True, done_reason=reason))
    started = time.perf_counter_ns()
    num_ctx = num_ctx_of({"options": ask.options})
    async with generation(engine, ask.model, num_ctx, ask.keep_alive, ask.seen) as run:
        return await _generate(request, engine, ask, run, started)


def validate(engine: Engine, body: dict, kind: str) -> Ask:
    name = field(body, "model", str, "string", "")
    stream = field(body, "stream", bool, "bool", True)
    options = field(body, "options", dict, "map[string]interface {}")
    think = body.get("think")
    if not name:
        raise (
            OllamaError(404, "model '' not found")
            if kind == "generate"
            else OllamaError(400, "model is required")
        )
    if not MODEL_NAME.match(name):
        raise OllamaError(400, "invalid model name")
    if think is not None and not isinstance(think, bool) and think not in _THINK_LEVELS:
        raise OllamaError(
            400, f'invalid think value: "{think}" (must be "high", "medium", "low", "max", true, or false)'
        )
    model = engine.catalog.find(name)
    if model is None:
        raise OllamaError(404, f"model '{name}' not found")
    if model.is_embedding:
        raise OllamaError(400, f'"{name}" does not support {kind}')
    if think not in (None, False):
        raise OllamaError(400, f'"{name}" does not support thinking')
    try:
        keep_alive = parse_keep_alive(body.get("keep_alive"))
    except ValueError as exc:
        raise OllamaError(400, str(exc)) from None
    if kind == "generate":
        prompt: str | None = field(body, "prompt", str, "string", "")
        system = body.get("system") if isinstance(body.get("system"), str) else ""
        turns = [("system", system), ("user", content_text(prompt, body.get("images")))]
        seen = (prompt or "") if body.get("raw") else rendered(turns)
    else:
        messages = field(body, "messages", list, "[]api.Message", [])
        contents = [str(m.get("content", "")) for m in messages if isinstance(m, dict)]
        prompt = " ".join(contents) if messages else None
        seen = rendered(chat_turns(messages))
    raw = bool(body.get("raw"))
    return Ask(kind, name, model, prompt or "", seen, options, keep_alive, stream, raw)


async def _generate(
    request: web.Request, engine: Engine, ask: Ask, run: Run, started: int
) -> web.StreamResponse:
    load_ns = run.load_ns
    count, done_reason = engine.token_count(ask.options, ask.prompt)
    eval_started = time.perf_counter_ns()

    def metrics(produced: int) -> dict[str, Any]:
        now = time.perf_counter_ns()
        context = {"context": list(range(1, produced + 1))} if ask.kind == "generate" and not ask.raw else {}
        return {
            "done_reason": done_reason,
            **context,
            "total_duration": now - started,
            "load_duration": load_ns,
            "prompt_eval_count": run.prompt_tokens,
            "prompt_eval_duration": run.prompt_ns,
            "eval_count": produced,
            "eval_duration": max(1, now - eval_started),
        }

    if not ask.stream:
        parts = [token async for token in tokens(engine, count, request, run, ask.prompt)]
        return reply(_chunk(ask.kind, ask.name, "".join(parts), done=True, **metrics(len(parts))))

    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    await response.prepare(request)
    produced = 0
    try:
        async for token in tokens(engine, count, request, run, ask.prompt):
            await response.write(compact(_chunk(ask.kind, ask.name, token)) + b"\n")
            produced += 1
    except MidStreamError as exc:  # as Ollama ends a stream whose runner failed: an error line
        await response.write(compact({"error": str(exc)}) + b"\n")
        await response.write_eof()
        return response
    await response.write(compact(_chunk(ask.kind, ask.name, "", done=True, **metrics(produced))) + b"\n")
    await response.write_eof()
    return response


def _chunk(kind: str, name: str, text: str, done: bool = False, **extra: Any) -> dict[str, Any]:
    chunk: dict[str, Any] = {"model": name, "created_at": now_rfc3339()}
    if kind == "generate":
        chunk["response"] = text
    else:
        chunk["message"] = {"role": "assistant", "content": text}
    chunk["done"] = done
    chunk.update(extra)
    return chunk


@routes.post("/api/embed")
async def embed(request: web.Request) -> web.Response:
    engine: Engine = request.app[ENGINE]
    body = await read_json_object(request, lone_surrogates="replace")
    name = field(body, "model", str, "string", "")
    model = engine.catalog.find(name) if name else None
    if model is None and not name:
        raise OllamaError(404, "model '' not found")
    if model is None:
        raise OllamaError(404, f'model "{name}" not found, try pulling it first')
    given = body.get("input", [])
    if isinstance(given, str):
        inputs = [given] if given else []
    elif isinstance(given, list) and all(isinstance(item, str) for item in given):
        inputs = given
    else:
        raise OllamaError(400, "invalid input type")
    started = time.perf_counter_ns()
    async with engine.scheduler.slot(
        model, None, finite(parse_keep_alive(body.get("keep_alive")))
    ) as load_ns:
        pass
    dimensions = body.get("dimensions") or 384
    vectors = [embedding(text, dimensions) for text in inputs]
    out: dict[str, Any] = {"model": name, "embeddings": vectors}
    if inputs:
        out |= {
            "total_duration": time.perf_counter_ns() - started,
            "load_duration": load_ns,
            "prompt_eval_count": sum(len(t.split()) for t in inputs),
        }
    return reply(out)


@routes.post("/api/embeddings")
async def embeddings(request: web.Request) -> web.Response:
    engine: Engine = request.app[ENGINE]
    body = await read_json_object(request, lone_surrogates="replace")
    name = field(body, "model", str, "string", "")
    if not name:
        raise OllamaError(400, "model is required")
    if engine.catalog.find(name) is None:
        raise OllamaError(404, f'model "{name}" not found, try pulling it first')
    prompt = field(body, "prompt", str, "string", "")
    return reply({"embedding": embedding(prompt) if prompt else []})
