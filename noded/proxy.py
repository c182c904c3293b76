"""Relaying a request to the local Ollama and its answer back, streaming as it comes.

Two ways to answer (see `shared.agent_contract`): plain, Ollama's answer as it is with a named reason on
errors; or, for the hub when Ollama is slow to answer, framed after keep-alives, so that a long job never
looks like a dead node.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import aiohttp
from aiohttp import web

from ollama_connector.noded.keepalive import KeepAlive
from ollama_connector.noded.keys import SESSION, SETTINGS, STATE
from ollama_connector.noded.settings import NodeSettings
from ollama_connector.shared import error_formats
from ollama_connector.shared.agent_contract import (
    HOP_HEADER,
    REASON_HEADER,
    Head,
    Reason,
    reason_for_ollama_answer,
    reason_for_ollama_status,
)
from ollama_connector.shared.error_formats import NDJSON, SSE
from ollama_connector.shared.relay import LineReader, Relayed, UpstreamBroken, describe, pump, relay

log = logging.getLogger(__name__)
# No read timeout: a generation may run long, and the hub's own timeout and hang-ups end it.
OLLAMA_STREAM_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=10.0)
WATCH_EVERY = 3.0  # while a job waits on Ollama, how often the agent asks whether it answers at all
WATCH_TIMEOUT = aiohttp.ClientTimeout(total=2.0)
STREAMING_TYPES = (NDJSON, SSE)


def error_format(path: str) -> error_formats.StreamFormat:
    """The agent answers in the dialect of the route it relays (Ollama's for /execute)."""
    return error_formats.stream_format(path)


def refusal(
    path: str, status: int, reason: Reason, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    """An answer that is not Ollama's: the agent's own refusal, named for the hub."""
    return error_formats.response(
        error_format(path), status, message, {REASON_HEADER: reason, **(headers or {})}
    )


class OllamaUnreachable(Exception):
    pass


async def ask_engine(
    request: web.Request, path: str, payload: bytes | None, method: str
) -> aiohttp.ClientResponse:
    settings = request.app[SETTINGS]
    try:
        return await request.app[SESSION].request(
            method,
            settings.ollama_url + path,
            data=payload,
            # The hub's hop mark goes on: if this "Ollama" is in truth the hub, the loop ends there.
            headers={"Content-Type": body_type(request), **hop_mark(request), **engine_auth(settings)},
            timeout=OLLAMA_STREAM_TIMEOUT,
        )
    except (aiohttp.ClientError, TimeoutError) as exc:
        request.app[STATE].relay_errors += 1
        raise OllamaUnreachable(f"Ollama at {settings.ollama_url} is not answering: {describe(exc)}") from exc


async def _ask_watched(request: web.Request, path: str, payload: bytes) -> aiohttp.ClientResponse:
    """`ask_engine`, while the engine is asked every WATCH_EVERY seconds whether it still answers at all: a
    hung Ollama is said at once (OllamaUnreachable), rather than left for the hub's stall deadline."""
    ask = asyncio.ensure_future(ask_engine(request, path, payload, "POST"))
    watch = asyncio.ensure_future(_stops_answering(request))
    try:
        await asyncio.wait({ask, watch}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (ask, watch):
            if not task.done():
                task.cancel()
    if ask.done() and not ask.cancelled():
        return ask.result()
    raise OllamaUnreachable(watch.result())


async def _stops_answering(request: web.Request) -> str:
    """Why the engine no longer answers its version route within WATCH_TIMEOUT, once it does not."""
    settings = request.app[SETTINGS]
    url = settings.ollama_url + ("/v1/models" if settings.backend == "openai" else "/api/version")
    while True:
        await asyncio.sleep(WATCH_EVERY)
        try:
            async with request.app[SESSION].get(
                url, timeout=WATCH_TIMEOUT, headers=engine_auth(settings)
            ) as r:
                await r.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            request.app[STATE].relay_errors += 1
            return f"Ollama at {settings.ollama_url} stopped answering while the job waited ({describe(exc)})"


def body_type(request: web.Request) -> str:
    """JSON, but for a form (an audio transcription's multipart body, with its boundary)."""
    given = request.headers.get("Content-Type", "")
    return given if given.startswith("multipart/form-data") else "application/json"


def engine_auth(settings: NodeSettings) -> dict[str, str]:
    """BACKEND_API_KEY, for an engine that wants one."""
    key = settings.backend_api_key
    return {"Authorization": f"Bearer {key.get_secret_value()}"} if key is not None else {}


def hop_mark(request: web.Request) -> dict[str, str]:
    hops = request.headers.getall(HOP_HEADER, ())
    return {HOP_HEADER: ", ".join(hops)} if hops else {}


def _content_type(upstream: aiohttp.ClientResponse) -> str:
    return upstream.headers.get("Content-Type", "application/json")


def _streams(upstream: aiohttp.ClientResponse) -> bool:
    return upstream.status < 400 and _content_type(upstream).startswith(STREAMING_TYPES)


def _log_outcome(request: web.Request, outcome: Relayed, path: str) -> None:
    if outcome.caller_gone:
        log.info("the hub hung up on %s; cancelling the request to Ollama", path)
    elif outcome.broken:
        request.app[STATE].relay_errors += 1
        log.warning("%s on %s", outcome.broken, path)


def _explain(reason: str) -> str:
    return f"Ollama failed mid-stream: {reason}"


async def forward(
    request: web.Request, path: str, payload: bytes | None, method: str = "POST"
) -> web.StreamResponse:
    """Ollama's status, type and body as it sends them, line by line when it streams."""
    try:
        upstream = await ask_engine(request, path, payload, method)
    except OllamaUnreachable as exc:
        return refusal(path, 502, Reason.OLLAMA_DOWN, str(exc))
    async with upstream:
        return await _plain(request, path, upstream)


async def _plain(request: web.Request, path: str, upstream: aiohttp.ClientResponse) -> web.StreamResponse:
    content_type = _content_type(upstream)
    if not _streams(upstream):
        try:
            body = await LineReader(upstream.content).read_rest()  # bounded: MAX_REST_BYTES
        except UpstreamBroken as exc:
            return refusal(path, 502, Reason.OLLAMA_FAILED, f"Ollama failed while answering: {exc}")
        if (reason := reason_for_ollama_answer(upstream.status, body)) is Reason.ROUTE_MISSING:
            return refusal(path, 502, reason, _unserved(request, body))
        headers = {"Content-Type": content_type, **({REASON_HEADER: reason} if reason else {})}
        return web.Response(body=body, status=upstream.status, headers=headers)
    outcome = await relay(
        request, LineReader(upstream.content), b"", upstream.status, {"Content-Type": content_type}, _explain
    )
    _log_outcome(request, outcome, path)
    return outcome.response


async def forward_for_hub(
    request: web.Request, path: str, payload: bytes, every: float
) -> web.StreamResponse:
    """As `forward`, with keep-alives every `every` seconds while Ollama is silent (noded.keepalive)."""
    keepalive = KeepAlive(request, every)
    try:
        upstream = await _ask_watched(request, path, payload)
    except OllamaUnreachable as exc:
        if not await keepalive.stop():
            return refusal(path, 502, Reason.OLLAMA_DOWN, str(exc))
        down = Head(502, "application/json", Reason.OLLAMA_DOWN)
        return await _finish(keepalive.response, down, _error(path, exc))  # type: ignore[arg-type]
    except BaseException:  # cancelled: the hub hung up
        keepalive.cancel()
        raise
    async with upstream:
        try:
            framed = await keepalive.stop()
        except ConnectionResetError:  # the hub hung up
            return keepalive.response  # type: ignore[return-value]
        if not framed:
            return await _plain(request, path, upstream)
        return await _framed(request, keepalive.response, path, upstream)  # type: ignore[arg-type]


async def _framed(
    request: web.Request, response: web.StreamResponse, path: str, upstream: aiohttp.ClientResponse
) -> web.StreamResponse:
    """Ollama's answer after the keep-alives: its head line, then its body as it comes."""
    content_type = _content_type(upstream)
    head = Head(upstream.status, content_type, reason_for_ollama_status(upstream.status))
    if not _streams(upstream):
        try:
            body = await LineReader(upstream.content).read_rest()  # bounded: MAX_REST_BYTES
        except UpstreamBroken as exc:
            failed = Head(502, "application/json", Reason.OLLAMA_FAILED)
            message = f"Ollama failed while answering: {exc}"
            return await _finish(response, failed, _error(path, message))
        if reason_for_ollama_answer(upstream.status, body) is Reason.ROUTE_MISSING:
            unserved = Head(502, "application/json", Reason.ROUTE_MISSING)
            return await _finish(response, unserved, _error(path, _unserved(request, body)))
        return await _finish(response, head, body)
    try:
        await response.write(head.line())
    except ConnectionResetError:
        return response
    outcome = await pump(response, LineReader(upstream.content), b"", error_format(path), _explain)
    _log_outcome(request, outcome, path)
    return response


def _unserved(request: web.Request, body: bytes) -> str:
    said = body.decode(errors="replace").strip()[:200]
    return f"this node's engine does not serve {request.method} {request.path} (an older Ollama?): {said}"


def _error(path: str, message: object) -> bytes:
    return error_formats.response(error_format(path), 502, str(message)).body  # type: ignore[return-value]


async def _finish(response: web.StreamResponse, head: Head, body: bytes) -> web.StreamResponse:
    with contextlib.suppress(ConnectionResetError):  # the hub may have hung up
        await response.write(head.line() + body)
        await response.write_eof()
    return response
