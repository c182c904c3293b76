"""GET /usage (admin keys): what each key used, by model: jobs, prompt and output tokens, seconds of
generation and failures, from the job journal (so across restarts, within its retention). GET /audit (admin
keys): the audit trail, newest first."""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from ollama_connector.hubd.api.jobs import Timestamp
from ollama_connector.hubd.errors import HubError
from ollama_connector.hubd.jobs.journal import JournalUnavailable
from ollama_connector.hubd.jobs.journal_tables import audit_entries, usage
from ollama_connector.hubd.jobs.keys import JOURNAL
from ollama_connector.shared.bodies import parse_body_as
from ollama_connector.shared.wire import MAX_MODEL_NAME

routes = web.RouteTableDef()


class UsageQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    since: Timestamp = None  # unix seconds, or an ISO 8601 time; unset: everything the journal keeps
    key: str | None = Field(None, max_length=64)  # a key's name (`env` for API_KEYS and ADMIN_KEYS)
    model: str | None = Field(None, max_length=MAX_MODEL_NAME)


@routes.get("/usage")
async def usage_by_key(request: web.Request) -> web.Response:
    query = parse_body_as(UsageQuery, dict(request.query))
    since = query.since or 0.0
    try:
        rows = await request.app[JOURNAL].read(usage, since, query.key, query.model)
    except JournalUnavailable as exc:
        raise HubError(f"usage is read from the job journal, which is unavailable ({exc})", 503) from None
    return web.json_response(
        {
            "since": datetime.fromtimestamp(since, UTC).isoformat().replace("+00:00", "Z"),
            "usage": rows,  # key null: callers of an open hub (no key in force)
        }
    )


class AuditQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    since: Timestamp = None
    limit: int = Field(200, ge=1, le=10_000)


@routes.get("/audit")
async def audit_trail(request: web.Request) -> web.Response:
    query = parse_body_as(AuditQuery, dict(request.query))
    try:
        entries = await request.app[JOURNAL].read(audit_entries, query.since or 0.0, query.limit)
    except JournalUnavailable as exc:
        raise HubError(
            f"the audit trail is kept in the job journal, which is unavailable ({exc})", 503
        ) from None
    return web.json_response({"audit": entries})
