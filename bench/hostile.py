"""The `hostile` scenario: what one caller or one node can take from the hub, each measured on the real
processes as the hub's growth in memory (RSS) and its CPU, or whether others still get served.

- `heartbeat_flood`: 8 connections without a token, each sending 32 MiB of chunked heartbeat.
- `node_flood`: a node whose Ollama answers a streamed job with one endless line (the job is cut at 16 MiB).
- `slow_readers`: 40 readers of one async job's 7 MB answer, each reading 4 KiB and then nothing.
- `wide_json`: 30 MB of JSON with 1.5 million fields, and how long the hub then takes to answer /healthz.
- `async_flood`: one key sends 520 async jobs at once: how many it got in, and whether another key's live
  job still runs.
"""

from __future__ import annotations

import asyncio
import io
import json
import time

import aiohttp
import psutil

from bench.fleet import Fleet
from bench.scenarios import Size, cpu_seconds
from ollama_connector.sim.processes import ProcessFleet

JOB = {"model": "llama3", "prompt": "x", "stream": False, "options": {"num_predict": 1}}


def rss_mb(process: psutil.Process) -> float:
    return round(process.memory_info().rss / 1e6, 1)


async def _heartbeat_flood(hub: str, process: psutil.Process) -> dict:
    before = rss_mb(process)

    async def flood(session: aiohttp.ClientSession) -> int:
        async def body():
            for _ in range(512):
                yield b"a" * 65536
                await asyncio.sleep(0)

        try:
            async with session.post(hub + "/nodes/heartbeat", data=body()) as r:
                return r.status
        except aiohttp.ClientError:
            return 0  # the hub closed it early: what a bounded hub does

    async with aiohttp.ClientSession() as session:
        statuses = await asyncio.gather(*(flood(session) for _ in range(8)))
    return {"statuses": sorted(set(statuses)), "hub_grew_mb": round(rss_mb(process) - before, 1)}


async def _node_flood(hub: str, process: psutil.Process, headers: dict[str, str]) -> dict:
    before, cpu = rss_mb(process), cpu_seconds(process)
    async with aiohttp.ClientSession(headers=headers) as session:
        start = time.monotonic()
        async with session.post(hub + "/api/generate", json={**JOB, "stream": True}) as r:
            said = (await r.read())[:200].decode(errors="replace")
            status = r.status
    return {
        "status": status,
        "said": said,
        "seconds": round(time.monotonic() - start, 2),
        "hub_cpu_s": round(cpu_seconds(process) - cpu, 2),
        "hub_grew_mb": round(rss_mb(process) - before, 1),
    }


async def _slow_readers(hub: str, process: psutil.Process, headers: dict[str, str], scale: float) -> dict:
    async with aiohttp.ClientSession(headers=headers) as session:
        body = {**JOB, "async": True, "options": {"num_predict": int(80_000 * scale)}}
        async with session.post(hub + "/jobs", json=body) as r:
            job_id = (await r.json())["job_id"]
        while True:
            async with session.get(f"{hub}/jobs/{job_id}") as r:
                if (await r.json())["status"] not in ("queued", "running"):
                    break
            await asyncio.sleep(0.2)
        before, readers = rss_mb(process), []
        for _ in range(40):
            response = await session.get(f"{hub}/jobs/{job_id}/stream")
            await response.content.readexactly(4096)
            readers.append(response)
        await asyncio.sleep(1.0)
        grown = rss_mb(process) - before
        for response in readers:
            response.close()
    return {"readers": 40, "hub_grew_mb": round(grown, 1)}


async def _wide_json(hub: str, process: psutil.Process, headers: dict[str, str], scale: float) -> dict:
    fields = {f"f{n}": n for n in range(int(1_500_000 * scale))}
    wide = json.dumps({"model": "llama3", "prompt": "x", **fields}).encode()
    before, cpu = rss_mb(process), cpu_seconds(process)
    async with aiohttp.ClientSession(headers=headers) as session:
        post = asyncio.create_task(session.post(hub + "/api/generate", data=io.BytesIO(wide)))
        await asyncio.sleep(0.3)  # the body is on its way
        start = time.monotonic()
        async with session.get(hub + "/healthz") as r:
            await r.read()
        healthz = time.monotonic() - start
        async with await post as r:
            status = r.status
    return {
        "megabytes": round(len(wide) / 1e6, 1),
        "status": status,
        "healthz_meanwhile_s": round(healthz, 2),
        "hub_cpu_s": round(cpu_seconds(process) - cpu, 2),
        "hub_grew_mb": round(rss_mb(process) - before, 1),
    }


async def _async_flood(hub: str, keys: tuple[str, str], scale: float) -> dict:
    flooder, other = ({"Authorization": f"Bearer {key}"} for key in keys)
    async with aiohttp.ClientSession() as session:

        async def submit() -> int:
            body = {**JOB, "async": True, "options": {"num_predict": 200}}
            async with session.post(hub + "/jobs", json=body, headers=flooder) as r:
                return r.status

        statuses = await asyncio.gather(*(submit() for _ in range(max(4, int(520 * scale)))))
        start = time.monotonic()
        async with session.post(hub + "/jobs", json=JOB, headers=other) as r:
            other_status = r.status
        return {
            "accepted": statuses.count(202),
            "refused_429": statuses.count(429),
            "other_keys_live_job": other_status,
            "other_waited_s": round(time.monotonic() - start, 2),
        }


def hostile(size: Size) -> dict:
    keys = ("flooder-key-0123456789", "another-key-0123456789")
    user = {"Authorization": f"Bearer {keys[1]}"}
    with Fleet() as fleet:
        token = "t" * 32
        hub, process = fleet.hub(CLUSTER_TOKEN=token, MAX_ANSWER_BYTES=str(64 << 20))
        results = {
            "heartbeat_flood": asyncio.run(_heartbeat_flood(hub, process)),
            "wide_json": asyncio.run(_wide_json(hub, process, user, size.hostile_scale)),
        }
        try:
            flooding = fleet.sim_with("--tokens-per-second", "0", "--flood-rate", "1")
        except RuntimeError:  # an older simulator, for a run of an earlier commit side by side
            results["node_flood"] = {"skipped": "this simulator has no --flood-rate"}
        else:
            fleet.node(hub, flooding, "flooding", CLUSTER_TOKEN=token)
            results["node_flood"] = asyncio.run(_node_flood(hub, process, user))
    with Fleet() as fleet:
        hub, process = fleet.hub(API_KEYS=",".join(keys), MAX_ANSWER_BYTES=str(64 << 20))
        ProcessFleet.node(
            fleet, hub, fleet.sim(tokens_per_second=0), "n1", wait=False, OLLAMA_NUM_PARALLEL="256"
        )
        asyncio.run(_registered(hub, user, "n1"))
        results["slow_readers"] = asyncio.run(_slow_readers(hub, process, user, size.hostile_scale))
        results["async_flood"] = asyncio.run(_async_flood(hub, keys, size.hostile_scale))
    return results


async def _registered(hub: str, headers: dict[str, str], node_id: str) -> None:
    async with aiohttp.ClientSession(headers=headers) as session:
        for _ in range(200):
            async with session.get(f"{hub}/nodes/{node_id}") as r:
                if r.status == 200:
                    return
            await asyncio.sleep(0.05)
    raise RuntimeError(f"{node_id} did not register with {hub}")
