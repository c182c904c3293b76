"""GET /stats, and GET / for browsers (the dashboard) and for Ollama clients (plain text)."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from shared.wire import Heartbeat, Load


async def beat(
    http, hub, node_id: str, status: str = "online", models=("llama3:latest",), cpu: float = 0.2
) -> None:
    body = Heartbeat(
        node_id=node_id, port=9, models=list(models), load=Load(cpu=cpu, memory=0.5), status=status
    )
    async with http.post(hub.url + "/nodes/heartbeat", json=body.model_dump()) as r:
        assert r.status == 200


async def test_stats_summarises_the_fleet(fleet, http):
    sim = await fleet.sim()
    hub = await fleet.hub()
    await fleet.node(hub, sim, "n1")
    await beat(http, hub, "leaving", status="draining", models=["mistral"])
    async with http.post(hub.url + "/jobs", json={"model": "llama3", "prompt": "x", "stream": False}) as r:
        assert r.status == 200
    async with http.post(hub.url + "/jobs", json={"model": "absent", "prompt": "x"}) as r:
        assert r.status == 404  # a caller's mistake: counted nowhere
    async with http.post(hub.url + "/jobs", json={"model": "mistral", "prompt": "x"}) as r:
        assert r.status == 503  # an outage: only a draining node has it
    async with http.get(hub.url + "/stats") as r:
        stats = await r.json()
    assert stats["nodes"] == {"total": 2, "online": 1, "offline": 0, "degraded": 0, "draining": 1}
    assert stats["jobs"] == {"in_flight": 0, "served": 1, "failed": 1}
    assert stats["models"]["llama3:latest"] == {"nodes": ["n1"], "online": ["n1"]}
    assert stats["models"]["mistral:latest"] == {"nodes": ["leaving"], "online": []}


async def test_root_is_ollama_is_running_for_clients_and_a_page_for_browsers(fleet, http):
    hub = await fleet.hub()
    async with http.get(hub.url + "/") as r:
        assert (r.status, r.content_type, await r.text()) == (200, "text/plain", "Ollama is running")
    async with http.head(hub.url + "/") as r:
        assert r.status == 200 and await r.read() == b""
    async with http.get(hub.url + "/", headers={"Accept": "text/html,application/xhtml+xml"}) as r:
        page = await r.text()
    assert r.content_type == "text/html" and "<table" in page
    assert "http://" not in page.replace("http-equiv", "") and "https://" not in page  # nothing from a CDN


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Headless, and nothing that reaches for the network beyond the page itself.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


async def page_after_its_refresh(url: str, profile: Path) -> str:
    """The page's DOM once its script has run for five seconds of (virtual) time."""
    proc = await asyncio.create_subprocess_exec(
        CHROMIUM,
        *CHROMIUM_FLAGS,
        f"--user-data-dir={profile}",
        "--virtual-time-budget=5000",
        "--dump-dom",
        url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    dom, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
    return dom.decode()


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (make test installs it)")
async def test_dashboard_renders_the_fleet_in_headless_chromium(fleet, http, tmp_path):
    hub = await fleet.hub()
    await beat(http, hub, "alpha-node")
    await beat(http, hub, "beta-node", status="draining")
    page = await page_after_its_refresh(hub.url + "/", tmp_path)
    assert 'data-node-id="alpha-node"' in page and 'data-node-id="beta-node"' in page
    assert '<td class="status online">online</td>' in page
    assert '<td class="status draining">draining</td>' in page
    assert "2 nodes: 1 online" in page


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (make test installs it)")
async def test_dashboard_sends_the_api_key_from_its_address(fleet, http, tmp_path):
    hub = await fleet.hub(API_KEYS="dash-key")
    await beat(http, hub, "keyed-node")
    assert 'data-node-id="keyed-node"' in await page_after_its_refresh(hub.url + "/#key=dash-key", tmp_path)
