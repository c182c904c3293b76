"""ollama-sim schedules as Ollama does (reference §8): each rule on a real socket."""

from __future__ import annotations

import asyncio
import json

from tests.conftest import wait_until

BUSY = "server busy, please try again.  maximum pending requests exceeded"


async def sim_stats(http, sim) -> dict:
    async with http.get(sim.url + "/_sim/stats") as r:
        return await r.json()


async def loaded(http, sim) -> list[dict]:
    async with http.get(sim.url + "/api/ps") as r:
        return (await r.json())["models"]


async def generate(http, sim, model: str, tokens: int = 1, **extra) -> dict:
    body = {"model": model, "prompt": "x", "stream": False, "options": {"num_predict": tokens}, **extra}
    async with http.post(sim.url + "/api/generate", json=body) as r:
        return {"status": r.status, **(await r.json())}


async def test_a_loaded_model_serves_num_parallel_requests_at_once_and_queues_the_rest(fleet, http):
    for parallel in (1, 2):
        sim = await fleet.sim(models=["llama3"], tokens_per_second=40, num_parallel=parallel)
        await generate(http, sim, "llama3")  # loaded
        body = {"model": "llama3", "prompt": "x", "options": {"num_predict": 8}}
        async with http.post(sim.url + "/api/generate", json=body) as first:
            await first.content.readline()
            second = asyncio.create_task(generate(http, sim, "llama3", 1))
            await wait_until(lambda s=sim: s.stats.in_flight == 2, what="the second request to arrive")
            if parallel == 1:  # the one slot is taken: the second waits for it, inside "Ollama"
                assert sim.scheduler.runners["llama3:latest"].slots.locked() and not second.done()
            else:  # a second slot: it runs beside the first, and is done before it
                assert (await second)["status"] == 200 and not first.content.at_eof()
            await first.read()
        assert (await second)["status"] == 200


async def test_past_max_loaded_models_the_idle_model_is_unloaded(fleet, http):
    sim = await fleet.sim(models=["a:1b", "b:1b"], max_loaded_models=1)
    await generate(http, sim, "a:1b")
    assert [m["name"] for m in await loaded(http, sim)] == ["a:1b"]
    await generate(http, sim, "b:1b")
    assert [m["name"] for m in await loaded(http, sim)] == ["b:1b"]
    stats = await sim_stats(http, sim)
    assert (stats["loads"], stats["unloads"]) == (2, 1)


async def test_a_load_waits_for_a_busy_model_and_blocks_the_loads_behind_it(fleet, http):
    sim = await fleet.sim(models=["a:1b", "b:1b", "c:1b"], max_loaded_models=1, tokens_per_second=40)
    body = {"model": "a:1b", "prompt": "x", "options": {"num_predict": 10}}
    async with http.post(sim.url + "/api/generate", json=body) as held:  # a is loaded, and busy
        await held.content.readline()
        b = asyncio.create_task(generate(http, sim, "b:1b"))
        c = asyncio.create_task(generate(http, sim, "c:1b"))
        await wait_until(lambda: sim.stats.in_flight == 3, what="b and c to arrive")
        assert (await sim_stats(http, sim))["queue_depth"] == 2  # b waits for a; c waits behind b
        assert (await generate(http, sim, "a:1b"))["status"] == 200  # a is loaded: straight in
        assert not b.done() and not c.done()
        await held.read()
    b_answer, c_answer = await b, await c
    assert b_answer["status"] == c_answer["status"] == 200
    assert c_answer["load_duration"] > b_answer["load_duration"] > 0  # c also waited for b's turn
    stats = await sim_stats(http, sim)
    assert (stats["loads"], stats["unloads"], stats["queue_depth"]) == (3, 2, 0)


async def test_a_full_pending_queue_answers_ollamas_503(fleet, http):
    sim = await fleet.sim(
        models=["a:1b", "b:1b", "c:1b"], max_loaded_models=1, max_queue=1, tokens_per_second=40
    )
    body = {"model": "a:1b", "prompt": "x", "options": {"num_predict": 10}}
    async with http.post(sim.url + "/api/generate", json=body) as held:
        await held.content.readline()
        b = asyncio.create_task(generate(http, sim, "b:1b"))
        await wait_until(lambda: sim.scheduler.queue_depth == 1, what="b to wait")
        refused = await generate(http, sim, "c:1b")
        assert (refused["status"], refused["error"]) == (503, BUSY)
        async with http.post(sim.url + "/v1/chat/completions", json={"model": "c:1b", "messages": []}) as r:
            assert r.status == 503 and (await r.json())["error"]["message"] == BUSY
        await held.read()
    assert (await b)["status"] == 200
    assert (await sim_stats(http, sim))["busy"] == 2


async def test_vram_limits_what_is_loaded_at_once(fleet, http):
    sim = await fleet.sim(models=["a=6GB", "b=6GB", "small=1GB"], vram_gb=10)
    for model in ("a", "small", "b"):
        await generate(http, sim, model)
    ps = {m["name"]: m for m in await loaded(http, sim)}
    assert set(ps) == {"b:latest", "small:latest"}  # a made room for b; small fit beside either
    assert ps["b:latest"]["size_vram"] == ps["b:latest"]["size"] == 6_000_000_000


async def test_the_runner_to_unload_is_the_shortest_keep_alive_then_the_name(fleet, http):
    sim = await fleet.sim(models=["a:1b", "b:1b", "c:1b"], max_loaded_models=2)
    await generate(http, sim, "b:1b", keep_alive="1m")
    await generate(http, sim, "a:1b", keep_alive="10m")
    await generate(http, sim, "c:1b")  # b goes: its keep-alive is the shortest
    assert sorted(m["name"] for m in await loaded(http, sim)) == ["a:1b", "c:1b"]


async def test_keep_alive_unloads_an_idle_model(fleet, http):
    sim = await fleet.sim(models=["a:1b", "b:1b"])
    await generate(http, sim, "a:1b", keep_alive=0.2)
    await generate(http, sim, "b:1b", keep_alive=0)
    assert [m["name"] for m in await loaded(http, sim)] == ["a:1b"]  # b went as soon as it was idle

    async def empty() -> bool:
        return not await loaded(http, sim)

    await wait_until(empty, what="a to expire")
    async with http.post(sim.url + "/api/generate", json={"model": "a:1b", "keep_alive": -1}) as r:
        assert (await r.json())["done_reason"] == "load"
    [forever] = await loaded(http, sim)
    assert forever["expires_at"] > "2300"  # Go's MaxInt64: about 292 years out
    async with http.post(sim.url + "/api/generate", json={"model": "a:1b", "keep_alive": 0}) as r:
        assert (await r.json())["done_reason"] == "unload"
    assert await loaded(http, sim) == []


async def test_another_num_ctx_reloads_the_model(fleet, http):
    sim = await fleet.sim(models=["a:1b"])
    await generate(http, sim, "a:1b")
    assert (await loaded(http, sim))[0]["context_length"] == 4096
    await generate(http, sim, "a:1b", options={"num_predict": 1, "num_ctx": 8192})
    assert (await loaded(http, sim))[0]["context_length"] == 8192
    stats = await sim_stats(http, sim)
    assert (stats["loads"], stats["unloads"]) == (2, 1)


async def test_a_model_that_is_loading_is_not_in_ps_and_its_load_is_in_load_duration(fleet, http):
    sim = await fleet.sim(models=["a:1b"], load_delay=0.3)
    request = asyncio.create_task(generate(http, sim, "a:1b"))
    await wait_until(lambda: "a:1b" in sim.scheduler.loading, what="the load to start")
    assert await loaded(http, sim) == []
    answer = await request
    assert answer["load_duration"] >= 300_000_000
    assert json.dumps(await loaded(http, sim)).count('"a:1b"') == 2  # name and model
    again = await generate(http, sim, "a:1b")
    assert again["load_duration"] < 100_000_000  # loaded: no wait
