"""An agent that reports to several hubs (SERVER_URL, comma-separated): each hub on its own schedule, so one
that is down or hung never delays the others, and jobs from any of them."""

from __future__ import annotations

import asyncio
import time

from textual.widgets import Static

from ollama_connector.sim.processes import free_port
from ollama_connector.tui.app import OllamaTop
from tests.conftest import wait_until
from tests.test_dashboard import CHROMIUM, page_after_its_refresh

JOB = {"model": "llama3", "prompt": "x", "stream": False, "options": {"num_predict": 2}}


async def test_an_agent_registers_with_every_hub_and_serves_each(fleet, http):
    first, second = await fleet.hub(), await fleet.hub()
    sim = await fleet.sim()
    await fleet.node(f"{first.url},{second.url}", sim, "shared", wait=False, HEARTBEAT_INTERVAL="0.5")
    for hub in (first, second):
        await wait_until(lambda hub=hub: hub.registry.get("shared") is not None, what="both hubs to know it")
        async with http.post(hub.url + "/api/generate", json=JOB) as r:
            assert r.status == 200 and r.headers["X-Node-Id"] == "shared", await r.text()
    await first.stop()  # one hub gone: the other keeps hearing from the node
    seen = second.registry.get("shared").last_seen
    await wait_until(lambda: second.registry.get("shared").last_seen > seen + 1.0, what="beats to go on")
    async with http.post(second.url + "/api/generate", json=JOB) as r:
        assert r.status == 200


async def test_a_hung_hub_does_not_delay_the_others(fleet, http):
    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # takes the heartbeat and says nothing, until the agent hangs up
        writer.close()

    hung = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    hung_url = f"http://127.0.0.1:{hung.sockets[0].getsockname()[1]}"
    try:
        hub = await fleet.hub()
        await fleet.node(
            f"{hung_url},{hub.url}", await fleet.sim(), "n1", wait=False, HEARTBEAT_INTERVAL="0.3"
        )
        await wait_until(lambda: hub.registry.get("n1") is not None, what="the live hub to know the node")
        started, seen = time.monotonic(), hub.registry.get("n1").last_seen
        await wait_until(lambda: hub.registry.get("n1").last_seen > seen + 1.0, what="beats every 0.3 s")
        assert time.monotonic() - started < 3.0  # not held up by the hub that never answers
    finally:
        hung.close()
        await hung.wait_closed()


async def test_a_node_reaching_fewer_hubs_than_expected_is_flagged(fleet, http, tmp_path):
    hub = await fleet.hub(EXPECTED_HUBS="2")
    nowhere = f"http://127.0.0.1:{free_port()}"  # a second hub that is down
    await fleet.node(f"{hub.url},{nowhere}", await fleet.sim(), "n1", wait=False, HEARTBEAT_INTERVAL="0.3")

    async def flagged() -> bool:
        async with http.get(hub.url + "/nodes/n1") as r:
            return r.status == 200 and (await r.json())["hubs"]["short"]

    await wait_until(flagged, what="the node flagged as short of hubs")
    async with http.get(hub.url + "/nodes/n1") as r:
        assert (await r.json())["hubs"] == {"configured": 2, "reached": 1, "short": True}
    async with http.get(hub.url + "/stats") as r:
        assert (await r.json())["hubs"] == {"expected": 2, "by_node": {"n1": 1}, "short": ["n1"]}
    async with http.get(hub.url + "/healthz") as r:  # open to probes: counts, and no node's name
        hubs = {"expected": 2, "nodes_by_hubs_reached": {"1": 1}, "nodes_short": 1}
        assert await r.json() == {"status": "ok", "hubs": hubs}
    app = OllamaTop(hub.url, interval=0.2)
    async with app.run_test(size=(80, 24)):
        header = app.query_one("#header", Static)
        await wait_until(lambda: "1 node below 2 hubs" in str(header.content), what="the header's flag")
    if CHROMIUM is not None:  # and on the dashboard
        page = await page_after_its_refresh(hub.url + "/", tmp_path / "dom")
        assert '<td class="status online" title="reaches 1 hub(s), fewer than expected">online!</td>' in page
        assert "1 node below 2 hubs" in page


async def test_a_hub_is_ready_for_callers_once_a_node_has_beaten_since_it_started(fleet, http):
    hub = await fleet.hub()
    async with http.get(hub.url + "/readyz") as r:  # alive, but it knows no node yet
        assert r.status == 503 and r.headers["Retry-After"] == "1"
        assert (await r.json())["detail"].startswith(
            "starting: no node has sent a heartbeat since the hub started"
        )
    async with http.get(hub.url + "/healthz") as r:
        assert r.status == 200
    await fleet.node(hub, await fleet.sim(), "n1")
    async with http.get(hub.url + "/readyz") as r:
        assert r.status == 200 and await r.json() == {"status": "ready"}
