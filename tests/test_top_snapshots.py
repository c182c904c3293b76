"""Snapshots of ollama-top's main screen at 80x24 and 120x40, against a real hub run in a thread."""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.request
from collections.abc import Iterator

import pytest

from ollama_connector.hubd.app import create_app
from ollama_connector.hubd.settings import HubSettings
from ollama_connector.shared.daemon import start_runner
from ollama_connector.shared.wire import Capacity, Gpu, Heartbeat, Load, LoadedModel
from ollama_connector.tui.app import OllamaTop
from ollama_connector.tui.render import parse_time
from ollama_connector.tui.table import NodeTable

# A fixed port, because the hub's URL is part of the picture.
PORT = 29111  # below the ephemeral range (32768 and up), so no outgoing connection can hold it
HUB = f"http://127.0.0.1:{PORT}"
FLEET = [
    ("gpu-box-1", 0.35, 0.62, ["llama3:latest", "mistral:latest", "qwen2.5:7b"], "online"),
    ("gpu-box-2", 0.92, 0.81, ["llama3:latest"], "online"),
    ("laptop", 0.05, 0.40, ["qwen2.5:7b", "nomic-embed-text:latest"], "draining"),
]

GPU_BOX = {  # what a GPU node's agent adds: its Ollama's settings, what is loaded, its GPU
    "capacity": Capacity(num_parallel=2, vram_bytes=24_000_000_000, default_context=32768),
    "loaded": [
        LoadedModel(
            name="llama3:latest",
            size=5_000_000_000,
            size_vram=5_000_000_000,
            context_length=8192,
            expires_at="2026-11-30T12:00:00Z",
        )
    ],
    "gpus": [
        Gpu(name="NVIDIA RTX 4090", memory_total=24_000_000_000, memory_used=6_000_000_000, utilization=0.4)
    ],
}


@pytest.fixture(scope="module")
def hub() -> Iterator[str]:
    """The real hub on its own event loop in a thread, since snap_compare runs the app on another loop."""
    loop = asyncio.new_event_loop()
    settings = HubSettings.from_env({"HUB_HOST": "127.0.0.1", "HUB_PORT": str(PORT), "JOURNAL_PATH": "off"})
    runner = loop.run_until_complete(start_runner(create_app(settings), ["127.0.0.1"], PORT))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    for node_id, cpu, memory, models, status in FLEET:
        beat = Heartbeat(
            node_id=node_id,
            ipv4=f"10.0.0.{len(node_id)}",
            port=8001,
            models=models,
            load=Load(cpu=cpu, memory=memory),
            status=status,
            **(GPU_BOX if node_id == "gpu-box-1" else {}),
        )
        request = urllib.request.Request(
            HUB + "/nodes/heartbeat",
            data=beat.model_dump_json().encode(),
            headers={"Content-Type": "application/json"},
        )
        urllib.request.urlopen(request, timeout=5).close()
    yield HUB
    asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=10)
    loop.close()


def fixed_clock() -> float:
    """Three seconds after the latest heartbeat, so every age reads the same in every run."""
    with urllib.request.urlopen(HUB + "/nodes", timeout=5) as response:
        nodes = json.load(response)
    latest = max(parse_time(n["last_seen"]) for n in nodes)
    return latest + 3.2


async def rows_shown(pilot) -> None:
    table = pilot.app.query_one(NodeTable)
    while table.row_count < len(FLEET):
        await pilot.pause(0.05)
    await pilot.pause()


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
def test_main_screen(hub, snap_compare, size):
    assert snap_compare(app_at_a_fixed_time(hub), terminal_size=size, run_before=rows_shown)


def app_at_a_fixed_time(hub: str) -> OllamaTop:
    now = fixed_clock()
    return OllamaTop(hub, interval=60, clock=lambda: now)


def test_sort_arrow_moves_even_when_the_rows_do_not(hub, snap_compare):
    async def sort_by_memory(pilot) -> None:
        await rows_shown(pilot)
        await pilot.press("s", "s", "s")  # node -> status -> cpu -> memory: the same order as cpu

    assert snap_compare(app_at_a_fixed_time(hub), terminal_size=(120, 40), run_before=sort_by_memory)


def test_shrinking_the_terminal_switches_to_the_narrow_layout_at_once(hub, snap_compare):
    async def shrink(pilot) -> None:
        await rows_shown(pilot)
        await pilot.resize_terminal(80, 24)
        await pilot.pause()

    assert snap_compare(app_at_a_fixed_time(hub), terminal_size=(120, 40), run_before=shrink)


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
def test_help_screen(hub, snap_compare, size):
    assert snap_compare(app_at_a_fixed_time(hub), terminal_size=size, press=["question_mark"])


def test_details_screen(hub, snap_compare):
    async def open_details(pilot) -> None:
        await rows_shown(pilot)
        await pilot.press("enter")
        await pilot.pause()

    assert snap_compare(app_at_a_fixed_time(hub), terminal_size=(80, 24), run_before=open_details)


def test_prompt_screen_names_a_bad_option(hub, snap_compare):
    async def bad_temperature(pilot) -> None:
        await rows_shown(pilot)
        await pilot.press("p", *"why", "tab", "minus", "enter")
        await pilot.pause()

    assert snap_compare(app_at_a_fixed_time(hub), terminal_size=(80, 24), run_before=bad_temperature)
