"""The seed's job API, `POST /jobs`, and what the journal adds to it: the jobs the hub ran, async jobs.

- `POST /jobs`: a generate request run on the best node; with `"async": true`, 202 at once
  (hubd.jobs.durable).
- `GET /jobs`: recent jobs (in progress and from the journal), filtered; `GET /jobs/{job_id}`: one, with
  an async job's answer once it is done.
- `GET /jobs/{job_id}/stream`: an async job's lines from `?from=N` (0 first), then live to its end.
- `DELETE /jobs/{job_id}`: cancel an async job (on its node too).
With API_KEYS set, any key sees the jobs' records (as it sees /nodes), but an async job's answer, stream and
cancellation belong to the key that submitted it.
"""

from __future__ import annotations

import contextlib
import json
import re
from datetime import datetime
from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, StrictStr

from ollama_connector.hubd.errors import HubError
from ollama_connector.hubd.guard.auth import caller_of, sees_job_of, who
from ollama_connector.hubd.jobs import durable, takeover
from ollama_connector.hubd.jobs.dispatch import dispatch
from ollama_connector.hubd.jobs.job import new_job
from ollama_connector.hubd.jobs.journal import JournalUnavailable
from ollama_connector.hubd.jobs.journal_tables import find, ids_matching, lines_from, one
from ollama_connector.hubd.jobs.keys import JOURNAL, LEDGER, RUNS
from ollama_connector.hubd.jobs.record import JobRecord
from ollama_connector.shared.bodies import parse_body_as, read_json_object
from ollama_connector.shared.error_formats import NDJSON
from ollama_connector.shared.modelnames import canonical
from ollama_connector.shared.wire import MAX_MODEL_NAME

PAGE_LINES = 2000  # lines of an ended job's stream read from the journal at once
routes = web.RouteTableDef()
ID_LENGTH = 36  # a UUID's text
PART_OF_ID = re.compile(r"[0-9a-f-]{6,35}")
MAX_LIST = 1000


class JobRequest(BaseModel):
    """The fields the hub reads; every other field of Ollama's /api/generate passes through untouched."""

    model_config = ConfigDict(extra="allow")

    model: StrictStr = Field(min_length=1, max_length=MAX_MODEL_NAME)
    prompt: StrictStr
    options: dict[str, Any] | None = None
    stream: StrictBool = True
    run_async: StrictBool = Field(False, alias="async")


def _timestamp(value: object) -> object:
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    return value


Timestamp = Annotated[float | None, BeforeValidator(_timestamp)]
"""A time in a query: unix seconds, or an ISO 8601 time."""


class JobsQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    limit: int = Field(50, ge=1, le=MAX_LIST)
    model: str | None = Field(None, max_length=MAX_MODEL_NAME)
    node: str | None = Field(None, max_length=256)
    status: Literal["queued", "running", "done", "failed", "rejected", "cancelled", "interrupted"] | None = (
        None
    )
    since: Timestamp = None  # unix seconds, or an ISO 8601 time

    def matches(self, record: JobRecord) -> bool:
        return (
            (self.model is None or canonical(record.model) == canonical(self.model))
            and (self.node is None or record.node == self.node)
            and (self.status is None or record.status == self.status)
            and (self.since is None or record.arrived >= self.since)
        )


@routes.post("/jobs")
async def submit_job(request: web.Request) -> web.StreamResponse:
    body = await read_json_object(request)
    asked = parse_body_as(JobRequest, body)
    if asked.run_async:
        return await durable.submit(request, body, asked.model)
    # The body goes on as the caller wrote it: an absent "stream" means true for Ollama too.
    job = await new_job(request, body, asked.model, asked.stream, node_path="/execute", context_settable=True)
    return await dispatch(request, job)


@routes.get("/jobs")
async def list_jobs(request: web.Request) -> web.Response:
    query = parse_body_as(JobsQuery, dict(request.query))
    live = {
        r.job_id: r for r in _in_progress(request.app) if query.matches(r) and sees_job_of(request, r.caller)
    }
    journal, mine = request.app[JOURNAL], _only_mine(request)
    try:
        stored = await journal.read(
            find, query.limit, query.model, query.node, query.status, query.since, mine
        )
    except JournalUnavailable:
        stored = []
    merged = {**{r.job_id: r for r in stored}, **live}
    newest = sorted(merged.values(), key=lambda r: r.arrived, reverse=True)[: query.limit]
    return web.json_response(
        {
            "jobs": [r.view() for r in newest],
            "journal": journal.unavailable or ("failing" if journal.failing else "ok"),
        }
    )


def _in_progress(app: web.Application) -> list[JobRecord]:
    return list(app[LEDGER].live.values())


def _only_mine(request: web.Request) -> str | None:
    """A user reads only their own jobs (an admin every job): None, or the caller whose jobs to read."""
    return None if who(request).admin else caller_of(request)


async def _whole_id(request: web.Request, given: str) -> str:
    """A job id, or a part of one as lists show it (its tail, or its head, like a short git hash) that names
    one job; 400 when it names several."""
    if len(given) >= ID_LENGTH or not PART_OF_ID.fullmatch(given):
        return given
    app, mine = request.app, _only_mine(request)
    found = {
        i
        for i, record in app[LEDGER].live.items()
        if (i.endswith(given) or i.startswith(given)) and sees_job_of(request, record.caller)
    }
    with contextlib.suppress(JournalUnavailable):
        found |= set(await app[JOURNAL].read(ids_matching, given, mine))
    if len(found) > 1:
        raise HubError(f"job id '{given}' names more than one job; give more of it", status=400)
    return found.pop() if found else given


async def _find(request: web.Request) -> tuple[JobRecord, bytes | None]:
    app = request.app
    job_id = await _whole_id(request, request.match_info["job_id"])
    found: tuple[JobRecord, bytes | None] | None = None
    if (run := app[RUNS].unfinished.get(job_id)) is not None:
        found = run.record, None
    elif (record := app[LEDGER].get(job_id)) is not None:
        found = record, None
    else:
        with contextlib.suppress(JournalUnavailable):
            found = await app[JOURNAL].read(one, job_id)
    if found is None or not sees_job_of(request, found[0].caller):  # another's job: as if there were none
        raise HubError(f"job {job_id} not found", status=404)
    return found


def _own(request: web.Request, record: JobRecord, what: str) -> None:
    if not record.durable:
        raise HubError(
            f"job {record.job_id} was not async: its answer went to its caller, and only async jobs' answers"
            f" are kept ({what} needs one)",
            status=409,
        )


@routes.get("/jobs/{job_id}")
async def show_job(request: web.Request) -> web.Response:
    record, answer = await _find(request)
    view = record.view()
    if record.durable:
        view |= durable.links(record.job_id)
        view["answer"] = json.loads(answer) if answer else None
    return web.json_response(view)


@routes.get("/jobs/{job_id}/stream")
async def stream_job(request: web.Request) -> web.StreamResponse:
    record, _ = await _find(request)
    _own(request, record, "re-attaching")
    start = request.query.get("from", "0")
    if not start.isdigit() or len(start) > 9:
        raise HubError(f"from must be a line number (0 for the first); got {start[:40]!r}", status=400)
    response = web.StreamResponse(headers={"Content-Type": NDJSON, "X-Job-Id": record.job_id})
    await response.prepare(request)
    if (run := request.app[RUNS].unfinished.get(record.job_id)) is not None:
        async for batch in run.follow(int(start)):
            await response.write(b"".join(batch))  # a small batch; write waits while the reader is slow
    elif not record.finished and request.app[JOURNAL].shared:  # running on another hub: from the journal
        async for page in takeover.follow(request.app, record, int(start)):
            await response.write(b"".join(page))
    else:  # ended: every line of it is in the journal, read after the writes queued before, a page at a time
        at = int(start)
        while page := await request.app[JOURNAL].read(lines_from, record.job_id, at, PAGE_LINES):
            await response.write(b"".join(page))
            at += len(page)
    await response.write_eof()
    return response


@routes.delete("/jobs/{job_id}")
async def cancel_job(request: web.Request) -> web.Response:
    record, _ = await _find(request)
    _own(request, record, "cancelling")
    run = request.app[RUNS].unfinished.get(record.job_id)
    if run is None and not record.finished and request.app[JOURNAL].shared:  # another hub runs it
        record = await takeover.cancel(request.app, record)
        return web.json_response(record.view(), status=200 if record.finished else 202)
    if run is None:
        raise HubError(f"job {record.job_id} has already ended ({record.status})", status=409)
    await durable.cancel(request.app[JOURNAL], run)
    return web.json_response(run.record.view())
