"""Dispatch: send a job to the best node, fail over before the first byte, relay the answer as it comes.

What a node's answer means (fail over or not, count against the node or not) is decided by its named reason
(hubd.jobs.answers) and `shared.agent_contract.POLICY`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable

import aiohttp
from aiohttp import web

from ollama_connector.hubd.errors import AllNodesFailed, CallerError, NodeTimedOut, NoHealthyNodes
from ollama_connector.hubd.guard.auth import who
from ollama_connector.hubd.jobs.answers import NodeFailed, broken, classify, error_message
from ollama_connector.hubd.jobs.blame import Blame
from ollama_connector.hubd.jobs.full_nodes import ROOM_AWAITED, FullNodes
from ollama_connector.hubd.jobs.job import Job
from ollama_connector.hubd.jobs.keys import LEDGER
from ollama_connector.hubd.jobs.stalls import first_byte_within, token_gap_within
from ollama_connector.hubd.keys import SETTINGS
from ollama_connector.hubd.routing.keys import NODES, PLACEMENT, REGISTRY, UNSERVED
from ollama_connector.hubd.routing.node import NodeRecord, Ticket
from ollama_connector.hubd.routing.node_client import Unproven
from ollama_connector.hubd.routing.speeds import timings_of
from ollama_connector.shared import error_formats
from ollama_connector.shared.agent_contract import (
    IN_FLIGHT_HEADER,
    POLICY,
    Head,
    Reason,
    parse_in_flight,
)
from ollama_connector.shared.bodies import with_num_ctx
from ollama_connector.shared.modelnames import canonical
from ollama_connector.shared.relay import LineReader, Relayed, UpstreamBroken, describe, relay

log = logging.getLogger(__name__)
# Where a streamed answer goes: to the caller (shared.relay.relay), or into an async job's run.
Deliver = Callable[[LineReader, bytes, int, dict[str, str], Callable[[str], str]], Awaitable[Relayed]]


async def dispatch(request: web.Request, job: Job) -> web.StreamResponse:
    """Run a caller's job and answer it."""
    return await request.app[LEDGER].admitted(
        job.record,
        dispatch_to(request.app, job, functools.partial(relay, request)),
        concurrency=who(request).concurrency,
        share=who(request).share,
    )


async def dispatch_to(app: web.Application, job: Job, deliver: Deliver) -> web.StreamResponse | None:
    registry = app[REGISTRY]
    tried: set[str] = set()
    for node in app[UNSERVED].lacking(registry, job.node_path, job.model):  # skipped, and said so at the end
        tried.add(node.node_id)
        message = f"does not serve {job.node_path} (learned from an earlier job)"
        job.errors.append(
            {"node_id": node.node_id, "message": message, "status": 502, "reason": Reason.ROUTE_MISSING}
        )
    blame = Blame(registry)
    try:
        return await _attempts(app, job, deliver, tried, blame)
    finally:
        blame.settle()


async def _attempts(
    app: web.Application, job: Job, deliver: Deliver, tried: set[str], blame: Blame
) -> web.StreamResponse | None:
    full = FullNodes(app[REGISTRY], app[PLACEMENT], job.job_id)
    while True:
        answer = await _attempts_once(app, job, deliver, tried, blame, full)
        if answer is not ROOM_AWAITED:
            return answer  # type: ignore[return-value]
        await full.wait_for_room(tried)


async def _attempts_once(
    app: web.Application, job: Job, deliver: Deliver, tried: set[str], blame: Blame, full: FullNodes
) -> web.StreamResponse | object | None:
    registry, placement, ledger, record = app[REGISTRY], app[PLACEMENT], app[LEDGER], job.record
    # Each choice is made when it is needed, so a node that degraded while others were tried is skipped.
    while (
        node := await placement.choose(
            job.model,
            job.num_ctx,
            tried,
            job.job_id,
            record.caller,
            job.session,
            job.larger_context_ok,
            job.prompt,
        )
    ) is not None:
        tried.add(node.node_id)
        ledger.started(record)
        record.nodes.append(node.node_id)
        record.node = node.node_id  # where it runs: what a cancellation or an interruption names
        num_ctx = node.context_to_send(canonical(job.model), job.num_ctx, job.larger_context_ok)
        body = await job.body()
        payload = with_num_ctx(body, num_ctx) if num_ctx else body
        with registry.job(node, job.model, num_ctx or job.num_ctx) as ticket:
            if job.prompt is not None and ticket.key is not None:  # in its cache from now on
                ticket.prompt = job.prompt
                ticket.predicted, ticket.age = node.prompts.sent(ticket.key, job.prompt)
            try:
                return await _run_on(app, node, job, ticket, payload, deliver)
            except NodeFailed as exc:
                record.node = None  # it did not run there
                if exc.reason is Reason.NODE_FULL:  # another hub's jobs fill it: never a failure
                    record.nodes.pop()
                    full.refused(node, tried)
                    ledger.failed_over(str(exc.reason))
                    continue
                policy = POLICY[exc.reason]
                job.errors.append(
                    {
                        "node_id": node.node_id,
                        "message": exc.message,
                        "status": exc.status,
                        "reason": exc.reason,
                    }
                )
                if (first := blame.failed(node, exc.reason, exc.message)) is not None:
                    log.info(
                        "job %s failed the same way on %s and %s: counted against neither",
                        job.job_id,
                        first,
                        node.node_id,
                    )
                if exc.reason is Reason.ROUTE_MISSING:
                    app[UNSERVED].learn(node, job.node_path)
                if exc.reason is Reason.CALLER_ERROR or exc.reason is Reason.TOO_LARGE:
                    raise CallerError(exc.message, exc.status, job.job_id, node.node_id) from None
                if not policy.fails_over:
                    log.warning("job %s: node %s %s", job.job_id, node.node_id, exc.message)
                    raise NodeTimedOut(job.job_id, node.node_id, exc.message) from None
                ledger.failed_over(str(exc.reason))
                log.log(
                    logging.WARNING if policy.counts_against_node else logging.INFO,
                    "job %s: node %s did not serve it (%s: %s); trying the next one",
                    job.job_id,
                    node.node_id,
                    exc.reason,
                    exc.message,
                )
    if full.nodes:
        return ROOM_AWAITED  # the only nodes left were full: the job waits for a slot, then tries them again
    if not job.errors:
        raise NoHealthyNodes(job.job_id, job.model, known=bool(registry.holders(job.model)))
    if all(e["reason"] is Reason.MODEL_MISSING for e in job.errors):
        raise NoHealthyNodes(job.job_id, job.model, known=False)  # every list that had it was stale
    raise AllNodesFailed(job.job_id, job.errors)


async def _run_on(
    app: web.Application, node: NodeRecord, job: Job, ticket: Ticket, payload: bytes, deliver: Deliver
) -> web.StreamResponse | None:
    within = first_byte_within(app[PLACEMENT], app[SETTINGS].stall_min, node, ticket, job.stream)
    deadline = asyncio.get_running_loop().time() + within
    opening = asyncio.timeout_at(deadline)
    try:
        async with opening:
            upstream = await app[NODES].open_job(
                node, job.node_path, payload, job.job_id, job.content_type, job.model
            )
    except Unproven as exc:
        raise NodeFailed(Reason.UNPROVEN, str(exc), 502) from exc
    except (aiohttp.ClientError, TimeoutError) as exc:
        if opening.expired():  # not even the agent's headers: its connection goes with the cancelled request
            log.warning("job %s: node %s stalled (no answer in %.1f s)", job.job_id, node.node_id, within)
            raise NodeFailed(Reason.STALLED, f"stalled: no answer within {within:.1f} s", 504) from exc
        raise NodeFailed(Reason.UNREACHABLE, describe(exc), 503) from exc
    ours = {"X-Job-Id": job.job_id, "X-Node-Id": node.node_id}
    async with upstream:
        reader = LineReader(upstream.content)
        reader.deadline = deadline  # from when the job was sent, keep-alives or not
        try:
            head = await classify(upstream, reader)
            if (in_flight := parse_in_flight(upstream.headers.get(IN_FLIGHT_HEADER))) is not None:
                full = ticket.key if head.reason is Reason.NODE_FULL else None
                app[REGISTRY].heard_in_flight(node, in_flight, full)
            if head.reason is not None:
                raise NodeFailed(head.reason, await error_message(reader, head.status), head.status)
            answer_headers = {"Content-Type": head.content_type or "application/json", **ours}
            if not job.stream:
                try:
                    body = await reader.read_rest()
                except UpstreamBroken as exc:
                    raise broken(exc, "while answering") from exc
                ticket.first_byte, job.record.first_token = time.monotonic(), time.time()
                _finished(app, node, job, None, ticket, body)
                return web.Response(body=body, status=head.status, headers=answer_headers)
            return await _relay(app, node, job, ticket, reader, head, answer_headers, deliver)
        except NodeFailed as exc:
            if exc.reason is Reason.STALLED:
                log.warning(
                    "job %s: node %s stalled (nothing within %.1f s); cancelled there",
                    job.job_id,
                    node.node_id,
                    within,
                )
                upstream.close()  # its agent sees the hub go, and cancels the job on its Ollama
            raise


async def _relay(
    app: web.Application,
    node: NodeRecord,
    job: Job,
    ticket: Ticket,
    reader: LineReader,
    head: Head,
    headers: dict[str, str],
    deliver: Deliver,
) -> web.StreamResponse | None:
    fmt = error_formats.stream_format(job.record.route)
    try:
        first = await reader.next_block()
    except UpstreamBroken as exc:
        raise broken(exc, "before its first token") from exc
    if not first:
        raise NodeFailed(Reason.DROPPED, "answered with an empty stream")
    if (message := fmt.only_error(first)) is not None:
        raise NodeFailed(Reason.OLLAMA_FAILED, message)
    ticket.first_byte, job.record.first_token = time.monotonic(), time.time()
    reader.deadline, reader.gap = None, token_gap_within(app[SETTINGS].stall_min, node, ticket.key)
    outcome = await deliver(
        reader, first, head.status, headers, lambda reason: f"node {node.node_id} failed mid-stream: {reason}"
    )
    if outcome.caller_gone:
        log.info("job %s: the caller hung up; the node's request is cancelled", job.job_id)
        job.record.node = node.node_id
        job.record.finish("cancelled", "the caller hung up")
    elif outcome.broken:
        log.warning("job %s: %s", job.job_id, outcome.broken)
        _finished(app, node, job, outcome.broken, ticket, None, outcome.stalled)
    else:
        _finished(app, node, job, fmt.error_at_end(outcome.last), ticket, outcome.last)
    return outcome.response


def _finished(
    app: web.Application,
    node: NodeRecord,
    job: Job,
    failure: str | None,
    ticket: Ticket,
    final: bytes | None,
    stalled: bool = False,
) -> None:
    """A job whose answer reached the caller: served (and what it took, learned), or failed after its first
    byte."""
    record = job.record
    record.node = node.node_id
    if failure is None:
        app[REGISTRY].record_success(node)
        timings = timings_of(final)
        record.prompt_tokens, record.output_tokens = timings.prompt_count, timings.eval_count
        record.eval_seconds = timings.eval_seconds
        record.finish("done")
        app[PLACEMENT].speeds.learn(node, ticket, timings)
    else:
        app[REGISTRY].record_failure(node, failure, stalled)
        record.finish("failed", failure)
