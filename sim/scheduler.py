"""Ollama's scheduler, as `server/sched.go` runs it (reference §8), so the simulator is slow or full when and
where a real Ollama would be.

- A loaded model (a runner) serves NUM_PARALLEL requests at once; more wait on it, unbounded.
- A request for a model that is not loaded (or loaded with another num_ctx) joins the one pending queue
  (MAX_QUEUE, then 503 "server busy"). The queue is served one request at a time, in order: load if the
  runner count and VRAM allow; otherwise unload a runner (shortest keep-alive, then name; an idle one first,
  else wait until the first one's requests finish) and try again. A load blocks every load behind it.
- An idle runner unloads when its keep-alive runs out; keep_alive 0 unloads it as soon as it is idle.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from ollama_connector.sim.behaviour import Behaviour
from ollama_connector.sim.catalog import SimModel
from ollama_connector.sim.prompt_cache import PromptCache

BUSY = "server busy, please try again.  maximum pending requests exceeded"  # Ollama's text, two spaces
DEFAULT_CTX = 4096
FOREVER = 1e12  # keep_alive < 0 (Go's MaxInt64 nanoseconds: about 292 years)


class ServerBusy(Exception):
    """The pending queue is full."""


@dataclass(eq=False)
class Runner:
    model: SimModel
    num_ctx: int
    session: float  # keep-alive in seconds: how long it stays loaded once idle
    slots: asyncio.Semaphore
    refs: int = 0  # requests given this runner that have not finished (waiting for a slot or running)
    idle_since: float = field(default_factory=time.monotonic)
    expiry: asyncio.TimerHandle | None = None
    became_idle: asyncio.Event = field(default_factory=asyncio.Event)
    cache: PromptCache = field(default_factory=lambda: PromptCache(1, 0))  # its slots' prompts (§9)

    @property
    def name(self) -> str:
        return self.model.name

    def expires_at(self, now: float) -> float:
        """Monotonic: now + keep-alive while busy; the idle timer's deadline once idle."""
        return now + self.session if self.refs else self.idle_since + self.session


@dataclass(eq=False)
class Pending:
    model: SimModel
    num_ctx: int
    keep_alive: float | None
    granted: asyncio.Future[Runner]


@dataclass
class SchedulerStats:
    loads: int = 0
    unloads: int = 0
    evictions_with_waiting: int = 0  # a model unloaded while requests for it were in the pending queue
    busy: int = 0  # 503s: the pending queue was full
    held: int = 0  # requests inside Ollama now: running, or queued for a load or a slot
    most_held: int = 0  # the most it ever held at once (above its slots: a queue out of its callers' sight)
    most_running: int = 0  # the most it ever ran at once


class Scheduler:
    def __init__(self, behaviour: Behaviour) -> None:
        self.behaviour = behaviour
        self.runners: dict[str, Runner] = {}  # by model name
        self.loading: set[str] = set()
        self.pending: deque[Pending] = deque()
        self.stats = SchedulerStats()
        self._running = 0
        self._worker: asyncio.Task[None] | None = None

    @property
    def queue_depth(self) -> int:
        return len(self.pending)

    @contextlib.asynccontextmanager
    async def slot(
        self, model: SimModel, num_ctx: int | None = None, keep_alive: float | None = None
    ) -> AsyncIterator[int]:
        """Hold one of the model's slots for a request; yields the nanoseconds spent waiting and loading."""
        started, stats = time.perf_counter_ns(), self.stats
        stats.held += 1
        stats.most_held = max(stats.most_held, stats.held)
        try:
            runner = await self._runner_for(model, num_ctx or DEFAULT_CTX, keep_alive)
            try:
                await runner.slots.acquire()
                self._running += 1
                stats.most_running = max(stats.most_running, self._running)
                try:
                    yield time.perf_counter_ns() - started
                finally:
                    self._running -= 1
                    runner.slots.release()
            finally:
                self._release(runner)
        finally:
            stats.held -= 1

    async def load_only(self, model: SimModel, num_ctx: int | None, keep_alive: float | None) -> int:
        """Ollama's load shortcut (an empty prompt): load with the request's options, keep for keep_alive."""
        async with self.slot(model, num_ctx, keep_alive) as waited:
            return waited

    def unload_now(self, model: SimModel) -> None:
        """The unload shortcut: unload at once when idle, or as soon as its requests finish."""
        runner = self.runners.get(model.name)
        if runner is not None:
            runner.session = 0.0
            if not runner.refs:
                self._unload(runner)

    def ps(self) -> list[dict]:
        """Loaded runners as /api/ps lists them: expires_at descending; a model still loading is not there."""
        now, wall = time.monotonic(), datetime.now(UTC)
        entries = []
        for runner in sorted(self.runners.values(), key=lambda r: r.expires_at(now), reverse=True):
            seconds = min(runner.expires_at(now) - now, FOREVER)
            expires = wall + timedelta(seconds=max(0.0, min(seconds, 9e9)))
            vram = runner.model.size if self.behaviour.vram_gb else 0
            entries.append(
                {
                    **runner.model.ps_entry(),
                    "expires_at": expires.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                    "size_vram": vram,
                    "context_length": runner.num_ctx,
                }
            )
        return entries

    # Getting a runner.

    async def _runner_for(self, model: SimModel, num_ctx: int, keep_alive: float | None) -> Runner:
        runner = self.runners.get(model.name)
        if runner is not None and runner.num_ctx == num_ctx:  # loaded: straight to it, never the queue
            return self._use(runner, keep_alive)
        if len(self.pending) >= self.behaviour.max_queue:
            self.stats.busy += 1
            raise ServerBusy(BUSY)
        request = Pending(model, num_ctx, keep_alive, asyncio.get_running_loop().create_future())
        self.pending.append(request)
        self._ensure_worker()
        try:
            return await request.granted
        except asyncio.CancelledError:
            if request in self.pending:
                self.pending.remove(request)
            elif request.granted.done() and not request.granted.cancelled():
                self._release(request.granted.result())  # granted just as the caller left
            raise

    def pending_for(self, model: SimModel) -> bool:
        return any(p.model.name == model.name for p in self.pending)

    def _use(self, runner: Runner, keep_alive: float | None) -> Runner:
        if keep_alive is not None:  # omitted: a loaded runner keeps its keep-alive (reference §7.1)
            runner.session = keep_alive
        runner.refs += 1
        runner.became_idle.clear()
        if runner.expiry is not None:
            runner.expiry.cancel()
            runner.expiry = None
        return runner

    def _release(self, runner: Runner) -> None:
        runner.refs -= 1
        if runner.refs:
            return
        runner.idle_since = time.monotonic()
        runner.became_idle.set()
        if runner.session <= 0:
            self._unload(runner)
        elif runner.session < FOREVER and self.runners.get(runner.name) is runner:
            runner.expiry = asyncio.get_running_loop().call_later(runner.session, self._unload, runner)

    def _unload(self, runner: Runner) -> None:
        if self.runners.get(runner.name) is not runner:
            return
        del self.runners[runner.name]
        if runner.expiry is not None:
            runner.expiry.cancel()
        self.stats.unloads += 1
        if self.pending_for(runner.model):
            self.stats.evictions_with_waiting += 1

    # The pending queue, one request at a time.

    def _ensure_worker(self) -> None:
        if self._worker is None or self._worker.done():
            self._worker = asyncio.get_running_loop().create_task(self._serve_pending())

    async def _serve_pending(self) -> None:
        while self.pending:
            head = self.pending[0]
            if head.granted.cancelled():
                self.pending.popleft()
                continue
            runner = await self._make_room_and_load(head)
            if self.pending and self.pending[0] is head:
                self.pending.popleft()
            if head.granted.cancelled():
                continue
            head.granted.set_result(self._use(runner, head.keep_alive))

    async def _make_room_and_load(self, head: Pending) -> Runner:
        while True:
            current = self.runners.get(head.model.name)
            if current is not None and current.num_ctx == head.num_ctx:
                return current
            if current is not None:  # another num_ctx: this runner must go first
                await self._evict(current)
                continue
            if self._fits(head.model):
                return await self._load(head)
            await self._evict(self._runner_to_unload())

    def _fits(self, model: SimModel) -> bool:
        if len(self.runners) >= self.behaviour.max_loaded_models:
            return False
        if not self.behaviour.vram_gb:
            return True
        used = sum(r.model.size for r in self.runners.values())
        return used + model.size <= self.behaviour.vram_gb * 1e9

    def _runner_to_unload(self) -> Runner:
        """Ollama's findRunnerToUnload: by keep-alive, then name; the first idle one, else the first."""
        ordered = sorted(self.runners.values(), key=lambda r: (r.session, r.name))
        return next((r for r in ordered if not r.refs), ordered[0])

    async def _evict(self, runner: Runner) -> None:
        while runner.refs:  # wait until its requests finish
            runner.became_idle.clear()
            await runner.became_idle.wait()
        self._unload(runner)

    async def _load(self, head: Pending) -> Runner:
        model = head.model
        self.loading.add(model.name)
        try:
            seconds = self.behaviour.load_delay + model.size / 1e9 * self.behaviour.load_seconds_per_gb
            if seconds > 0:
                await asyncio.sleep(seconds)
        finally:
            self.loading.discard(model.name)
        keep = head.keep_alive if head.keep_alive is not None else self.behaviour.keep_alive
        slots = max(1, self.behaviour.num_parallel)
        runner = Runner(model, head.num_ctx, keep, asyncio.Semaphore(slots))
        runner.cache = PromptCache(slots, self.behaviour.prompt_cache_tokens)
        self.runners[model.name] = runner
        self.stats.loads += 1
        return runner


def finite(seconds: float | None) -> float | None:
    """A request's keep_alive in seconds (inf: forever) as the scheduler keeps it."""
    if seconds is None:
        return None
    return FOREVER if math.isinf(seconds) else seconds
