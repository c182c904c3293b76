"""Routing on the prompt: the hub sends a prompt where its start is cached, and learns from what Ollama
reports when a node held less than it believed (hubd.routing.prefixes)."""

from __future__ import annotations

from ollama_connector.hubd.routing.prefixes import DEFAULT_REMEMBERED

SYSTEMS = [f"You are assistant number {n}. Answer with care. " * 180 for n in range(3)]  # ~2,000 tokens each


def job(system: str, question: str) -> dict:
    return {
        "model": "llama3",
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": question}],
        "stream": False,
        "options": {"num_predict": 4},
    }


async def test_each_system_prompt_goes_back_to_the_node_that_holds_it(fleet, http):
    hub = await fleet.hub()
    for name in ("n1", "n2"):  # two slots each, no host cache: a slot holds the last prompt it was given
        sim = await fleet.sim(
            tokens_per_second=500, prefill_tokens_per_second=4000, num_parallel=2, prompt_cache_tokens=0
        )
        async with http.post(sim.url + "/api/generate", json={"model": "llama3"}) as r:
            assert r.status == 200  # loaded on both: either is as good a choice but for its cache
        await fleet.node(hub, sim, name, OLLAMA_NUM_PARALLEL="2")
    served: dict[int, list[str]] = {n: [] for n in range(len(SYSTEMS))}
    processed = []
    for turn in range(4):
        for n, system in enumerate(SYSTEMS):
            async with http.post(hub.url + "/api/chat", json=job(system, f"Question {turn}?")) as r:
                answer = await r.json()
                served[n].append(r.headers["X-Node-Id"])
            if turn:
                processed.append(answer["prompt_eval_duration"] / 1e9)
    # Sequential jobs on idle nodes: without the prompt, the ranking alternates them; with it, each system
    # prompt stays where its first job put it, and only the new question is processed.
    assert all(len(set(nodes)) == 1 for nodes in served.values()), served
    assert max(processed) < 0.1, processed  # ~2,000 tokens at 4,000 a second would take 0.5 s
    async with http.get(hub.url + "/nodes") as r:
        nodes = await r.json()
    cache = {node["node_id"]: node["prompt_cache"] for node in nodes}
    saved = sum(c["tokens_saved"] for c in cache.values())
    assert saved > 9 * 1800, cache  # nine warm jobs of ~2,000 tokens each
    assert all(c["hit_rate"] is None or c["hit_rate"] > 0.5 for c in cache.values()), cache
    async with http.get(hub.url + "/metrics") as r:
        assert "ollama_hub_node_prompt_tokens_cached_total" in await r.text()


async def test_a_predicted_hit_that_did_not_happen_shrinks_what_the_node_is_believed_to_hold(fleet, http):
    hub = await fleet.hub()
    sim = await fleet.sim(tokens_per_second=500, prefill_tokens_per_second=4000, prompt_cache_tokens=0)
    await fleet.node(hub, sim, "n1")  # one slot, no host cache: it holds the last prompt only
    for system in (SYSTEMS[0], SYSTEMS[1], SYSTEMS[0]):
        async with http.post(hub.url + "/api/chat", json=job(system, "Why?")) as r:
            last = await r.json()
    assert last["prompt_eval_duration"] > 0.3e9  # the first prompt was gone: processed whole again
    async with http.get(hub.url + "/nodes/n1") as r:
        cache = (await r.json())["prompt_cache"]
    assert cache["blocks_believed_held"] < DEFAULT_REMEMBERED, cache
    assert cache["tokens_saved"] < 500, cache  # measured from the timings, not the hub's prediction
