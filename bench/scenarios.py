"""The four scenarios of `make bench`. Each returns plain data; `bench.__main__` prints and saves it."""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import time
from dataclasses import dataclass

import aiohttp
import psutil

from bench.fleet import Fleet
from bench.load import closed_loop, concurrent_streams
from ollama_connector.hubd.registry import Registry
from ollama_connector.shared.wire import Heartbeat, Load

TINY = {"model": "llama3", "prompt": "hi", "stream": False, "options": {"num_predict": 1}}


@dataclass
class Size:
    """How long each scenario runs: the defaults for make bench, SMOKE for the test that checks they run."""

    requests_c1: int = 2000
    requests_c32: int = 6000
    streams: int = 100
    tokens_realistic: int = 100  # at 50 tokens/s: two seconds per stream
    tokens_top: int = 400
    registry_sizes: tuple[int, ...] = (1000, 10000)
    top_nodes: int = 100
    top_seconds: float = 20.0
    scheduling_seconds: float = 30.0  # of trace, at each load
    scheduling_loads: tuple[float, ...] = (0.7, 1.5)  # shares of the fleet's capacity


SMOKE = Size(
    requests_c1=20,
    requests_c32=64,
    streams=4,
    tokens_realistic=5,
    tokens_top=20,
    registry_sizes=(50,),
    top_nodes=5,
    top_seconds=2.0,
    scheduling_seconds=1.5,
    scheduling_loads=(1.5,),
)


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def overhead(size: Size) -> dict:
    """Tiny non-streaming jobs: direct to the simulator, through nginx, and through hub+node."""
    with Fleet() as fleet:
        sim = fleet.sim()
        hub, hub_process = fleet.hub()
        _, node_process = fleet.node(hub, sim, "bench-node")
        nginx = fleet.nginx(sim)
        # Which processes each route runs through, to charge them their CPU time per request.
        routes = {
            "direct": (sim + "/api/generate", {"sim": [fleet.sim_process]}),
            "hub": (
                hub + "/jobs",
                {"sim": [fleet.sim_process], "hub": [hub_process], "node": [node_process]},
            ),
        }
        if nginx:
            routes["nginx"] = (
                nginx + "/api/generate",
                {"sim": [fleet.sim_process], "nginx": fleet.nginx_workers},
            )
        results: dict[str, dict] = {}
        for concurrency, requests in ((1, size.requests_c1), (32, size.requests_c32)):
            for name, (url, processes) in routes.items():
                before = {role: sum(cpu_seconds(p) for p in procs) for role, procs in processes.items()}
                result = asyncio.run(closed_loop(url, TINY, concurrency, requests))
                cpu_us = {
                    f"{role}_cpu_us_per_request": round(
                        (sum(cpu_seconds(p) for p in procs) - before[role]) / (requests + 50) * 1e6, 1
                    )
                    for role, procs in processes.items()
                }
                results[f"{name}@c{concurrency}"] = {**result.as_dict(), **cpu_us}
        return results


def streaming(size: Size) -> dict:
    """100 concurrent streams at 50 tokens/s and at the simulator's top rate, direct and through the hub."""
    results: dict[str, dict] = {}
    for label, rate, tokens in (("50tps", 50, size.tokens_realistic), ("top", 0, size.tokens_top)):
        with Fleet() as fleet:
            sim = fleet.sim(tokens_per_second=rate)
            hub, hub_process = fleet.hub()
            _, node_process = fleet.node(hub, sim, "bench-node")
            body = {"model": "llama3", "prompt": "hi", "stream": True, "options": {"num_predict": tokens}}
            direct = asyncio.run(concurrent_streams(sim + "/api/generate", body, size.streams))
            hub_cpu, node_cpu = cpu_seconds(hub_process), cpu_seconds(node_process)
            through = asyncio.run(concurrent_streams(hub + "/jobs", body, size.streams))
            results[f"direct@{label}"] = direct.as_dict()
            results[f"hub@{label}"] = {
                **through.as_dict(),
                "hub_cpu_percent": round(100 * (cpu_seconds(hub_process) - hub_cpu) / through.seconds, 1),
                "node_cpu_percent": round(100 * (cpu_seconds(node_process) - node_cpu) / through.seconds, 1),
            }
    return results


def fake_beat(i: int, models: list[str]) -> dict:
    return Heartbeat(
        node_id=f"node-{i:05d}",
        ipv4=f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}",
        port=8001,
        models=models,
        metadata={"hostname": f"host-{i}", "ollama_version": "0.33.0", "os": "Linux", "cpu_count": 16},
        load=Load(cpu=random.random(), memory=random.random()),
    ).model_dump()


async def post_heartbeats(hub: str, count: int, concurrency: int = 32) -> float:
    """Heartbeats from `count` nodes with no servers behind them; returns heartbeats handled per second."""
    models = ["llama3:latest", "mistral:latest", "qwen2.5:7b"]
    bodies = [json.dumps(fake_beat(i, models)).encode() for i in range(count)]
    queue = iter(bodies)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:

        async def worker() -> None:
            for body in queue:
                async with session.post(
                    hub + "/nodes/heartbeat", data=body, headers={"Content-Type": "application/json"}
                ) as response:
                    assert response.status == 200, await response.text()

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return count / (time.perf_counter() - started)


async def get_nodes_latency(hub: str, times: int = 10) -> float:
    latencies = []
    async with aiohttp.ClientSession() as session:
        for _ in range(times):
            started = time.perf_counter()
            async with session.get(hub + "/nodes") as response:
                await response.read()
            latencies.append(time.perf_counter() - started)
    return statistics.median(latencies) * 1000


def routing_decision_us(count: int, rounds: int = 200) -> float:
    """The time to pick the best node when `count` nodes all have the model."""
    registry = Registry(ttl=90, remove_after=180, max_failures=3, probe_interval=30)
    for i in range(count):
        registry.heartbeat(Heartbeat.model_validate(fake_beat(i, ["llama3:latest"])), "10.0.0.1")
    started = time.perf_counter()
    for _ in range(rounds):
        next(registry.candidates("llama3"))
    return (time.perf_counter() - started) / rounds * 1e6


def registry_scale(size: Size) -> dict:
    results: dict[str, dict] = {}
    for count in size.registry_sizes:
        with Fleet() as fleet:
            hub, hub_process = fleet.hub(MAX_NODES=str(count))  # above the default 1,000 on purpose
            first = asyncio.run(post_heartbeats(hub, count))
            again = asyncio.run(post_heartbeats(hub, count))  # a second round: every node known already
            results[f"{count}_nodes"] = {
                "heartbeats_per_second_new": round(first, 1),
                "heartbeats_per_second_known": round(again, 1),
                "get_nodes_ms": round(asyncio.run(get_nodes_latency(hub)), 2),
                "routing_decision_us": round(routing_decision_us(count), 1),
                "hub_rss_mb": round(hub_process.memory_info().rss / 2**20, 1),
            }
    return results
