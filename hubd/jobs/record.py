"""What the hub records of one job: where it ran, when each step came, how it ended.

The same record feeds the metrics (hubd.ops.metrics), the journal (hubd.jobs.journal) and GET /jobs; its
fields are the journal's columns. Times are wall-clock seconds (they outlive a restart).
"""

from __future__ import annotations

import secrets
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import (
    Any,
    Literal,
    NotRequired,  # pydantic reads these only from typing_extensions
)

from typing_extensions import TypedDict

Status = Literal["queued", "running", "done", "failed", "rejected", "cancelled", "interrupted"]
UNFINISHED: frozenset[str] = frozenset({"queued", "running"})
STATUSES: tuple[str, ...] = ("queued", "running", "done", "failed", "rejected", "cancelled", "interrupted")
MIN_MEASURED = 0.05  # seconds of generation below which tokens per second are not worth showing
# The route a job came in by, as a family: a bounded label for the metrics.
FAMILIES = {"/jobs": "jobs", "/api/": "ollama", "/v1/messages": "anthropic", "/v1/": "openai"}


class JobView(TypedDict):
    """A job as GET /jobs shows it."""

    job_id: str
    status: Status
    model: str
    route: str
    kind: Literal["sync", "async"]
    # Async jobs only: where to look, and once done the answer a synchronous job would have had (to the key
    # that submitted it).
    status_url: NotRequired[str]
    stream_url: NotRequired[str]
    answer: NotRequired[dict[str, Any] | None]
    caller: str
    key: str | None
    node: str | None
    nodes_tried: list[str]
    arrived_at: str | None
    started_at: str | None
    first_token_at: str | None
    ended_at: str | None
    queue_seconds: float | None
    time_to_first_token_seconds: float | None
    duration_seconds: float | None
    prompt_tokens: int | None
    output_tokens: int | None
    tokens_per_second: float | None
    error: str | None


def new_job_id() -> str:
    """A UUIDv7 (RFC 9562): 48 bits of milliseconds, then 74 random bits. Ordered by time, so the journal
    appends to its index instead of writing a random page of it for each job (a third of the cost)."""
    value = (time.time_ns() // 1_000_000) << 80 | 0x7 << 76 | secrets.randbits(12) << 64
    return str(uuid.UUID(int=value | 0b10 << 62 | secrets.randbits(62)))


def family_of(route: str) -> str:
    return next((name for prefix, name in FAMILIES.items() if route.startswith(prefix)), "other")


def iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _seconds(start: float | None, end: float | None) -> float | None:
    return round(end - start, 3) if start is not None and end is not None else None


@dataclass(slots=True)
class JobRecord:
    job_id: str
    route: str  # the path the caller used: /jobs, /api/chat, /v1/chat/completions...
    model: str
    caller: str  # the API key's id (a hash; never the key) or the caller's address
    arrived: float = field(default_factory=time.time)
    started: float | None = None  # sent to its first node (after any wait in the hub's queue)
    first_token: float | None = None  # the first byte of the answer reached the hub
    ended: float | None = None
    status: Status = "queued"
    error: str | None = None
    nodes: list[str] = field(default_factory=list)  # every node tried, in order
    node: str | None = None  # the one that served it
    prompt_tokens: int | None = None
    output_tokens: int | None = None
    eval_seconds: float | None = None  # the generation's own time, as Ollama reports it (eval_duration)
    durable: bool = False  # submitted with "async": true
    key: str | None = None  # the name of the caller's key ("env" for API_KEYS and ADMIN_KEYS): never a secret

    @property
    def finished(self) -> bool:
        return self.status not in UNFINISHED

    def finish(self, status: Status, error: str | None = None) -> None:
        """The first ending wins: a later one (the caller's hang-up after a failure) changes nothing."""
        if self.finished:
            return
        self.status, self.error, self.ended = status, error, time.time()

    def view(self) -> JobView:
        duration = _seconds(self.arrived, self.ended)
        # Ollama's own measure of the generation; else the stream's time from its first byte (a non-streamed
        # answer arrives whole, so its wall time says nothing of the speed).
        generating = self.eval_seconds or _seconds(self.first_token, self.ended)
        return {
            "job_id": self.job_id,
            "status": self.status,
            "model": self.model,
            "route": self.route,
            "kind": "async" if self.durable else "sync",
            "caller": self.caller,
            "key": self.key,
            "node": self.node,
            "nodes_tried": list(self.nodes),
            "arrived_at": iso(self.arrived),
            "started_at": iso(self.started),
            "first_token_at": iso(self.first_token),
            "ended_at": iso(self.ended),
            "queue_seconds": _seconds(self.arrived, self.started),
            "time_to_first_token_seconds": _seconds(self.arrived, self.first_token),
            "duration_seconds": duration,
            "prompt_tokens": self.prompt_tokens,
            "output_tokens": self.output_tokens,
            "tokens_per_second": (
                round(self.output_tokens / generating, 1)
                if self.output_tokens and generating and generating >= MIN_MEASURED
                else None
            ),
            "error": self.error,
        }
