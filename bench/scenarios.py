"""The scenarios of `make bench`. Each returns plain data; `bench.__main__` prints and saves it."""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import time
import urllib.request
from dataclasses import dataclass

import aiohttp
import psutil

from bench.fleet import Fleet
from bench.load import closed_loop, concurrent_streams
from ollama_connector.hubd.routing.registry import Registry
from ollama_connector.shared.wire import Heartbeat, Load
from ollama_connector.sim.postgres import Postgres, bin_dir

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
    hostile_scale: float = 1.0  # of the hostile scenario's bodies, answers and job counts
    prefix_seconds: float = 40.0  # of each workload, for each policy
    hubs_seconds: float = 30.0  # of steady load through two hubs, one of them killed and started again
    prefix_policies: tuple[str, ...] = (
        "capacity",
        "capacity-no-prefix",
        "affinity",
        "least-busy",
        "round-robin",
    )


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
    hostile_scale=0.02,
    prefix_seconds=2.0,
    prefix_policies=("capacity",),
    hubs_seconds=6.0,
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
        # The same jobs to a node of one slot, through a hub of its own: there they wait in the hub's queue.
        one_slot = fleet.sim_with("--models", "llama3", "--tokens-per-second", "0", "--num-parallel", "1")
        queued_hub, queued_process = fleet.hub()
        _, queued_node = fleet.node(queued_hub, one_slot, "one-slot", OLLAMA_NUM_PARALLEL="1")
        nginx = fleet.nginx(sim)
        # Which processes each route runs through, to charge them their CPU time per request.
        routes = {
            "direct": (sim + "/api/generate", {"sim": [fleet.sim_process]}),
            "hub": (
                hub + "/jobs",
                {"sim": [fleet.sim_process], "hub": [hub_process], "node": [node_process]},
            ),
        }
        routes["hub-1slot"] = (queued_hub + "/jobs", {"hub": [queued_process], "node": [queued_node]})
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


def journal_cost(size: Size) -> dict:
    """The job journal's cost: tiny jobs at c=32 through a hub with it and one without, in turns (so that
    both see the same noise), same simulator: throughput and the hub's CPU per job, and their ratios.

    Two hubs that are the same differ here by several per cent from one run to the next, and the second
    started tends to be the slower; so each order of starting them runs half of the rounds, and the same
    procedure with the journal off in both ("control") gives the noise floor to read the ratio against."""
    measured = _in_turns({"off": {"JOURNAL_PATH": "off"}, "on": {}}, size)
    control = _in_turns({"off": {"JOURNAL_PATH": "off"}, "on": {"JOURNAL_PATH": "off"}}, size)
    result = {**measured, "control_throughput_ratio": control["throughput_ratio"]}
    if bin_dir() is not None:  # the same with the journal in PostgreSQL (JOURNAL_URL), on the same two cores
        server = Postgres().start()
        try:
            result["postgres"] = _in_turns(
                {"off": {"JOURNAL_PATH": "off"}, "on": {"JOURNAL_URL": server.database()}}, size
            )
        finally:
            server.stop()
    return result


def _in_turns(variants: dict[str, dict[str, str]], size: Size) -> dict:
    rounds = 8
    requests = max(1, size.requests_c32 // 4)
    rates: dict[str, list[float]] = {name: [] for name in variants}
    cpu: dict[str, list[float]] = {name: [] for name in variants}
    journal_cpu = 0.0
    for order in (("off", "on"), ("on", "off")):
        with Fleet() as fleet:
            sim = fleet.sim()
            hubs = {}
            for variant in order:
                hub, process = fleet.hub(**variants[variant])
                fleet.node(hub, sim, f"bench-{variant}")
                hubs[variant] = (hub, process)
            for turn in range(rounds // 2):
                for variant in order if turn % 2 == 0 else order[::-1]:
                    hub, process = hubs[variant]
                    before = cpu_seconds(process)
                    result = asyncio.run(closed_loop(hub + "/jobs", TINY, 32, requests))
                    rates[variant].append(result.per_second)
                    cpu[variant].append((cpu_seconds(process) - before) / (requests + 50) * 1e6)
            with urllib.request.urlopen(hubs["on"][0] + "/jobs?limit=1", timeout=10) as answer:
                journal = json.loads(answer.read())["journal"]
            with urllib.request.urlopen(hubs["on"][0] + "/metrics", timeout=10) as answer:
                journal_cpu += _sample(answer.read().decode(), "ollama_hub_journal_write_cpu_seconds_total")
    jobs_on = len(rates["on"]) * (requests + 50)
    off, on = statistics.median(rates["off"]), statistics.median(rates["on"])
    cpu_off, cpu_on = statistics.median(cpu["off"]), statistics.median(cpu["on"])
    return {
        "rounds": rounds,
        "jobs_per_second_without": round(off, 1),
        "jobs_per_second_with": round(on, 1),
        "throughput_ratio": round(on / off, 3),
        "hub_cpu_us_per_job_without": round(cpu_off, 1),
        "hub_cpu_us_per_job_with": round(cpu_on, 1),
        "hub_cpu_ratio": round(cpu_on / cpu_off, 3),
        # Exact where the ratios are noisy: the CPU the journal's own thread spent writing, per job.
        "journal_thread_cpu_us_per_job": round(journal_cpu / max(1, jobs_on) * 1e6, 1),
        "journal": journal,
    }


def _sample(exposition: str, name: str) -> float:
    for line in exposition.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0
