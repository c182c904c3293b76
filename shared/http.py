"""Small HTTP helpers shared by the daemons: reading JSON bodies and running an app."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from shared.systemd import notify, watchdog

M = TypeVar("M", bound=BaseModel)


class BadRequest(Exception):
    """The caller sent something unusable; the message says what."""

    status = 400


async def read_json_object(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object, or BadRequest naming what is wrong with it.

    An oversize body raises aiohttp's HTTPRequestEntityTooLarge (413) from `request.read()`.
    """
    raw = await request.read()
    if not raw.strip():
        raise BadRequest("missing request body")
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadRequest(f"request body must be a JSON object, not {type(data).__name__}")
    return data


async def start_runner(app: web.Application, hosts: list[str], port: int, **kwargs: Any) -> web.AppRunner:
    """Start the app on every host; `handler_cancellation` so a caller's hang-up cancels its handler."""
    runner = web.AppRunner(app, handler_cancellation=True, **kwargs)
    await runner.setup()
    try:
        for host in hosts:
            await web.TCPSite(runner, host, port).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner


def bound_port(runner: web.AppRunner) -> int:
    """The port the first site listens on (useful when asked for port 0)."""
    return runner.addresses[0][1]


async def serve_until_signalled(
    app: web.Application,
    hosts: list[str],
    port: int,
    *,
    name: str,
    on_ready: Callable[[web.AppRunner], None] | None = None,
    before_stop: Callable[[], Awaitable[None]] | None = None,
    drain_timeout: float = 60.0,
) -> None:
    """Serve until SIGINT or SIGTERM, telling systemd when ready and when stopping.

    On a signal: `before_stop` runs first (a node announces it is draining), then the listeners close and
    requests in flight get up to `drain_timeout` seconds to finish before the cleanup contexts run.
    """
    log = logging.getLogger(name)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    runner = await start_runner(app, hosts, port, shutdown_timeout=drain_timeout)
    try:
        async with watchdog():
            log.info("listening on %s", ", ".join(_format_address(a) for a in runner.addresses))
            if on_ready is not None:
                on_ready(runner)
            notify("READY=1", f"STATUS=listening on port {bound_port(runner)}")
            await stop.wait()
            notify("STOPPING=1", "STATUS=draining")
            log.info("stopping: finishing requests in flight (at most %.0f s)", drain_timeout)
            if before_stop is not None:
                await before_stop()
    finally:
        await runner.cleanup()
        log.info("stopped")


def _format_address(address: Any) -> str:
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_body_as(model: type[M], data: dict[str, Any]) -> M:
    """Validate a decoded body; a BadRequest names each bad field: `field: problem`."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        detail = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or 'body'}: {error['msg']}" for error in exc.errors()
        )
        raise BadRequest(detail) from None


def run(main: Awaitable[None]) -> None:
    """Run a daemon's main coroutine, on uvloop where it is installed: a faster loop for the same code."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)  # type: ignore[arg-type]
    else:
        uvloop.run(main)  # type: ignore[arg-type]
