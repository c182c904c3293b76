"""Background tasks tied to a lifetime (an app's cleanup_ctx, or a block's `async with`), each under one
supervisor: a task that crashes is logged with its traceback once (a crash that repeats is counted, not said
again) and started again after a backoff, so no loop of either daemon dies silently. Its `Supervised` state
says whether it runs, for health checks."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from aiohttp import web

log = logging.getLogger("ollama_connector.tasks")
FIRST_BACKOFF, MAX_BACKOFF = 1.0, 60.0


@dataclass
class Supervised:
    """One supervised task, as a health check reads it."""

    name: str
    crashed: bool = False  # it crashed and waits to start again
    crashes: int = 0
    last_crash: str | None = None  # the exception, in a line


async def supervise(
    state: Supervised, start: Callable[[], Awaitable[None]], first_backoff: float = FIRST_BACKOFF
) -> None:
    """Run `start()` until it returns; after a crash, log it and start it again, backing off to a minute."""
    backoff, said = first_backoff, None
    while True:
        state.crashed = False
        try:
            await start()
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            state.crashed, state.crashes = True, state.crashes + 1
            state.last_crash = f"{type(exc).__name__}: {exc}"[:300]
            if state.last_crash != said:
                log.exception("%s crashed (restarting it in %.0f s)", state.name, backoff)
                said = state.last_crash
            else:
                log.debug("%s crashed again the same way (%d crashes)", state.name, state.crashes)
        await asyncio.sleep(backoff)
        backoff = min(backoff * 2, MAX_BACKOFF)


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


def supervised(name: str, start: Callable[[], Awaitable[None]], state: Supervised | None = None) -> Any:
    """`running(...)` of a supervised task: `async with supervised("the key watch", watch): ...`."""
    return running(supervise(state or Supervised(name), start))


def background(
    loop: Callable[[web.Application], Awaitable[None]],
    states: web.AppKey[dict[str, Supervised]] | None = None,
) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup context that runs `loop(app)`, supervised, while the app runs (heartbeats, upkeep, pulls);
    with `states`, its Supervised state is kept in the app under the loop's name."""
    name = loop.__name__.replace("_", " ")

    async def context(app: web.Application) -> AsyncIterator[None]:
        state = Supervised(name)
        if states is not None:
            app[states][loop.__name__] = state
        async with supervised(name, lambda: loop(app), state):
            yield

    context.__name__ = f"{loop.__name__}_ctx"
    return context


def said_if_crashed(task: asyncio.Task[Any]) -> None:
    """A done callback for a one-off task (a job, a transfer, a probe): its crash is logged, not lost."""
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.error("%s crashed", task.get_name(), exc_info=exc)
