"""What every simulated generation on a translated route (/v1/*) goes through, as in Ollama, where each of
those routes ends in the same handler: the scheduler's queue, a load, a slot held to the end, the injected
faults; and errors in the route's own dialect."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aiohttp import web

from ollama_connector.shared import error_formats
from ollama_connector.sim.behaviour import Fault
from ollama_connector.sim.engine import Engine
from ollama_connector.sim.routes import SimulatedCrash


class ApiError(Exception):
    """An error answered in the dialect of the route it happened on (`error_formats.for_path`)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message

    def response(self, path: str) -> web.Response:
        return error_formats.response(error_formats.for_path(path), self.status, self.message)


def find_model(engine: Engine, name: object, not_found: str = "model '{}' not found") -> str:
    """The model asked for, or Ollama's 400 or 404 (in `not_found`'s words)."""
    if not isinstance(name, str) or not name:
        raise ApiError(400, "model is required")
    if engine.catalog.find(name) is None:
        raise ApiError(404, not_found.format(name))
    return name


@contextlib.asynccontextmanager
async def generation(engine: Engine, name: str) -> AsyncIterator[Fault]:
    """Counted in the stats, queued for the model's slot and holding it; yields the fault drawn for it."""
    engine.stats.requests += 1
    engine.stats.in_flight += 1
    fault = engine.behaviour.draw_fault()
    try:
        if fault == "hang":
            await engine.hang()
        async with engine.scheduler.slot(engine.catalog.find(name), None, None):
            if fault == "fail":
                engine.stats.failed += 1
                raise ApiError(500, "an error was encountered while running the model (simulated)")
            yield fault
        engine.stats.completed += 1
    except SimulatedCrash:
        engine.stats.failed += 1
        raise
    except (asyncio.CancelledError, ConnectionResetError):
        engine.stats.cancelled += 1
        raise
    finally:
        engine.stats.in_flight -= 1


async def tokens(engine: Engine, count: int, request: web.Request, fault: Fault) -> AsyncIterator[str]:
    """The engine's tokens; after a "die" fault has dropped the connection, SimulatedCrash."""
    async for token in engine.tokens(count, request, fault):
        yield token
    if fault == "die":
        raise SimulatedCrash


def prompt_tokens(text: str) -> int:
    return max(1, len(text.split()))
