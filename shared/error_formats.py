"""Every error format the project speaks, each written and read in one place.

- Ollama's: a `{"error": "..."}` body, and the same object as the last line of a broken NDJSON stream.
- OpenAI's: an `{"error": {"message", "type", "param", "code"}}` body, and that object as an SSE event
  (followed by `data: [DONE]`) at the end of a broken event stream.
- The seed's: a `{"detail": ...}` body on the hub's own routes (/jobs, /nodes); its streams are Ollama's.

The hub writes all three to its callers and reads Ollama's and OpenAI's from its nodes; the agent and the
simulator write Ollama's and OpenAI's; ollama-top reads Ollama's stream form. None of them builds these
shapes by hand.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

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
    def stream_tail(message: str) -> bytes:
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
    def stream_tail(message: str) -> bytes:
        """The end of a broken SSE stream: an error event, then [DONE]."""
        return b"data: " + _json(OpenAI.body(message)) + b"\n\ndata: [DONE]\n\n"

    @staticmethod
    def error_at_end(block: bytes) -> str | None:
        """The message of the last data event of this block, if that event is an error."""
        for line in reversed(block.splitlines()):
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if data == b"[DONE]":
                continue
            if not data.startswith(b'{"error"'):
                return None
            try:
                return OpenAI.message_in(json.loads(data))
            except ValueError:
                return None
        return None

    @staticmethod
    def only_error(block: bytes) -> str | None:
        """The message when this first block of a stream is nothing but an error event (and [DONE])."""
        events = [line for line in block.splitlines() if line.startswith(b"data:")]
        if len([e for e in events if e[5:].strip() != b"[DONE]"]) != 1:
            return None
        return OpenAI.error_at_end(block)


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


Format = type[Ollama] | type[OpenAI] | type[Seed]


def response(fmt: Format, status: int, message: Any, headers: dict[str, str] | None = None) -> web.Response:
    """An error answer in `fmt`."""
    return web.Response(
        body=_json(fmt.body(message, status)), status=status, content_type="application/json", headers=headers
    )


def for_stream(content_type: str) -> type[Ollama] | type[OpenAI]:
    """The format a stream's errors take: SSE streams are OpenAI's, everything else Ollama's NDJSON."""
    return OpenAI if content_type.startswith(SSE) else Ollama


def stream_tail(content_type: str, message: str) -> bytes:
    return for_stream(content_type).stream_tail(message)


def error_at_end(content_type: str, block: bytes) -> str | None:
    return for_stream(content_type).error_at_end(block)


def message_of(body: bytes) -> str | None:
    """The message of an error body in any of the formats, or None when it is none of them."""
    try:
        obj = json.loads(body)
    except ValueError:
        return None
    for fmt in (Ollama, OpenAI, Seed):
        if (message := fmt.message_in(obj)) is not None:
            return message
    return None
