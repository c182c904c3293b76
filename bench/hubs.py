"""Two hubs behind the shipped front (systemd/haproxy-hubs.cfg), one PostgreSQL journal, three agents that
report to both: a steady load of streamed jobs and async jobs through the front, and one hub SIGKILLed mid-run
and started again.

What it counts: streamed jobs served whole, jobs the front retried on the other hub (they got no byte from the
dead one: served, the caller saw nothing), streams cut mid-answer by the death (and what their caller read),
async jobs accepted and how each ended (lost: accepted, then unknown or never ended), and from each simulator
the most requests its Ollama ever held at once against its slots (more would be a queue out of every hub's
sight), with the agents' node_full refusals.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
import signal
import time
from pathlib import Path

import aiohttp

from bench.fleet import Fleet
from ollama_connector.sim.postgres import Postgres, bin_dir
from ollama_connector.sim.processes import ProcessFleet, free_port, wait_http

CONFIG = Path(__file__).resolve().parent.parent / "systemd" / "haproxy-hubs.cfg"
SLOTS = 2  # OLLAMA_NUM_PARALLEL of each node
STREAMS = 4  # callers streaming one job after another
STREAM = {"model": "llama3", "prompt": "tell me a story", "stream": True, "options": {"num_predict": 30}}
ASYNC = {"model": "llama3", "prompt": "write a poem", "async": True, "options": {"num_predict": 60}}


def haproxy() -> str | None:
    return shutil.which("haproxy") or ("/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None)


def hubs(size) -> dict:
    binary = haproxy()
    if binary is None or bin_dir() is None:
        return {"skipped": "needs Debian's haproxy and postgresql (make bench installs them)"}
    postgres = Postgres().start()
    try:
        with Fleet() as fleet:
            return asyncio.run(_run(fleet, binary, postgres.database(), size.hubs_seconds))
    finally:
        postgres.stop()


async def _run(fleet: Fleet, binary: str, journal: str, seconds: float) -> dict:
    env = {"JOURNAL_URL": journal, "JOB_LEASE_SECONDS": "3"}
    (url1, first), (url2, _) = (ProcessFleet.hub(fleet, port, **env) for port in (free_port(), free_port()))
    urls = [url1, url2]
    options = ("--models", "llama3", "--tokens-per-second", "40", "--num-parallel", str(SLOTS))
    sims = [fleet.sim_with(*options) for _ in range(3)]
    beats = {"wait": False, "OLLAMA_NUM_PARALLEL": str(SLOTS), "HEARTBEAT_INTERVAL": "1"}
    agents = [fleet.node(",".join(urls), sim, f"n{i}", **beats)[0] for i, sim in enumerate(sims, 1)]
    for url in urls:
        for i in range(1, 4):
            wait_http(f"{url}/nodes/n{i}", what=f"n{i} registered with {url}")
    front = _front(fleet, binary, urls)
    outcomes: list[tuple[float, str, str]] = []
    accepted: list[str] = []
    stop_at = time.monotonic() + seconds
    async with aiohttp.ClientSession() as http:
        # About the fleet's capacity: 4 streams at a time and an async job a second fill its 6 slots.
        clients = [_streams(http, front, stop_at, outcomes) for _ in range(STREAMS)]
        clients.append(_async_jobs(http, front, stop_at, accepted))
        clients.append(_kill_and_restart(http, fleet, (url1, first), env, seconds, accepted))
        began = time.monotonic()
        results = await asyncio.gather(*clients)
        killed_at, back_at = results[-1]
        endings = await _async_endings(http, front, accepted)
        held = [await _json(http, f"{sim}/_sim/stats") for sim in sims]
        refusals = [await _refusals(http, agent) for agent in agents]
    kinds = {kind: [said for _, k, said in outcomes if k == kind] for kind in ("served", "cut", "refused")}
    while_down = [k for at, k, _ in outcomes if killed_at <= at - began < back_at]
    return {
        "seconds": seconds,
        "hub_killed_at_s": round(killed_at, 1),
        "hub_back_at_s": round(back_at, 1),
        "streams_served": len(kinds["served"]),
        "streams_cut": len(kinds["cut"]),
        "stream_cut_errors": sorted(set(kinds["cut"]))[:3],
        "streams_refused": len(kinds["refused"]),
        "refused_errors": sorted(set(kinds["refused"]))[:3],
        "streams_begun_while_a_hub_was_down": len(while_down),
        "of_those_served": while_down.count("served"),
        "async_accepted": len(accepted),
        "async_done": endings.count("done"),
        "async_restarted": endings.count("restarted"),
        "async_lost": len(accepted) - endings.count("done") - endings.count("restarted"),
        "slots_per_node": SLOTS,
        "most_held_per_node": [stats["most_held"] for stats in held],
        "most_running_per_node": [stats["most_running"] for stats in held],
        "node_full_refusals": refusals,
        "node_full_refusals_per_job": round(sum(refusals) / max(1, len(outcomes) + len(accepted)), 2),
    }


def _front(fleet: Fleet, binary: str, urls: list[str]) -> str:
    port = free_port()
    config = CONFIG.read_text().replace("bind :8080", f"bind 127.0.0.1:{port}")
    config = config.replace("hub1.lan:8000", urls[0].removeprefix("http://"))
    config = config.replace("hub2.lan:8000", urls[1].removeprefix("http://"))
    path = fleet.tmp / "haproxy.cfg"
    path.write_text(config)
    fleet.spawn([binary, "-db", "-f", str(path)])
    front = f"http://127.0.0.1:{port}"
    wait_http(front + "/healthz", what="haproxy")
    return front


async def _streams(http: aiohttp.ClientSession, front: str, stop_at: float, outcomes: list) -> None:
    """Streamed jobs one after another: (when each began, served/cut/refused, what the caller read)."""
    while time.monotonic() < stop_at:
        got, began = b"", time.monotonic()
        try:
            async with http.post(front + "/api/generate", json=STREAM) as r:
                if r.status != 200:
                    outcomes.append((began, "refused", f"HTTP {r.status}"))
                    continue
                async for chunk in r.content.iter_any():
                    got += chunk
            last = json.loads(got.splitlines()[-1])
            kind = "served" if last.get("done") else "cut"
            outcomes.append((began, kind, last.get("error", "no final line")))
        except (aiohttp.ClientError, ValueError, IndexError) as exc:
            said = re.sub(r"\d+", "N", f"{type(exc).__name__}: {exc}")[:120]
            outcomes.append((began, "cut" if got else "refused", said))


async def _async_jobs(http: aiohttp.ClientSession, front: str, stop_at: float, accepted: list[str]) -> None:
    while time.monotonic() < stop_at:
        with contextlib.suppress(aiohttp.ClientError):
            async with http.post(front + "/jobs", json=ASYNC) as r:
                if r.status == 202:
                    accepted.append((await r.json())["job_id"])
        await asyncio.sleep(1.0)


async def _kill_and_restart(
    http: aiohttp.ClientSession, fleet: Fleet, hub: tuple, env: dict, seconds: float, accepted: list[str]
) -> tuple[float, float]:
    """SIGKILL the first hub a third of the way in, with an async job of its own running (whatever the front
    gave it), and start it again on its port a fifth later: (when it died, when it answered again)."""
    (url, first), started = hub, time.monotonic()
    await asyncio.sleep(seconds * 0.3)
    async with http.post(url + "/jobs", json=ASYNC) as r:
        accepted.append(job_id := (await r.json())["job_id"])
    for _ in range(200):  # another process: asked over HTTP, 10 s at most
        if (await _json(http, f"{url}/jobs/{job_id}"))["status"] == "running":
            break
        await asyncio.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    killed_at = time.monotonic() - started
    await asyncio.to_thread(first.wait, 10)
    await asyncio.sleep(seconds * 0.2)
    port = int(url.rsplit(":", 1)[1])
    await asyncio.to_thread(ProcessFleet.hub, fleet, port, **env)  # the same hub, back on its port
    return killed_at, time.monotonic() - started


async def _async_endings(http: aiohttp.ClientSession, front: str, accepted: list[str]) -> list[str]:
    """How each accepted async job ended (waited for, 90 s at most): done, restarted (done after a takeover),
    or how else."""
    endings = []
    deadline = time.monotonic() + 90
    for job_id in accepted:
        record: dict = {}
        while time.monotonic() < deadline:
            with contextlib.suppress(aiohttp.ClientError, ValueError):
                record = await _json(http, f"{front}/jobs/{job_id}")
                if record.get("status") not in ("queued", "running"):
                    break
            await asyncio.sleep(0.2)
        if record.get("status") == "done":
            async with http.get(f"{front}/jobs/{job_id}/stream") as r:
                restarted = b'"restarted"' in await r.read()
            endings.append("restarted" if restarted else "done")
        else:
            endings.append(str(record.get("status", "unknown")))
    return endings


async def _json(http: aiohttp.ClientSession, url: str) -> dict:
    async with http.get(url) as r:
        return await r.json()


async def _refusals(http: aiohttp.ClientSession, agent: str) -> int:
    async with http.get(agent + "/metrics") as r:
        text = await r.text()
    found = re.search(r"^ollama_node_jobs_refused_full_total\{[^}]*\} (\S+)$", text, re.M)
    return int(float(found.group(1))) if found else 0
