"""What every simulated generation goes through, as in Ollama, where every route that generates ends in the
same scheduler: its queue, a load, a slot held to the end; here also the injected faults, and errors in the
route's own dialect."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import NamedTuple

from aiohttp import web

from ollama_connector.shared import error_formats
from ollama_connector.sim.behaviour import Fault
from ollama_connector.sim.catalog import SimModel
from ollama_connector.sim.engine import Engine
from ollama_connector.sim.scheduler import finite


class SimulatedCrash(Exception):
    """The connection was dropped on purpose (die_rate); there is nothing left to answer."""


class MidStreamError(Exception):
    """The runner failed halfway (error_rate): the stream ends with an error in its own format."""

    MESSAGE = "an error was encountered while running the model (simulated, mid-stream)"


class Run(NamedTuple):
    fault: Fault
    load_ns: int  # spent waiting for the model and loading it


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
async def generation(
    engine: Engine, model: str | SimModel, num_ctx: int | None = None, keep_alive: float | None = None
) -> AsyncIterator[Run]:
    """Counted in the stats, queued for the model's slot and holding it; yields the fault drawn for it and
    the time it waited. `keep_alive`: the request's own, when it set one."""
    engine.stats.requests += 1
    engine.stats.in_flight += 1
    fault = engine.behaviour.draw_fault()
    found = engine.catalog.find(model) if isinstance(model, str) else model
    assert found is not None  # the route checked it exists
    try:
        if fault == "hang":
            await engine.hang()
        async with engine.scheduler.slot(found, num_ctx, finite(keep_alive)) as load_ns:
            if fault == "fail":
                engine.stats.failed += 1
                raise ApiError(500, "an error was encountered while running the model (simulated)")
            yield Run(fault, load_ns)
        engine.stats.completed += 1
    except SimulatedCrash:
        engine.stats.failed += 1
        raise
    except (asyncio.CancelledError, ConnectionResetError):
        engine.stats.cancelled += 1
        raise
    finally:
        engine.stats.in_flight -= 1


async def tokens(
    engine: Engine, count: int, request: web.Request, fault: Fault, prompt: str = ""
) -> AsyncIterator[str]:
    """The engine's tokens (the answer to `prompt`); after a "die" fault has dropped the connection,
    SimulatedCrash."""
    produced = 0
    async for token in engine.tokens(count, request, fault, prompt):
        if fault == "error" and produced == count // 2:
            engine.stats.failed += 1
            raise MidStreamError(MidStreamError.MESSAGE)
        yield token
        produced += 1
    if fault == "die":
        raise SimulatedCrash


def prompt_tokens(text: str) -> int:
    return max(1, len(text.split()))
