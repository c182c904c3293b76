"""Relaying a stream (Ollama's NDJSON or an SSE stream) from an upstream to a caller, whole lines at a time.

Only complete lines are forwarded, so when the upstream breaks mid-line the caller never receives half a JSON
object: it receives the lines that were complete, then one error line in the stream's own format. The hub
(relaying a node) and the agent (relaying Ollama) share this one loop.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp
from aiohttp import web

from ollama_connector.shared.error_formats import StreamFormat, stream_format

MAX_LINE_BYTES = 16 << 20  # a streamed line: Ollama's longest (a final chunk's `context`) is well under a MiB
MAX_REST_BYTES = 64 << 20  # a non-streamed answer (a batch of embeddings is the largest)


class UpstreamBroken(Exception):
    """The upstream connection failed, timed out or closed early while its body was being read."""

    def __init__(self, message: str, timed_out: bool = False, stalled: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out  # silent for longer than the read timeout, rather than closed
        self.stalled = stalled  # past the reader's own deadline or gap (hubd.jobs.stalls)


def describe(exc: BaseException) -> str:
    """A short reason for a client-side failure, in words rather than aiohttp's repr."""
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return f"the host name {exc.host} does not resolve"
    if isinstance(exc, aiohttp.ClientConnectorError):
        if isinstance(exc.os_error, ConnectionRefusedError):
            return f"connection refused by {exc.host}:{exc.port}"
        return f"cannot connect to {exc.host}:{exc.port}: {exc.os_error.strerror or exc.os_error}"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the connection was closed"
    if isinstance(exc, aiohttp.ClientPayloadError):  # aiohttp's "TransferEncodingError: 400" reads as ours
        return "the node closed the connection mid-answer"
    if isinstance(exc, aiohttp.ClientSSLError):
        return (
            f"TLS failed with {exc.host}:{exc.port}: {getattr(exc.os_error, 'reason', None) or exc.os_error}"
        )
    if isinstance(exc, aiohttp.ClientOSError):
        return f"the connection failed: {exc.strerror or 'reset'}"
    if isinstance(exc, TimeoutError):
        return "timed out"
    text = str(exc).strip()
    return text or type(exc).__name__


class LineReader:
    """Reads an upstream body, handing out only blocks that end on a line boundary.

    `deadline` (the event loop's clock) bounds every read until it is cleared; then `gap` bounds each read
    on its own. Past either, the read fails as `stalled`: keep-alives cannot hide a hung upstream.
    """

    __slots__ = ("_content", "_pending", "deadline", "gap", "max_line", "max_rest")

    def __init__(self, content: aiohttp.StreamReader) -> None:
        self._content = content
        self._pending = b""
        self.deadline: float | None = None
        self.gap: float | None = None
        # Bounds on what one upstream makes the reader hold: past them the read fails as the upstream's fault.
        self.max_line = MAX_LINE_BYTES  # a line (a block is whole lines, and one line at most past them)
        self.max_rest = MAX_REST_BYTES  # a whole body read at once (a non-streamed answer)

    async def _bounded(self, read: Callable[[], Awaitable[bytes]]) -> bytes:
        until = self.deadline
        if until is None and self.gap is not None:
            until = asyncio.get_running_loop().time() + self.gap
        try:
            if until is None:
                return await read()
            bound = asyncio.timeout_at(until)
            try:
                async with bound:
                    return await read()
            except TimeoutError:
                if bound.expired():
                    what = "before its first byte" if self.deadline is not None else "between two tokens"
                    raise UpstreamBroken(f"stalled: nothing came for too long {what}", stalled=True) from None
                raise
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise UpstreamBroken(describe(exc), isinstance(exc, TimeoutError)) from exc

    async def _read(self) -> bytes:
        return await self._bounded(self._content.readany)

    def _too_long(self, size: int, bound: int, what: str) -> None:
        if size > bound:
            raise UpstreamBroken(f"it sent {what} longer than {bound >> 20} MiB")

    async def next_line(self) -> bytes:
        """One line with its newline; what follows it stays for the next read. b"" at the end of the body."""
        return await self._next(last=False)

    async def next_block(self) -> bytes:
        """The next run of complete lines; b"" at the end of the body."""
        return await self._next(last=True)

    async def _next(self, last: bool) -> bytes:
        """Up to the first (or the last) newline: each chunk searched once, and joined once."""
        if cut := (self._pending.rfind(b"\n") if last else self._pending.find(b"\n")) + 1:
            out, self._pending = self._pending[:cut], self._pending[cut:]
            return out
        parts, size = ([self._pending] if self._pending else []), len(self._pending)
        while True:
            chunk = await self._read()
            if not chunk:
                self._pending = b""
                return b"".join(parts)
            if cut := (chunk.rfind(b"\n") if last else chunk.find(b"\n")) + 1:
                parts.append(chunk[:cut])
                self._pending = chunk[cut:]
                return b"".join(parts)
            parts.append(chunk)
            size += len(chunk)
            self._too_long(size, self.max_line, "a line")

    async def read_rest(self) -> bytes:
        """Everything left of the body, whole, up to `max_rest`."""
        parts, size = [self._pending], len(self._pending)
        self._pending = b""
        while chunk := await self._bounded(lambda: self._content.read(1 << 20)):
            parts.append(chunk)
            size += len(chunk)
            self._too_long(size, self.max_rest, "an answer")
        return b"".join(parts)


@dataclass
class Relayed:
    """How a relay ended: to the end, cut by the upstream (`broken` says why), or by the caller hanging up."""

    response: web.StreamResponse | None  # None for an answer that went to no caller (an async job)
    last: bytes = b""  # the last blocks the caller received (two: an error event and a [DONE] after it)
    broken: str | None = None
    caller_gone: bool = False
    stalled: bool = False  # broken by a silence past the reader's gap


async def relay(
    request: web.Request,
    reader: LineReader,
    first: bytes,
    status: int,
    headers: dict[str, str],
    explain: Callable[[str], str],
) -> Relayed:
    """Stream `first` and every later block to the caller, flushing each as it comes.

    If the upstream breaks, the caller gets `explain(reason)` as the stream's last line, in the format of the
    route asked (`error_formats.stream_format`). A caller who hangs up just ends the relay; closing the
    upstream is the caller's part.
    """
    response = web.StreamResponse(status=status, headers=headers)
    try:
        await response.prepare(request)
    except ConnectionResetError:
        return Relayed(response, caller_gone=True)
    return await pump(response, reader, first, stream_format(request.path), explain)


async def pump(
    response: web.StreamResponse,
    reader: LineReader,
    first: bytes,
    fmt: StreamFormat,
    explain: Callable[[str], str],
) -> Relayed:
    """The loop of `relay`, into a response already sent; `fmt` writes the tail of a broken stream."""
    previous, last = b"", first
    try:
        if first:
            await response.write(first)
        while block := await reader.next_block():
            await response.write(block)
            previous, last = last, block
    except UpstreamBroken as exc:
        message = explain(str(exc))
        await _close(response, fmt.stream_tail(message, last))
        return Relayed(response, broken=message, stalled=exc.stalled)
    except ConnectionResetError:
        return Relayed(response, caller_gone=True)
    await _close(response, b"")
    # The last two blocks: an error event may come in one read and its [DONE] in the next (vLLM does this).
    return Relayed(response, last=previous + last)


async def _close(response: web.StreamResponse, tail: bytes) -> None:
    with contextlib.suppress(ConnectionResetError):  # the caller may be gone by now
        if tail:
            await response.write(tail)
        await response.write_eof()
