"""Async jobs across hubs that share one journal (JOURNAL_URL): leases kept, jobs of a dead hub taken over,
and another hub's job read, followed and cancelled from here.

- Every third of JOB_LEASE_SECONDS this hub renews the leases of the async jobs it runs (hubd.jobs.leases),
  cancels those another hub was asked to cancel, lets go of those it no longer holds, and takes over jobs
  whose lease lapsed: each runs again from the start, after a line that says so in its stream (`restarted`).
- A reader of another hub's job follows its lines from the journal as they land (every FOLLOW_EVERY seconds).
- `DELETE` of another hub's job asks for its cancellation in the journal and waits until it is recorded (by
  its hub, or by the hub that takes it over if its own is dead).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator

from aiohttp import web

from ollama_connector.hubd.jobs import durable
from ollama_connector.hubd.jobs.journal import JournalUnavailable
from ollama_connector.hubd.jobs.journal_tables import lines_from, one
from ollama_connector.hubd.jobs.keys import JOURNAL, LEDGER, RUNS
from ollama_connector.hubd.jobs.leases import ask_cancel, lease_sql, new_hub_id, renew, take_lapsed
from ollama_connector.hubd.jobs.record import JobRecord, iso
from ollama_connector.hubd.keys import SETTINGS
from ollama_connector.shared.lifecycle import supervised

log = logging.getLogger(__name__)
FOLLOW_EVERY = 0.25  # seconds between two looks at the journal for another hub's lines (they land in batches)
PAGE = 2000


def restarted_line(model: str, by: str) -> bytes:
    """The line a taken-over job's readers see before its new run: what they read so far is void."""
    said = f"the hub running this job stopped; hub {by} runs it again from the start"
    line = {"model": model, "created_at": iso(time.time()), "response": "", "done": False, "restarted": said}
    return json.dumps(line).encode() + b"\n"


async def keep_leases(app: web.Application) -> None:
    journal, runs, lease = app[JOURNAL], app[RUNS], app[SETTINGS].job_lease
    owner, away = journal.hub_id or "", False
    while True:
        try:
            mine = {i for i, run in runs.unfinished.items() if not run.record.finished}
            held, to_cancel = await journal.read(renew, owner, lease)
            for job_id in mine - held:  # taken over while this hub could not renew: it runs there now
                if (run := runs.unfinished.get(job_id)) is not None and run.task is not None:
                    log.warning(
                        "async job %s: its lease lapsed and another hub runs it; stopped here", job_id
                    )
                    run.task.cancel()  # what it writes now changes nothing: the record is the other's
            for job_id in to_cancel:
                if (run := runs.unfinished.get(job_id)) is not None and not run.record.finished:
                    await durable.cancel(journal, run)
            for record, request, lines, cancelled in await journal.read(take_lapsed, owner, lease):
                await _adopt(app, record, request, lines, cancelled)
            if away:
                log.info("async job leases: the journal answers again")
            away = False
        except JournalUnavailable as exc:
            if not away:
                log.warning("async job leases: cannot reach the journal (%s); trying again", exc)
            away = True
        await asyncio.sleep(lease / 3)


async def _adopt(
    app: web.Application, record: JobRecord, request: bytes | None, lines: int, cancelled: bool
) -> None:
    journal, ledger = app[JOURNAL], app[LEDGER]
    body = durable.body_of(request)
    if cancelled or body is None:
        why = durable.CANCELLED if cancelled else "the hub running it stopped, and its request is unreadable"
        record.finish("cancelled" if cancelled else "failed", why)
        end = {
            "error": f"the job was {why}",
            "done": True,
            "done_reason": "cancelled" if cancelled else "error",
        }
        journal.chunks(record.job_id, lines, [json.dumps(end).encode() + b"\n"])
        ledger.settle(record)
        return
    log.info("async job %s: its hub stopped; taken over, and run again from the start", record.job_id)
    earlier = await journal.read(lines_from, record.job_id, 0)  # what its readers saw (within the cap)
    earlier.append(restarted_line(record.model, journal.hub_id or ""))
    journal.chunks(record.job_id, len(earlier) - 1, earlier[-1:])
    journal.write(lease_sql(journal), (app[SETTINGS].job_lease, record.job_id))
    durable.run_again(app, record, request, body, earlier)


async def follow(app: web.Application, record: JobRecord, start: int) -> AsyncIterator[list[bytes]]:
    """Another hub's job: its lines from `start` as they land in the journal, until it has ended."""
    journal, at = app[JOURNAL], start
    while True:
        page = await journal.read(lines_from, record.job_id, at, PAGE)
        if page:
            at += len(page)
            yield page
            continue
        if record.finished:
            return
        found = await journal.read(one, record.job_id)
        if found is None:
            return
        record = found[0]
        if not record.finished:
            await asyncio.sleep(FOLLOW_EVERY)


async def cancel(app: web.Application, record: JobRecord) -> JobRecord:
    """Ask whichever hub runs it to cancel it; its record once cancelled (or as it is, after long enough
    for its hub, or the hub that takes it over, to have done it)."""
    journal = app[JOURNAL]
    if not await journal.read(ask_cancel, record.job_id):
        return record  # ended meanwhile
    deadline = time.monotonic() + app[SETTINGS].job_lease * 1.5 + 2
    while time.monotonic() < deadline:
        await asyncio.sleep(FOLLOW_EVERY)
        found = await journal.read(one, record.job_id)
        if found is not None and found[0].finished:
            return found[0]
    return record


async def leases_ctx(app: web.Application) -> AsyncIterator[None]:
    journal = app[JOURNAL]
    if not journal.shared:
        yield
        return
    journal.hub_id = journal.hub_id or new_hub_id(app[SETTINGS].port)
    async with supervised("the async jobs' leases", lambda: keep_leases(app)):
        yield
