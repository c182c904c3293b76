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


# Reading: the one reader of event streams, for the hub, the agent and the bench.


def payload(line: bytes) -> bytes | None:
    """What a `data:` line carries (stripped), or None for any other line and for `[DONE]`."""
    if not line.startswith(b"data:"):
        return None
    text = line[5:].strip()
    return text if text and text != b"[DONE]" else None


def payloads(block: bytes) -> list[bytes]:
    """What each `data:` line of a block of SSE lines carries, in order; `[DONE]` left out."""
    return [text for line in block.splitlines() if (text := payload(line)) is not None]


def event_json(line: bytes) -> Any:
    """The JSON a `data:` line carries; None for other lines, `[DONE]`, or anything unreadable."""
    text = payload(line.strip())
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def last_json(block: bytes) -> Any:
    """The JSON of the last event of a block of SSE lines (None when there is none, or it is unreadable)."""
    texts = payloads(block)
    return event_json(b"data:" + texts[-1]) if texts else None
