"""Running a daemon: listen on every host, tell systemd, drain on a signal, and fail in one line."""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from ollama_connector.shared.cli import CannotListen
from ollama_connector.shared.systemd import notify, watchdog


class Refused(asyncio.Protocol):
    """A connection past MAX_CONNECTIONS: told so in one line of HTTP, and closed."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        body = b"the server has too many connections; retry shortly\n"
        head = f"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: {len(body)}\r\n"
        transport.write(head.encode() + b"Connection: close\r\nContent-Type: text/plain\r\n\r\n" + body)  # type: ignore[attr-defined]
        transport.close()


class ConnectionCap:
    """The server's protocol factory, with a bound on the connections open at once."""

    def __init__(self, server: web.Server, limit: int) -> None:
        self.server, self.limit, self.refused = server, limit, 0

    def __call__(self) -> asyncio.Protocol:
        if len(self.server.connections) >= self.limit:
            self.refused += 1
            return Refused()
        return self.server()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.server, name)


async def start_runner(
    app: web.Application,
    hosts: list[str],
    port: int,
    ssl_context: ssl.SSLContext | None = None,
    max_connections: int | None = None,
    **kwargs: Any,
) -> web.AppRunner:
    """Start the app on every host (HTTPS with `ssl_context`); `handler_cancellation` so a caller's hang-up
    cancels its handler; at most `max_connections` open at once (a 503 line to the next ones)."""
    runner = web.AppRunner(app, handler_cancellation=True, **kwargs)
    await runner.setup()
    if max_connections is not None:  # aiohttp has no bound of its own: its protocol factory gets one
        runner._server = ConnectionCap(runner.server, max_connections)  # type: ignore[assignment]
    try:
        for host in hosts:
            try:
                await web.TCPSite(runner, host, port, ssl_context=ssl_context).start()
            except OSError as exc:
                raise CannotListen(host, port, exc) from None
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
    **runner_options: Any,
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
    runner = await start_runner(app, hosts, port, shutdown_timeout=drain_timeout, **runner_options)
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


def run(main: Awaitable[None], program: str, listen_settings: str) -> None:
    """Run a daemon's main coroutine, on uvloop where it is installed: a faster loop for the same code.

    An address it cannot listen on ends it with one line that names the settings to change.
    """
    try:
        import uvloop
    except ImportError:
        runner: Callable[[Any], None] = asyncio.run
    else:
        runner = uvloop.run
    try:
        runner(main)
    except CannotListen as exc:
        sys.exit(f"{program}: {exc}; see {listen_settings}")
