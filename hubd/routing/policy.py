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

A job's time on a node is its time there without its prompt, slowed as the node's compute is shared
(SHARED_COMPUTE), plus the part of its prompt the node has not cached, at the node's prompt speed
(hubd.routing.prefixes predicts what each node holds). So a node that holds the prompt wins unless its load
costs more than the prefill it saves.

The cheapest option wins; among options of the same tier within NEAR of it, the READY node that holds the most
of the prompt, else the node that served the caller's conversation before, else for a new prompt the node
whose cache it would crowd least (distinct prompts spread over the fleet's caches), else the best ranked
node (hubd.routing.ranking: fewest jobs, CPU, failures, least recently given one), so equal nodes share the
work. A WAIT win means
the job waits at the hub (hubd.routing.placement) and asks again when a slot frees. Job times are divided by
the node's NODE_WEIGHT, the operator's bias for mixed hardware.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from enum import IntEnum

from ollama_connector.hubd.routing.node import NodeRecord
from ollama_connector.hubd.routing.prefixes import BLOCK_TOKENS, Prompt
from ollama_connector.hubd.routing.registry import Registry
from ollama_connector.hubd.routing.speeds import (
    DEFAULT_LOAD_SECONDS,
    DEFAULT_LOAD_SECONDS_PER_GB,
    FleetSpeeds,
)

log = logging.getLogger(__name__)
NEAR = {0: 1.5, 1: 1.25, 2: 1.05, 3: 1.05}  # by tier: how much dearer an option may be and count as equal
DEMAND_TAU = 60.0  # seconds over which demand decays
SCAN_PAST_READY = 32  # candidates looked at past the first READY one
EVICTION_HORIZON = 30.0  # seconds ahead in which an evicted model's callers are expected to come back
LOAD_RELUCTANCE = 1.0  # a load counts its time once more: what it fills must make room again later
READY_MARGIN = 2.0  # a free loaded slot wins unless loading elsewhere is expected this many times faster


def SHARED_COMPUTE(running: int) -> float:
    """How much slower a job runs beside `running` others on one node: streams batched on one GPU share
    its compute, the total growing as the square root of their number (the simulator's curve)."""
    return math.sqrt(running + 1)


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
    evicts: tuple[str, ...] = ()
    matched: int = 0  # prompt tokens the node is expected to have cached


@dataclass(slots=True)
class Ask:
    """One job's question to the policy."""

    key: str  # canonical model name
    num_ctx: int | None
    larger_ok: bool = False  # no num_ctx, on a route that can be given one: a larger loaded context will do
    ahead: int = 0  # jobs of the model waiting at the hub before this one
    session_node: str | None = None  # the node that served this conversation last
    prompt: Prompt | None = None  # its prompt, when the hub routes on prompts (PREFIX_ROUTING)


Variant = tuple[str, int | None]  # a model and the num_ctx asked for (None: the node's default)


class Demand:
    """Jobs a second per model and context, decaying over DEMAND_TAU: how much an eviction would hurt."""

    def __init__(self) -> None:
        self._level: dict[Variant, tuple[float, float, float]] = {}  # level, last noted, first noted

    def note(self, variant: Variant, now: float) -> None:
        level, at, first = self._level.get(variant, (0.0, now, now))
        self._level[variant] = (level * math.exp((at - now) / DEMAND_TAU) + 1.0, now, first)

    def rate(self, variant: Variant, now: float) -> float:
        level, at, first = self._level.get(variant, (0.0, now, now))
        # A steady rate r fills the level to r * TAU * (1 - e^(-t/TAU)) after t seconds: divide by that,
        # so a model asked for since a few seconds has its true rate at once, not a fraction of it.
        window = DEMAND_TAU * (1 - math.exp(-max(1.0, now - first) / DEMAND_TAU))
        return level * math.exp((at - now) / DEMAND_TAU) / window

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
        """The model's mean job time over the fleet, scaled by this node's generation speed against the
        fleet's (a single node's own mean swings with the lengths of the few answers it gave)."""
        seconds = self.speeds.job(key)
        learned = node.speeds.get(key)
        if learned is not None and learned.tokens_per_second.samples:
            fleet = self.speeds.tokens_per_second.get(key)
            if fleet is not None and fleet.samples:
                seconds *= fleet.value / max(learned.tokens_per_second.value, 1e-6)
        return seconds / node.capacity.weight

    def ready_seconds(self, node: NodeRecord, ask: Ask, seconds: float) -> tuple[float, int]:
        """A job's time on a free slot there, and the prompt tokens it finds cached: its learned job time
        (less its mean prefill, when there is a prompt to price), as much slower as the streams it would
        share the node's compute with are more than those its jobs shared it with so far, plus the prefill
        of what the node has not cached."""
        shared = SHARED_COMPUTE(node.busy_total()) / SHARED_COMPUTE(self.speeds.sharing(ask.key))
        if ask.prompt is None:
            return seconds * shared, 0
        rate, share = self.speeds.prefill(node, ask.key)
        matched = node.prompts.matched(ask.key, ask.prompt)
        base = seconds * (1 - share)
        prefill = max(0, ask.prompt.tokens - matched) / rate / node.capacity.weight
        return base * shared + prefill, matched

    def cold_prefill(self, node: NodeRecord, ask: Ask) -> float:
        """The prefill of the whole prompt (a model loaded anew has nothing cached), in place of the mean."""
        if ask.prompt is None:
            return 0.0
        rate, share = self.speeds.prefill(node, ask.key)
        return ask.prompt.tokens / rate / node.capacity.weight - self.job_seconds(node, ask.key) * share

    def load_seconds(self, node: NodeRecord, key: str) -> float:
        size = node.sizes.get(key)
        if not size:
            return DEFAULT_LOAD_SECONDS
        per_gb = node.load_rate.get(self.speeds.load_seconds_per_gb.get(DEFAULT_LOAD_SECONDS_PER_GB))
        return size / 1e9 * per_gb

    def _eviction_cost(self, node: NodeRecord, evicted: list[str], now: float) -> float:
        """What unloading these models there costs the jobs that will ask for them: a reload, as likely as
        they are asked for within EVICTION_HORIZON, and as needed as the copies left elsewhere are busy."""
        cost = 0.0
        for key in evicted:
            context = node.loaded.get(key)
            default = node.capacity.default_context
            rate = self.demand.rate((key, context), now)
            if context is None or default is None or context >= default:  # jobs without num_ctx use it too
                rate += self.demand.rate((key, None), now)
            slots = sum(
                other.capacity.num_parallel
                for other in self.registry.holders(key)
                if other is not node and key in other.loaded and other.loaded[key] == context
            )
            if slots:  # others hold it too: it hurts as much as they would be busy without this copy
                need = min(1.0, rate * self.job_seconds(node, key) / slots)
            else:
                need = min(1.0, rate * EVICTION_HORIZON)
            cost += self.load_seconds(node, key) * need * (1 + rate * self.load_seconds(node, key))
        return cost

    # The choice.

    def choose(self, ask: Ask, tried: set[str]) -> Option | None:
        """The cheapest option for the job; None when no node left to try has the model."""
        now = time.monotonic()
        options: list[Option] = []
        slots, fastest_busy, soonest_load, anyone, first_ready = 0, math.inf, math.inf, False, None
        for scanned, node in enumerate(self.registry.candidates(ask.key)):  # best ranked first
            if node.node_id in tried:
                continue
            anyone = True
            if first_ready is not None and scanned - first_ready > SCAN_PAST_READY:
                break  # further down the ranking: more jobs running; a fleet of thousands stays fast
            capacity = node.capacity
            seconds = self.job_seconds(node, ask.key)
            if node.compatible(ask.key, ask.num_ctx, ask.larger_ok):
                if node.busy(ask.key) < capacity.num_parallel:
                    cost, matched = self.ready_seconds(node, ask, seconds)
                    if ask.key in node.loading:  # a copy still loading there: its slots come after the load
                        cost += self.load_seconds(node, ask.key)
                    options.append(Option(Tier.READY, cost, node, matched=matched))
                    first_ready = scanned if first_ready is None else first_ready
                else:
                    slots += capacity.num_parallel
                    fastest_busy = min(fastest_busy, seconds)
                    if ask.key in node.loading:  # its slots free only after the load under way
                        soonest_load = min(soonest_load, self.load_seconds(node, ask.key))
                    else:
                        soonest_load = 0.0
                continue
            if (ask.key in node.loaded and node.busy(ask.key)) or node.refused(ask.key):
                continue  # loaded with another context and busy (a reload would wait for those jobs), or full
            evicted, fits = node.evictions(ask.key)
            if not fits:
                continue
            if ask.key in node.loaded:
                evicted.append(ask.key)  # loaded with another context: that one goes
            behind = sum(self.load_seconds(node, k) for k in node.loading)  # Ollama loads one at a time
            load = self.load_seconds(node, ask.key)
            cost = behind + load * (1 + LOAD_RELUCTANCE) + seconds + self.cold_prefill(node, ask)
            if evicted:
                cost += self._eviction_cost(node, evicted, now)
                options.append(Option(Tier.EVICT, cost, node, tuple(evicted)))
            else:
                options.append(Option(Tier.LOAD, cost, node))
        if slots:
            wait = soonest_load + (ask.ahead + 1) * fastest_busy / slots
            options.append(Option(Tier.WAIT, wait + fastest_busy))
        if not options:  # None: nobody has it; else every node with it is busy and full: wait
            return Option(Tier.WAIT, math.inf) if anyone else None
        best = min(options, key=lambda o: (o.seconds, o.tier))
        ready = [o for o in options if o.tier is Tier.READY]
        if (
            ready
            and best.tier is not Tier.READY
            and min(o.seconds for o in ready) <= best.seconds * READY_MARGIN
        ):
            best = min(ready, key=lambda o: o.seconds)  # a small gain never pays for a load
        margin = best.seconds * (NEAR[best.tier] - 1) + 0.01
        near = [o for o in options if o.tier is best.tier and o.seconds <= best.seconds + margin]
        if best.tier is Tier.READY and (most := max(near, key=lambda o: o.matched)).matched >= BLOCK_TOKENS:
            return most  # its cache: the first of the best matched, in rank order
        if best.tier is Tier.READY and ask.session_node is not None:
            for option in near:
                if option.node is not None and option.node.node_id == ask.session_node:
                    return option
        if best.tier is Tier.READY and ask.prompt is not None:  # a new prompt: where it evicts the least,
            fewest = min(o.node.active_jobs for o in near if o.node)  # among the least busy
            idlest = [o for o in near if o.node and o.node.active_jobs == fewest]
            return min(idlest, key=lambda o: o.node.prompts.fullness(ask.key) if o.node else 0.0)
        chosen = near[0]  # options come in rank order
        if chosen.tier is not Tier.READY and log.isEnabledFor(logging.DEBUG):
            log.debug(
                "%s (num_ctx %s): %s on %s (%.2f s; evicting %s) rather than %s",
                ask.key,
                ask.num_ctx,
                chosen.tier.name.lower(),
                chosen.node.node_id if chosen.node else "-",
                chosen.seconds,
                ", ".join(chosen.evicts) or "nothing",
                "; ".join(f"{o.tier.name.lower()} {o.seconds:.2f} s" for o in options if o is not chosen)
                or "nothing else",
            )
        return chosen
