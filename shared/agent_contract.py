"""The contract between the hub and a node agent for one job: why a node did not serve it, and how the agent
keeps a long job's connection alive.

**Reasons.** Every answer the agent gives that is not a plain success carries a named `Reason` (in the
`X-Agent-Reason` header, or in the head line below). The hub never guesses from a status code and a
substring; `POLICY` says for each reason whether the job may go to another node and whether it counts
against this one. Transport failures the hub sees itself (no connection, silence, a dropped connection)
are reasons too, so one table decides every case.

**Proof.** The hub sends a challenge with every call (`X-Hub-Challenge`: the job id, or a nonce); the agent
answers with `X-Agent-Proof`, an HMAC of it with the credential the hub presented (the node's own token, or
CLUSTER_TOKEN). An answer without a good proof is not from the node's agent (another service took its port,
or an address that is not a node): it is a node failure, and its body is never relayed or kept.

**Keep-alive framing.** Ollama sends nothing until a non-streamed answer is complete, and a streamed one
only after the model is loaded, which can take minutes. So that the hub's timeout bounds silences rather
than whole answers, the hub asks for keep-alives (`X-Connector-Keepalive: <seconds>`). When Ollama answers
quickly the agent answers plain, as to anyone; when Ollama is still silent after a second, the agent accepts
the job: it answers 200 with `X-Connector-Framed: 1`, writes a bare newline every that many seconds while
Ollama is silent, then one head line (`{"status", "content_type", "reason"}`), then Ollama's body as it
comes. A caller that does not ask (curl, a seed hub) always gets Ollama's answer as is.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from enum import StrEnum

from ollama_connector.shared import error_formats

CHALLENGE_HEADER = "X-Hub-Challenge"  # the hub's: the job id, or a fresh nonce for a call that is not a job
PROOF_HEADER = "X-Agent-Proof"  # the agent's answer: that it holds the credential the hub dialled it with
REASON_HEADER = "X-Agent-Reason"
KEEPALIVE_HEADER = "X-Connector-Keepalive"
FRAMED_HEADER = "X-Connector-Framed"
HOP_HEADER = "X-Connector-Hop"  # the hub's mark; agents pass it on to Ollama, so a loop comes back marked
MODEL_HEADER = "X-Connector-Model"  # the hub's: the job's model, so the agent admits it without parsing
IN_FLIGHT_HEADER = "X-Agent-In-Flight"  # the agent's, on every answer to a job: its jobs in flight per model
MAX_IN_FLIGHT_MODELS = 64


class Reason(StrEnum):
    # Said by the agent.
    DRAINING = "draining"  # stopping: finishing its jobs, taking no new ones
    UNAUTHORIZED = "unauthorized"  # the hub's CLUSTER_TOKEN is missing or wrong
    TOO_LARGE = "too_large"  # the body is over the agent's limit
    OLLAMA_DOWN = "ollama_down"  # Ollama refused the connection or did not answer
    OLLAMA_BUSY = "ollama_busy"  # Ollama's queue is full (its 503 "server busy")
    MODEL_MISSING = "model_missing"  # Ollama does not have the model (the node's list was stale)
    ROUTE_MISSING = "route_missing"  # the engine does not serve the route (an older Ollama, another engine)
    OLLAMA_FAILED = "ollama_failed"  # Ollama answered 5xx, or its stream failed before its first token
    CALLER_ERROR = "caller_error"  # Ollama rejected the request itself (4xx): the caller's to fix
    # Every slot of the model is taken (OLLAMA_NUM_PARALLEL), or OLLAMA_MAX_LOADED_MODELS other models are
    # busy: jobs from another hub, as a rule. Not a failure: another node, or the hub's queue, takes the job.
    NODE_FULL = "node_full"
    # Seen by the hub.
    UNREACHABLE = "unreachable"  # no connection, or no answer at all before the timeout
    DROPPED = "dropped"  # the connection closed before the answer was complete
    TIMED_OUT = "timed_out"  # the node accepted the job, then was silent for longer than the timeout
    UNPROVEN = "unproven"  # what answered did not prove it is the node's agent: its body is never relayed
    STALLED = "stalled"  # nothing came past the job's expected start (or between tokens): cancelled there


@dataclass(frozen=True)
class Policy:
    fails_over: bool  # the next node may run the job (nothing has reached the caller, and it is safe)
    counts_against_node: bool  # a failure in the node's streak (enough of them degrade it)


POLICY: dict[Reason, Policy] = {
    Reason.DRAINING: Policy(fails_over=True, counts_against_node=False),
    Reason.UNAUTHORIZED: Policy(fails_over=True, counts_against_node=True),
    Reason.TOO_LARGE: Policy(fails_over=False, counts_against_node=False),
    Reason.OLLAMA_DOWN: Policy(fails_over=True, counts_against_node=True),
    Reason.OLLAMA_BUSY: Policy(fails_over=True, counts_against_node=False),
    Reason.MODEL_MISSING: Policy(fails_over=True, counts_against_node=False),
    Reason.ROUTE_MISSING: Policy(fails_over=True, counts_against_node=False),
    Reason.OLLAMA_FAILED: Policy(fails_over=True, counts_against_node=True),
    Reason.CALLER_ERROR: Policy(fails_over=False, counts_against_node=False),
    Reason.NODE_FULL: Policy(fails_over=True, counts_against_node=False),
    Reason.UNREACHABLE: Policy(fails_over=True, counts_against_node=True),
    Reason.DROPPED: Policy(fails_over=True, counts_against_node=True),
    # The node may still be running it: running it again elsewhere would cost the GPU time twice.
    Reason.TIMED_OUT: Policy(fails_over=False, counts_against_node=True),
    Reason.UNPROVEN: Policy(fails_over=True, counts_against_node=True),
    # Nothing reached the caller, and the hub cancels the job there: another node may run it.
    Reason.STALLED: Policy(fails_over=True, counts_against_node=True),
}


def in_flight_header(counts: dict[str, int]) -> str:
    """The agent's jobs in flight per model, as IN_FLIGHT_HEADER carries them."""
    return json.dumps(counts, separators=(",", ":"))


def parse_in_flight(value: str | None) -> dict[str, int] | None:
    """IN_FLIGHT_HEADER as sent; None when absent or not one (an older agent, or something else)."""
    if not value or len(value) > 32 * 1024:
        return None
    try:
        counts = json.loads(value)
    except ValueError:
        return None
    if not isinstance(counts, dict) or len(counts) > MAX_IN_FLIGHT_MODELS:
        return None
    if not all(isinstance(k, str) and type(n) is int and 0 <= n <= 100_000 for k, n in counts.items()):
        return None
    return counts


def proof(credential: str | None, challenge: str) -> str:
    """The agent's proof for a challenge: an HMAC with the credential the hub dialled it with. With none (an
    open cluster on loopback) it still shows that an agent of ours answered, not whatever listens there."""
    key = (credential or "").encode()
    return hmac.new(key, b"agent-proof\n" + challenge.encode(), hashlib.sha256).hexdigest()


def proves(credential: str | None, challenge: str, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(proof(credential, challenge).encode(), given.encode())


def reason_for_ollama_status(status: int) -> Reason | None:
    """What an Ollama error status means for the hub; None for a success."""
    if status < 400:
        return None
    if status == 404:  # on the inference routes Ollama answers 404 only for a model it does not have
        return Reason.MODEL_MISSING
    if status == 503:
        return Reason.OLLAMA_BUSY
    if status >= 500:
        return Reason.OLLAMA_FAILED
    return Reason.CALLER_ERROR


def reason_for_ollama_answer(status: int, body: bytes) -> Reason | None:
    """As `reason_for_ollama_status`, knowing the body: a 404 that is no engine's error body (gin's
    "404 page not found", a web framework's `{"detail": "Not Found"}`) is a route the engine lacks."""
    if status == 404 and error_formats.message_of(body, error_formats.ENGINE_FORMATS) is None:
        return Reason.ROUTE_MISSING
    return reason_for_ollama_status(status)


def reason_in(value: str | None) -> Reason | None:
    """A reason as sent; None when absent or unknown (an older agent, or something that is not one)."""
    try:
        return Reason(value) if value else None
    except ValueError:
        return None


def reason_for_plain_status(status: int) -> Reason | None:
    """For an answer without a named reason (not an agent of ours): judge by the status alone."""
    if status < 400:
        return None
    if status == 401:
        return Reason.UNAUTHORIZED
    if status == 413:
        return Reason.TOO_LARGE
    return Reason.OLLAMA_FAILED if status >= 500 else Reason.CALLER_ERROR


@dataclass(frozen=True)
class Head:
    """What Ollama answered, sent ahead of its body in a framed answer."""

    status: int
    content_type: str
    reason: Reason | None = None

    def line(self) -> bytes:
        head = {"status": self.status, "content_type": self.content_type, "reason": self.reason}
        return json.dumps(head).encode() + b"\n"

    @classmethod
    def parse(cls, line: bytes) -> Head:
        """The head line; ValueError when it is not one."""
        head = json.loads(line)
        if not isinstance(head, dict) or not isinstance(head.get("status"), int):
            raise ValueError(f"not a head line: {line[:100]!r}")
        return cls(head["status"], str(head.get("content_type") or ""), reason_in(head.get("reason")))


KEEPALIVE = b"\n"
