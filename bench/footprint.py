"""Idle memory of the daemons, and what ollama-top costs while it watches a fleet."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import pty
import struct
import subprocess
import termios
import threading
import time

import aiohttp
import psutil

from bench.fleet import BIN, Fleet
from bench.scenarios import Size, cpu_seconds, fake_beat


def rss_mb(process: psutil.Process) -> float:
    return round(process.memory_info().rss / 2**20, 1)


def run_in_terminal(argv: list[str], columns: int = 120, rows: int = 40) -> tuple[subprocess.Popen, int]:
    """Start a full-screen program on a pseudo-terminal, and keep reading its output so it never blocks."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": str(columns), "LINES": str(rows)}
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True)
    os.close(slave)

    def drain() -> None:
        while True:
            try:
                if not os.read(master, 65536):
                    return
            except OSError:
                return

    threading.Thread(target=drain, daemon=True).start()
    return proc, master


async def keep_heartbeating(hub: str, count: int, stop: asyncio.Event) -> None:
    """`count` nodes whose load changes at every heartbeat, every two seconds, so the table keeps changing."""
    async with aiohttp.ClientSession() as session:
        while not stop.is_set():
            for i in range(count):
                body = json.dumps(fake_beat(i, ["llama3:latest", "qwen2.5:7b"])).encode()
                async with session.post(
                    hub + "/nodes/heartbeat", data=body, headers={"Content-Type": "application/json"}
                ) as response:
                    await response.read()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 2.0)


async def watch_top(hub: str, size: Size) -> dict:
    stop = asyncio.Event()
    beats = asyncio.create_task(keep_heartbeating(hub, size.top_nodes, stop))
    await asyncio.sleep(0.5)
    proc, master = run_in_terminal([str(BIN / "ollama-top"), "--hub", hub, "--interval", "1"])
    try:
        top = psutil.Process(proc.pid)
        await asyncio.sleep(3.0)  # start-up is not what we measure
        cpu_before, started = cpu_seconds(top), time.perf_counter()
        peak = 0.0
        while time.perf_counter() - started < size.top_seconds:
            await asyncio.sleep(0.5)
            peak = max(peak, rss_mb(top))
        cpu = 100 * (cpu_seconds(top) - cpu_before) / (time.perf_counter() - started)
        return {"nodes": size.top_nodes, "interval_s": 1, "cpu_percent": round(cpu, 2), "rss_mb_peak": peak}
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        os.close(master)
        stop.set()
        await beats


def footprint(size: Size) -> dict:
    with Fleet() as fleet:
        sim = fleet.sim()
        hub, hub_process = fleet.hub()
        _, node_process = fleet.node(hub, sim, "bench-node")
        time.sleep(2.0)
        idle = {"hubd_rss_mb": rss_mb(hub_process), "noded_rss_mb": rss_mb(node_process)}
        return {**idle, "ollama_top": asyncio.run(watch_top(hub, size))}
