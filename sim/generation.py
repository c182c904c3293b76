"""What every simulated generation goes through, as in Ollama, where every route that generates ends in the
same scheduler: its queue, a load, a slot held to the end; here also the injected faults, and errors in the
route's own dialect."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import NamedTuple

from aiohttp import web

from ollama_connector.shared import error_formats
from ollama_connector.sim.behaviour import Fault
from ollama_connector.sim.catalog import SimModel
from ollama_connector.sim.engine import Engine
from ollama_connector.sim.prompt_cache import Claim, tokens_of
from ollama_connector.sim.scheduler import finite


class SimulatedCrash(Exception):
    """The connection was dropped on purpose (die_rate); there is nothing left to answer."""


class MidStreamError(Exception):
    """The runner failed halfway (error_rate): the stream ends with an error in its own format."""

    MESSAGE = "an error was encountered while running the model (simulated, mid-stream)"


class Run(NamedTuple):
    fault: Fault
    load_ns: int  # spent waiting for the model and loading it
    prompt_tokens: int = 1  # every token of the prompt, cached or not (Ollama's prompt_eval_count)
    prompt_ns: int = 1  # the time of those processed now (its prompt_eval_duration)
    said: list[str] | None = (
        None  # the answer's tokens as they are given: the slot caches them after the prompt
    )


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
    engine: Engine,
    model: str | SimModel,
    num_ctx: int | None = None,
    keep_alive: float | None = None,
    prompt: str = "",
) -> AsyncIterator[Run]:
    """Counted in the stats, queued for the model's slot and holding it, its prompt processed (what the slot
    has cached of it skipped: sim.prompt_cache); yields the fault drawn for it, the time it waited and what
    its prompt cost. `prompt`: the text the model sees (sim.prompt_cache.rendered); `keep_alive`: the
    request's own, when it set one."""
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
            runner, tokens = engine.scheduler.runners.get(found.name), tokens_of(prompt)
            claim = runner.cache.claim(tokens) if runner is not None else None
            said: list[str] = []
            try:
                prompt_ns = await prefill(engine, claim, len(tokens))
                yield Run(fault, load_ns, max(1, len(tokens)), prompt_ns, said)
            finally:
                if runner is not None and claim is not None:
                    runner.cache.release(claim, tokens_of(prompt + "".join(said)) if said else tokens)
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
    engine: Engine, count: int, request: web.Request, run: Run, prompt: str = ""
) -> AsyncIterator[str]:
    """The engine's tokens (the answer to `prompt`), kept in the run for its slot's cache; after a "die"
    fault has dropped the connection, SimulatedCrash."""
    produced, fault = 0, run.fault
    async for token in engine.tokens(count, request, fault, prompt):
        if fault == "error" and produced == count // 2:
            engine.stats.failed += 1
            raise MidStreamError(MidStreamError.MESSAGE)
        if run.said is not None:
            run.said.append(token)
        yield token
        produced += 1
    if fault == "die":
        raise SimulatedCrash


def prompt_tokens(text: str) -> int:
    return max(1, len(text.split()))


async def prefill(engine: Engine, claim: Claim | None, count: int) -> int:
    """Process the prompt's tokens that the slot lacks (and restore those the host cache has); its
    nanoseconds, as Ollama reports prompt_eval_duration: the tokens processed now only."""
    behaviour = engine.behaviour
    reused, restored = (claim.reused, claim.restored) if claim is not None else (0, 0)
    processed = max(0, count - reused - restored)
    engine.stats.prompt_tokens += count
    engine.stats.prompt_tokens_processed += processed
    engine.stats.prompt_tokens_restored += restored
    if behaviour.tokens_per_second <= 0 or behaviour.prefill_tokens_per_second <= 0:
        return max(1, processed)  # as fast as the machine allows: a nanosecond a token
    seconds = processed / behaviour.prefill_tokens_per_second
    seconds += (
        restored / behaviour.restore_tokens_per_second if behaviour.restore_tokens_per_second > 0 else 0
    )
    started = time.perf_counter_ns()
    await asyncio.sleep(seconds)
    return max(1, time.perf_counter_ns() - started)
