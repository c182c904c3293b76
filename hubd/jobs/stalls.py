"""When a node has stalled: no job is held hostage by a hung Ollama (a wedged runner or GPU driver accepts a
request and never answers, while its agent's keep-alives say all is well).

- Before the first byte: the hub expects a job to start within its prediction (a load at the node's learned
  speed for the model's size, after the loads under way there, then the model's learned time to a first
  byte; a non-streamed answer's whole job time too). Past `max(STALL_MIN_SECONDS, 3 x that)` with nothing
  for the caller, the job is cancelled there (its connection closed), counted as `stalled` against the node,
  and goes to the next one. A 70B model's minute-long load is in its prediction, so it is never cut.
- Between tokens: `max(STALL_MIN_SECONDS, 10 x the node's gap between tokens)`; past it the stream ends with
  an in-stream error in the route's dialect.
Two stalls in a row degrade a node until it serves again (hubd.routing.registry).
"""

from __future__ import annotations

from ollama_connector.hubd.routing.node import NodeRecord, Ticket
from ollama_connector.hubd.routing.placement import Placement

START_FACTOR = 3.0
GAP_FACTOR = 10.0


def expected_start(placement: Placement, node: NodeRecord, ticket: Ticket, stream: bool) -> float:
    """Seconds from sending the job to its first byte, as the hub predicts them."""
    policy, key = placement.capacity, ticket.key
    if key is None:
        return 0.0
    seconds = placement.speeds.first_byte(node, key)
    if ticket.loads:  # after the loads under way there (Ollama loads one model at a time)
        seconds += sum(policy.load_seconds(node, k) for k in node.loading)
    if not stream:
        seconds += policy.job_seconds(node, key)
    return seconds


def first_byte_within(
    placement: Placement, stall_min: float, node: NodeRecord, ticket: Ticket, stream: bool
) -> float:
    return max(stall_min, START_FACTOR * expected_start(placement, node, ticket, stream))


def token_gap_within(stall_min: float, node: NodeRecord, key: str | None) -> float:
    speed = node.speeds.get(key) if key is not None else None
    if speed is None or not speed.tokens_per_second.samples or speed.tokens_per_second.value <= 0:
        return stall_min
    return max(stall_min, GAP_FACTOR / speed.tokens_per_second.value)
