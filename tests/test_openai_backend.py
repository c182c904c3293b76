"""Nodes whose engine speaks only OpenAI's API (BACKEND=openai): an agent in front of
`ollama-sim --api openai`, translating Ollama-shaped work there and back, behind the real hub."""

from __future__ import annotations

import json

import ollama
import pytest

from ollama_connector.sim.keys import ENGINE
from tests.conftest import wait_until


@pytest.fixture
async def openai_node(fleet):
    engine = await fleet.sim(models=["llama3", "nomic-embed-text"], api="openai")
    hub = await fleet.hub()
    node = await fleet.node(hub, "http://unused", "llama-server", BACKEND="openai", BACKEND_URL=engine.url)
    return hub, node, engine


async def sent(engine) -> dict:
    """The last request the engine received, as it received it."""
    return engine.app[ENGINE].recent[-1]


async def test_an_openai_engine_registers_and_shows_its_kind(openai_node, http):
    hub, _, engine = openai_node
    async with http.get(hub.url + "/nodes/llama-server") as r:
        node = await r.json()
    assert node["backend"] == "openai" and node["models"] == ["nomic-embed-text:latest", "llama3:latest"]
    assert node["metadata"]["ollama_version"] is None
    async with http.get(engine.url + "/api/tags") as r:
        assert r.status == 404  # the engine has no Ollama routes at all


async def test_generate_and_chat_are_translated_there_and_back(openai_node, http):
    hub, _, engine = openai_node
    body = {
        "model": "llama3",
        "prompt": "hi",
        "system": "be brief",
        "stream": False,
        "options": {"temperature": 0.2, "num_predict": 5, "stop": ["x"], "num_ctx": 8192, "top_k": 7},
    }
    async with http.post(hub.url + "/api/generate", json=body) as r:
        answer = await r.json()
    assert r.status == 200 and answer["done"] is True and answer["done_reason"] == "length"
    assert answer["model"] == "llama3" and answer["response"] and answer["eval_count"] == 5
    assert answer["prompt_eval_count"] > 0 and answer["total_duration"] > 0 and answer["load_duration"] == 0
    request = await sent(engine)
    assert request["route"] == "/v1/chat/completions" and request["max_tokens"] == 5
    assert request["temperature"] == 0.2 and request["stop"] == ["x"] and request["top_k"] == 7
    assert "num_ctx" not in json.dumps(request)  # no OpenAI equivalent: not sent
    assert request["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi"},
    ]

    async with http.post(
        hub.url + "/api/chat", json={"model": "llama3", "messages": [{"role": "user", "content": "hi"}]}
    ) as r:
        assert r.content_type == "application/x-ndjson"
        lines = [json.loads(line) async for line in r.content]
    assert all(line["message"]["role"] == "assistant" for line in lines)
    assert lines[-1]["done"] is True and lines[-1]["eval_count"] == 24 and len(lines) == 25
    assert (await sent(engine))["stream_options"] == {"include_usage": True}

    async with http.post(hub.url + "/jobs", json={"model": "llama3", "prompt": "hi", "stream": False}) as r:
        assert (
            r.status == 200
            and (await r.json())["eval_count"] == 24
            and r.headers["X-Node-Id"] == "llama-server"
        )
    async with http.post(hub.url + "/v1/chat/completions", json={"model": "llama3", "messages": []}) as r:
        assert (await r.json())["object"] == "chat.completion"  # OpenAI's own routes go as they are


async def test_embeddings_and_the_official_client(openai_node, http):
    hub, _, _ = openai_node
    async with http.post(
        hub.url + "/api/embed", json={"model": "nomic-embed-text", "input": ["a", "b"]}
    ) as r:
        answer = await r.json()
    assert len(answer["embeddings"]) == 2 and answer["model"] == "nomic-embed-text"
    async with http.post(hub.url + "/api/embeddings", json={"model": "nomic-embed-text", "prompt": "a"}) as r:
        assert len((await r.json())["embedding"]) == len(answer["embeddings"][0])
    async with ollama.AsyncClient(host=hub.url) as client:
        chunks = [chunk async for chunk in await client.generate(model="llama3", prompt="hi", stream=True)]
        assert chunks[-1].done and chunks[-1].eval_count == 24
        reply = await client.chat(model="llama3", messages=[{"role": "user", "content": "hi"}])
        assert reply.message.content and reply.done_reason == "stop"


async def test_errors_come_back_in_ollamas_format(openai_node, http):
    _, node, engine = openai_node
    async with http.post(node.url + "/api/generate", json={"model": "absent", "prompt": "x"}) as r:
        assert r.status == 404 and await r.json() == {
            "error": 'model "absent" not found, try pulling it first'
        }
    async with http.post(node.url + "/api/show", data=b"not json") as r:
        assert r.status == 400 and await r.json() == {"error": "invalid request body"}  # not a 500
    engine.behaviour.fail_rate = 1.0
    chat = {"model": "llama3", "messages": [{"role": "user", "content": "x"}]}
    async with http.post(node.url + "/api/chat", json=chat) as r:
        assert r.status == 500 and "simulated" in (await r.json())["error"]


async def test_a_caller_hanging_up_stops_the_generation_on_the_engine(openai_node, http):
    hub, _, engine = openai_node
    engine.behaviour.tokens_per_second = 20
    response = await http.post(
        hub.url + "/api/generate", json={"model": "llama3", "prompt": "x", "options": {"num_predict": 1000}}
    )
    await response.content.readline()
    response.close()
    await wait_until(lambda: engine.stats.cancelled == 1, what="the engine to see the hang-up")


async def test_model_management_leaves_openai_engines_out(openai_node, fleet, http):
    hub, _, engine = openai_node
    await fleet.node(hub, await fleet.sim(models=["llama3"]), "ollama-node")
    async with http.post(hub.url + "/api/pull", json={"model": "phi3", "stream": False}) as r:
        assert r.status == 200 and (await r.json())["nodes"] == {"ollama-node": {"status": "success"}}
    assert engine.stats.pulls == 0


async def test_a_preload_or_an_unload_generates_nothing_on_an_openai_engine(openai_node, http):
    hub, _, engine = openai_node
    before = len(engine.app[ENGINE].recent)
    for body, reason in (
        ({"model": "llama3", "prompt": ""}, "load"),  # what `ollama run` sends first
        ({"model": "llama3", "messages": [], "keep_alive": "5m"}, "load"),
    ):
        path = "/api/generate" if "prompt" in body else "/api/chat"
        async with http.post(hub.url + path, json=body) as r:
            answer = await r.json()
        assert r.status == 200 and answer["done"] and answer["done_reason"] == reason, answer
        assert answer.get("response", answer.get("message", {}).get("content")) == ""
    # `ollama stop`: such an engine keeps its models loaded, and the hub says so instead of generating.
    async with http.post(hub.url + "/api/generate", json={"model": "llama3", "keep_alive": 0}) as r:
        assert r.status == 400 and "cannot unload" in (await r.json())["error"]
    assert len(engine.app[ENGINE].recent) == before  # nothing reached the engine
