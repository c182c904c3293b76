"""A job: one caller's request to run on some node, as dispatch (hubd.jobs.dispatch) sends it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from ollama_connector.hubd.guard.auth import may_run
from ollama_connector.hubd.jobs.record import JobRecord, new_job_id
from ollama_connector.hubd.keys import SETTINGS
from ollama_connector.hubd.routing.prefixes import Prompt
from ollama_connector.hubd.routing.sessions import session_of
from ollama_connector.shared.bodies import num_ctx_of
from ollama_connector.shared.modelnames import canonical


@dataclass
class Job:
    """One request to run on some node."""

    job_id: str
    model: str
    node_path: str
    payload: bytes
    stream: bool
    record: JobRecord
    num_ctx: int | None = None  # options.num_ctx: another one than the loaded model's makes Ollama reload it
    session: str | None = None  # the conversation, for sticky routing (hubd.routing.sessions)
    prompt: Prompt | None = None  # its prompt's blocks, for routing on the nodes' caches (PREFIX_ROUTING)
    # An Ollama route (options.num_ctx can be set) and no num_ctx: a larger loaded context will do.
    larger_context_ok: bool = False
    content_type: str = "application/json"  # of the payload: a form for an audio transcription
    errors: list[dict[str, Any]] = field(default_factory=list)
    # An async job's body waits on disk, not in memory (hubd.jobs.durable): read back when a node is chosen.
    stored_body: Callable[[], Awaitable[bytes]] | None = None

    async def body(self) -> bytes:
        return self.payload if self.stored_body is None else await self.stored_body()


async def new_job(
    request: web.Request,
    body: dict[str, Any],
    model: str,
    stream: bool,
    *,
    node_path: str | None = None,
    options: bool = True,
    context_settable: bool = False,
    payload: bytes | None = None,
    content_type: str = "application/json",
    durable: bool = False,
) -> Job:
    """A job for a caller's request: `options` when the route reads Ollama's options (num_ctx), and
    `context_settable` when the hub may give it a loaded runner's larger context; `payload` when the body
    sent on is not the caller's as it came."""
    num_ctx = num_ctx_of(body) if options else None
    job_id = new_job_id()
    key = may_run(request, model)
    return Job(
        job_id=job_id,
        model=model,
        node_path=node_path or request.path,
        payload=payload if payload is not None else await request.read(),
        stream=stream,
        record=JobRecord(job_id, request.path, model, key.caller_id, durable=durable, key=key.name or None),
        num_ctx=num_ctx,
        session=session_of(request, body, model),
        prompt=Prompt.of(body, canonical(model)) if request.app[SETTINGS].prefix_routing else None,
        larger_context_ok=context_settable and num_ctx is None,
        content_type=content_type,
    )
