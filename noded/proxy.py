"""Relaying a request to the local Ollama and its answer back, streaming as it comes."""

from __future__ import annotations

import logging

import aiohttp
from aiohttp import web

from noded.keys import SESSION, SETTINGS
from shared.relay import NDJSON, SSE, LineReader, UpstreamBroken, describe, relay

log = logging.getLogger(__name__)
# No read timeout: a generation may run long, and the hub's own timeout and hang-ups end it.
OLLAMA_STREAM_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=10.0)
STREAMING_TYPES = (NDJSON, SSE)


def ollama_error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def forward(
    request: web.Request, path: str, payload: bytes | None, method: str = "POST"
) -> web.StreamResponse:
    """Send the request to Ollama; relay its status, type and body, line by line when it streams."""
    settings = request.app[SETTINGS]
    url = settings.ollama_url + path
    try:
        upstream = await request.app[SESSION].request(
            method,
            url,
            data=payload,
            headers={"Content-Type": "application/json"},
            timeout=OLLAMA_STREAM_TIMEOUT,
        )
    except (aiohttp.ClientError, TimeoutError) as exc:
        return ollama_error(502, f"Ollama at {settings.ollama_url} is not answering: {describe(exc)}")
    async with upstream:
        content_type = upstream.headers.get("Content-Type", "application/json")
        if not content_type.startswith(STREAMING_TYPES):
            try:
                body = await upstream.read()
            except (aiohttp.ClientError, TimeoutError) as exc:
                return ollama_error(502, f"Ollama failed while answering: {describe(exc)}")
            return web.Response(body=body, status=upstream.status, headers={"Content-Type": content_type})
        reader = LineReader(upstream.content)
        try:
            first = await reader.next_block()
        except UpstreamBroken as exc:
            return ollama_error(502, f"Ollama failed before its first byte: {exc}")
        outcome = await relay(
            request,
            reader,
            first,
            upstream.status,
            {"Content-Type": content_type},
            explain=lambda reason: f"Ollama failed mid-stream: {reason}",
        )
        if outcome.caller_gone:
            log.info("the hub hung up on %s; cancelling the request to Ollama", path)
        elif outcome.broken:
            log.warning("%s on %s", outcome.broken, path)
        return outcome.response
