"""The simulator against the official `ollama` Python client and the reference's exact shapes."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import ollama
import pytest

from ollama_connector.sim.prompt_cache import rendered


@pytest.fixture
async def client(fleet):
    sim = await fleet.sim(tokens_per_second=0, default_tokens=8)
    api = ollama.AsyncClient(host=sim.url)
    yield sim, api
    await api.close()


async def test_generate_and_chat_with_the_official_client(client):
    _, api = client
    answer = await api.generate(model="llama3", prompt="Why is the sky blue?", options={"num_predict": 5})
    assert answer.done and answer.done_reason == "length" and answer.eval_count == 5
    assert answer.response.startswith("The sky") and answer.model == "llama3"
    assert answer.total_duration >= answer.eval_duration > 0

    parts = [part async for part in await api.generate(model="llama3", prompt="hi", stream=True)]
    assert [p.done for p in parts] == [False] * 8 + [True]
    assert "".join(p.response for p in parts).startswith(answer.response + " ")

    chat = await api.chat(model="mistral:7b", messages=[{"role": "user", "content": "hello"}])
    assert chat.message.role == "assistant" and chat.message.content and chat.done
    chunks = [
        c
        async for c in await api.chat(
            model="mistral:7b", messages=[{"role": "user", "content": "x"}], stream=True
        )
    ]
    assert chunks[-1].done and chunks[-1].eval_count == 8 and "".join(c.message.content for c in chunks)


async def test_natural_answers_fit_the_prompt_and_end_at_a_sentence(fleet):
    sim = await fleet.sim(natural=True)
    async with ollama.AsyncClient(host=sim.url) as api:
        sky = await api.generate(model="llama3", prompt="Why is the sky blue?", options={"num_predict": 1000})
        other = await api.generate(model="llama3", prompt="How should I plan a trip?")
        again = await api.generate(model="llama3", prompt="How should I plan a trip?")
        title = await api.chat(
            model="llama3", messages=[{"role": "user", "content": "Generate a title for this chat"}]
        )
        cut = await api.generate(model="llama3", prompt="Why is the sky blue?", options={"num_predict": 5})
    # A model stops when it has said it, long before a generous num_predict (Open WebUI asks 1,000).
    assert sky.done_reason == "stop" and 20 < sky.eval_count < 100 and sky.response.endswith(".")
    assert "blue" in sky.response and other.response != sky.response and other.response.endswith(".")
    assert again.response == other.response  # the same prompt, the same answer
    assert title.message.content == "A short test conversation." and title.eval_count == 4
    assert cut.done_reason == "length" and cut.eval_count == 5 and sky.response.startswith(cut.response)


async def test_list_ps_show_embed(client):
    _, api = client
    listed = await api.list()
    assert {m.model for m in listed.models} == {"llama3:latest", "mistral:7b", "nomic-embed-text:latest"}
    await api.generate(model="llama3", prompt="load me")
    assert [m.model for m in (await api.ps()).models] == ["llama3:latest"]
    shown = await api.show("llama3")
    assert shown.modelinfo is not None and "completion" in shown.capabilities
    vectors = (await api.embed(model="nomic-embed-text", input=["a", "b"])).embeddings
    assert len(vectors) == 2 and abs(sum(v * v for v in vectors[0]) - 1.0) < 1e-9


async def test_errors_match_ollama(client, http):
    sim, api = client
    with pytest.raises(ollama.ResponseError) as missing:
        await api.generate(model="nope", prompt="x")
    assert missing.value.status_code == 404 and missing.value.error == "model 'nope' not found"
    with pytest.raises(ollama.ResponseError) as unsupported:
        await api.generate(model="nomic-embed-text", prompt="x")
    assert unsupported.value.status_code == 400 and "does not support generate" in unsupported.value.error

    async with http.get(sim.url + "/") as r:
        assert (r.status, await r.text()) == (200, "Ollama is running")
    async with http.get(sim.url + "/api/nothing") as r:
        assert (r.status, await r.text()) == (404, "404 page not found")
    async with http.get(sim.url + "/api/generate") as r:
        assert (r.status, await r.text()) == (405, "405 method not allowed")
    async with http.post(sim.url + "/api/generate") as r:
        assert (r.status, await r.json()) == (400, {"error": "missing request body"})
    async with http.post(sim.url + "/api/chat", json={"messages": []}) as r:
        assert (r.status, await r.json()) == (400, {"error": "model is required"})
    async with http.post(
        sim.url + "/api/generate", json={"model": "llama3", "prompt": "x", "keep_alive": "300"}
    ) as r:
        assert (r.status, await r.json()) == (400, {"error": 'time: missing unit in duration "300"'})


async def test_load_and_unload_shortcuts(client, http):
    sim, _ = client
    async with http.post(sim.url + "/api/generate", json={"model": "llama3"}) as r:
        assert (await r.json())["done_reason"] == "load"
    async with http.post(sim.url + "/api/generate", json={"model": "llama3", "keep_alive": 0}) as r:
        assert (await r.json())["done_reason"] == "unload"
    async with http.get(sim.url + "/api/ps") as r:
        assert await r.json() == {"models": []}


async def test_injected_failures(fleet, http):
    sim = await fleet.sim(fail_rate=1.0)
    async with http.post(sim.url + "/api/generate", json={"model": "llama3", "prompt": "x"}) as r:
        assert r.status == 500 and "error" in await r.json()
    sim.behaviour.update({"fail_rate": 0, "die_rate": 1.0})
    async with http.post(sim.url + "/api/generate", json={"model": "llama3", "prompt": "x"}) as r:
        assert r.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            await r.read()
    assert sim.stats.failed == 2


async def test_prompts_cost_their_uncached_tokens_as_ollama_reports_them(fleet, http):
    sim = await fleet.sim(tokens_per_second=1000, prefill_tokens_per_second=2000)
    system = "You are a careful assistant. " * 140  # 4,060 characters: about 1,015 tokens

    async def ask(text: str) -> dict:
        body = {"model": "llama3", "prompt": text, "stream": False, "options": {"num_predict": 1}}
        async with http.post(sim.url + "/api/generate", json=body) as r:
            return await r.json()

    def seen(text: str) -> int:  # tokens of what the model sees: a token per 4 characters of the template
        return -(-len(rendered([("user", text)])) // 4)

    cold = await ask(system + "What is 2+2?")
    assert cold["prompt_eval_count"] == seen(system + "What is 2+2?")
    assert cold["prompt_eval_duration"] >= 0.45e9  # ~1,024 tokens at 2,000 a second, all processed
    warm = await ask(system + "And 3+3, please?")  # the same start: the slot has it
    assert warm["prompt_eval_count"] == seen(system + "And 3+3, please?")  # cached ones count too
    assert warm["prompt_eval_duration"] < 0.1e9  # only what follows the cached blocks
    other = await ask("Something else entirely. " * 100)  # no common start: processed whole
    assert other["prompt_eval_duration"] >= 0.2e9


async def test_a_conversations_next_turn_finds_the_last_answer_cached_on_every_chat_route(fleet, http):
    sim = await fleet.sim(tokens_per_second=1000, prefill_tokens_per_second=2000)
    history = [{"role": "system", "content": "Be brief. " * 200}, {"role": "user", "content": "Hello?"}]
    for route, answer_of, limit in (
        ("/api/chat", lambda a: a["message"]["content"], {"options": {"num_predict": 300}}),
        ("/v1/chat/completions", lambda a: a["choices"][0]["message"]["content"], {"max_tokens": 300}),
    ):
        body = {"model": "llama3", "messages": history, "stream": False, **limit}
        async with http.post(sim.url + route, json=body) as r:
            first = await r.json()
        said = answer_of(first)
        assert len(said) > 400  # an answer of a hundred tokens or more, cached after the prompt
        turn = [*history, {"role": "assistant", "content": said}, {"role": "user", "content": "Why?"}]
        warm = {"model": "llama3", "messages": turn, "stream": False, "options": {"num_predict": 1}}
        started = time.monotonic()
        async with http.post(sim.url + "/api/chat", json=warm) as r:
            second = await r.json()
        # Everything up to the new question was in the slot, the answer too: a few tokens processed.
        assert second["prompt_eval_duration"] < 0.05e9, (route, second)
        assert second["prompt_eval_count"] > 600
        assert time.monotonic() - started < 0.3  # ~600 tokens at 2,000 a second would take 0.3 s
    assert sim.stats.requests == 4


async def test_streams_at_once_share_the_nodes_compute(fleet, http):
    sim = await fleet.sim(tokens_per_second=200, num_parallel=4)
    body = {"model": "llama3", "prompt": "x", "stream": False, "options": {"num_predict": 60}}

    async def speed() -> float:
        async with http.post(sim.url + "/api/generate", json=body) as r:
            answer = await r.json()
        return answer["eval_count"] / (answer["eval_duration"] / 1e9)

    alone = await speed()
    together = await asyncio.gather(*(speed() for _ in range(4)))
    # Four at once: the node's total grows as sqrt(4) = 2, so each stream runs at about half speed.
    assert all(0.35 * alone < each < 0.7 * alone for each in together), (alone, together)
