"""The `prefix` scenario: routing on the prompt, against the policies that do not, on a fleet of simulators
that process prompts as a GPU does (a prefill rate, each slot's cache, a host cache, shared compute).

Four nodes of two slots, one model loaded everywhere before the run (so only the prompts differ), 50 tokens a
second and 2,500 prompt tokens a second. Each workload (bench.prefix_workloads) runs through the hub with each
policy on a fresh fleet: `capacity` (routing on the prompt), `capacity-no-prefix` (PREFIX_ROUTING=0: sticky
sessions still), `affinity` (Herd's fixed bonuses), `least-busy` and `round-robin`. Reported: time to the
first token and to the last (p50, p99), the prompt tokens the nodes processed, and the fleet's throughput
beside its modelled capacity.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from dataclasses import dataclass

import aiohttp

from bench.fleet import Fleet
from bench.load import percentile
from bench.prefix_workloads import LENGTH_SCALE, Conversation, mooncake, synthetic
from bench.scheduling import sim_totals

MODEL = "llama3.1:8b"
NODES, PARALLEL = 4, 2
TOKENS_PER_SECOND = 50.0
PREFILL_TOKENS_PER_SECOND = 2500.0
HOST_CACHE_TOKENS = 100_000  # the simulator's default; divided by the workload's length scale
LOAD_SHARE = 1.0  # of the fleet's capacity with every prompt processed whole: what caching must make room for
POLICIES = {
    "capacity": {},
    "capacity-no-prefix": {"PREFIX_ROUTING": "0"},
    "affinity": {"ROUTING_POLICY": "affinity"},
    "least-busy": {"ROUTING_POLICY": "least-busy"},
    "round-robin": {"ROUTING_POLICY": "round-robin"},
}


@dataclass
class Outcome:
    ttft: float | None = None
    latency: float | None = None


def capacity(prompt_tokens: float, answer_tokens: float) -> float:
    """Jobs a second the fleet finishes when each processes `prompt_tokens` and says `answer_tokens`: a node
    of n busy slots generates sqrt(n) times one stream's tokens (the simulator's shared compute)."""
    seconds = prompt_tokens / PREFILL_TOKENS_PER_SECOND + answer_tokens / TOKENS_PER_SECOND
    return NODES * math.sqrt(PARALLEL) / seconds


async def turn(http: aiohttp.ClientSession, hub: str, body: dict, route: str) -> tuple[Outcome, str]:
    outcome, said = Outcome(), []
    sent = time.monotonic()
    try:
        async with http.post(hub + route, json=body) as response:
            if response.status != 200:
                await response.read()
                return outcome, ""
            async for line in response.content:
                if outcome.ttft is None:
                    outcome.ttft = time.monotonic() - sent
                if b'"error"' in line:
                    return Outcome(), ""
                said.append(line)
            outcome.latency = time.monotonic() - sent
    except (aiohttp.ClientError, TimeoutError):
        return Outcome(), ""
    return outcome, "".join(_content(line) for line in said)


def _content(line: bytes) -> str:
    chunk = json.loads(line)
    return chunk.get("message", {}).get("content", "") or chunk.get("response", "")


async def converse(http: aiohttp.ClientSession, hub: str, conversation: Conversation, start: float) -> list:
    await asyncio.sleep(max(0.0, start + conversation.at - time.monotonic()))
    outcomes, history = [], [{"role": "system", "content": conversation.system}]
    for n in range(conversation.turns):
        options = {"num_predict": conversation.tokens[n]}
        if conversation.prompts:
            body, route = (
                {"model": MODEL, "prompt": conversation.prompts[n], "options": options},
                "/api/generate",
            )
        else:
            history.append({"role": "user", "content": conversation.questions[n]})
            body, route = {"model": MODEL, "messages": history, "options": options}, "/api/chat"
        outcome, said = await turn(http, hub, body, route)
        outcomes.append(outcome)
        history.append({"role": "assistant", "content": said})
        if n < len(conversation.gaps):
            await asyncio.sleep(conversation.gaps[n])
    return outcomes


async def replay(hub: str, conversations: list[Conversation]) -> list[Outcome]:
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=0)) as http:
        start = time.monotonic() + 0.2
        runs = await asyncio.gather(*(converse(http, hub, c, start) for c in conversations))
    return [outcome for outcomes in runs for outcome in outcomes]


def run_policy(env: dict[str, str], conversations: list[Conversation], host_cache: int) -> dict:
    with Fleet() as fleet:
        sims = [
            fleet.sim_with(
                "--models",
                f"{MODEL}=5GB",
                "--tokens-per-second",
                str(TOKENS_PER_SECOND),
                "--prefill-tokens-per-second",
                str(PREFILL_TOKENS_PER_SECOND),
                "--prompt-cache-tokens",
                str(host_cache),
                "--num-parallel",
                str(PARALLEL),
            )
            for _ in range(NODES)
        ]
        asyncio.run(_preload(sims))
        hub, _ = fleet.hub(NODE_REQUEST_TIMEOUT="120", MAX_CONCURRENT_JOBS="4096", **env)
        for n, sim in enumerate(sims):
            fleet.node(hub, sim, f"node-{n + 1}", OLLAMA_NUM_PARALLEL=str(PARALLEL))
        started = time.monotonic()
        outcomes = asyncio.run(replay(hub, conversations))
        elapsed = time.monotonic() - started
        stats = sim_totals(sims)
    done = [o for o in outcomes if o.latency is not None]
    return {
        "requests": len(outcomes),
        "completed": len(done),
        "errors": len(outcomes) - len(done),
        "ttft_p50_s": round(percentile([o.ttft for o in done if o.ttft is not None], 50), 3),
        "ttft_p99_s": round(percentile([o.ttft for o in done if o.ttft is not None], 99), 3),
        "latency_p50_s": round(percentile([o.latency for o in done if o.latency is not None], 50), 3),
        "latency_p99_s": round(percentile([o.latency for o in done if o.latency is not None], 99), 3),
        "prompt_tokens": stats.get("prompt_tokens", 0),
        "prompt_tokens_processed": stats.get("prompt_tokens_processed", 0),
        "prompt_tokens_restored": stats.get("prompt_tokens_restored", 0),
        "loads": stats.get("loads", 0),
        "completed_per_second": round(len(done) / elapsed, 2),
    }


async def _preload(sims: list[str]) -> None:
    async with aiohttp.ClientSession() as http:
        for sim in sims:
            async with http.post(sim + "/api/generate", json={"model": MODEL}) as response:
                await response.read()


def prefix(size) -> dict:
    results: dict = {}
    workloads = {
        # The trace's prompts average ~1,500 tokens at this scale and its answers ~43.
        "mooncake": (mooncake, capacity(14_000 / LENGTH_SCALE, 370 / LENGTH_SCALE), LENGTH_SCALE),
        "synthetic": (synthetic, capacity(2_600, 30), 1),  # system prompt and history; short answers
    }
    for name, (build, cold_capacity, scale) in workloads.items():
        conversations, shape = build(size.prefix_seconds, cold_capacity * LOAD_SHARE)
        entry: dict = {**shape, "capacity_jobs_per_second_cold": round(cold_capacity, 2)}
        for policy, env in POLICIES.items():
            if policy not in size.prefix_policies:
                continue
            entry[policy] = run_policy(env, conversations, HOST_CACHE_TOKENS // scale)
        results[name] = entry
    return results
