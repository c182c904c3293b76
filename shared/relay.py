"""Relaying an NDJSON stream from an upstream server to a caller, whole lines at a time.

Only complete lines are forwarded, so when the upstream breaks mid-line the caller never receives half a JSON
object: it receives the lines that were complete, then one error line (Ollama's own convention).
"""

from __future__ import annotations

import json

import aiohttp
from aiohttp import web

NDJSON = "application/x-ndjson"


class UpstreamBroken(Exception):
    """The upstream connection failed, timed out or closed early while its body was being read."""


def describe(exc: BaseException) -> str:
    """A short, human-readable reason for a client-side failure."""
    if isinstance(exc, TimeoutError):
        return "timed out"
    text = str(exc).strip()
    return text or type(exc).__name__


class LineReader:
    """Reads an upstream body, handing out only blocks that end on a line boundary."""

    __slots__ = ("_content", "_pending")

    def __init__(self, content: aiohttp.StreamReader) -> None:
        self._content = content
        self._pending = b""

    async def next_block(self) -> bytes:
        """The next run of complete lines; b"" at the end of the body."""
        while True:
            try:
                chunk = await self._content.readany()
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise UpstreamBroken(describe(exc)) from exc
            if not chunk:
                rest, self._pending = self._pending, b""
                return rest
            data = self._pending + chunk if self._pending else chunk
            cut = data.rfind(b"\n") + 1
            if cut == len(data):
                self._pending = b""
                return data
            if cut:
                self._pending = data[cut:]
                return data[:cut]
            self._pending = data


def error_in(block: bytes) -> str | None:
    """The message of an `{"error": ...}` line ending this block, if it ends with one."""
    last = block.rstrip(b"\n").rpartition(b"\n")[2]
    if not last.startswith(b'{"error"'):
        return None
    try:
        message = json.loads(last).get("error")
    except (ValueError, AttributeError):
        return None
    return str(message) if message is not None else None


def error_line(message: str) -> bytes:
    """Ollama's way to end a broken NDJSON stream."""
    return json.dumps({"error": message}).encode() + b"\n"


def sse_error(message: str) -> bytes:
    """The same for an OpenAI-style SSE stream: an error event, then [DONE]."""
    event = {"error": {"message": message, "type": "api_error", "param": None, "code": None}}
    return b"data: " + json.dumps(event).encode() + b"\n\ndata: [DONE]\n\n"


async def pump(reader: LineReader, response: web.StreamResponse, first: bytes) -> bytes:
    """Write `first` and every later block to the caller; return the last block written.

    Raises UpstreamBroken when the upstream fails, and ConnectionResetError when the caller has gone.
    """
    last = first
    await response.write(first)
    while block := await reader.next_block():
        await response.write(block)
        last = block
    return last
