"""Dispatch: send a job to the best node, fail over before the first byte, relay the answer as it comes."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from hubd.errors import AllNodesFailed, NoHealthyNodes
from hubd.keys import COUNTERS, REGISTRY, SESSION, SETTINGS
from hubd.registry import NodeRecord
from shared.auth import bearer
from shared.relay import LineReader, UpstreamBroken, describe, error_in, relay

log = logging.getLogger(__name__)


@dataclass
class Job:
    """One request to run on some node."""

    job_id: str
    model: str
    node_path: str
    payload: bytes
    stream: bool
    errors: list[dict[str, Any]] = field(default_factory=list)


class NodeFailed(Exception):
    """This node could not serve the job; the next candidate may."""

    def __init__(self, message: str, status: int, counts_against_node: bool = True) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.counts_against_node = counts_against_node


async def dispatch(request: web.Request, job: Job) -> web.StreamResponse:
    try:
        return await _dispatch(request, job)
    except (NoHealthyNodes, AllNodesFailed):
        request.app[COUNTERS].failed += 1
        raise


async def _dispatch(request: web.Request, job: Job) -> web.StreamResponse:
    registry = request.app[REGISTRY]
    # candidates() checks each node as it is taken, so one that degraded while others were tried is skipped.
    for node in registry.candidates(job.model):
        with registry.job(node):
            try:
                return await _run_on(request, node, job)
            except NodeFailed as exc:
                job.errors.append({"node_id": node.node_id, "message": exc.message, "status": exc.status})
                if exc.counts_against_node:
                    registry.record_failure(node, exc.message)
                log.warning(
                    "job %s: node %s failed (%s); trying the next one", job.job_id, node.node_id, exc.message
                )
    if not job.errors:
        raise NoHealthyNodes(job.job_id, job.model, known=bool(registry.holders(job.model)))
    raise AllNodesFailed(job.job_id, job.errors)


async def _run_on(request: web.Request, node: NodeRecord, job: Job) -> web.StreamResponse:
    settings = request.app[SETTINGS]
    timeout = aiohttp.ClientTimeout(
        total=None, sock_connect=min(settings.request_timeout, 10.0), sock_read=settings.request_timeout
    )
    headers = {"Content-Type": "application/json", "X-Job-Id": job.job_id, **bearer(settings.cluster_token)}
    try:
        upstream = await request.app[SESSION].post(
            node.base_url + job.node_path, data=job.payload, headers=headers, timeout=timeout
        )
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise NodeFailed(describe(exc), 503) from exc
    ours = {"X-Job-Id": job.job_id, "X-Node-Id": node.node_id}
    async with upstream:
        if upstream.status >= 400:
            body = await _read_body(upstream)
            message = _error_message(body, upstream)
            if upstream.status >= 500:
                raise NodeFailed(message, upstream.status)
            if upstream.status == 404 and "not found" in message and job.model in message:
                # The node listed the model but no longer has it: its list is stale, not the node broken.
                raise NodeFailed(message, 404, counts_against_node=False)
            if upstream.status == 401:
                raise NodeFailed("the node refused the hub's cluster token", 401)
            return web.Response(body=body, status=upstream.status, headers=_passthrough(upstream, ours))
        if not job.stream:
            body = await _read_body(upstream)
            _finished(request, node, None)
            return web.Response(body=body, status=upstream.status, headers=_passthrough(upstream, ours))
        return await _relay(request, node, job, upstream, ours)


async def _relay(
    request: web.Request,
    node: NodeRecord,
    job: Job,
    upstream: aiohttp.ClientResponse,
    ours: dict[str, str],
) -> web.StreamResponse:
    reader = LineReader(upstream.content)
    try:
        first = await reader.next_block()
    except UpstreamBroken as exc:
        raise NodeFailed(f"failed before its first byte: {exc}", 502) from exc
    if not first:
        raise NodeFailed("answered with an empty stream", 502)
    if (message := error_in(first)) is not None and first.count(b"\n") <= 1:
        raise NodeFailed(message, 502)
    outcome = await relay(
        request,
        reader,
        first,
        upstream.status,
        _passthrough(upstream, ours),
        explain=lambda reason: f"node {node.node_id} failed mid-stream: {reason}",
    )
    if outcome.caller_gone:
        log.info("job %s: the caller hung up; the node's request is cancelled", job.job_id)
    elif outcome.broken:
        log.warning("job %s: %s", job.job_id, outcome.broken)
        _finished(request, node, outcome.broken)
    else:
        _finished(request, node, error_in(outcome.last))
    return outcome.response


def _finished(request: web.Request, node: NodeRecord, failure: str | None) -> None:
    """Count a job that reached the caller: served, or failed after its first byte."""
    if failure is None:
        request.app[REGISTRY].record_success(node)
        request.app[COUNTERS].served += 1
    else:
        request.app[REGISTRY].record_failure(node, failure)
        request.app[COUNTERS].failed += 1


async def _read_body(upstream: aiohttp.ClientResponse) -> bytes:
    try:
        return await upstream.read()
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise NodeFailed(f"failed while answering: {describe(exc)}", 502) from exc


def _error_message(body: bytes, upstream: aiohttp.ClientResponse) -> str:
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and isinstance(parsed.get("error"), str):
        return parsed["error"]
    if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
        return str(parsed["error"].get("message", parsed["error"]))
    text = body.decode(errors="replace").strip()
    return text[:500] or f"HTTP {upstream.status} {upstream.reason}"


def _passthrough(upstream: aiohttp.ClientResponse, ours: dict[str, str]) -> dict[str, str]:
    content_type = upstream.headers.get("Content-Type", "application/json")
    return {"Content-Type": content_type, **ours}
