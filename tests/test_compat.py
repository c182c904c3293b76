"""The hub as a drop-in Ollama and OpenAI endpoint, driven by the official clients."""

from __future__ import annotations

import json
import signal

import ollama
import openai
import pytest

from ollama_connector.sim.processes import agent_env
from tests.conftest import free_port, report_cpu, wait_until


@pytest.fixture
async def fleet2(fleet, http):
    """A hub with two nodes; node-b alone has mistral."""
    hub = await fleet.hub()
    sim_a = await fleet.sim(models=["llama3", "nomic-embed-text"], default_tokens=6)
    sim_b = await fleet.sim(models=["llama3", "mistral:7b", "nomic-embed-text"], default_tokens=6)
    a = await fleet.node(hub, sim_a, "node-a")
    b = await fleet.node(hub, sim_b, "node-b")
    return hub, (a, sim_a), (b, sim_b)


@pytest.fixture
async def ollama_client(fleet2):
    client = ollama.AsyncClient(host=fleet2[0].url)
    yield client
    await client.close()


@pytest.fixture
async def openai_client(fleet2):
    client = openai.AsyncOpenAI(base_url=fleet2[0].url + "/v1", api_key="unused")
    yield client
    await client.close()


async def test_ollama_client_generate_and_chat(ollama_client):
    answer = await ollama_client.generate(model="llama3", prompt="Why is the sky blue?")
    assert answer.done and answer.response.startswith("The sky") and answer.model == "llama3"
    parts = [p async for p in await ollama_client.generate(model="llama3", prompt="hi", stream=True)]
    assert parts[-1].done and len(parts) == 7
    chat = await ollama_client.chat(model="mistral:7b", messages=[{"role": "user", "content": "hello"}])
    assert chat.message.role == "assistant" and chat.message.content
    streamed = [
        c
        async for c in await ollama_client.chat(
            model="mistral:7b", messages=[{"role": "user", "content": "x"}], stream=True
        )
    ]
    assert streamed[-1].done and "".join(c.message.content for c in streamed) == chat.message.content


async def test_ollama_client_embed_list_ps_show(ollama_client):
    vectors = (await ollama_client.embed(model="nomic-embed-text", input=["a", "b"])).embeddings
    assert len(vectors) == 2
    assert len((await ollama_client.embeddings(model="nomic-embed-text", prompt="a")).embedding) == 384
    listed = sorted(m.model for m in (await ollama_client.list()).models)
    assert listed == ["llama3:latest", "mistral:7b", "nomic-embed-text:latest"]  # one entry per model
    await ollama_client.generate(model="mistral:7b", prompt="load")
    loaded = (await ollama_client.ps()).models
    assert any(m.model == "mistral:7b" for m in loaded)
    shown = await ollama_client.show("mistral:7b")
    assert shown.modelinfo is not None and "completion" in shown.capabilities


async def test_ps_names_the_node(fleet2, http):
    hub = fleet2[0]
    async with http.post(
        hub.url + "/api/generate", json={"model": "mistral:7b", "prompt": "x", "stream": False}
    ):
        pass
    async with http.get(hub.url + "/api/ps") as r:
        loaded = (await r.json())["models"]
    assert [(m["model"], m["node_id"]) for m in loaded if m["model"] == "mistral:7b"] == [
        ("mistral:7b", "node-b")
    ]


async def test_unknown_model_is_ollamas_404(ollama_client, openai_client):
    with pytest.raises(ollama.ResponseError) as missing:
        await ollama_client.generate(model="llama2", prompt="x")
    assert missing.value.status_code == 404 and missing.value.error == "model 'llama2' not found"
    with pytest.raises(ollama.ResponseError) as missing_chat:
        stream = await ollama_client.chat(
            model="llama2", messages=[{"role": "user", "content": "x"}], stream=True
        )
        await anext(stream)
    assert missing_chat.value.status_code == 404
    with pytest.raises(openai.NotFoundError):
        await openai_client.chat.completions.create(
            model="llama2", messages=[{"role": "user", "content": "x"}]
        )


async def test_model_known_but_no_healthy_node_is_503(fleet2, http):
    hub, _, (b, _) = fleet2
    await b.stop()
    hub.registry.get("node-b").last_seen -= 1000  # its heartbeat is long gone: offline
    async with http.post(hub.url + "/api/generate", json={"model": "mistral:7b", "prompt": "x"}) as r:
        assert r.status == 503 and "mistral:7b" in (await r.json())["error"]
    async with http.post(hub.url + "/v1/chat/completions", json={"model": "mistral:7b", "messages": []}) as r:
        assert r.status == 503 and (await r.json())["error"]["type"] == "api_error"


async def test_push_and_blob_uploads_stay_per_node(fleet2, http):
    hub = fleet2[0]
    for method, path, command in (
        ("POST", "/api/push", "ollama push"),
        ("POST", "/api/blobs/sha256:" + "0" * 64, "ollama create"),
        ("POST", "/api/create", "ollama create"),  # from files: the blobs would have to be on each node
    ):
        async with http.request(method, hub.url + path, json={"model": "llama3", "files": {"a": "b"}}) as r:
            message = (await r.json())["error"]
            assert (
                r.status == 501 and "not available through the hub" in message and f"`{command}`" in message
            )


async def test_version_and_root(fleet2, http):
    hub = fleet2[0]
    async with http.get(hub.url + "/api/version") as r:
        assert await r.json() == {"version": "0.33.0"}
    async with http.head(hub.url + "/") as r:
        assert r.status == 200


async def test_openai_client_chat_completions_embeddings_models(openai_client):
    chat = await openai_client.chat.completions.create(
        model="llama3", messages=[{"role": "user", "content": "hi"}]
    )
    assert chat.choices[0].message.content.startswith("The sky") and chat.usage.completion_tokens == 6
    stream = await openai_client.chat.completions.create(
        model="llama3", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    text = "".join([c.choices[0].delta.content or "" async for c in stream])
    assert text == chat.choices[0].message.content
    completion = await openai_client.completions.create(model="mistral:7b", prompt="Say", max_tokens=3)
    assert completion.choices[0].text == "The sky looks" and completion.choices[0].finish_reason == "length"
    vectors = await openai_client.embeddings.create(model="nomic-embed-text", input=["a", "b"])
    assert [d.index for d in vectors.data] == [0, 1]
    ids = sorted(m.id for m in (await openai_client.models.list()).data)
    assert ids == ["llama3:latest", "mistral:7b", "nomic-embed-text:latest"]


async def test_failover_through_the_ollama_and_openai_routes(fleet2, http, ollama_client, openai_client):
    hub, (a, sim_a), (b, _) = fleet2
    await report_cpu(http, hub, a, 0.0)  # node-a ranks first...
    await report_cpu(http, hub, b, 0.9)
    await sim_a.stop()  # ...but its Ollama is gone before the first byte
    answer = await ollama_client.generate(model="llama3", prompt="x")
    assert answer.done
    chat = await openai_client.chat.completions.create(
        model="llama3", messages=[{"role": "user", "content": "x"}]
    )
    assert chat.choices[0].message.content
    parts = [p async for p in await ollama_client.generate(model="llama3", prompt="x", stream=True)]
    assert parts[-1].done
    assert hub.registry.get("node-a").failure_count == 3


async def test_a_node_killed_mid_sse_stream_ends_with_an_error_event(fleet, http, processes):
    hub = await fleet.hub()
    sim = await fleet.sim(tokens_per_second=50, default_tokens=50)
    agent = processes.start(
        "ollama-noded",
        **agent_env(hub.url, sim.url, "n1", free_port()),
    )
    await wait_until(lambda: hub.registry.get("n1") is not None, what="the agent to register")
    body = {"model": "llama3", "messages": [{"role": "user", "content": "x"}], "stream": True}
    async with http.post(hub.url + "/v1/chat/completions", json=body) as r:
        assert r.headers["Content-Type"].startswith("text/event-stream")
        await r.content.readline()
        agent.send_signal(signal.SIGKILL)
        events = [line for line in (await r.read()).decode().split("\n") if line.startswith("data: ")]
    assert events[-1] == "data: [DONE]"
    assert "failed mid-stream" in json.loads(events[-2].removeprefix("data: "))["error"]["message"]
    assert hub.registry.get("n1").failure_count == 1


async def test_agent_exposes_only_the_allow_listed_routes(fleet, http):
    hub = await fleet.hub(CLUSTER_TOKEN="tok-0123456789abcdef")
    node = await fleet.node(hub, await fleet.sim(), "n1", CLUSTER_TOKEN="tok-0123456789abcdef")
    auth = {"Authorization": "Bearer tok-0123456789abcdef"}
    async with http.get(node.url + "/api/tags", headers=auth) as r:
        assert r.status == 200 and (await r.json())["models"]
    async with http.get(node.url + "/api/tags") as r:
        assert r.status == 401
    async with http.post(node.url + "/api/pull", json={"model": "x"}) as r:
        assert r.status == 401  # model management too takes the cluster token
    async with http.post(node.url + "/api/push", json={"model": "x"}, headers=auth) as r:
        assert r.status == 404
    async with http.post(node.url + "/api/delete", json={"model": "x"}, headers=auth) as r:
        assert r.status == 405  # DELETE only, as Ollama


async def test_failover_when_a_node_agent_is_killed_before_the_first_byte(fleet, http, processes):
    hub = await fleet.hub()
    sim_a, sim_b = await fleet.sim(), await fleet.sim()
    agents = {}
    for name, sim in (("a", sim_a), ("b", sim_b)):
        agents[name] = processes.start(
            "ollama-noded",
            **agent_env(hub.url, sim.url, name, free_port()),
        )
    await wait_until(lambda: hub.registry.get("a") and hub.registry.get("b"), within=20, what="both agents")
    await report_cpu(http, hub, "a", 0.0)  # "a" ranks first...
    await report_cpu(http, hub, "b", 0.9)
    agents["a"].send_signal(signal.SIGKILL)  # ...and is gone, though its heartbeat is recent: still online
    agents["a"].wait(timeout=10)
    client = ollama.AsyncClient(host=hub.url)
    openai_client = openai.AsyncOpenAI(base_url=hub.url + "/v1", api_key="unused")
    try:
        for _ in range(2):
            assert (await client.generate(model="llama3", prompt="x")).done
            chat = await openai_client.chat.completions.create(
                model="llama3", messages=[{"role": "user", "content": "x"}]
            )
            assert chat.choices[0].message.content
    finally:
        await client.close()
        await openai_client.close()
    assert hub.registry.get("a").failure_count == 3  # degraded at the third: the fourth went straight to b
    assert hub.registry.status(hub.registry.get("a")) == "degraded" and hub.registry.get("b").active_jobs == 0


async def test_unload_reaches_every_node_that_has_the_model(fleet2, http):
    hub, (_, sim_a), (_, sim_b) = fleet2
    async with http.post(hub.url + "/api/generate", json={"model": "llama3"}) as r:  # ollama run's preload
        assert (await r.json())["done_reason"] == "load" and r.headers["X-Node-Id"] in ("node-a", "node-b")
    for _ in range(4):  # spread loads over both nodes
        async with http.post(
            hub.url + "/api/generate", json={"model": "llama3", "prompt": "x", "stream": False}
        ):
            pass
    for sim in (sim_a, sim_b):
        async with http.post(sim.url + "/api/generate", json={"model": "llama3"}) as r:  # load it everywhere
            assert (await r.json())["done_reason"] == "load"
    async with http.post(hub.url + "/api/generate", json={"model": "llama3", "keep_alive": 0}) as r:
        assert (await r.json())["done_reason"] == "unload"
        assert sorted(r.headers["X-Node-Id"].split(",")) == ["node-a", "node-b"]
    for sim in (sim_a, sim_b):
        async with http.get(sim.url + "/api/ps") as r:
            assert all(m["model"] != "llama3:latest" for m in (await r.json())["models"])


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("/api/generate", b"{oops", 400, "request body is not valid JSON"),
        ("/api/chat", b"", 400, "missing request body"),
        ("/api/chat", b'{"messages": []}', 400, "model is required"),
        ("/api/generate", b'{"prompt": "x"}', 404, "model '' not found"),
        ("/api/embed", b'{"model": 3}', 400, "cannot unmarshal int"),
        (
            "/api/generate",
            b'{"model": "llama3", "prompt": "' + b"x" * 4096 + b'"}',
            413,
            "larger than 2048 bytes",
        ),
    ],
)
async def test_bad_input_on_ollama_routes_gets_ollamas_error_shape(fleet, http, path, body, status, message):
    hub = await fleet.hub(MAX_REQUEST_BYTES="2048")
    async with http.post(hub.url + path, data=body, headers={"Content-Type": "application/json"}) as r:
        assert r.status == status and message in (await r.json())["error"]


async def test_bad_input_on_openai_routes_gets_openais_error_shape(fleet, http):
    hub = await fleet.hub()
    async with http.post(hub.url + "/v1/chat/completions", data=b"[]") as r:
        error = (await r.json())["error"]
    assert r.status == 400 and error["type"] == "invalid_request_error" and "JSON object" in error["message"]
    async with http.post(hub.url + "/v1/embeddings", json={"input": "x"}) as r:
        assert r.status == 400 and (await r.json())["error"]["message"] == "model is required"


async def test_api_status_is_the_most_conservative_among_online_nodes(fleet, http):
    hub = await fleet.hub()
    open_sim, closed_sim = await fleet.sim(), await fleet.sim()
    await fleet.node(hub, open_sim, "n1")
    await fleet.node(hub, closed_sim, "n2")
    async with http.get(hub.url + "/api/status") as r:
        assert r.status == 200 and await r.json() == {"cloud": {"disabled": False, "source": "none"}}
    closed_sim.behaviour.cloud_disabled = 1  # OLLAMA_NO_CLOUD on one node
    async with http.get(hub.url + "/api/status") as r:
        assert await r.json() == {"cloud": {"disabled": True, "source": "env"}}
    hub.registry.get("n2").last_seen -= 1000  # offline: no longer counted
    async with http.get(hub.url + "/api/status") as r:
        assert await r.json() == {"cloud": {"disabled": False, "source": "none"}}
