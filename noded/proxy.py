"""Relaying a request to the local Ollama and its answer back, streaming as it comes.

Two ways to answer (see `shared.agent_contract`): plain, Ollama's answer as it is with a named reason on
errors; or framed, for the hub, which asked for keep-alives so that a long job never looks like a dead node.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import aiohttp
from aiohttp import web

from noded.keys import SESSION, SETTINGS
from shared import error_formats
from shared.agent_contract import (
    FRAMED_HEADER,
    KEEPALIVE,
    REASON_HEADER,
    Head,
    Reason,
    reason_for_ollama_status,
)
from shared.error_formats import NDJSON, SSE
from shared.relay import LineReader, Relayed, describe, pump, relay

log = logging.getLogger(__name__)
# No read timeout: a generation may run long, and the hub's own timeout and hang-ups end it.
OLLAMA_STREAM_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=10.0)
STREAMING_TYPES = (NDJSON, SSE)


def error_format(path: str) -> error_formats.Format:
    """The agent answers in the dialect of the route it relays: OpenAI's on /v1, Ollama's elsewhere."""
    return error_formats.OpenAI if path.startswith("/v1/") else error_formats.Ollama


def refusal(path: str, status: int, reason: Reason, message: str) -> web.Response:
    """An answer that is not Ollama's: the agent's own refusal, named for the hub."""
    return error_formats.response(error_format(path), status, message, {REASON_HEADER: reason})


class OllamaUnreachable(Exception):
    pass


async def _ask_ollama(
    request: web.Request, path: str, payload: bytes | None, method: str
) -> aiohttp.ClientResponse:
    settings = request.app[SETTINGS]
    try:
        return await request.app[SESSION].request(
            method,
            settings.ollama_url + path,
            data=payload,
            headers={"Content-Type": "application/json"},
            timeout=OLLAMA_STREAM_TIMEOUT,
        )
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise OllamaUnreachable(f"Ollama at {settings.ollama_url} is not answering: {describe(exc)}") from exc


def _content_type(upstream: aiohttp.ClientResponse) -> str:
    return upstream.headers.get("Content-Type", "application/json")


def _streams(upstream: aiohttp.ClientResponse) -> bool:
    return upstream.status < 400 and _content_type(upstream).startswith(STREAMING_TYPES)


def _log_outcome(outcome: Relayed, path: str) -> None:
    if outcome.caller_gone:
        log.info("the hub hung up on %s; cancelling the request to Ollama", path)
    elif outcome.broken:
        log.warning("%s on %s", outcome.broken, path)


def _explain(reason: str) -> str:
    return f"Ollama failed mid-stream: {reason}"


async def forward(
    request: web.Request, path: str, payload: bytes | None, method: str = "POST"
) -> web.StreamResponse:
    """Ollama's status, type and body as it sends them, line by line when it streams."""
    try:
        upstream = await _ask_ollama(request, path, payload, method)
    except OllamaUnreachable as exc:
        return refusal(path, 502, Reason.OLLAMA_DOWN, str(exc))
    async with upstream:
        content_type = _content_type(upstream)
        reason = reason_for_ollama_status(upstream.status)
        if not _streams(upstream):
            try:
                body = await upstream.read()
            except (aiohttp.ClientError, TimeoutError) as exc:
                return refusal(
                    path, 502, Reason.OLLAMA_FAILED, f"Ollama failed while answering: {describe(exc)}"
                )
            headers = {"Content-Type": content_type, **({REASON_HEADER: reason} if reason else {})}
            return web.Response(body=body, status=upstream.status, headers=headers)
        outcome = await relay(
            request,
            LineReader(upstream.content),
            b"",
            upstream.status,
            {"Content-Type": content_type},
            explain=_explain,
        )
        _log_outcome(outcome, path)
        return outcome.response


async def forward_framed(request: web.Request, path: str, payload: bytes, every: float) -> web.StreamResponse:
    """Accept at once, keep the line alive while Ollama is silent, then its head line and its body."""
    response = web.StreamResponse(
        status=200, headers={FRAMED_HEADER: "1", "Content-Type": "application/octet-stream"}
    )
    pending = asyncio.ensure_future(_ask_ollama(request, path, payload, "POST"))
    try:
        await response.prepare(request)
        while not (await asyncio.wait({pending}, timeout=every))[0]:
            await response.write(KEEPALIVE)
    except ConnectionResetError:
        _abandon(pending)
        return response
    except BaseException:  # cancelled: the hub hung up
        _abandon(pending)
        raise
    try:
        upstream = pending.result()
    except OllamaUnreachable as exc:
        await _finish(response, Head(502, "application/json", Reason.OLLAMA_DOWN), _error_body(path, exc))
        return response
    async with upstream:
        content_type = _content_type(upstream)
        head = Head(upstream.status, content_type, reason_for_ollama_status(upstream.status))
        if not _streams(upstream):
            try:
                body = await upstream.read()
            except (aiohttp.ClientError, TimeoutError) as exc:
                failed = Head(502, "application/json", Reason.OLLAMA_FAILED)
                message = f"Ollama failed while answering: {describe(exc)}"
                await _finish(response, failed, _error_body(path, message))
                return response
            await _finish(response, head, body)
            return response
        try:
            await response.write(head.line())
        except ConnectionResetError:
            return response
        outcome = await pump(response, LineReader(upstream.content), b"", content_type, _explain)
        _log_outcome(outcome, path)
        return response


def _error_body(path: str, message: object) -> bytes:
    return error_formats.response(error_format(path), 502, str(message)).body  # type: ignore[return-value]


async def _finish(response: web.StreamResponse, head: Head, body: bytes) -> None:
    with contextlib.suppress(ConnectionResetError):  # the hub may have hung up
        await response.write(head.line() + body)
        await response.write_eof()


def _abandon(pending: asyncio.Future[aiohttp.ClientResponse]) -> None:
    """Leaving before Ollama's answer is read: stop the request, or release the answer already in hand."""
    if pending.cancel():
        return
    if not pending.cancelled() and pending.exception() is None:
        pending.result().close()
