"""Async jobs: `POST /jobs` with `"async": true` answers 202 at once, and the hub runs the job whether or
not anyone stays connected: same routing, queue and failover, every streamed line kept in the journal.

A run's readers follow it live (hubd.jobs.runs); once it ends they read the journal. When the hub stops, a run
that had produced lines is marked `interrupted` (its lines kept); one that had produced nothing is left
queued, and the next start of the hub runs it again. A crash leaves the same two cases, found at start.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import web

from ollama_connector.hubd.errors import HubError, NoHealthyNodes
from ollama_connector.hubd.guard.auth import who
from ollama_connector.hubd.guard.keys import QUOTAS
from ollama_connector.hubd.guard.quotas import DAY
from ollama_connector.hubd.jobs.dispatch import dispatch_to
from ollama_connector.hubd.jobs.job import Job, new_job
from ollama_connector.hubd.jobs.journal import Journal, JournalUnavailable
from ollama_connector.hubd.jobs.journal_tables import request_of, tokens_by_key, unfinished
from ollama_connector.hubd.jobs.keys import JOURNAL, LEDGER, RUNS
from ollama_connector.hubd.jobs.leases import lease_sql
from ollama_connector.hubd.jobs.record import JobRecord, new_job_id
from ollama_connector.hubd.jobs.runs import AnswerTooLarge, DurableRun, assemble
from ollama_connector.hubd.keys import SETTINGS
from ollama_connector.hubd.routing.keys import REGISTRY
from ollama_connector.shared.bodies import num_ctx_of
from ollama_connector.shared.error_formats import Ollama
from ollama_connector.shared.lifecycle import said_if_crashed, supervised
from ollama_connector.shared.modelnames import canonical
from ollama_connector.shared.relay import LineReader, Relayed, UpstreamBroken

log = logging.getLogger(__name__)


async def submit(request: web.Request, body: dict[str, Any], model: str) -> web.Response:
    """Queue an async job; 202 once it is on disk."""
    app = request.app
    journal, runs = app[JOURNAL], app[RUNS]
    if journal.unavailable is not None:
        raise HubError(f"async jobs need the job journal, which is unavailable ({journal.unavailable})", 503)
    if not app[REGISTRY].knows(canonical(model)):  # said now, as for any job, rather than after a 202
        raise NoHealthyNodes(new_job_id(), model, known=False)
    if len(runs.unfinished) >= runs.limit:
        raise HubError(
            f"MAX_ASYNC_JOBS={runs.limit} async jobs are unfinished; wait for some, or cancel them"
            " (DELETE /jobs/{job_id})",
            status=503,
            headers={"Retry-After": "5"},
        )
    # Always streamed from the node, so that readers can follow it; "async" is the hub's, not Ollama's.
    sent = {key: value for key, value in body.items() if key != "async"} | {"stream": True}
    payload = json.dumps(sent).encode()
    job = await new_job(
        request, sent, model, True, node_path="/execute", context_settable=True, payload=payload, durable=True
    )
    app[LEDGER].admit(
        job.record, request=payload, concurrency=who(request).concurrency, share=who(request).share
    )  # on disk with its request before any of its lines
    if journal.shared:  # and its lease, renewed while it runs here (hubd.jobs.takeover)
        journal.write(lease_sql(journal), (app[SETTINGS].job_lease, job.job_id))
    try:
        await journal.flush()  # 202 promises the job is on disk: only once it is
    except JournalUnavailable as exc:
        job.record.finish("failed", f"not accepted: {exc}")
        app[LEDGER].end(job.record)  # should its first row land later, it says so
        raise HubError(
            f"the job could not be kept on disk ({exc}); it was not accepted",
            status=507 if exc.full else 503,
            headers={"Retry-After": "10"},
        ) from None
    on_disk(journal, job)
    start(app, job)
    return web.json_response(
        {**links(job.job_id), "status": job.record.status},
        status=202,
        headers={"Location": f"/jobs/{job.job_id}", "X-Job-Id": job.job_id},
    )


def on_disk(journal: Journal, job: Job) -> None:
    """The job's body is in the journal: memory lets it go until a node is chosen (36 MB bodies of queued
    async jobs took the hub's memory before)."""
    job.payload = b""
    job.stored_body = functools.partial(journal.read, request_of, job.job_id)


def links(job_id: str) -> dict[str, str]:
    return {"job_id": job_id, "status_url": f"/jobs/{job_id}", "stream_url": f"/jobs/{job_id}/stream"}


def start(app: web.Application, job: Job, after_restart: bool = False, run: DurableRun | None = None) -> None:
    """Run an admitted async job in the background (`run`: one taken over, with its earlier lines)."""
    run = run or DurableRun(job.record, app[SETTINGS].max_answer_bytes)
    app[RUNS].unfinished[job.job_id] = run
    run.task = asyncio.create_task(_run(app, job, run, after_restart), name=f"async job {job.job_id}")
    run.task.add_done_callback(said_if_crashed)


async def _run(app: web.Application, job: Job, run: DurableRun, after_restart: bool) -> None:
    journal, ledger = app[JOURNAL], app[LEDGER]
    try:
        if after_restart:
            await _nodes_back(app, job.model)
        await ledger.run(job.record, dispatch_to(app, job, functools.partial(_deliver, journal, run)))
    except HubError as exc:
        log.info("async job %s: %s", job.job_id, job.record.error or exc.detail)
    except asyncio.CancelledError:
        pass  # DELETE, or the hub stopping: the record says which
    finally:
        if run.lines and (answer := assemble(run.lines[run.answer_from :])) is not None:
            journal.answer(job.job_id, json.dumps(answer).encode())
        ledger.end(job.record)  # when it was cancelled before it could run, too
        app[RUNS].unfinished.pop(job.job_id, None)
        run.ended()


async def _deliver(
    journal: Journal,
    run: DurableRun,
    reader: LineReader,
    first: bytes,
    status: int,
    headers: dict[str, str],
    explain: Callable[[str], str],
) -> Relayed:
    """A node's stream into the run (and the journal) instead of to a caller."""
    block = last = first
    previous = b""
    try:
        while block:
            _keep(journal, run, block.splitlines(keepends=True))
            previous, last = last if block is not first else b"", block
            block = await reader.next_block()
    except UpstreamBroken as exc:
        message = explain(str(exc))
        _keep(journal, run, [Ollama.stream_tail(message)], force=True)
        return Relayed(None, broken=message)
    except AnswerTooLarge as exc:
        run.record.finish("failed", str(exc))
        _keep(journal, run, [Ollama.stream_tail(str(exc))], force=True)
        return Relayed(None, caller_gone=True)  # as a hang-up: the node's request is cancelled
    return Relayed(None, last=previous + last)  # as shared.relay.pump: an error, then [DONE] later


def _keep(journal: Journal, run: DurableRun, lines: list[bytes], force: bool = False) -> None:
    first = len(run.lines)
    run.add(lines, force)
    journal.chunks(run.record.job_id, first, lines)


async def _nodes_back(app: web.Application, model: str) -> None:
    """Nodes come back with their first heartbeats after a restart (at once when the registry was saved):
    wait for one that has the model, HEARTBEAT_TTL_SECONDS at most."""
    registry, heard = app[REGISTRY], asyncio.Event()
    registry.heard.append(heard.set)
    try:
        async with asyncio.timeout(app[SETTINGS].heartbeat_ttl):
            while not registry.knows(canonical(model)):
                await heard.wait()
                heard.clear()
    except TimeoutError:
        pass  # routed as it is: a model no node has ends the job with the usual 404
    finally:
        registry.heard.remove(heard.set)


CANCELLED = "cancelled by DELETE /jobs/{job_id}"


async def cancel(journal: Journal, run: DurableRun) -> None:
    run.record.finish("cancelled", CANCELLED)
    # Its stream ends with a line that says so (a reader can tell it from a dropped connection), kept
    # before the task stops, so that no reader following it has gone before the line came.
    last = {"error": f"the job was {CANCELLED}", "done": True, "done_reason": "cancelled"}
    _keep(journal, run, [json.dumps(last).encode() + b"\n"], force=True)
    if run.task is not None:
        run.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await run.task


async def _recover(app: web.Application) -> None:
    """What a previous run of the hub left unfinished: run again what produced nothing, mark the rest."""
    journal = app[JOURNAL]
    again = 0
    for record, request, lines in await journal.read(unfinished):
        body = body_of(request) if record.durable and not lines else None
        if body is None:
            record.finish("interrupted", "the hub stopped while the job ran; what it produced is kept")
            app[LEDGER].settle(record)
            continue
        run_again(app, record, request, body)
        again += 1
    if again:
        log.info("running again %d async job(s) the hub had not started before it stopped", again)


def run_again(
    app: web.Application,
    record: JobRecord,
    request: bytes | None,
    body: dict,
    earlier: list[bytes] | None = None,
) -> None:
    """Admit an unfinished async job again and run it from the start (`earlier`: the lines its readers have
    seen, kept ahead of the new run's; its answer is the new run's alone)."""
    num_ctx = num_ctx_of(body)
    fresh = queued_again(record)
    job = Job(
        record.job_id,
        record.model,
        "/execute",
        request or b"",
        True,
        fresh,
        num_ctx=num_ctx,
        larger_context_ok=num_ctx is None,
    )
    run = None
    if earlier is not None:
        run = DurableRun(fresh, app[SETTINGS].max_answer_bytes)
        run.lines, run.answer_from = earlier, len(earlier)
    app[LEDGER].admit(fresh)
    on_disk(app[JOURNAL], job)
    start(app, job, after_restart=True, run=run)


def body_of(request: bytes | None) -> dict[str, Any] | None:
    try:
        body = json.loads(request or b"")
    except ValueError:
        return None
    return body if isinstance(body, dict) and isinstance(body.get("model"), str) else None


async def _stop(app: web.Application) -> None:
    ledger, runs, journal = app[LEDGER], app[RUNS], app[JOURNAL]
    waiting = []
    for run in list(runs.unfinished.values()):
        if run.lines and not journal.shared:
            run.record.finish("interrupted", "the hub stopped while the job ran; what it produced is kept")
        else:
            run.record.finish("cancelled", "the hub stopped before the job ran; it runs at the next start")
            waiting.append(run.record)
        if run.task is not None:
            run.task.cancel()
    await asyncio.gather(*(r.task for r in runs.unfinished.values() if r.task), return_exceptions=True)
    for record in waiting:  # queued again, for the next start of the hub (written after its cancellation)
        ledger.settle(queued_again(record))
    if journal.shared and waiting:  # handed over at once: another hub takes them, with no lease to wait out
        handed = "UPDATE jobs SET lease_until = 0 WHERE owner = ? AND status = 'queued'"
        journal.write(handed, (journal.hub_id,))
        log.info("handed %d async job(s) over to the other hubs", len(waiting))


def queued_again(record: JobRecord) -> JobRecord:
    return dataclasses.replace(
        record, status="queued", started=None, first_token=None, ended=None, error=None, nodes=[], node=None
    )


async def journal_ctx(app: web.Application) -> AsyncIterator[None]:
    journal = app[JOURNAL]
    await journal.open()
    async with supervised("the journal's writer", journal.flusher):
        if journal.unavailable is None:
            try:
                if not journal.shared:  # shared: jobs whose lease lapsed are taken (hubd.jobs.takeover)
                    await _recover(app)
                for key, ended, tokens in await journal.read(tokens_by_key, time.time() - DAY):
                    app[QUOTAS].spent(
                        key, ended, tokens
                    )  # the keys' tokens a day count from before a restart
            except (
                sqlite3.DatabaseError,
                JournalUnavailable,
            ) as exc:  # a damaged page past the check at open
                log.error("could not read back the job journal (%s); what it held is not run again", exc)
        try:
            yield
        finally:
            await _stop(app)
    await journal.close()
