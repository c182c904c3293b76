"""Jobs in progress, and the one place a job's end is accounted: counters, metrics, journal.

Each job's record is registered when the job starts and ended exactly once, whatever ends it (a node's
answer, the hub's error, the caller's hang-up, a cancellation); GET /jobs shows the jobs in progress from
here and the ended ones from the journal.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from ollama_connector.hubd.errors import CallerError, HubError, NoHealthyNodes, flatten
from ollama_connector.hubd.jobs.record import JobRecord, Status
from ollama_connector.hubd.keys import COUNTERS, JOURNAL, METRICS, TRACKER


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
    return "failed", f"internal error: {type(exc).__name__}"


def end(app: web.Application, record: JobRecord) -> None:
    """Account a job that has ended (its record finished): once, wherever it ended."""
    tracker = app[TRACKER]
    if tracker.live.pop(record.job_id, None) is None:
        return
    if record.status == "done":
        app[COUNTERS].served_one(record.output_tokens)
    elif record.status == "failed":
        app[COUNTERS].failed += 1
    app[METRICS].job_ended(record)
    app[JOURNAL].record(record)
