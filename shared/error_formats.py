"""Every error format the project speaks, each written and read in one place.

- Ollama's: a `{"error": "..."}` body, and the same object as the last line of a broken NDJSON stream.
- OpenAI's: an `{"error": {"message", "type", "param", "code"}}` body, and that object as an SSE event
  (followed by `data: [DONE]`) at the end of a broken event stream.
- Anthropic's (/v1/messages): a `{"type": "error", "error": {"type", "message"}}` body, and that object as an
  `event: error` at the end of a broken event stream.
- OpenAI's Responses (/v1/responses): OpenAI's error body, and a Responses `error` event in its stream.
- The seed's: a `{"detail": ...}` body on the hub's own routes (/jobs, /nodes); its streams are Ollama's.

Which one a request gets depends on its route (`for_path`), never on a content type: OpenAI's, Anthropic's
and the Responses streams are all `text/event-stream`. The hub writes all of them to its callers and reads
them from its nodes; the agent and the simulator write them; ollama-top reads Ollama's stream form. None of
them builds these shapes by hand.
"""

from __future__ import annotations

import json
import re
from typing import Any

from aiohttp import web

from ollama_connector.shared import sse

NDJSON = "application/x-ndjson"
SSE = "text/event-stream"


def _json(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode()


class Ollama:
    name = "ollama"

    @staticmethod
    def body(message: str, status: int = 500) -> dict[str, Any]:
        return {"error": message}

    @staticmethod
    def message_in(obj: Any) -> str | None:
        error = obj.get("error") if isinstance(obj, dict) else None
        return error if isinstance(error, str) else None

    @staticmethod
    def stream_tail(message: str, after: bytes = b"") -> bytes:
        """The last line of a broken NDJSON stream."""
        return _json({"error": message}) + b"\n"

    @staticmethod
    def error_at_end(block: bytes) -> str | None:
        """The message of an error line ending this block of NDJSON lines, if it ends with one."""
        last = block.rstrip(b"\n").rpartition(b"\n")[2]
        if not last.lstrip().startswith(b'{"error"'):
            return None
        try:
            return Ollama.message_in(json.loads(last))
        except ValueError:
            return None

    @staticmethod
    def only_error(block: bytes) -> str | None:
        """The message when this first block of a stream is nothing but an error line."""
        return Ollama.error_at_end(block) if block.strip().count(b"\n") == 0 else None


class OpenAI:
    name = "openai"

    @staticmethod
    def kind(status: int) -> str:
        """The `type` Ollama's own /v1 middleware gives each status."""
        if status == 404:
            return "not_found_error"
        return "invalid_request_error" if status < 500 else "api_error"

    @staticmethod
    def body(message: str, status: int = 500, kind: str | None = None) -> dict[str, Any]:
        kind = kind or OpenAI.kind(status)
        return {"error": {"message": message, "type": kind, "param": None, "code": None}}

    @staticmethod
    def message_in(obj: Any) -> str | None:
        error = obj.get("error") if isinstance(obj, dict) else None
        if isinstance(error, dict) and error.get("message") is not None:
            return str(error["message"])
        return None

    @staticmethod
    def stream_tail(message: str, after: bytes = b"") -> bytes:
        """The end of a broken SSE stream: an error event, then [DONE]."""
        return sse.data(OpenAI.body(message)) + sse.DONE

    @staticmethod
    def error_at_end(block: bytes) -> str | None:
        """The message of the last data event of this block, if that event is an error."""
        events = sse.payloads(block)
        if not events or not events[-1].startswith(b'{"error"'):
            return None
        return OpenAI.message_in(sse.event_json(b"data:" + events[-1]))

    @staticmethod
    def only_error(block: bytes) -> str | None:
        """The message when this first block of a stream is nothing but an error event (and [DONE])."""
        if len(sse.payloads(block)) != 1:
            return None
        return OpenAI.error_at_end(block)


class Anthropic:
    """Anthropic's Messages API, as Ollama's `anthropic.NewError` and its stream write it."""

    name = "anthropic"
    KINDS = {
        400: "invalid_request_error",
        401: "authentication_error",
        403: "permission_error",
        404: "not_found_error",
        413: "request_too_large",
        429: "rate_limit_error",
        503: "overloaded_error",
        529: "overloaded_error",
    }

    @staticmethod
    def body(message: str, status: int = 500) -> dict[str, Any]:
        kind = Anthropic.KINDS.get(status, "invalid_request_error" if status < 500 else "api_error")
        return {"type": "error", "error": {"type": kind, "message": message}}

    @staticmethod
    def message_in(obj: Any) -> str | None:
        if not isinstance(obj, dict) or obj.get("type") != "error":
            return None
        error = obj.get("error")
        message = error.get("message") if isinstance(error, dict) else None
        return message if isinstance(message, str) else None

    @staticmethod
    def stream_tail(message: str, after: bytes = b"") -> bytes:
        """The end of a broken event stream: one `error` event (the SDKs raise it)."""
        return sse.named("error", Anthropic.body(message))

    @staticmethod
    def error_at_end(block: bytes) -> str | None:
        return Anthropic.message_in(sse.last_json(block))

    @staticmethod
    def only_error(block: bytes) -> str | None:
        """The message when this first block is nothing but an error event (pings aside)."""
        events = [e for e in sse.payloads(block) if sse.event_json(b"data:" + e) != {"type": "ping"}]
        return Anthropic.error_at_end(block) if len(events) == 1 else None


class Responses:
    """OpenAI's Responses API: OpenAI's error body, and its stream's `error` event
    (`{"type": "error", "code", "message", "param", "sequence_number"}`)."""

    name = "responses"
    SEQUENCE = re.compile(rb'"sequence_number":\s*(\d+)')

    @staticmethod
    def body(message: str, status: int = 500) -> dict[str, Any]:
        return OpenAI.body(message, status)

    @staticmethod
    def message_in(obj: Any) -> str | None:
        return OpenAI.message_in(obj)

    @staticmethod
    def stream_tail(message: str, after: bytes = b"") -> bytes:
        """An `error` event numbered after the last event the caller received (`after`)."""
        numbers = Responses.SEQUENCE.findall(after)
        event = {
            "type": "error",
            "code": "api_error",
            "message": message,
            "param": None,
            "sequence_number": int(numbers[-1]) + 1 if numbers else 0,
        }
        return sse.named("error", event)

    @staticmethod
    def error_at_end(block: bytes) -> str | None:
        """The message of a final `error` or `response.failed` event."""
        event = sse.last_json(block)
        if not isinstance(event, dict):
            return None
        if event.get("type") == "error":
            return str(event.get("message") or "error")
        if event.get("type") == "response.failed":
            response = event.get("response")
            error = response.get("error") if isinstance(response, dict) else None
            return str(error.get("message") if isinstance(error, dict) else "the response failed")
        return None

    @staticmethod
    def only_error(block: bytes) -> str | None:
        return Responses.error_at_end(block) if len(sse.payloads(block)) == 1 else None


class Seed:
    name = "seed"

    @staticmethod
    def body(detail: Any, status: int = 500) -> dict[str, Any]:
        return {"detail": detail}

    @staticmethod
    def message_in(obj: Any) -> str | None:
        detail = obj.get("detail") if isinstance(obj, dict) else None
        if isinstance(detail, dict):
            detail = detail.get("message")
        return detail if isinstance(detail, str) else None


StreamFormat = type[Ollama] | type[OpenAI] | type[Anthropic] | type[Responses]
Format = StreamFormat | type[Seed]


def response(fmt: Format, status: int, message: Any, headers: dict[str, str] | None = None) -> web.Response:
    """An error answer in `fmt`."""
    return web.Response(
        body=_json(fmt.body(message, status)), status=status, content_type="application/json", headers=headers
    )


def for_path(path: str) -> Format:
    """The dialect a route speaks: Ollama's under /api, Anthropic's and the Responses API's on their routes,
    OpenAI's elsewhere under /v1, and the seed's on everything else (the hub's own /jobs, /nodes...)."""
    if path.startswith("/api/"):
        return Ollama
    if path == "/v1/messages" or path.startswith("/v1/messages/"):
        return Anthropic
    if path == "/v1/responses" or path.startswith("/v1/responses/"):
        return Responses
    if path.startswith("/v1/"):
        return OpenAI
    return Seed


def stream_format(path: str) -> StreamFormat:
    """The format of a route's streams and in-stream errors: the seed's routes stream Ollama's NDJSON."""
    fmt = for_path(path)
    return Ollama if fmt is Seed else fmt


def message_of(body: bytes, formats: tuple[Format, ...] = (Ollama, OpenAI, Anthropic, Seed)) -> str | None:
    """The message of an error body in any of `formats`, or None when it is none of them."""
    try:
        obj = json.loads(body)
    except ValueError:
        return None
    for fmt in formats:
        if (message := fmt.message_in(obj)) is not None:
            return message
    return None


ENGINE_FORMATS: tuple[Format, ...] = (Ollama, OpenAI, Anthropic)  # what an engine's own errors look like
