"""Graceful stops: SIGTERM to a node or to the hub lets the streams in flight finish."""

from __future__ import annotations

import json
import signal

from ollama_connector.sim.processes import agent_env
from tests.conftest import free_port, wait_until


async def start_fleet(processes, hub_port: int) -> dict:
    hub_url = f"http://127.0.0.1:{hub_port}"
    processes.start("ollama-hubd", HUB_HOST="127.0.0.1", HUB_PORT=str(hub_port))
    nodes = {}
    # Only node "a" has the model "slow", so a job for it lands there.
    for name, models in (("a", "llama3,slow"), ("b", "llama3")):
        sim_port = free_port()
        processes.start(
            "ollama-sim",
            "--port",
            str(sim_port),
            "--tokens",
            "24",
            "--tokens-per-second",
            "20",
            "--models",
            models,
        )
        nodes[name] = processes.start(
            "ollama-noded",
            **agent_env(hub_url, f"http://127.0.0.1:{sim_port}", name, free_port()),
        )
    return nodes


async def node_status(http, hub_url: str) -> dict[str, str]:
    try:
        async with http.get(hub_url + "/nodes") as r:
            return {n["node_id"]: n["status"] for n in await r.json() if n["models"]}
    except OSError:
        return {}


async def test_sigterm_to_a_node_finishes_its_stream_and_sends_new_jobs_elsewhere(processes, http):
    hub_port = free_port()
    hub_url = f"http://127.0.0.1:{hub_port}"
    nodes = await start_fleet(processes, hub_port)

    async def both_online() -> bool:
        return await node_status(http, hub_url) == {"a": "online", "b": "online"}

    await wait_until(both_online, within=30, what="both nodes online")
    long_job = {"model": "slow", "prompt": "x", "options": {"num_predict": 40}}  # two seconds at 20 tokens/s
    async with http.post(hub_url + "/jobs", json=long_job) as stream:
        assert stream.headers["X-Node-Id"] == "a"
        first = json.loads(await stream.content.readline())
        nodes["a"].send_signal(signal.SIGTERM)

        async def a_draining() -> bool:
            return (await node_status(http, hub_url)).get("a") == "draining"

        await wait_until(a_draining, what="the hub to show node a draining")
        for _ in range(3):
            async with http.post(
                hub_url + "/jobs", json={"model": "llama3", "prompt": "x", "stream": False}
            ) as r:
                assert r.status == 200 and r.headers["X-Node-Id"] == "b"
        rest = [json.loads(line) for line in (await stream.read()).splitlines()]
    assert first["done"] is False and rest[-1]["done"] is True and len(rest) == 40
    assert not any("error" in line for line in rest)
    assert nodes["a"].wait(timeout=30) == 0


async def test_sigterm_to_the_hub_lets_streams_in_flight_finish(processes, http):
    hub_port = free_port()
    hub_url = f"http://127.0.0.1:{hub_port}"
    await start_fleet(processes, hub_port)

    async def ready() -> bool:
        return len(await node_status(http, hub_url)) == 2

    await wait_until(ready, within=30, what="both nodes registered")
    hub = processes.procs[0]
    async with http.post(
        hub_url + "/jobs", json={"model": "slow", "prompt": "x", "options": {"num_predict": 30}}
    ) as r:
        await r.content.readline()
        hub.send_signal(signal.SIGTERM)

        async def refusing() -> bool:
            return not await node_status(http, hub_url)

        await wait_until(refusing, what="the hub to stop taking requests")
        rest = [json.loads(line) for line in (await r.read()).splitlines()]
    assert rest[-1]["done"] is True and len(rest) == 30
    assert hub.wait(timeout=30) == 0
