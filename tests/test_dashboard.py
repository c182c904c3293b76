"""GET /stats, and GET / for browsers (the dashboard) and for Ollama clients (plain text)."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from ollama_connector.shared.wire import Heartbeat, Load
from tests.conftest import SCREENSHOTS, report_cpu


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
    rates = {key: stats["jobs"].pop(key) for key in ("jobs_per_second", "tokens_per_second")}
    assert stats["jobs"] == {"in_flight": 0, "served": 1, "failed": 1}
    assert rates["jobs_per_second"] > 0 and rates["tokens_per_second"] > 0  # over the last minute
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


async def chromium(url: str, profile: Path, *args: str) -> bytes:
    """Headless Chromium on `url`, after its script has run for five seconds of (virtual) time."""
    proc = await asyncio.create_subprocess_exec(
        CHROMIUM,
        *CHROMIUM_FLAGS,
        f"--user-data-dir={profile}",
        "--virtual-time-budget=5000",
        *args,
        url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
    return out


async def page_after_its_refresh(url: str, profile: Path) -> str:
    """The page's DOM once its script has run."""
    return (await chromium(url, profile, "--dump-dom")).decode()


async def screenshot(url: str, profile: Path, name: str, size: str = "1280,800") -> Path:
    """A picture of the page, kept with the test run's screenshots (listed at the end of the run)."""
    path = SCREENSHOTS / f"{name}.png"
    path.parent.mkdir(exist_ok=True)
    await chromium(url, profile, f"--screenshot={path}", f"--window-size={size}", "--hide-scrollbars")
    assert path.stat().st_size > 0
    return path


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (make test installs it)")
async def test_dashboard_tells_the_fleets_story_in_headless_chromium(fleet, http, tmp_path):
    hub = await fleet.hub()
    await fleet.node(hub, await fleet.sim(), "alpha-node")
    broken = await fleet.sim()
    await fleet.node(hub, broken, "gamma-node")
    await beat(http, hub, "beta-node", status="draining", models=("mistral:latest",))
    async with http.post(hub.url + "/jobs", json={"model": "llama3", "prompt": "x", "stream": False}) as r:
        assert r.status == 200
    await broken.stop()  # gamma's Ollama is gone: its next job fails over, and leaves its last error
    await report_cpu(http, hub, "gamma-node", 0.0)
    await report_cpu(http, hub, "alpha-node", 0.9)
    async with http.post(hub.url + "/jobs", json={"model": "llama3", "prompt": "x", "stream": False}) as r:
        assert r.status == 200 and r.headers["X-Node-Id"] == "alpha-node"
    page = await page_after_its_refresh(hub.url + "/", tmp_path / "dom")
    assert all(f'data-node-id="{n}"' in page for n in ("alpha-node", "beta-node", "gamma-node"))
    assert '<td class="status online">online</td>' in page
    assert '<td class="status draining">draining</td>' in page
    assert "3 nodes: 2 online" in page and "2 served, 0 failed" in page
    assert f"<td>127.0.0.1:{hub.registry.get('alpha-node').base_url.rsplit(':', 1)[1]}</td>" in page
    assert "is not answering" in page  # gamma's last error
    assert 'data-model="mistral:latest"' in page and "beta-node (not online)" in page
    assert (
        "3 models online" in page
    )  # llama3, mistral:7b and nomic-embed-text have an online node; mistral not
    assert "hub 0." in page and "jobs per second" in page and "jobs/s" in page and "tok/s" in page
    # Recent jobs: both ran on alpha-node (the second after gamma-node failed it).
    assert page.count('<td class="status done">done</td>') == 2 and "gamma-node" in page
    assert "alpha-node (2 tried)" in page
    await screenshot(hub.url + "/", tmp_path / "shot", "dashboard-1280")


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (make test installs it)")
async def test_one_node_reads_as_one_node(fleet, http, tmp_path):
    hub = await fleet.hub()
    await beat(http, hub, "only-node")
    assert "1 node: 1 online" in await page_after_its_refresh(hub.url + "/", tmp_path)


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (make test installs it)")
async def test_dashboard_sends_the_api_key_from_its_address(fleet, http, tmp_path):
    hub = await fleet.hub(API_KEYS="dash-key-0123456789")
    await beat(http, hub, "keyed-node")
    assert 'data-node-id="keyed-node"' in await page_after_its_refresh(
        hub.url + "/#key=dash-key-0123456789", tmp_path
    )
