"""The `dialects` scenario: the same streams in each API the hub relays (Ollama's chat, OpenAI's chat
completions and Responses, Anthropic's Messages), straight from the simulator and through hub + agent, side
by side in one fleet. The hub does not parse a stream, so what each dialect costs it is its bytes."""

from __future__ import annotations

import asyncio
import statistics

from bench.fleet import Fleet
from bench.load import concurrent_streams
from bench.scenarios import Size, cpu_seconds

MESSAGES = [{"role": "user", "content": "hi"}]


def bodies(tokens: int) -> dict[str, dict]:
    """One streamed request per route, each asking for `tokens` tokens in its own words."""
    chat = {"model": "llama3", "messages": MESSAGES, "stream": True}
    return {
        "/api/chat": {**chat, "options": {"num_predict": tokens}},
        "/v1/chat/completions": {**chat, "max_tokens": tokens},
        "/v1/messages": {**chat, "max_tokens": tokens},
        "/v1/responses": {"model": "llama3", "input": "hi", "stream": True, "max_output_tokens": tokens},
    }


def dialects(size: Size, rounds: int = 3) -> dict:
    """Each route's streams straight and through the hub, in turns, `rounds` times: medians (two cores
    shared by the client, the simulator, the agent and the hub make one run noisy)."""
    tokens, streams = size.tokens_top, size.streams
    runs: dict[str, dict[str, list[float]]] = {}
    errors = {route: 0 for route in bodies(tokens)}
    with Fleet() as fleet:
        sim = fleet.sim_with(
            "--models", "llama3", "--tokens-per-second", "0", "--num-parallel", str(fleet.PARALLEL),
            "--tokens", str(tokens),
        )  # fmt: skip
        hub, hub_process = fleet.hub()
        fleet.node(hub, sim, "bench-node")
        for _ in range(rounds):
            for route, body in bodies(tokens).items():
                direct = asyncio.run(concurrent_streams(sim + route, body, streams))
                before = cpu_seconds(hub_process)
                through = asyncio.run(concurrent_streams(hub + route, body, streams))
                hub_cpu = cpu_seconds(hub_process) - before
                errors[route] += direct.errors + through.errors
                run = runs.setdefault(route, {"direct": [], "hub": [], "cpu": [], "ttft": []})
                run["direct"].append(tokens * streams / direct.seconds)
                run["hub"].append(tokens * streams / through.seconds)
                run["cpu"].append(hub_cpu / (tokens * streams) * 1e6)
                run["ttft"].append(through.ttft_p50_ms)
    median = statistics.median
    return {
        route: {
            "streams": streams,
            "rounds": rounds,
            "errors": errors[route],
            "direct_tokens_per_second": round(median(run["direct"])),
            "hub_tokens_per_second": round(median(run["hub"])),
            "ratio": round(median(h / d for h, d in zip(run["hub"], run["direct"], strict=True)), 3),
            "hub_cpu_us_per_token": round(median(run["cpu"]), 2),
            "hub_ttft_p50_ms": round(median(run["ttft"]), 1),
        }
        for route, run in runs.items()
    }
