"""Relaying a stream (Ollama's NDJSON or OpenAI's SSE) from an upstream to a caller, whole lines at a time.

Only complete lines are forwarded, so when the upstream breaks mid-line the caller never receives half a JSON
object: it receives the lines that were complete, then one error line in the stream's own format. The hub
(relaying a node) and the agent (relaying Ollama) share this one loop.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
from aiohttp import web

NDJSON = "application/x-ndjson"
SSE = "text/event-stream"


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


def error_tail(content_type: str, message: str) -> bytes:
    """The last words of a broken stream, in the stream's own format."""
    return sse_error(message) if content_type.startswith(SSE) else error_line(message)


@dataclass
class Relayed:
    """How a relay ended: to the end, cut by the upstream (`broken` says why), or by the caller hanging up."""

    response: web.StreamResponse
    last: bytes = b""  # the last block the caller received
    broken: str | None = None
    caller_gone: bool = False


async def relay(
    request: web.Request,
    reader: LineReader,
    first: bytes,
    status: int,
    headers: dict[str, str],
    explain: Callable[[str], str],
) -> Relayed:
    """Stream `first` and every later block to the caller, flushing each as it comes.

    If the upstream breaks, the caller gets `explain(reason)` as the stream's last line, in the format its
    Content-Type says. A caller who hangs up just ends the relay; closing the upstream is the caller's part.
    """
    response = web.StreamResponse(status=status, headers=headers)
    try:
        await response.prepare(request)
        last = first
        await response.write(first)
        while block := await reader.next_block():
            await response.write(block)
            last = block
    except UpstreamBroken as exc:
        message = explain(str(exc))
        await _close(response, error_tail(headers.get("Content-Type", ""), message))
        return Relayed(response, broken=message)
    except ConnectionResetError:
        return Relayed(response, caller_gone=True)
    await _close(response, b"")
    return Relayed(response, last=last)


async def _close(response: web.StreamResponse, tail: bytes) -> None:
    with contextlib.suppress(ConnectionResetError):  # the caller may be gone by now
        if tail:
            await response.write(tail)
        await response.write_eof()
