"""The ledger: the one owner of a job's life at the hub, from its arrival to its end.

Everything that counts a job asks the ledger: admission within MAX_CONCURRENT_JOBS (callers' jobs; async
jobs have their own bound, MAX_ASYNC_JOBS, and never use up this one), the table of jobs in progress (both
kinds, for GET /jobs), the counters, the journal record, and the watchers that observe jobs without owning
them (the metrics: hubd.ops registers itself at start-up, so this room never imports it). Each job is ended
exactly once, whatever ends it: a node's answer, the hub's error, the caller's hang-up, a cancellation.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from typing import Any, Protocol, TypeVar

from ollama_connector.hubd.errors import CallerError, HubError, NoHealthyNodes, flatten
from ollama_connector.hubd.guard.keyring import share_of
from ollama_connector.hubd.jobs.counters import JobCounters
from ollama_connector.hubd.jobs.journal import Journal
from ollama_connector.hubd.jobs.record import JobRecord, Status

T = TypeVar("T")
log = logging.getLogger(__name__)


class JobWatcher(Protocol):
    """What observes jobs without owning them (hubd.ops.metrics.HubMetrics)."""

    def queued(self, record: JobRecord) -> None: ...  # the job left the hub's queue for a node

    def failed_over(self, reason: str) -> None: ...

    def job_ended(self, record: JobRecord) -> None: ...


def outcome_of(exc: BaseException) -> tuple[Status, str]:
    """How a job that ended in an exception is recorded."""
    if isinstance(exc, asyncio.CancelledError):
        return "cancelled", "cancelled (the caller hung up, or DELETE /jobs/{id})"
    if isinstance(exc, NoHealthyNodes) and not exc.known:
        return "rejected", f"model '{exc.model}' is not available on any node"
    if isinstance(exc, CallerError):
        return "rejected", str(exc.detail)
    if isinstance(exc, HubError):
        return "failed", flatten(exc.detail)
    return "failed", "the hub failed on this job (its log has the details)"


class Ledger:
    """Jobs in progress by id, and everything accounted when one arrives, starts on a node, and ends."""

    def __init__(
        self,
        max_concurrent: int,
        counters: JobCounters,
        journal: Journal,
        max_async: int = 1000,
        share: float = 1.0,
    ) -> None:
        self.max_concurrent, self.max_async, self.share = max_concurrent, max_async, share
        self.counters = counters
        self.journal = journal
        self.live: dict[str, JobRecord] = {}
        self.callers_jobs = 0  # jobs in progress with a caller waiting on them, for MAX_CONCURRENT_JOBS
        self.by_caller: dict[str, int] = {}  # jobs in progress of each caller, for a key's concurrency
        self.async_by_caller: dict[
            str, int
        ] = {}  # its async jobs among them, for its share of MAX_ASYNC_JOBS
        self.watchers: list[JobWatcher] = []

    def admit(
        self,
        record: JobRecord,
        request: bytes | None = None,
        concurrency: int | None = None,
        share: float | None = None,
    ) -> None:
        """A job arrives: refused past MAX_CONCURRENT_JOBS (503), or past its caller's `concurrency` or share
        of the hub's caps (429), else in progress from now on. An async job's record is written at once, with
        its request, so a restart can run it again."""
        mine = self.by_caller.get(record.caller, 0)
        if concurrency and mine >= concurrency:
            raise HubError(
                f"this key's limit: {concurrency} jobs at once (running or queued); retry when one ends",
                status=429,
                headers={"Retry-After": "1"},
            )
        if not record.durable:
            if self.callers_jobs >= self.max_concurrent:
                raise HubError(
                    f"the hub is running MAX_CONCURRENT_JOBS={self.max_concurrent} jobs; retry shortly",
                    status=503,
                    headers={"Retry-After": "1"},
                )
            self._within_share(record, mine, share if share is not None else self.share)
            self.callers_jobs += 1
        else:
            self._within_share(record, mine, share if share is not None else self.share)
        self.live[record.job_id] = record
        self.by_caller[record.caller] = mine + 1
        if record.durable:
            self.async_by_caller[record.caller] = self.async_by_caller.get(record.caller, 0) + 1
            self.journal.record(record, request=request)

    def _within_share(self, record: JobRecord, mine: int, share: float) -> None:
        """One caller holds at most its share of each cap: its async jobs of MAX_ASYNC_JOBS, its live jobs
        of MAX_CONCURRENT_JOBS (so 500 fire-and-forget jobs of one key leave room for everyone else)."""
        if record.durable:
            held, cap, name = self.async_by_caller.get(record.caller, 0), self.max_async, "MAX_ASYNC_JOBS"
        else:
            held = mine - self.async_by_caller.get(record.caller, 0)
            cap, name = self.max_concurrent, "MAX_CONCURRENT_JOBS"
        allowed = share_of(cap, share)
        if held >= allowed:
            raise HubError(
                f"this caller's share: {allowed} of {name}={cap} at once; retry when one of its jobs ends",
                status=429,
                headers={"Retry-After": "1"},
            )

    async def run(self, record: JobRecord, work: Coroutine[Any, Any, T]) -> T:
        """Run an admitted job's work on nodes, and end the job however the work ends."""
        self.counters.running += 1
        try:
            return await work
        except BaseException as exc:
            record.finish(*outcome_of(exc))
            if not isinstance(exc, HubError | asyncio.CancelledError):  # a bug of ours: said, with its trace
                log.exception("job %s: the hub failed on it", record.job_id)
            raise
        finally:
            self.counters.running -= 1
            self.end(record)

    async def admitted(
        self,
        record: JobRecord,
        work: Coroutine[Any, Any, T],
        concurrency: int | None = None,
        share: float | None = None,
    ) -> T:
        """A caller's job from its arrival to its end."""
        try:
            self.admit(record, concurrency=concurrency, share=share)
        except HubError:
            work.close()
            raise
        return await self.run(record, work)

    def started(self, record: JobRecord) -> None:
        """The job leaves the hub's queue for its first node."""
        if record.started is None:
            record.started = time.time()
            for watcher in self.watchers:
                watcher.queued(record)
            if record.durable and self.journal.shared:  # the other hubs read it from the journal
                record.status = "running"
                self.journal.record(record)
        record.status = "running"

    def failed_over(self, reason: str) -> None:
        for watcher in self.watchers:
            watcher.failed_over(reason)

    def end(self, record: JobRecord) -> None:
        """Account a job that has ended: once, wherever it ended. An unfinished record ends as failed."""
        if self.live.pop(record.job_id, None) is None:
            return
        record.finish("failed", "ended without an answer")  # a no-op when the job ended as it should
        if not record.durable:
            self.callers_jobs -= 1
        _less(self.by_caller, record.caller)
        if record.durable:
            _less(self.async_by_caller, record.caller)
        if record.status == "done":
            self.counters.served_one(record.output_tokens)
        elif record.status == "failed":
            self.counters.failed += 1
        for watcher in self.watchers:
            watcher.job_ended(record)
        self.journal.record(record)

    def settle(self, record: JobRecord) -> None:
        """A job an earlier run of the hub left unfinished, ended (or queued again) at this start: only the
        journal hears of it."""
        self.journal.record(record)

    def get(self, job_id: str) -> JobRecord | None:
        return self.live.get(job_id)


def _less(counts: dict[str, int], caller: str) -> None:
    if (left := counts.get(caller, 0) - 1) > 0:
        counts[caller] = left
    else:
        counts.pop(caller, None)
