"""The node keeps its own slots: with several hubs routing to one node, only its agent sees every job, so it
admits at most OLLAMA_NUM_PARALLEL jobs per model (and OLLAMA_MAX_LOADED_MODELS busy models), refuses the rest
with `node_full`, and says what it has in flight with every answer and heartbeat. A hub takes a refusal as
"another node, or wait in my queue": never a failure, never counted against the node."""

from __future__ import annotations

import asyncio
import json

import aiohttp

from ollama_connector.shared.agent_contract import IN_FLIGHT_HEADER, REASON_HEADER
from tests.conftest import wait_until

SLOW = {"model": "llama3", "prompt": "x", "stream": True, "options": {"num_predict": 8}}


async def _run(http: aiohttp.ClientSession, url: str, body: dict) -> tuple[int, str, bytes]:
    async with http.post(url, json=body) as r:
        return r.status, r.headers.get("X-Node-Id", ""), await r.read()


async def test_the_agent_admits_a_model_up_to_its_slots_and_names_a_refusal(fleet, http):
    sim = await fleet.sim(tokens_per_second=10, num_parallel=1, max_loaded_models=1)
    node = await fleet.node("http://127.0.0.1:9", sim, "n1", wait=False, OLLAMA_MAX_LOADED_MODELS="1")
    first = asyncio.ensure_future(_run(http, node.url + "/api/generate", SLOW))
    await wait_until(lambda: node.state.slots.in_flight, what="the first job to take the slot")
    async with http.post(node.url + "/api/generate", json=SLOW) as r:
        assert r.status == 503 and r.headers[REASON_HEADER] == "node_full"
        assert r.headers["Retry-After"] == "1"
        said = (await r.json())["error"]  # Ollama's dialect, on Ollama's route
        assert "all 1 slot(s) of llama3:latest on this node are busy (OLLAMA_NUM_PARALLEL)" in said
    other = {**SLOW, "model": "mistral"}  # another model: it could load only by unloading a busy one
    async with http.post(node.url + "/v1/chat/completions", json={**other, "messages": []}) as r:
        assert r.status == 503 and r.headers[REASON_HEADER] == "node_full"
        assert "OLLAMA_MAX_LOADED_MODELS=1" in (await r.json())["error"]["message"]  # OpenAI's dialect
    status, _, _ = await first
    assert status == 200 and node.state.slots.in_flight == {} and node.state.slots.refused == 2
    assert sim.scheduler.stats.most_held == 1  # Ollama never held a job it could not run at once


async def test_two_hubs_never_put_more_on_a_node_than_its_slots(fleet, http):
    first, second = await fleet.hub(), await fleet.hub()
    sim = await fleet.sim(tokens_per_second=40, num_parallel=2)
    hubs = f"{first.url},{second.url}"
    node = await fleet.node(hubs, sim, "n1", wait=False, OLLAMA_NUM_PARALLEL="2", HEARTBEAT_INTERVAL="5")
    for hub in (first, second):
        await wait_until(lambda hub=hub: hub.registry.get("n1") is not None, what="both hubs to know it")
    jobs = [_run(http, hub.url + "/api/generate", SLOW) for hub in (first, second) for _ in range(6)]
    answers = await asyncio.gather(*jobs)
    assert [status for status, _, _ in answers] == [200] * 12, answers
    assert all(body.rstrip().endswith(b"}") and b'"done":true' in body for _, _, body in answers)
    assert sim.scheduler.stats.most_held <= 2  # never more than its slots inside Ollama
    assert node.state.slots.refused > 0  # each hub alone thought it had both slots
    refusals = 0
    for hub in (first, second):  # refusals are no failures, and the hubs count them
        assert hub.registry.get("n1").failure_count == 0
        async with http.get(hub.url + "/metrics") as r:
            for line in (await r.text()).splitlines():
                if line.startswith('ollama_hub_failovers_total{reason="node_full"}'):
                    refusals += int(float(line.split()[-1]))
    assert refusals == node.state.slots.refused


async def test_an_answer_tells_the_hub_what_other_hubs_run_there(fleet, http):
    hub = await fleet.hub()
    sim = await fleet.sim(tokens_per_second=10, num_parallel=4)
    node = await fleet.node(hub, sim, "n1", OLLAMA_NUM_PARALLEL="4", HEARTBEAT_INTERVAL="30")
    # Another hub's job, straight to the agent: this hub does not know of it.
    elsewhere = asyncio.ensure_future(_run(http, node.url + "/api/generate", SLOW))
    await wait_until(lambda: node.state.slots.in_flight, what="the other hub's job to run")
    async with http.post(hub.url + "/api/generate", json={**SLOW, "stream": False}) as r:
        assert r.status == 200 and json.loads(await r.read())["done"]
    record = hub.registry.get("n1")
    assert record.elsewhere == {"registry.ollama.ai/library/llama3:latest": 1}  # from the answer's header
    async with http.get(hub.url + "/nodes/n1") as r:
        view = await r.json()
    assert view["elsewhere"] == {"llama3:latest": 1} and view["slots"]["used"] == 1
    await elsewhere


async def test_least_busy_waits_for_a_full_node_rather_than_failing(fleet, http):
    hub = await fleet.hub(ROUTING_POLICY="least-busy")
    sim = await fleet.sim(tokens_per_second=40, num_parallel=1)
    node = await fleet.node(hub, sim, "n1", OLLAMA_NUM_PARALLEL="1")
    answers = await asyncio.gather(*(_run(http, hub.url + "/api/generate", SLOW) for _ in range(3)))
    assert [status for status, _, _ in answers] == [200] * 3
    assert node.state.slots.refused > 0 and sim.scheduler.stats.most_held == 1
    assert hub.registry.get("n1").failure_count == 0


async def test_the_agent_answers_its_in_flight_with_the_proof(fleet, http):
    hub = await fleet.hub()
    node = await fleet.node(hub, await fleet.sim(), "n1")
    headers = {"X-Hub-Challenge": "c1"}
    async with http.post(node.url + "/api/generate", json=SLOW, headers=headers) as r:  # counted as it starts
        assert r.status == 200 and json.loads(r.headers[IN_FLIGHT_HEADER]) == {"llama3:latest": 1}
        await r.read()
    async with http.post(node.url + "/api/generate", json={**SLOW, "stream": False}, headers=headers) as r:
        assert json.loads(r.headers[IN_FLIGHT_HEADER]) == {}  # a whole answer: the job is over as it goes
    async with http.post(node.url + "/api/generate", json={**SLOW, "stream": False}) as r:
        assert IN_FLIGHT_HEADER not in r.headers  # only to a caller that asked for the proof
