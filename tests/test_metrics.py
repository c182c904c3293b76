"""GET /metrics on the hub and the agent: Prometheus' format (read with prometheus_client's own parser),
figures that move as jobs run, bounded labels, and the guard."""

from __future__ import annotations

import json
import re
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import report_cpu

DASHBOARD = Path(__file__).parent.parent / "docs" / "grafana-dashboard.json"


async def exposition(http: aiohttp.ClientSession, url: str, headers: dict | None = None) -> str:
    async with http.get(url + "/metrics", headers=headers or {}) as r:
        assert r.status == 200, await r.text()
        assert r.content_type == "text/plain"
        return await r.text()


async def scrape(http: aiohttp.ClientSession, url: str, headers: dict | None = None) -> dict[tuple, float]:
    """Every sample, keyed by (name, sorted labels)."""
    text = await exposition(http, url, headers)
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: dict[tuple, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_hub_metrics_move_as_jobs_run(fleet, http):
    sim = await fleet.sim()
    hub = await fleet.hub()
    await fleet.node(hub, sim, "n1")
    before = await scrape(http, hub.url)
    assert value(before, "ollama_hub_nodes", status="online") == 1
    assert value(before, "ollama_hub_node_online", node="n1") == 1
    for stream in (True, False):
        async with http.post(
            hub.url + "/jobs", json={"model": "llama3", "prompt": "x", "stream": stream}
        ) as r:
            assert r.status == 200
            await r.read()
    async with http.post(hub.url + "/v1/chat/completions", json={"model": "llama3", "messages": []}) as r:
        assert r.status == 200
    async with http.post(hub.url + "/jobs", json={"model": "made-up-name-1", "prompt": "x"}) as r:
        assert r.status == 404
    after = await scrape(http, hub.url)
    done = {"model": "llama3:latest", "node": "n1", "outcome": "done"}
    assert value(after, "ollama_hub_jobs_total", route="jobs", **done) == 2
    assert value(after, "ollama_hub_jobs_total", route="openai", **done) == 1
    # A name a caller made up is never a label of its own.
    assert (
        value(after, "ollama_hub_jobs_total", model="other", node="", route="jobs", outcome="rejected") == 1
    )
    assert not any("made-up" in str(key) for key in after)
    assert value(after, "ollama_hub_job_duration_seconds_count", model="llama3:latest") == 3
    assert value(after, "ollama_hub_time_to_first_token_seconds_count", model="llama3:latest") == 3
    assert value(after, "ollama_hub_queue_wait_seconds_count", model="llama3:latest") == 3
    assert value(after, "ollama_hub_tokens_generated_total", model="llama3:latest", node="n1") > 0
    assert value(after, "ollama_hub_node_slots", node="n1") >= 1
    assert value(after, "ollama_hub_journal_up") == 1
    assert value(after, "ollama_hub_journal_jobs_written_total") >= 0


async def test_failovers_are_counted_by_reason(fleet, http):
    broken = await fleet.sim(fail_rate=1.0)
    good = await fleet.sim()
    hub = await fleet.hub()
    await fleet.node(hub, broken, "broken")
    await report_cpu(http, hub, await fleet.node(hub, good, "good"), 0.9)  # the broken one is tried first
    for _ in range(2):
        async with http.post(
            hub.url + "/jobs", json={"model": "llama3", "prompt": "x", "stream": False}
        ) as r:
            assert r.status == 200
    samples = await scrape(http, hub.url)
    failovers = {key: v for key, v in samples.items() if key[0] == "ollama_hub_failovers_total"}
    assert sum(failovers.values()) >= 1 and all(dict(key[1])["reason"] for key in failovers)


async def test_metrics_take_an_admin_key_unless_public(fleet, http):
    hub = await fleet.hub(API_KEYS="k1-0123456789abcdef", ADMIN_KEYS="a1-0123456789abcdef")
    async with http.get(hub.url + "/metrics") as r:
        assert r.status == 401
    async with http.get(hub.url + "/metrics", headers={"Authorization": "Bearer k1-0123456789abcdef"}) as r:
        assert r.status == 403 and "needs an admin key" in (await r.json())["detail"]
    assert await scrape(http, hub.url, {"Authorization": "Bearer a1-0123456789abcdef"})
    public = await fleet.hub(API_KEYS="k1-0123456789abcdef", METRICS_PUBLIC="1")
    assert await scrape(http, public.url)
    async with http.get(public.url + "/nodes") as r:
        assert r.status == 401  # only /metrics opens


async def test_agent_metrics(fleet, http):
    sim = await fleet.sim()
    hub = await fleet.hub(CLUSTER_TOKEN="t" * 32)
    node = await fleet.node(hub, sim, "n1", CLUSTER_TOKEN="t" * 32)
    async with http.get(node.url + "/metrics") as r:
        assert r.status == 401
    token = {"Authorization": "Bearer " + "t" * 32}
    async with http.post(hub.url + "/jobs", json={"model": "llama3", "prompt": "x", "stream": False}) as r:
        assert r.status == 200
    samples = await scrape(http, node.url, token)
    assert value(samples, "ollama_node_ollama_up", node="n1") == 1
    assert value(samples, "ollama_node_jobs_total", node="n1", route="/api/generate") == 1
    assert value(samples, "ollama_node_requests_in_flight", node="n1") == 0
    assert value(samples, "process_resident_memory_bytes") > 0
    await sim.stop()  # Ollama goes away: the next job finds it unreachable
    async with http.post(node.url + "/api/generate", json={"model": "llama3"}, headers=token) as r:
        assert r.status == 502
    samples = await scrape(http, node.url, token)
    assert value(samples, "ollama_node_relay_errors_total", node="n1") == 1


async def test_the_grafana_dashboard_uses_only_metrics_that_exist(fleet, http):
    hub = await fleet.hub()
    sim = await fleet.sim()
    node = await fleet.node(hub, sim, "n1")
    async with http.post(hub.url + "/jobs", json={"model": "llama3", "prompt": "x", "stream": False}) as r:
        assert r.status == 200
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"], "gauge": [""]}
    names = {  # every series each daemon declares, with or without samples yet
        family.name + suffix
        for url in (hub.url, node.url)
        for family in text_string_to_metric_families(await exposition(http, url))
        for suffix in suffixes.get(family.type, [""])
    }
    dashboard = json.loads(DASHBOARD.read_text())
    expressions = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(expressions) >= 10
    used = {m for e in expressions for m in re.findall(r"\b(ollama_(?:hub|node)_[a-z_]+)", e)}
    assert used and used <= names, used - names


async def test_series_of_models_and_nodes_that_are_gone_are_dropped(fleet, http):
    hub = await fleet.hub()
    await fleet.node(hub, await fleet.sim(), "n1")
    for n in range(30):  # copies made, used, deleted: their series must not stay for ever
        copy = {"source": "llama3", "destination": f"copy{n}"}
        async with http.post(hub.url + "/api/copy", json=copy) as r:
            assert r.status == 200
        job = {"model": f"copy{n}", "prompt": "x", "stream": False}
        async with http.post(hub.url + "/api/generate", json=job) as r:
            assert r.status == 200
    assert 'model="copy29:latest"' in await exposition(http, hub.url)
    for n in range(30):
        async with http.delete(hub.url + "/api/delete", json={"model": f"copy{n}"}) as r:
            assert r.status == 200
    text = await exposition(http, hub.url)
    assert 'model="copy' not in text and 'model="llama3:latest"' not in text  # llama3 ran no job
    assert 'ollama_hub_jobs_total{model="other"' not in text
