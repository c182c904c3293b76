"""Ollama's API in terms of OpenAI's, for an engine that speaks only OpenAI's (BACKEND=openai).

Requests: `/api/generate` (and the seed's `/execute`) become a chat completion (`raw` ones a plain
completion), `/api/chat` one with the messages as they are, `/api/embed` and `/api/embeddings` an embeddings
request. Options map by name (`num_predict` is `max_tokens`); `top_k`, `repeat_penalty`, `min_p` and
`typical_p` are not OpenAI's but llama.cpp's and vLLM's servers read them. What has no equivalent
(`num_ctx`, `context`, `template`, `suffix`, `keep_alive`, the runner options) is not sent; the README names
them.

Answers: Ollama's objects and NDJSON chunks, ending with `done`, `done_reason` and the counts and durations
Ollama's clients read: counts from OpenAI's `usage`, durations from llama.cpp's `timings` when the server
sends them, else measured by the agent (`load_duration` is then 0, and the prompt's time is the time to
first token).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ollama_connector.shared import sse

OPTIONS = {
    "temperature": "temperature",
    "top_p": "top_p",
    "top_k": "top_k",
    "seed": "seed",
    "stop": "stop",
    "num_predict": "max_tokens",
    "frequency_penalty": "frequency_penalty",
    "presence_penalty": "presence_penalty",
    "repeat_penalty": "repeat_penalty",
    "min_p": "min_p",
    "typical_p": "typical_p",
}
GENERATE = ("/api/generate", "/execute")
EMBED = ("/api/embed", "/api/embeddings")


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def openai_request(path: str, body: dict[str, Any]) -> tuple[str, dict[str, Any], bool]:
    """The OpenAI route and body for an Ollama request, and whether the answer streams."""
    out: dict[str, Any] = {"model": body.get("model")}
    if path == "/api/embed":
        return "/v1/embeddings", {**out, "input": body.get("input", "")}, False
    if path == "/api/embeddings":
        return "/v1/embeddings", {**out, "input": body.get("prompt", "")}, False
    options = body.get("options") if isinstance(body.get("options"), dict) else {}
    for name, value in options.items():
        if name in OPTIONS and not (name == "num_predict" and isinstance(value, int) and value < 0):
            out[OPTIONS[name]] = value
    fmt = body.get("format")
    if fmt == "json":
        out["response_format"] = {"type": "json_object"}
    elif isinstance(fmt, dict):
        out["response_format"] = {"type": "json_schema", "json_schema": {"name": "format", "schema": fmt}}
    if isinstance(body.get("tools"), list):
        out["tools"] = body["tools"]  # Ollama's tools are OpenAI's function tools
    stream = body.get("stream") is not False
    if stream:
        out |= {"stream": True, "stream_options": {"include_usage": True}}
    if path in GENERATE and body.get("raw"):
        return "/v1/completions", {**out, "prompt": body.get("prompt", "")}, stream
    if path in GENERATE:
        messages = (
            [{"role": "system", "content": body["system"]}] if isinstance(body.get("system"), str) else []
        )
        messages.append(
            _message({"role": "user", "content": body.get("prompt", ""), "images": body.get("images")})
        )
    else:
        messages = [_message(m) for m in body.get("messages") or [] if isinstance(m, dict)]
    return "/v1/chat/completions", {**out, "messages": messages}, stream


def _message(message: dict[str, Any]) -> dict[str, Any]:
    """An Ollama message as OpenAI's: images become image parts of its content."""
    out = {"role": message.get("role", "user"), "content": message.get("content") or ""}
    if images := message.get("images"):
        parts: list[dict[str, Any]] = [{"type": "text", "text": out["content"]}]
        parts += [
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{image}"}} for image in images
        ]
        out["content"] = parts
    if message.get("tool_calls"):
        out["tool_calls"] = [
            {
                "type": "function",
                "id": f"call_{i}",
                "function": {
                    **c.get("function", {}),
                    "arguments": json.dumps(c.get("function", {}).get("arguments", {})),
                },
            }
            for i, c in enumerate(message["tool_calls"])
        ]
    return out


@dataclass
class Clock:
    """When the request went out and its first token came back (time.monotonic)."""

    started: float = field(default_factory=time.monotonic)
    first: float | None = None

    def token(self) -> None:
        if self.first is None:
            self.first = time.monotonic()


def final_fields(usage: dict | None, timings: dict | None, clock: Clock, produced: int) -> dict[str, Any]:
    """The counts and durations of Ollama's last chunk, from what the server reported, else measured."""
    ended = time.monotonic()
    first = clock.first if clock.first is not None else ended
    usage, timings = usage or {}, timings or {}

    def nanos(milliseconds: object, fallback: float) -> int:
        return int(milliseconds * 1e6) if isinstance(milliseconds, int | float) else int(fallback * 1e9)

    return {
        "total_duration": int((ended - clock.started) * 1e9),
        "load_duration": 0,
        "prompt_eval_count": usage.get("prompt_tokens") or timings.get("prompt_n") or 0,
        "prompt_eval_duration": nanos(timings.get("prompt_ms"), first - clock.started),
        "eval_count": usage.get("completion_tokens") or timings.get("predicted_n") or produced,
        "eval_duration": nanos(timings.get("predicted_ms"), ended - first),
    }


def done_reason(finish: object) -> str:
    return "length" if finish == "length" else "stop"


def _piece(path: str, model: str, text: str, tool_calls: list | None = None) -> dict[str, Any]:
    if path in GENERATE:
        return {"model": model, "created_at": now(), "response": text, "done": False}
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {"model": model, "created_at": now(), "message": message, "done": False}


def _tool_calls(calls: object) -> list[dict[str, Any]] | None:
    """OpenAI's tool calls as Ollama's: arguments as an object, not a JSON string."""
    if not isinstance(calls, list) or not calls:
        return None
    out = []
    for call in calls:
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict):
            continue
        try:
            arguments = json.loads(function.get("arguments") or "{}")
        except ValueError:
            arguments = {}
        out.append({"function": {"name": function.get("name", ""), "arguments": arguments}})
    return out or None


def ollama_answer(path: str, model: str, answer: dict[str, Any], clock: Clock) -> dict[str, Any]:
    """A non-streamed OpenAI answer as Ollama's."""
    if path in EMBED:
        data = sorted(
            (d for d in answer.get("data") or [] if isinstance(d, dict)), key=lambda d: d.get("index", 0)
        )
        vectors = [d.get("embedding", []) for d in data]
        if path == "/api/embeddings":
            return {"embedding": vectors[0] if vectors else []}
        usage = answer.get("usage") or {}
        return {
            "model": model,
            "embeddings": vectors,
            "total_duration": int((time.monotonic() - clock.started) * 1e9),
            "load_duration": 0,
            "prompt_eval_count": usage.get("prompt_tokens", 0),
        }
    clock.token()
    choice = (answer.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    text = message.get("content") or choice.get("text") or ""
    out = _piece(path, model, text, _tool_calls(message.get("tool_calls")))
    fields = final_fields(answer.get("usage"), answer.get("timings"), clock, 0)
    return {**out, "done": True, "done_reason": done_reason(choice.get("finish_reason")), **fields}


class StreamTranslator:
    """OpenAI's SSE events in, Ollama's NDJSON chunks out; `end()` gives the last chunk."""

    def __init__(self, path: str, model: str, clock: Clock) -> None:
        self.path, self.model, self.clock = path, model, clock
        self.finish: object = None
        self.usage: dict | None = None
        self.timings: dict | None = None
        self.produced = 0
        self.error: str | None = None

    def feed(self, line: bytes) -> bytes:
        """One line of the event stream; the NDJSON it makes (b"" for most lines)."""
        event = sse.event_json(line)
        if not isinstance(event, dict):
            return b""
        if isinstance(event.get("error"), dict | str):
            error = event["error"]
            self.error = error.get("message", str(error)) if isinstance(error, dict) else error
            return b""
        self.usage = event.get("usage") or self.usage
        self.timings = event.get("timings") or self.timings
        out = b""
        for choice in event.get("choices") or []:
            delta = choice.get("delta") or {}
            text = delta.get("content") if "delta" in choice else choice.get("text")
            calls = _tool_calls(delta.get("tool_calls"))
            if text or calls:
                self.clock.token()
                self.produced += 1
                out += json.dumps(_piece(self.path, self.model, text or "", calls)).encode() + b"\n"
            if choice.get("finish_reason"):
                self.finish = choice["finish_reason"]
        return out

    def end(self) -> bytes:
        if self.error is not None:
            return json.dumps({"error": self.error}).encode() + b"\n"
        last = {**_piece(self.path, self.model, ""), "done": True, "done_reason": done_reason(self.finish)}
        return (
            json.dumps({**last, **final_fields(self.usage, self.timings, self.clock, self.produced)}).encode()
            + b"\n"
        )
