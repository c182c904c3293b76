"""Metadata routes are not jobs: /api/show takes no slot, waits in no queue, and changes nothing the hub
believes of what is loaded where."""

from __future__ import annotations

import asyncio

from tests.conftest import wait_until


async def test_show_answers_beside_a_busy_slot_and_leaves_the_hubs_view_alone(fleet, http):
    hub = await fleet.hub()
    await fleet.node(hub, await fleet.sim(models=["llama3", "mistral"], tokens_per_second=20), "n1")
    record = hub.registry.get("n1")
    long = {"model": "llama3", "prompt": "x", "stream": False, "options": {"num_predict": 60}}

    async def generate() -> int:
        async with http.post(hub.url + "/api/generate", json=long) as r:
            await r.read()
            return r.status

    running = asyncio.create_task(generate())
    await wait_until(lambda: any(record.running.values()), what="the generation to hold the slot")
    loaded_before, speeds_before = dict(record.loaded), set(record.speeds)
    async with http.post(hub.url + "/api/show", json={"model": "mistral"}) as r:
        shown = await r.json()
    assert r.status == 200 and r.headers["X-Node-Id"] == "n1" and "details" in shown
    assert not running.done()  # answered while the one slot was busy: it waited for nothing
    assert record.loaded == loaded_before and set(record.speeds) == speeds_before  # nothing "loaded"
    assert await running == 200
    async with http.get(hub.url + "/jobs") as r:
        assert [j["route"] for j in (await r.json())["jobs"]] == ["/api/generate"]  # show is no job
    async with http.post(hub.url + "/api/show", json={"model": "absent"}) as r:
        assert r.status == 404 and (await r.json()) == {"error": "model 'absent' not found"}
