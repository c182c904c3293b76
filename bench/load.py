"""The load generator every scenario shares: closed-loop requests and concurrent streams, over aiohttp."""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from dataclasses import asdict, dataclass
from datetime import datetime

import aiohttp


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


@dataclass
class Latency:
    requests: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float
    per_second: float

    def as_dict(self) -> dict:
        return asdict(self)


async def closed_loop(url: str, body: dict, concurrency: int, requests: int, warmup: int = 50) -> Latency:
    """`concurrency` workers, each sending its next request when the last one is answered."""
    payload = json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    latencies: list[float] = []
    errors = 0
    remaining = warmup + requests

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:

        async def worker() -> None:
            nonlocal remaining, errors
            while remaining > 0:
                remaining -= 1
                record = remaining < requests
                started = time.perf_counter()
                async with session.post(url, data=payload, headers=headers) as response:
                    await response.read()
                    ok = response.status == 200
                if record:
                    latencies.append(time.perf_counter() - started)
                    errors += not ok

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    # The warm-up requests are inside `elapsed`, but few; throughput uses the recorded ones over their share.
    measured = elapsed * len(latencies) / (warmup + requests)
    return Latency(
        requests=len(latencies),
        errors=errors,
        seconds=round(elapsed, 3),
        p50_ms=round(percentile(latencies, 50) * 1000, 3),
        p99_ms=round(percentile(latencies, 99) * 1000, 3),
        per_second=round(len(latencies) / measured, 1),
    )


@dataclass
class Streams:
    streams: int
    errors: int
    chunks: int
    seconds: float
    chunks_per_second: float
    ttft_p50_ms: float
    ttft_p99_ms: float
    delay_p50_ms: float  # from the simulator's created_at stamp to arrival at the client
    delay_p99_ms: float
    gap_p50_ms: float  # between consecutive chunks of one stream
    gap_p99_ms: float

    def as_dict(self) -> dict:
        return asdict(self)


# How a stream's error begins in each dialect: Ollama's NDJSON line, OpenAI's data event, Anthropic's and the
# Responses API's named event. (A Responses object's `"error": null` is none of them.)
ERROR_LINES = (b'{"error"', b'data: {"error"', b"event: error")


def stamp(line: bytes) -> float | None:
    try:
        created = json.loads(line).get("created_at")
        return datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp() if created else None
    except (ValueError, AttributeError):
        return None


async def concurrent_streams(url: str, body: dict, streams: int) -> Streams:
    """Start `streams` streaming requests at once and time every chunk as it arrives."""
    payload = json.dumps(body).encode()
    ttfts: list[float] = []
    gaps: list[float] = []
    delays: list[float] = []
    chunks = errors = 0

    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=streams), timeout=aiohttp.ClientTimeout(total=600)
    ) as session:

        async def one() -> None:
            nonlocal chunks, errors
            started = time.perf_counter()
            last = None
            async with session.post(
                url, data=payload, headers={"Content-Type": "application/json"}
            ) as response:
                if response.status != 200:
                    errors += 1
                    await response.read()
                    return
                async for line in response.content:
                    now = time.perf_counter()
                    if last is None:
                        ttfts.append(now - started)
                    else:
                        gaps.append(now - last)
                    last = now
                    chunks += 1
                    if line.startswith(ERROR_LINES):
                        errors += 1
                    # Sample the one-way delay on a share of chunks; parsing all would slow the client down.
                    if chunks % 16 == 0 and (created := stamp(line)) is not None:
                        delays.append(time.time() - created)

        started = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(streams)))
        elapsed = time.perf_counter() - started
    ms = lambda v: round(v * 1000, 3)  # noqa: E731
    return Streams(
        streams=streams,
        errors=errors,
        chunks=chunks,
        seconds=round(elapsed, 3),
        chunks_per_second=round(chunks / elapsed, 1),
        ttft_p50_ms=ms(percentile(ttfts, 50)),
        ttft_p99_ms=ms(percentile(ttfts, 99)),
        delay_p50_ms=ms(statistics.median(delays)) if delays else float("nan"),
        delay_p99_ms=ms(percentile(delays, 99)),
        gap_p50_ms=ms(percentile(gaps, 50)),
        gap_p99_ms=ms(percentile(gaps, 99)),
    )
