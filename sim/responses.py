"""The simulator's OpenAI Responses API (`POST /v1/responses`), shaped as Ollama's middleware answers it
(ollama/ollama `middleware/openai.go`, `openai/responses.go`): the response object and its event stream."""

from __future__ import annotations

import itertools
import time
from typing import Any

from aiohttp import web

from ollama_connector.shared import sse
from ollama_connector.shared.bodies import read_json_object
from ollama_connector.sim.engine import Engine
from ollama_connector.sim.generation import find_model, generation, prompt_tokens, tokens
from ollama_connector.sim.keys import ENGINE
from ollama_connector.sim.prompt_cache import chat_turns, rendered
from ollama_connector.sim.routes import reply

routes = web.RouteTableDef()
_ids = itertools.count(1)


def text_of(given: Any) -> str:
    """The text of `input`: a string, or messages whose content is a string or input_text parts."""
    if isinstance(given, str):
        return given
    texts: list[str] = []
    for item in given if isinstance(given, list) else []:
        content = item.get("content") if isinstance(item, dict) else None
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            texts += [str(p.get("text", "")) for p in content if isinstance(p, dict) and "text" in p]
    return " ".join(texts)


def response_object(
    body: dict[str, Any], ident: str, status: str, output: list, usage: Any
) -> dict[str, Any]:
    """The response object, with what the request set echoed back (`buildResponseObject`)."""

    def number(key: str) -> Any:
        value = body.get(key)
        return value if isinstance(value, int | float) and not isinstance(value, bool) else 1.0

    return {
        "id": ident,
        "object": "response",
        "created_at": int(time.time()),
        "completed_at": int(time.time()) if status == "completed" else None,
        "status": status,
        "incomplete_details": None,
        "model": body["model"],
        "previous_response_id": None,
        "instructions": body.get("instructions") or None,
        "output": output,
        "error": None,
        "tools": body.get("tools") or [],
        "tool_choice": "auto",
        "truncation": body.get("truncation") or "disabled",
        "parallel_tool_calls": True,
        "text": {"format": {"type": "text"}},
        "top_p": number("top_p"),
        "presence_penalty": 0,
        "frequency_penalty": 0,
        "top_logprobs": 0,
        "temperature": number("temperature"),
        "reasoning": None,
        "usage": usage,
        "max_output_tokens": body.get("max_output_tokens"),
        "max_tool_calls": None,
        "store": False,
        "background": bool(body.get("background")),
        "service_tier": "default",
        "metadata": {},
        "safety_identifier": None,
        "prompt_cache_key": None,
    }


def message_item(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
    return {"id": item_id, "type": "message", "status": status, "role": "assistant", "content": [part]}


class Events:
    """Named events, numbered in order (`sequence_number`), as `event: <type>` + `data:`."""

    def __init__(self) -> None:
        self.number = 0

    def __call__(self, kind: str, **data: Any) -> bytes:
        payload = {"type": kind, **data, "sequence_number": self.number}
        self.number += 1
        return sse.named(kind, payload)


@routes.post("/v1/responses")
async def responses(request: web.Request) -> web.StreamResponse:
    engine: Engine = request.app[ENGINE]
    body = await read_json_object(request, lone_surrogates="replace")
    engine.recent.append({"route": request.path, **body})
    name = find_model(engine, body.get("model"))
    prompt = " ".join([str(body.get("instructions") or ""), text_of(body.get("input"))])
    limit = body.get("max_output_tokens")
    count = engine.length(prompt, limit if isinstance(limit, int) and limit > 0 else None)[0]
    n = next(_ids)
    ident, item_id = f"resp_{n}", f"msg_{n}"
    usage = {
        "input_tokens": prompt_tokens(prompt),
        "output_tokens": count,
        "total_tokens": prompt_tokens(prompt) + count,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens_details": {"reasoning_tokens": 0},
    }
    given = body.get("input")
    turns = chat_turns(given) if isinstance(given, list) else [("user", text_of(given))]
    seen = rendered([("system", str(body.get("instructions") or "")), *turns])
    async with generation(engine, name, prompt=seen) as run:
        if body.get("stream") is not True:
            text = "".join([t async for t in tokens(engine, count, request, run, prompt)])
            return reply(response_object(body, ident, "completed", [message_item(item_id, text)], usage))
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        event, text, started = Events(), "", False
        where = {"item_id": item_id, "output_index": 0, "content_index": 0}

        def beginning() -> bytes:
            """With the first chunk: the response, its message item and its text part begin."""
            begun = response_object(body, ident, "in_progress", [], None)
            added = {**message_item(item_id, "", "in_progress"), "content": []}
            return (
                event("response.created", response=begun)
                + event("response.in_progress", response=begun)
                + event("response.output_item.added", output_index=0, item=added)
                + event("response.content_part.added", **where, part=message_item(item_id, "")["content"][0])
            )

        async for token in tokens(engine, count, request, run, prompt):
            head = b"" if started else beginning()
            started, text = True, text + token
            await response.write(
                head + event("response.output_text.delta", **where, delta=token, logprobs=[])
            )
        item = message_item(item_id, text)
        end = b"" if started else beginning()
        end += event("response.output_text.done", **where, text=text, logprobs=[])
        end += event("response.content_part.done", **where, part=item["content"][0])
        end += event("response.output_item.done", output_index=0, item=item)
        end += event("response.completed", response=response_object(body, ident, "completed", [item], usage))
        await response.write(end)
        await response.write_eof()
        return response
