"""The ranking policy: which of the nodes that have a model gets the next job.

The seed's order, with two refinements:
- CPU load counts in steps of a quarter (idle, light, busy, saturated). Two idle nodes never report exactly
  the same figure, and a raw CPU key sent every sequential job to whichever read a few percent lower.
- Among otherwise equal nodes, the one given a job least recently goes first, so work spreads.
"""

from __future__ import annotations

from ollama_connector.hubd.routing.node import NodeRecord

CPU_STEPS = 4

Rank = tuple[int, int, int, int, str]
"""(active jobs, CPU step, failures, last assigned, node_id): smaller is better; node_id breaks ties."""


def cpu_step(cpu: float) -> int:
    return min(CPU_STEPS - 1, int(cpu * CPU_STEPS))


def rank_of(record: NodeRecord) -> Rank:
    return (
        record.active_jobs,
        cpu_step(record.beat.load.cpu),
        record.failure_count,
        record.last_assigned,
        record.node_id,
    )
