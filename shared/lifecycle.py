"""Background tasks tied to a lifetime: an app's (cleanup_ctx) or a block's (async with)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any

from aiohttp import web


@contextlib.asynccontextmanager
async def running(coro: Coroutine[Any, Any, None]) -> AsyncIterator[asyncio.Task[None]]:
    """Run `coro` as a task for the duration of the block; cancel it and wait for it on the way out."""
    task = asyncio.create_task(coro)
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def background(
    loop: Callable[[web.Application], Awaitable[None]],
) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup context that runs `loop(app)` while the app runs (heartbeats, upkeep, pulls)."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        async with running(loop(app)):  # type: ignore[arg-type]
            yield

    context.__name__ = f"{loop.__name__}_ctx"
    return context
