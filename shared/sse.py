"""Server-sent events as the SSE dialects write them: OpenAI's data-only events (ended by `data: [DONE]`), and
the named events of Anthropic's Messages API and OpenAI's Responses API. JSON goes compact, as Ollama's
encoder writes it."""

from __future__ import annotations

import json
from typing import Any

DONE = b"data: [DONE]\n\n"


def encode(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def data(obj: Any) -> bytes:
    """An unnamed event (OpenAI's chat and completion streams)."""
    return b"data: " + encode(obj) + b"\n\n"


def named(name: str, obj: Any) -> bytes:
    """A named event (`event: <name>`), as Anthropic's and the Responses API's streams send them."""
    return b"event: " + name.encode() + b"\ndata: " + encode(obj) + b"\n\n"
