"""An agent that reports to several hubs (SERVER_URL, comma-separated): each hub on its own schedule, so one
that is down or hung never delays the others, and jobs from any of them."""

from __future__ import annotations

import asyncio
import time

from tests.conftest import wait_until

JOB = {"model": "llama3", "prompt": "x", "stream": False, "options": {"num_predict": 2}}


async def test_an_agent_registers_with_every_hub_and_serves_each(fleet, http):
    first, second = await fleet.hub(), await fleet.hub()
    sim = await fleet.sim()
    await fleet.node(f"{first.url},{second.url}", sim, "shared", wait=False, HEARTBEAT_INTERVAL="0.5")
    for hub in (first, second):
        await wait_until(lambda hub=hub: hub.registry.get("shared") is not None, what="both hubs to know it")
        async with http.post(hub.url + "/api/generate", json=JOB) as r:
            assert r.status == 200 and r.headers["X-Node-Id"] == "shared", await r.text()
    await first.stop()  # one hub gone: the other keeps hearing from the node
    seen = second.registry.get("shared").last_seen
    await wait_until(lambda: second.registry.get("shared").last_seen > seen + 1.0, what="beats to go on")
    async with http.post(second.url + "/api/generate", json=JOB) as r:
        assert r.status == 200


async def test_a_hung_hub_does_not_delay_the_others(fleet, http):
    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # takes the heartbeat and says nothing, until the agent hangs up
        writer.close()

    hung = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    hung_url = f"http://127.0.0.1:{hung.sockets[0].getsockname()[1]}"
    try:
        hub = await fleet.hub()
        await fleet.node(
            f"{hung_url},{hub.url}", await fleet.sim(), "n1", wait=False, HEARTBEAT_INTERVAL="0.3"
        )
        await wait_until(lambda: hub.registry.get("n1") is not None, what="the live hub to know the node")
        started, seen = time.monotonic(), hub.registry.get("n1").last_seen
        await wait_until(lambda: hub.registry.get("n1").last_seen > seen + 1.0, what="beats every 0.3 s")
        assert time.monotonic() - started < 3.0  # not held up by the hub that never answers
    finally:
        hung.close()
        await hung.wait_closed()
