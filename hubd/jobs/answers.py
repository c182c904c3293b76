"""What a node's answer to a job means: served, or not served for a named reason (`NodeFailed`), which
`shared.agent_contract.POLICY` turns into fail over or not, count against the node or not. `classify` is the
one place that turns an answer's head into a reason.
"""

from __future__ import annotations

import logging

import aiohttp

from ollama_connector.shared import error_formats
from ollama_connector.shared.agent_contract import (
    FRAMED_HEADER,
    KEEPALIVE,
    REASON_HEADER,
    Head,
    Reason,
    reason_for_plain_status,
    reason_in,
)
from ollama_connector.shared.relay import LineReader, UpstreamBroken

log = logging.getLogger(__name__)


class NodeFailed(Exception):
    """This node did not serve the job, for a named reason; POLICY says what follows."""

    def __init__(self, reason: Reason, message: str, status: int = 502) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.status = status


def broken(exc: UpstreamBroken, what: str) -> NodeFailed:
    """A read that failed: a stall (hubd.jobs.stalls), silence past the timeout, or a dropped connection."""
    if exc.stalled:
        return NodeFailed(Reason.STALLED, f"stalled {what}: {exc}", 504)
    if exc.timed_out:
        return NodeFailed(Reason.TIMED_OUT, f"accepted the job, then was silent {what}: {exc}", 504)
    return NodeFailed(Reason.DROPPED, f"closed the connection {what}: {exc}", 502)


async def classify(upstream: aiohttp.ClientResponse, reader: LineReader) -> Head:
    """What the node answered: its status, type, and a reason when it did not serve the job.

    A framed answer (the agent accepted the job) holds keep-alives and then the head line; any other
    answer is judged by its `X-Agent-Reason`, or by its status when it names none.
    """
    if upstream.status == 200 and upstream.headers.get(FRAMED_HEADER):
        log.debug("job %s: accepted; waiting for its Ollama", upstream.request_info.headers.get("X-Job-Id"))
        try:
            while (line := await reader.next_line()) == KEEPALIVE:
                pass
        except UpstreamBroken as exc:
            raise broken(exc, "before answering") from exc
        if not line:
            raise NodeFailed(Reason.DROPPED, "closed the connection before answering")
        try:
            head = Head.parse(line)
        except ValueError as exc:
            raise NodeFailed(Reason.OLLAMA_FAILED, f"answered something unreadable: {exc}") from exc
        if head.status >= 400 and head.reason is None:
            return Head(head.status, head.content_type, reason_for_plain_status(head.status))
        return head
    reason = reason_in(upstream.headers.get(REASON_HEADER)) or reason_for_plain_status(upstream.status)
    return Head(upstream.status, upstream.headers.get("Content-Type", "application/json"), reason)


async def error_message(reader: LineReader, status: int) -> str:
    try:
        body = await reader.read_rest()
    except UpstreamBroken as exc:
        return f"HTTP {status}, then the connection failed: {exc}"
    text = body.decode(errors="replace").strip()
    return error_formats.message_of(body) or text[:500] or f"HTTP {status}"
