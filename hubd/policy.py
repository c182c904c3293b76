"""The capacity policy: what each node would cost one job, in expected seconds to its end, and which to take.

For a job of model M (with its num_ctx), each online node that has M is one of:
- READY: M loaded with a compatible context and a slot free. Cost: M's job time there.
- WAIT: M loaded there, every slot busy. The job would wait at the hub (never inside Ollama, where the hub
  can neither see nor move it) for one of M's slots anywhere: (jobs ahead + 1) x M's job time / M's slots.
- LOAD: M fits beside what is loaded (runner count and VRAM). Cost: the load (size x the node's learned
  seconds per GB), after any load already under way there, then the job.
- EVICT: M fits once idle models go (Ollama's choice: shortest keep-alive, then name). Cost: as LOAD, plus
  for each model evicted its load time, weighted by how much it is asked for and how few copies remain.
A node whose models are all busy and full is no option: Ollama would hold the job until they finish.

The cheapest option wins; among options of the same tier within NEAR of it, the best ranked node
(hubd.ranking: fewest jobs, CPU, failures, least recently given one), so equal nodes share the work, and
the node that served the caller's conversation before when it is READY (its KV cache). A WAIT win means
the job waits at the hub (hubd.placement) and asks again when a slot frees. Job times are divided by the
node's NODE_WEIGHT, the operator's bias for mixed hardware.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from enum import IntEnum

from ollama_connector.hubd.registry import NodeRecord, Registry
from ollama_connector.hubd.speeds import DEFAULT_LOAD_SECONDS, DEFAULT_LOAD_SECONDS_PER_GB, FleetSpeeds

NEAR = {
    0: 1.5,
    1: 1.25,
    2: 1.25,
    3: 1.25,
}  # by tier: how much dearer an option may be and still count as equal
DEMAND_TAU = 60.0  # seconds over which demand decays
SCAN_PAST_READY = 32  # candidates looked at past the first READY one
EVICTION_HORIZON = 30.0  # seconds ahead in which an evicted model's callers are expected to come back


class Tier(IntEnum):
    READY = 0
    WAIT = 1
    LOAD = 2
    EVICT = 3


@dataclass(slots=True)
class Option:
    tier: Tier
    seconds: float  # expected time from now to the job's end
    node: NodeRecord | None = None  # None for WAIT: the slot may free anywhere


@dataclass(slots=True)
class Ask:
    """One job's question to the policy."""

    key: str  # canonical model name
    num_ctx: int | None
    ahead: int = 0  # jobs of the model waiting at the hub before this one
    session_node: str | None = None  # the node that served this conversation last


class Demand:
    """Jobs a second per model, decaying over DEMAND_TAU: how much an eviction would hurt."""

    def __init__(self) -> None:
        self._level: dict[str, tuple[float, float]] = {}

    def note(self, key: str, now: float) -> None:
        level, at = self._level.get(key, (0.0, now))
        self._level[key] = (level * math.exp((at - now) / DEMAND_TAU) + 1.0, now)

    def rate(self, key: str, now: float) -> float:
        level, at = self._level.get(key, (0.0, now))
        return level * math.exp((at - now) / DEMAND_TAU) / DEMAND_TAU

    def forget_quiet(self, now: float) -> None:
        """Drop the models not asked for in minutes, so the table holds only what callers use."""
        for key in [k for k in self._level if self.rate(k, now) * DEMAND_TAU < 0.01]:
            del self._level[key]


class CapacityPolicy:
    def __init__(self, registry: Registry, speeds: FleetSpeeds, demand: Demand) -> None:
        self.registry = registry
        self.speeds = speeds
        self.demand = demand

    # Figures.

    def job_seconds(self, node: NodeRecord, key: str) -> float:
        learned = node.speeds.get(key)
        fleet = self.speeds.job(key)
        seconds = learned.job_seconds.get(fleet) if learned else fleet
        return seconds / self.registry.capacity(node).weight

    def load_seconds(self, node: NodeRecord, key: str) -> float:
        size = node.sizes.get(key)
        if not size:
            return DEFAULT_LOAD_SECONDS
        per_gb = node.load_rate.get(self.speeds.load_seconds_per_gb.get(DEFAULT_LOAD_SECONDS_PER_GB))
        return size / 1e9 * per_gb

    def _eviction_cost(self, node: NodeRecord, evicted: list[str], now: float) -> float:
        cost = 0.0
        for key in evicted:
            copies = sum(1 for other in self.registry.holders(key) if key in other.loaded)
            wanted = min(1.0, self.demand.rate(key, now) * EVICTION_HORIZON)
            cost += self.load_seconds(node, key) * wanted / max(1, copies)
        return cost

    # The choice.

    def choose(self, ask: Ask, tried: set[str]) -> Option | None:
        """The cheapest option for the job; None when no node left to try has the model."""
        now = time.monotonic()
        options: list[Option] = []
        slots, fastest_busy, anyone, first_ready = 0, math.inf, False, None
        for scanned, node in enumerate(self.registry.candidates(ask.key)):  # best ranked first
            if node.node_id in tried:
                continue
            anyone = True
            if first_ready is not None and scanned - first_ready > SCAN_PAST_READY:
                break  # further down the ranking: more jobs running; a fleet of thousands stays fast
            capacity = self.registry.capacity(node)
            seconds = self.job_seconds(node, ask.key)
            if self.registry.compatible(node, ask.key, ask.num_ctx):
                if node.running.get(ask.key, 0) < capacity.num_parallel:
                    options.append(Option(Tier.READY, seconds, node))
                    first_ready = scanned if first_ready is None else first_ready
                else:
                    slots += capacity.num_parallel
                    fastest_busy = min(fastest_busy, seconds)
                continue
            if ask.key in node.loaded and node.running.get(ask.key):
                continue  # loaded with another context and busy: a reload would wait for those jobs
            evicted, fits = self.registry.evictions(node, ask.key)
            if not fits:
                continue
            behind = sum(self.load_seconds(node, k) for k in node.loading)  # Ollama loads one at a time
            cost = behind + self.load_seconds(node, ask.key) + seconds
            if evicted:
                options.append(Option(Tier.EVICT, cost + self._eviction_cost(node, evicted, now), node))
            else:
                options.append(Option(Tier.LOAD, cost, node))
        if slots:
            wait = (ask.ahead + 1) * fastest_busy / slots
            options.append(Option(Tier.WAIT, wait + fastest_busy))
        if not options:  # None: nobody has it; else every node with it is busy and full: wait
            return Option(Tier.WAIT, math.inf) if anyone else None
        best = min(options, key=lambda o: (o.seconds, o.tier))
        near = [
            o for o in options if o.tier is best.tier and o.seconds <= best.seconds * NEAR[best.tier] + 0.01
        ]
        if best.tier is Tier.READY and ask.session_node is not None:
            for option in near:
                if option.node is not None and option.node.node_id == ask.session_node:
                    return option
        return near[0]  # options come in rank order
