"""Replicas that follow demand: while jobs wait at the hub, a copy of their model loads ahead of need on a
node that can hold it (hubd.routing.replicas), and the waiting jobs use it."""

from __future__ import annotations

import asyncio

from ollama_connector.hubd.routing.keys import PLACEMENT
from ollama_connector.sim.keys import ENGINE
from tests.conftest import wait_until


async def test_a_burst_that_outgrows_the_loaded_slots_loads_a_copy_ahead_of_need(fleet, http):
    hub = await fleet.hub()
    loaded = await fleet.sim(tokens_per_second=100, load_delay=0.2)
    spare = await fleet.sim(tokens_per_second=100, load_delay=0.2)
    async with http.post(loaded.url + "/api/generate", json={"model": "llama3"}) as r:
        assert r.status == 200  # loaded there before the burst; the spare node has it on disk only
    await fleet.node(hub, loaded, "loaded")
    await fleet.node(hub, spare, "spare")
    job = {
        "model": "llama3",
        "prompt": "x",
        "stream": False,
        "options": {"num_predict": 100},
    }  # a second each

    async def send() -> str:
        async with http.post(hub.url + "/api/generate", json=job) as r:
            assert r.status == 200, await r.text()
            return r.headers["X-Node-Id"]

    served = await asyncio.gather(*(send() for _ in range(8)))
    # One slot for eight jobs of a second: the spare node got a copy while they waited, and took jobs.
    preloads = [r for r in spare.app[ENGINE].recent if r["route"] == "generate" and not r.get("prompt")]
    assert len(preloads) == 1 and preloads[0]["model"] == "llama3:latest", list(spare.app[ENGINE].recent)
    async with http.get(hub.url + "/stats") as r:
        assert (await r.json())["queue"]["copies_loaded_ahead"] == 1
    assert served.count("spare") >= 2 and spare.scheduler.stats.loads == 1, served
    await wait_until(lambda: not hub.app[PLACEMENT].replicas._tasks, what="no load left running")


async def test_a_model_that_keeps_up_gets_no_copy(fleet, http):
    hub = await fleet.hub()
    loaded = await fleet.sim(tokens_per_second=0, num_parallel=4)
    spare = await fleet.sim(tokens_per_second=0)
    async with http.post(loaded.url + "/api/generate", json={"model": "llama3"}) as r:
        assert r.status == 200
    await fleet.node(hub, loaded, "loaded", OLLAMA_NUM_PARALLEL="4")
    await fleet.node(hub, spare, "spare")
    job = {"model": "llama3", "prompt": "x", "stream": False, "options": {"num_predict": 1}}
    for _ in range(3):
        results = await asyncio.gather(*(http.post(hub.url + "/api/generate", json=job) for _ in range(4)))
        for r in results:
            assert r.status == 200
            r.release()
    assert hub.app[PLACEMENT].replicas.loaded == 0 and spare.scheduler.stats.loads == 0
