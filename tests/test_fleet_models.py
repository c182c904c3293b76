"""Managing models across the fleet through the hub: pull, delete, copy and create on many nodes at once, with
the official `ollama` client and raw HTTP, against simulators that pull with progress and fail on demand."""

from __future__ import annotations

import asyncio
import contextlib
import json

import ollama
import pytest

from ollama_connector.shared.modelnames import canonical
from ollama_connector.sim.keys import ENGINE
from tests.conftest import wait_until


@pytest.fixture
async def three(fleet):
    """A hub and three nodes, each with its own simulator that has llama3 only."""
    hub = await fleet.hub()
    sims = [await fleet.sim(models=["llama3"]) for _ in range(3)]
    for n, sim in enumerate(sims):
        await fleet.node(hub, sim, f"n{n}")
    return hub, sims


def has(hub, node_id: str, model: str) -> bool:
    return canonical(model) in hub.registry.get(node_id).model_keys


async def test_a_pull_to_three_nodes_reports_each_outcome(three, http):
    hub, sims = three
    for sim in sims:
        sim.behaviour.pull_seconds = 0.2
    sims[2].behaviour.pull_fail_rate = 1.0  # n2's download breaks half-way
    async with http.post(hub.url + "/api/pull", json={"model": "phi3"}) as r:
        assert r.status == 200 and r.content_type == "application/x-ndjson"
        lines = [json.loads(line) async for line in r.content]
    progress = [line for line in lines[:-1] if "digest" in line]
    assert {line["node_id"] for line in progress} == {"n0", "n1", "n2"}  # all three pulled at once
    assert all(0 < line["completed"] <= line["total"] for line in progress)
    ends = {line["node_id"]: line for line in lines if line.get("model") == "phi3"}
    assert ends["n0"]["status"] == ends["n1"]["status"] == "success"
    assert ends["n2"]["status"] == "failed" and "max retries exceeded" in ends["n2"]["reason"]
    summary = lines[-1]
    assert (
        summary["error"].startswith("failed on 1 of 3 node(s): n2: max retries")
        and "done on n0, n1" in summary["error"]
    )
    assert summary["nodes"]["n0"] == {"status": "success"}
    # The nodes that have it now tell the hub at once; the one whose pull failed does not list it.
    await wait_until(lambda: has(hub, "n0", "phi3") and has(hub, "n1", "phi3"), what="the new model listed")
    assert not has(hub, "n2", "phi3")


async def test_the_official_client_manages_the_fleet(three):
    hub, _ = three
    async with ollama.AsyncClient(host=hub.url) as client:
        await manage(hub, client)


async def manage(hub, client: ollama.AsyncClient) -> None:
    # Each "success" is said once the hub's registry knows the change: no waiting for a heartbeat.
    assert (await client.pull("qwen2.5:0.5b")).status == "success"
    assert all(has(hub, f"n{n}", "qwen2.5:0.5b") for n in range(3))
    assert (await client.copy("llama3", "mine")).status == "success"
    created = await client.create(model="pirate", from_="llama3", system="Talk like a pirate.")
    assert created.status == "success"
    assert all(has(hub, f"n{n}", "pirate") and has(hub, f"n{n}", "mine") for n in range(3))
    assert (await client.delete("mine")).status == "success"
    assert not any(has(hub, f"n{n}", "mine") for n in range(3))
    for call, message in (
        (client.delete("never-pulled"), "model 'never-pulled' not found"),
        (client.copy("never-pulled", "x"), 'model "never-pulled" not found'),
        (client.create(model="x", from_="never-pulled"), "model 'never-pulled' not found"),
    ):
        with pytest.raises(ollama.ResponseError) as raised:
            await call
        assert raised.value.status_code == 404 and raised.value.error == message


async def test_a_streamed_pull_then_a_copy_finds_the_model_every_time(three):
    hub, _ = three
    async with ollama.AsyncClient(host=hub.url) as client:
        for n in range(20):
            async for progress in await client.pull(f"tiny{n}:1b", stream=True):
                last = progress
            assert last.status == "success"
            assert (await client.copy(f"tiny{n}:1b", f"copy{n}")).status == "success"
            assert (await client.delete(f"copy{n}")).status == "success"
            with pytest.raises(ollama.ResponseError) as raised:  # not found where it was deleted
                await client.generate(f"copy{n}", "x")
            assert raised.value.status_code == 404


async def test_named_nodes_and_a_pull_shared_by_two_callers(three, http):
    hub, sims = three
    sims[0].behaviour.pull_seconds = 1.0
    body = {"model": "phi3", "stream": False}
    async with http.post(hub.url + "/api/pull", json={**body, "nodes": ["n1"]}) as r:
        assert r.status == 200 and await r.json() == {
            "status": "success",
            "nodes": {"n1": {"status": "success"}},
        }
    assert [sim.stats.pulls for sim in sims] == [0, 1, 0]
    async with http.post(hub.url + "/api/pull", json=body, headers={"X-Nodes": "n1, nx"}) as r:
        assert r.status == 400 and (await r.json())["error"] == "no such node: nx"

    # Two callers pull the same model on n0; the first hangs up; the one download goes on for the second.
    first = asyncio.create_task(
        http.post(hub.url + "/api/pull", json={"model": "mistral"}, headers={"X-Nodes": "n0"})
    )
    await wait_until(lambda: sims[0].stats.pulls == 1, what="the pull to start")
    async with http.get(hub.url + "/stats") as r:
        (transfer,) = (await r.json())["transfers"]
    assert transfer["node_id"] == "n0" and transfer["model"] == "mistral" and transfer["kind"] == "pull"
    first.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await first
    async with http.post(
        hub.url + "/api/pull", json={"model": "mistral", "stream": False}, headers={"X-Nodes": "n0"}
    ) as r:
        assert r.status == 200 and (await r.json())["status"] == "success"
    assert sims[0].stats.pulls == 1  # one download for both callers
    await wait_until(lambda: has(hub, "n0", "mistral"), what="the model on n0")


async def test_an_offline_node_cannot_be_named(three, http):
    hub, _ = three
    hub.registry.get("n2").last_seen -= 1000
    async with http.post(hub.url + "/api/pull", json={"model": "phi3", "nodes": ["n2"]}) as r:
        assert r.status == 409 and (await r.json())["error"] == "not online: n2 (offline)"
    async with http.post(hub.url + "/api/pull", json={"model": "phi3", "nodes": "n2"}) as r:
        assert r.status == 400 and "nodes must be a non-empty list" in (await r.json())["error"]


async def test_a_node_without_room_says_so_instead_of_starting(fleet, http, tmp_path):
    hub = await fleet.hub()
    big = await fleet.sim(models=["llama3=50000GB"])  # the fleet knows the model's size from here
    small = await fleet.sim(models=["mistral"])
    await fleet.node(hub, big, "big")
    await fleet.node(hub, small, "small", OLLAMA_MODELS=str(tmp_path))  # this disk: less than 50 TB free
    assert 0 < hub.registry.get("small").beat.disk_free_bytes < 50e12
    async with http.post(hub.url + "/api/pull", json={"model": "llama3", "stream": False}) as r:
        answer = await r.json()
    assert r.status == 502 and answer["nodes"]["big"] == {"status": "success"}  # it had it already
    assert answer["nodes"]["small"]["reason"].startswith("no room: the model takes 50000.0 GB")
    assert small.stats.pulls == 0  # never started


async def test_a_model_of_unknown_size_stops_once_its_manifest_says_it_does_not_fit(fleet, http, tmp_path):
    hub = await fleet.hub()
    sim = await fleet.sim(models=["mistral"], pull_seconds=5)  # long enough that only a stop can end it
    await fleet.node(hub, sim, "small", OLLAMA_MODELS=str(tmp_path))
    async with http.post(hub.url + "/api/pull", json={"model": "giant:9000b", "stream": False}) as r:
        answer = await r.json()  # nobody in the fleet has it: its size is known only from its layers
    assert r.status == 502 and answer["nodes"]["small"]["reason"].startswith(
        "no room: the model takes 5400.0 GB"
    )
    assert sim.stats.pulls == 1 and not any("giant" in m.name for m in sim.app[ENGINE].catalog.all())


async def test_fleet_models_keeps_each_model_on_its_count_of_nodes(fleet, http):
    hub = await fleet.hub(FLEET_MODELS="phi3=all,mistral=2,qwen2=5")
    sims = [await fleet.sim(models=["llama3", "mistral"] if n == 0 else ["llama3"]) for n in range(3)]
    for n, sim in enumerate(sims):
        await fleet.node(hub, sim, f"n{n}")
    await wait_until(
        lambda: (
            all(has(hub, f"n{n}", "phi3") and has(hub, f"n{n}", "qwen2") for n in range(3))
            and sum(has(hub, f"n{n}", "mistral") for n in range(3)) == 2
        ),
        within=20,
        what="phi3 and qwen2 everywhere, mistral on two nodes",
    )
    assert sims[0].stats.pulls == 2  # phi3 and qwen2: n0 had mistral already, and it counted
    joined = await fleet.sim(models=["llama3"])
    await fleet.node(hub, joined, "n3")
    await wait_until(lambda: has(hub, "n3", "phi3"), within=20, what="phi3 on the node that joined")

    async def reported() -> bool:
        async with http.get(hub.url + "/stats") as r:
            state = (await r.json())["fleet_models"]
        return (
            state["qwen2"]["unplaced"] == "on 4 of 5 node(s): no other node"
            and state["mistral"]["unplaced"] is None
        )

    await wait_until(reported, what="what could not be placed, in /stats")
    assert all(has(hub, f"n{n}", "llama3") for n in range(4))  # a model it was not asked to manage stays
    assert sum(has(hub, f"n{n}", "mistral") for n in range(4)) == 2  # and nothing is pulled past the count
