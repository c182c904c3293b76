"""Anthropic's Messages API, OpenAI's Responses API and audio transcriptions through the hub, driven by the
official `anthropic` and `openai` clients: each route keeps its own dialect end to end."""

from __future__ import annotations

import asyncio
import json
import signal

import aiohttp
import anthropic
import openai
import pytest

from ollama_connector.hubd.routing.keys import UNSERVED
from ollama_connector.shared import error_formats
from ollama_connector.sim.keys import ENGINE
from ollama_connector.sim.processes import agent_env
from tests.conftest import free_port, report_cpu, wait_until

MESSAGE = [{"role": "user", "content": "Why is the sky blue?"}]


@pytest.fixture
async def fleet2(fleet, http):
    """A hub with two nodes; node-b alone has mistral."""
    hub = await fleet.hub()
    sim_a = await fleet.sim(models=["llama3", "whisper"], default_tokens=6)
    sim_b = await fleet.sim(models=["llama3", "mistral:7b", "whisper"], default_tokens=6)
    a = await fleet.node(hub, sim_a, "node-a")
    b = await fleet.node(hub, sim_b, "node-b")
    return hub, (a, sim_a), (b, sim_b)


@pytest.fixture
async def claude(fleet2):
    client = anthropic.AsyncAnthropic(base_url=fleet2[0].url, api_key="unused", max_retries=0)
    yield client
    await client.close()


@pytest.fixture
async def oai(fleet2):
    client = openai.AsyncOpenAI(base_url=fleet2[0].url + "/v1", api_key="unused", max_retries=0)
    yield client
    await client.close()


async def test_anthropic_messages_create_and_stream(claude, fleet2):
    message = await claude.messages.create(model="mistral:7b", max_tokens=100, messages=MESSAGE)
    assert message.type == "message" and message.role == "assistant" and message.model == "mistral:7b"
    assert message.content[0].type == "text" and message.content[0].text.startswith("The sky")
    assert message.stop_reason == "end_turn" and message.usage.output_tokens == 6

    async with claude.messages.stream(
        model="llama3", max_tokens=4, system="Be brief.", messages=MESSAGE
    ) as s:
        text = "".join([t async for t in s.text_stream])
        final = await s.get_final_message()
    assert text == final.content[0].text == "The sky looks blue"
    assert final.stop_reason == "max_tokens" and final.usage.output_tokens == 4

    events = [e.type async for e in await claude.messages.create(**_ask("llama3"), stream=True)]
    assert events[:3] == ["message_start", "content_block_start", "content_block_delta"]
    assert events[-3:] == ["content_block_stop", "message_delta", "message_stop"]


def _ask(model: str) -> dict:
    return {"model": model, "max_tokens": 50, "messages": MESSAGE}


async def test_anthropic_errors_are_anthropics(claude, fleet2, http):
    with pytest.raises(anthropic.NotFoundError) as caught:
        await claude.messages.create(**_ask("no-such-model"))
    assert caught.value.body == {
        "type": "error",
        "error": {"type": "not_found_error", "message": "model 'no-such-model' not found"},
    }
    hub = fleet2[0]
    for body, message in (
        ({"model": "llama3", "messages": MESSAGE}, "max_tokens is required and must be positive"),
        ({"model": "llama3", "max_tokens": 5, "messages": []}, "messages is required"),
        ({"max_tokens": 5, "messages": MESSAGE}, "model is required"),
    ):
        async with http.post(hub.url + "/v1/messages", json=body) as r:
            assert r.status == 400
            assert await r.json() == {
                "type": "error",
                "error": {"type": "invalid_request_error", "message": message},
            }
    async with http.post(hub.url + "/v1/messages", data=b"{oops") as r:
        assert r.status == 400 and (await r.json())["error"]["type"] == "invalid_request_error"
    # The hub's own failure is Anthropic's too: the only node with the model fails it.
    fleet2[2][1].behaviour.fail_rate = 1.0
    with pytest.raises(anthropic.InternalServerError) as caught:
        await claude.messages.create(**_ask("mistral:7b"))
    assert caught.value.status_code == 503 and caught.value.body["error"]["type"] == "overloaded_error"
    assert "node-b: an error was encountered" in caught.value.body["error"]["message"]


async def test_x_api_key_is_an_api_key_on_anthropics_route(fleet, http):
    hub = await fleet.hub(API_KEYS="k1-0123456789abcdef,k2-0123456789abcdef")
    await fleet.node(hub, await fleet.sim(default_tokens=3), "n1")
    good = anthropic.AsyncAnthropic(
        base_url=hub.url, api_key="k2-0123456789abcdef", max_retries=0
    )  # sends x-api-key
    bad = anthropic.AsyncAnthropic(base_url=hub.url, api_key="wrong", max_retries=0)
    bearer = anthropic.AsyncAnthropic(
        base_url=hub.url, auth_token="k1-0123456789abcdef", max_retries=0
    )  # Authorization
    try:
        assert (await good.messages.create(**_ask("llama3"))).content[0].text
        assert (await bearer.messages.create(**_ask("llama3"))).content[0].text
        with pytest.raises(anthropic.AuthenticationError) as caught:
            await bad.messages.create(**_ask("llama3"))
        assert caught.value.body["error"]["type"] == "authentication_error"
    finally:
        for client in (good, bad, bearer):
            await client.close()
    # Only on Anthropic's route: elsewhere the key is a bearer token.
    async with http.post(
        hub.url + "/api/generate", json={"model": "llama3"}, headers={"x-api-key": "k1-0123456789abcdef"}
    ) as r:
        assert r.status == 401


async def test_openai_responses_create_and_stream(oai):
    response = await oai.responses.create(model="llama3", input="Why is the sky blue?", instructions="Brief.")
    assert response.object == "response" and response.status == "completed"
    assert response.output_text.startswith("The sky") and response.usage.output_tokens == 6

    stream = await oai.responses.create(
        model="mistral:7b", input=[{"role": "user", "content": "x"}], max_output_tokens=3, stream=True
    )
    events = [e async for e in stream]
    kinds = [e.type for e in events]
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds[-1] == "response.completed" and kinds.count("response.output_text.delta") == 3
    assert [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert events[-1].response.output_text == text == "The sky looks"

    with pytest.raises(openai.NotFoundError) as caught:
        await oai.responses.create(model="nope", input="x")
    assert caught.value.body["message"] == "model 'nope' not found"


async def test_audio_transcriptions(oai, fleet2, http):
    audio = ("clip.wav", b"RIFF" + bytes(2048), "audio/wav")
    text = await oai.audio.transcriptions.create(model="whisper", file=audio)
    assert text.text.startswith("The sky")
    plain = await oai.audio.transcriptions.create(model="whisper", file=audio, response_format="text")
    assert plain.strip() == text.text
    with pytest.raises(openai.NotFoundError):
        await oai.audio.transcriptions.create(model="nope", file=audio)
    hub = fleet2[0]
    no_file = aiohttp.FormData({"model": "whisper"}, default_to_multipart=True)
    async with http.post(hub.url + "/v1/audio/transcriptions", data=no_file) as r:
        assert r.status == 400 and "file is required" in (await r.json())["error"]["message"]
    async with http.post(hub.url + "/v1/audio/transcriptions", json={"model": "whisper"}) as r:
        assert r.status == 400 and "multipart" in (await r.json())["error"]["message"]
    sent = [req for _, sim in fleet2[1:] for req in sim.app[ENGINE].recent if "fields" in req]
    assert sent and sent[-1]["fields"] == ["file", "model", "response_format"]  # the form, as it came


async def test_new_routes_share_the_slots_of_the_fleet_and_are_journaled(fleet, http):
    hub = await fleet.hub()
    for name in ("a", "b"):  # one slot each (OLLAMA_NUM_PARALLEL=1)
        await fleet.node(hub, await fleet.sim(tokens_per_second=50, default_tokens=10), name)

    async def ask(path: str, body: dict) -> str:
        async with http.post(hub.url + path, json=body) as r:
            assert r.status == 200
            return r.headers["X-Node-Id"]

    asks = [("/v1/messages", _ask("llama3")), ("/v1/responses", {"model": "llama3", "input": "x"})] * 2
    served = await asyncio.gather(*(ask(path, body) for path, body in asks))
    assert sorted(served) == ["a", "a", "b", "b"]  # a free slot each first, then the two that waited
    async with http.get(hub.url + "/jobs", params={"limit": "4"}) as r:
        jobs = (await r.json())["jobs"]
    assert sorted(j["route"] for j in jobs) == ["/v1/messages"] * 2 + ["/v1/responses"] * 2
    assert all(j["status"] == "done" and j["output_tokens"] == 10 and j["prompt_tokens"] for j in jobs)


@pytest.mark.parametrize("path", ["/v1/messages", "/v1/responses"])
async def test_a_caller_hanging_up_cancels_on_the_node(fleet, http, path):
    hub = await fleet.hub()
    sim = await fleet.sim(tokens_per_second=20, default_tokens=200)
    await fleet.node(hub, sim, "n1")
    async with http.post(hub.url + path, json={**_ask("llama3"), "input": "x", "stream": True}) as r:
        await r.content.readline()
        r.close()
    await wait_until(lambda: sim.stats.cancelled == 1, what="the simulator to see the stream cancelled")


async def _two_agents(fleet, http, processes):
    hub = await fleet.hub()
    agents = {}
    for name in ("a", "b"):
        sim = await fleet.sim(tokens_per_second=50, default_tokens=40)
        agents[name] = processes.start("ollama-noded", **agent_env(hub.url, sim.url, name, free_port()))
    await wait_until(lambda: hub.registry.get("a") and hub.registry.get("b"), within=20, what="both agents")
    await report_cpu(http, hub, "a", 0.0)  # "a" ranks first
    await report_cpu(http, hub, "b", 0.9)
    return hub, agents


async def test_anthropic_fails_over_when_a_node_is_killed_before_the_first_byte(fleet, http, processes):
    hub, agents = await _two_agents(fleet, http, processes)
    agents["a"].send_signal(signal.SIGKILL)
    agents["a"].wait(timeout=10)
    client = anthropic.AsyncAnthropic(base_url=hub.url, api_key="unused", max_retries=0)
    try:
        message = await client.messages.create(**_ask("llama3"))
        assert hub.registry.get("a").failure_count == 1
        # Another model, loaded on neither node: "a" ranks first again, and is tried first.
        async with client.messages.stream(**_ask("mistral:7b")) as stream:
            text = "".join([t async for t in stream.text_stream])
    finally:
        await client.close()
    assert message.content[0].text and text == message.content[0].text
    assert hub.registry.get("a").failure_count == 2 and hub.registry.get("b").failure_count == 0


@pytest.mark.parametrize("path", ["/v1/messages", "/v1/responses"])
async def test_a_stream_broken_after_its_first_byte_ends_with_an_error_event(fleet, http, processes, path):
    hub, agents = await _two_agents(fleet, http, processes)
    async with http.post(hub.url + path, json={**_ask("llama3"), "input": "x", "stream": True}) as r:
        assert r.headers["Content-Type"].startswith("text/event-stream") and r.headers["X-Node-Id"] == "a"
        await r.content.readline()
        agents["a"].send_signal(signal.SIGKILL)
        lines = (await r.read()).decode().split("\n")
    assert lines[-4:] == ["event: error", lines[-3], "", ""]
    error = json.loads(lines[-3].removeprefix("data: "))
    if path == "/v1/messages":
        assert error["type"] == "error" and error["error"]["type"] == "api_error"
        assert "failed mid-stream" in error["error"]["message"]
    else:
        numbers = [json.loads(x[6:])["sequence_number"] for x in lines if x.startswith("data: ")]
        assert error["type"] == "error" and "failed mid-stream" in error["message"]
        assert numbers == list(range(len(numbers)))  # numbered on from the last event received
    assert hub.registry.get("a").failure_count == 1


async def test_the_anthropic_sdk_raises_a_broken_stream(fleet, http, processes):
    hub, agents = await _two_agents(fleet, http, processes)
    client = anthropic.AsyncAnthropic(base_url=hub.url, api_key="unused", max_retries=0)
    try:
        with pytest.raises(anthropic.APIStatusError, match="failed mid-stream"):
            async with client.messages.stream(**_ask("llama3")) as stream:
                async for _ in stream.text_stream:
                    agents["a"].send_signal(signal.SIGKILL)
    finally:
        await client.close()


async def test_a_node_whose_engine_lacks_the_route_is_passed_over(fleet, http):
    """An engine without /v1/messages (an older Ollama, a llama.cpp server) answers a bare 404: the job goes
    on to the next node, that node's model is not taken for missing, and the hub remembers."""
    hub = await fleet.hub()
    engine = await fleet.sim(models=["llama3"], api="openai")  # serves /v1/chat/completions, not /v1/messages
    await fleet.node(hub, "http://unused", "old", BACKEND="openai", BACKEND_URL=engine.url)
    for said in ("old: this node's engine does not serve POST /v1/messages", "learned from an earlier job"):
        async with http.post(hub.url + "/v1/messages", json=_ask("llama3")) as r:
            error = await r.json()
        assert (
            r.status == 503
            and error["error"]["type"] == "overloaded_error"
            and said in error["error"]["message"]
        )
    body = {"model": "llama3", "messages": MESSAGE}
    async with http.post(hub.url + "/v1/chat/completions", json=body) as r:  # served as before
        assert r.status == 200 and r.headers["X-Node-Id"] == "old"
    await fleet.node(hub, await fleet.sim(models=["llama3"]), "new")
    await report_cpu(http, hub, "old", 0.0)  # "old" ranks first
    await report_cpu(http, hub, "new", 0.9)
    for _ in range(2):
        async with http.post(hub.url + "/v1/messages", json=_ask("llama3")) as r:
            assert r.status == 200 and r.headers["X-Node-Id"] == "new"
    async with http.get(hub.url + "/jobs", params={"limit": "2"}) as r:
        assert [job["nodes_tried"] for job in (await r.json())["jobs"]] == [["new"], ["new"]]  # "old" skipped
    assert hub.registry.get("old").failure_count == 0  # not the node's fault
    # An upgrade (another engine version in its heartbeat) may bring the route: the hub forgets at once.
    assert hub.app[UNSERVED].lacking(hub.registry, "/v1/messages", "llama3") == [hub.registry.get("old")]
    beat = hub.registry.get("old").beat.model_dump()
    async with http.post(
        hub.url + "/nodes/heartbeat", json={**beat, "metadata": {"ollama_version": "9.9"}}
    ) as r:
        assert r.status == 200
    assert not hub.app[UNSERVED].lacking(hub.registry, "/v1/messages", "llama3")


async def test_the_agent_serves_the_new_routes_behind_its_token_in_their_dialects(fleet, http):
    hub = await fleet.hub(CLUSTER_TOKEN="tok-0123456789abcdef")
    node = await fleet.node(
        hub, await fleet.sim(default_tokens=3), "n1", CLUSTER_TOKEN="tok-0123456789abcdef"
    )
    for path, body, error_of in (
        ("/v1/messages", _ask("llama3"), lambda e: e["error"]["type"] == "authentication_error"),
        ("/v1/responses", {"model": "llama3", "input": "x"}, lambda e: e["error"]["message"]),
    ):
        async with http.post(node.url + path, json=body) as r:
            assert r.status == 401 and error_of(await r.json())
        async with http.post(
            node.url + path, json=body, headers={"Authorization": "Bearer tok-0123456789abcdef"}
        ) as r:
            assert r.status == 200 and (await r.json())["model"] == "llama3"


@pytest.mark.parametrize(
    ("path", "fmt"),
    [
        ("/api/chat", error_formats.Ollama),
        ("/v1/chat/completions", error_formats.OpenAI),
        ("/v1/messages", error_formats.Anthropic),
        ("/v1/responses", error_formats.Responses),
        ("/v1/audio/transcriptions", error_formats.OpenAI),
        ("/jobs", error_formats.Seed),
    ],
)
def test_each_route_has_one_dialect_that_reads_what_it_writes(path, fmt):
    assert error_formats.for_path(path) is fmt
    body = json.dumps(fmt.body("it broke", 503)).encode()
    assert error_formats.message_of(body) == "it broke"
    stream = error_formats.stream_format(path)
    tail = stream.stream_tail("it broke", b'data: {"sequence_number":7}\n\n')
    assert stream.error_at_end(b"earlier\n\n" + tail) == stream.only_error(tail) == "it broke"


def test_the_anthropic_and_responses_tails():
    assert error_formats.Anthropic.body("slow down", 429)["error"]["type"] == "rate_limit_error"
    assert error_formats.Anthropic.body("busy", 503)["error"]["type"] == "overloaded_error"
    ping = b'event: ping\ndata: {"type":"ping"}\n\n'
    assert error_formats.Anthropic.only_error(ping + error_formats.Anthropic.stream_tail("x")) == "x"
    assert error_formats.Anthropic.error_at_end(ping) is None
    after = b'event: response.output_text.delta\ndata: {"type":"x","sequence_number":41}\n\n'
    tail = error_formats.Responses.stream_tail("x", after)
    assert json.loads(tail.split(b"data: ")[1])["sequence_number"] == 42
