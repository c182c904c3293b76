"""The `scheduling` scenario: a seeded trace run through a fleet of simulators that schedule like Ollama.

Four simulators of two sizes (two with room for two large models and two slots each, two with room for one and
one slot), six models of Zipf-like popularity, Poisson arrivals, skewed output lengths, some requests with
another `num_ctx`. The same trace runs at about 70 % and 150 % of the fleet's capacity through the hub with
each of its routing policies (ROUTING_POLICY: capacity, least-busy, round-robin), each on a fresh fleet.
Times are scaled down (loads of 0.1 s per GB, 50 tokens a second) so it takes minutes.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import time
import urllib.request
from dataclasses import dataclass

import aiohttp

from bench.fleet import Fleet
from bench.load import percentile

MODELS = {  # name: size; large ones are 7 to 9 GB, as their 8B-class namesakes at Q4 to Q8
    "llama3.1:8b": "8GB",
    "qwen2.5:7b": "7GB",
    "mistral:7b": "7GB",
    "gemma2:9b": "9GB",
    "phi3:3.8b": "4GB",
    "llama3.2:1b": "1.5GB",
}
NODES = [  # name, VRAM, NUM_PARALLEL
    ("big-1", 20, 2),
    ("big-2", 20, 2),
    ("small-1", 10, 1),
    ("small-2", 10, 1),
]
TOKENS_PER_SECOND = 50.0
LOAD_SECONDS_PER_GB = 0.1
MEAN_TOKENS = 40
POLICIES = ("capacity", "least-busy", "round-robin")


@dataclass
class Request:
    at: float  # seconds after the start
    model: str
    tokens: int
    num_ctx: int | None


@dataclass
class Outcome:
    latency: float | None = None  # seconds to the last byte; None when it failed
    ttft: float | None = None
    status: int = 0


def trace(seconds: float, per_second: float, seed: int = 7) -> list[Request]:
    """Poisson arrivals; models by Zipf (s=1.1); lognormal output lengths; one in ten with num_ctx 8192."""
    rng = random.Random(seed)
    names = list(MODELS)
    weights = [1 / (rank + 1) ** 1.1 for rank in range(len(names))]
    requests, now = [], 0.0
    while True:
        now += rng.expovariate(per_second)
        if now >= seconds:
            return requests
        tokens = max(4, min(300, round(rng.lognormvariate(math.log(MEAN_TOKENS * 0.75), 0.8))))
        num_ctx = 8192 if rng.random() < 0.1 else None
        requests.append(Request(now, rng.choices(names, weights)[0], tokens, num_ctx))


MAX_LOADED_MODELS = 3  # the simulators' (and Ollama's) default


def capacity() -> float:
    """Jobs a second the fleet could finish with every model loaded: its slots over a mean job's time (the
    load shares are of this figure)."""
    slots = sum(parallel for _, _, parallel in NODES)
    return slots / (MEAN_TOKENS / TOKENS_PER_SECOND)


def ceiling() -> float:
    """Jobs a second the fleet could finish at most: a node running n streams at once generates sqrt(n) times
    one stream's tokens (the simulator's shared compute, over all its runners), and runs at most NUM_PARALLEL
    streams for each of its MAX_LOADED_MODELS models; over a mean job's tokens."""
    streams = [parallel * MAX_LOADED_MODELS for _, _, parallel in NODES]
    return sum(math.sqrt(n) for n in streams) / (MEAN_TOKENS / TOKENS_PER_SECOND)


async def send(http: aiohttp.ClientSession, url: str, request: Request, start: float) -> Outcome:
    await asyncio.sleep(max(0.0, start + request.at - time.monotonic()))
    options: dict = {"num_predict": request.tokens}
    if request.num_ctx:
        options["num_ctx"] = request.num_ctx
    body = {"model": request.model, "prompt": "x", "options": options}
    sent = time.monotonic()
    outcome = Outcome()
    try:
        async with http.post(url, json=body) as response:
            outcome.status = response.status
            if response.status != 200:
                await response.read()
                return outcome
            first = await response.content.readline()
            outcome.ttft = time.monotonic() - sent
            rest = await response.read()
            if b'"error"' in first + rest:
                outcome.status = 599
                return outcome
            outcome.latency = time.monotonic() - sent
    except (aiohttp.ClientError, TimeoutError):
        outcome.status = 598
    return outcome


async def replay(requests: list[Request], url_for) -> list[Outcome]:
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=0)) as http:
        start = time.monotonic() + 0.2
        return await asyncio.gather(*(send(http, url_for(r.model), r, start) for r in requests))


def sim_totals(sims: list[str]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for sim in sims:
        with urllib.request.urlopen(sim + "/_sim/stats", timeout=5) as response:
            for key, value in json.load(response).items():
                totals[key] = totals.get(key, 0) + value
    return totals


def run_policy(policy: str, requests: list[Request], seconds: float) -> dict:
    with Fleet() as fleet:
        sims = []
        models = ",".join(f"{name}={size}" for name, size in MODELS.items())
        for _, vram, parallel in NODES:
            sims.append(
                fleet.sim_with(
                    "--models",
                    models,
                    "--tokens-per-second",
                    str(TOKENS_PER_SECOND),
                    "--vram-gb",
                    str(vram),
                    "--num-parallel",
                    str(parallel),
                    "--load-seconds-per-gb",
                    str(LOAD_SECONDS_PER_GB),
                )
            )
        hub, _ = fleet.hub(
            NODE_REQUEST_TIMEOUT="60",
            MAX_CONCURRENT_JOBS="4096",
            ROUTING_POLICY=policy,
            QUEUE_TIMEOUT_SECONDS="20",
        )
        for (name, vram, parallel), sim in zip(NODES, sims, strict=True):
            fleet.node(hub, sim, name, OLLAMA_NUM_PARALLEL=str(parallel), NODE_VRAM_GB=str(vram))
        url_for = lambda _: hub + "/api/generate"  # noqa: E731
        started = time.monotonic()
        outcomes = asyncio.run(replay(requests, url_for))
        elapsed = time.monotonic() - started
        stats = sim_totals(sims)
    done = [o for o in outcomes if o.latency is not None]
    return {
        "jobs": len(requests),
        "completed": len(done),
        "completed_per_second": round(len(done) / max(elapsed, seconds), 2),
        "errors": len(outcomes) - len(done),
        "busy_503": sum(1 for o in outcomes if o.status == 503),
        "latency_p50_s": round(percentile([o.latency for o in done], 50), 2),
        "latency_p95_s": round(percentile([o.latency for o in done], 95), 2),
        "latency_p99_s": round(percentile([o.latency for o in done], 99), 2),
        "ttft_p50_s": round(percentile([o.ttft for o in done if o.ttft], 50), 2),
        "ttft_p99_s": round(percentile([o.ttft for o in done if o.ttft], 99), 2),
        "loads": stats.get("loads", 0),
        "evictions": stats.get("unloads", 0),
        "evictions_with_waiting": stats.get("evictions_with_waiting", 0),
    }


def lower_bound(requests: list[Request]) -> dict:
    """Every model already loaded, no queue: each job takes only its tokens' time."""
    times = [r.tokens / TOKENS_PER_SECOND for r in requests]
    return {
        "latency_p50_s": round(percentile(times, 50), 2),
        "latency_p95_s": round(percentile(times, 95), 2),
        "latency_p99_s": round(percentile(times, 99), 2),
    }


def scheduling(size) -> dict:
    results: dict = {
        "capacity_jobs_per_second": round(capacity(), 2),
        "ceiling_jobs_per_second": round(ceiling(), 2),
    }
    for share in size.scheduling_loads:
        label = f"{share:.0%}"
        requests = trace(size.scheduling_seconds, capacity() * share)
        results[label] = {"lower_bound": lower_bound(requests)}
        for policy in POLICIES:
            results[label][policy] = run_policy(policy, requests, size.scheduling_seconds)
    return results
