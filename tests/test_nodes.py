"""Heartbeats, the registry's life cycle, the cluster token and IPv6."""

from __future__ import annotations

import logging
import re

import aiohttp
import ollama
import pytest

from ollama_connector.hubd.settings import HubSettings
from ollama_connector.noded.heartbeat import build_heartbeat
from ollama_connector.noded.settings import NodeSettings
from ollama_connector.shared.settings import ConfigError
from ollama_connector.sim.keys import ENGINE
from tests.conftest import wait_until

SEED_FIELDS = {
    "node_id", "ipv4", "ipv6", "port", "models", "metadata", "load",
    "last_seen", "status", "active_jobs", "failure_count",
}  # fmt: skip


async def test_nodes_in_the_seeds_shape(fleet, http):
    sim = await fleet.sim()
    hub = await fleet.hub()
    node = await fleet.node(hub, sim, "ollama-node-1")
    async with http.get(hub.url + "/healthz") as r:
        assert await r.json() == {"status": "ok"}
    async with http.get(hub.url + "/nodes") as r:
        [listed] = await r.json()
    async with http.get(hub.url + "/nodes/ollama-node-1") as r:
        assert await r.json() == listed
    beside = {
        "dial_address",
        "served",
        "last_error",
        "capacity",
        "loaded",
        "running",
        "slots",
        "models_loaded",
    }
    beside |= {
        "gpus",
        "speeds",
        "load_seconds_per_gb",
        "backend",
        "restored",
        "prompt_cache",
        "hubs",
        "elsewhere",
    }
    assert set(listed) - SEED_FIELDS == beside  # beside the seed's fields
    assert listed["capacity"] == {
        "num_parallel": 1,
        "max_loaded_models": 3,
        "max_queue": 512,
        "vram_bytes": None,
        "default_context": 4096,  # Ollama's for a node with less than 23 GiB of VRAM
        "weight": 1.0,
    }
    assert listed["gpus"] == []  # no NVIDIA driver here: a CPU node, and it says so
    assert set(listed) >= SEED_FIELDS
    assert listed["dial_address"] == f"127.0.0.1:{node.port}" and listed["last_error"] is None
    assert listed["port"] == node.port and listed["status"] == "online" and listed["active_jobs"] == 0
    assert sorted(listed["models"]) == ["llama3:latest", "mistral:7b", "nomic-embed-text:latest"]
    assert 0 <= listed["load"]["cpu"] <= 1 and 0 < listed["load"]["memory"] <= 1
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", listed["last_seen"])
    assert listed["metadata"]["ollama_version"] == "0.33.0" and listed["metadata"]["cpu_count"] >= 1
    async with http.get(hub.url + "/nodes/nobody") as r:
        assert (r.status, await r.json()) == (404, {"detail": "Node 'nobody' not found"})


async def test_silent_node_goes_offline_then_is_removed(fleet, http):
    hub = await fleet.hub(HEARTBEAT_TTL_SECONDS="0.3", HEARTBEAT_OFFLINE_SECONDS="0.8")
    node = await fleet.node(hub, await fleet.sim(), "quiet")
    await node.stop()
    record = hub.registry.get("quiet")
    await wait_until(lambda: hub.registry.status(record) == "offline", what="offline")
    async with http.get(hub.url + "/nodes/quiet") as r:
        assert (await r.json())["status"] == "offline"
    async with http.post(hub.url + "/jobs", json={"model": "llama3", "prompt": "x"}) as r:
        assert r.status == 503
    await wait_until(lambda: hub.registry.get("quiet") is None, what="removal")
    async with http.get(hub.url + "/nodes/quiet") as r:
        assert r.status == 404


async def test_heartbeat_validation(fleet, http):
    hub = await fleet.hub()
    async with http.post(hub.url + "/nodes/heartbeat", json={"node_id": "x", "port": 70000}) as r:
        assert (
            r.status == 400
            and "port: Input should be less than or equal to 65535" in (await r.json())["detail"]
        )
    async with http.post(
        hub.url + "/nodes/heartbeat", json={"node_id": "x", "port": 1, "load": {"cpu": 2}}
    ) as r:
        assert r.status == 400 and "load.cpu" in (await r.json())["detail"]
    assert len(hub.registry) == 0


async def test_cluster_token_guards_heartbeats_and_execute(fleet, http):
    token = "s3cret-token-0123456789"
    hub = await fleet.hub(CLUSTER_TOKEN=token)
    sim = await fleet.sim()
    async with http.post(hub.url + "/nodes/heartbeat", json={"node_id": "x", "port": 1}) as r:
        assert r.status == 401
    wrong = await fleet.node(hub, sim, "wrong", wait=False, CLUSTER_TOKEN="nope-0123456789abcdef")
    node = await fleet.node(hub, sim, "right", CLUSTER_TOKEN=token)
    assert hub.registry.get("wrong") is None
    for bearer in (None, "Bearer nope-0123456789abcdef"):
        headers = {"Authorization": bearer} if bearer else {}
        async with http.post(
            node.url + "/execute", json={"model": "llama3", "prompt": "x"}, headers=headers
        ) as r:
            assert r.status == 401
    async with http.post(hub.url + "/jobs", json={"model": "llama3", "prompt": "x", "stream": False}) as r:
        assert r.status == 200 and r.headers["X-Node-Id"] == "right"
    assert wrong.state.active_jobs == 0


async def test_ipv6_node_on_loopback(fleet, http):
    hub = await fleet.hub(host="::1")
    await fleet.node(hub, await fleet.sim(), "v6", host="::1", NODE_IPV6="::1")
    assert hub.registry.get("v6").base_url.startswith("http://[::1]:")
    async with http.post(hub.url + "/jobs", json={"model": "llama3", "prompt": "x", "stream": False}) as r:
        assert r.status == 200 and r.headers["X-Node-Id"] == "v6"
    async with http.get(hub.url + "/nodes/v6") as r:
        assert (await r.json())["ipv6"] == "::1"


async def test_agent_retries_an_absent_hub_and_logs_once(fleet, caplog):
    caplog.set_level(logging.INFO)
    hub = await fleet.hub()
    url, port = hub.url, hub.port
    await hub.stop()
    await fleet.node(url, await fleet.sim(), "patient", HEARTBEAT_INTERVAL="0.05")
    await wait_until(lambda: "heartbeat to the hub" in caplog.text, what="the outage warning")
    again = await fleet.hub(HUB_PORT=str(port))
    await wait_until(lambda: again.registry.get("patient") is not None, what="registration after the outage")
    warnings = [r for r in caplog.records if "heartbeat to the hub" in r.getMessage()]
    assert len(warnings) == 1 and "reachable again" in caplog.text


async def test_ollama_down_means_no_models_but_still_heartbeating(fleet, http):
    sim = await fleet.sim()
    await sim.stop()
    hub = await fleet.hub()
    node = await fleet.node(hub, sim.url, "no-ollama")
    assert hub.registry.get("no-ollama").beat.models == []
    assert build_heartbeat(node.app).metadata["ollama_version"] is None
    async with http.get(node.url + "/healthz") as r:
        assert r.status == 503 and (await r.json())["ollama"] == "down"
    # Ollama comes back: the agent looks again within seconds, not at the next 30 s heartbeat.
    await fleet.sim(port=sim.port)
    record = hub.registry.get("no-ollama")
    await wait_until(lambda: record.beat.models, within=5, what="the models after Ollama's return")


@pytest.mark.parametrize(
    ("settings", "environ", "message"),
    [
        (HubSettings, {"HUB_PORT": "eighty"}, "HUB_PORT='eighty': Input should be a valid integer"),
        (
            HubSettings,
            {"NODE_MAX_FAILURES": "0"},
            "NODE_MAX_FAILURES='0': Input should be greater than or equal to 1",
        ),
        (HubSettings, {"LOG_LEVEL": "loud"}, "LOG_LEVEL='loud'"),
        (
            HubSettings,
            {"HEARTBEAT_TTL_SECONDS": "90", "HEARTBEAT_OFFLINE_SECONDS": "30"},
            "HEARTBEAT_OFFLINE_SECONDS",
        ),
        (NodeSettings, {"SERVER_URL": "hub:8000"}, "SERVER_URL='hub:8000'"),
        (NodeSettings, {"SKIP_MODEL_PULL": "maybe"}, "SKIP_MODEL_PULL='maybe'"),
    ],
)
def test_bad_configuration_names_the_variable(settings, environ, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        settings.from_env(environ)


def test_defaults_match_the_seed():
    hub = HubSettings.from_env({"CLUSTER_TOKEN": "t" * 16})
    node = NodeSettings.from_env({"CLUSTER_TOKEN": "t" * 16})
    assert (hub.port, hub.heartbeat_ttl, hub.heartbeat_offline, hub.max_failures, hub.request_timeout) == (
        8000, 90, 180, 3, 120,
    )  # fmt: skip
    assert (node.server_url, node.port, node.ollama_url, node.heartbeat_interval) == (
        ["http://localhost:8000"], 8001, "http://127.0.0.1:11434", 30,
    )  # fmt: skip
    assert node.required_models == [] and node.skip_model_pull is False  # nothing is pulled unless asked


async def test_agent_pulls_required_models_it_lacks(fleet):
    sim = await fleet.sim(models=["llama3"])
    hub = await fleet.hub()
    await fleet.node(hub, sim, "puller", SKIP_MODEL_PULL="0", REQUIRED_MODELS="qwen2.5:7b,llama3")
    record = hub.registry.get("puller")
    await wait_until(lambda: "qwen2.5:7b" in record.beat.models, what="the pulled model in a heartbeat")
    assert sorted(m.name for m in sim.app[ENGINE].catalog.all()) == ["llama3:latest", "qwen2.5:7b"]


async def test_api_keys_guard_the_callers_routes_in_each_dialect(fleet, http):
    hub = await fleet.hub(API_KEYS="k1-0123456789abcdef, k2-0123456789abcdef")
    await fleet.node(hub, await fleet.sim(), "n1")  # heartbeats need no API key
    async with http.get(hub.url + "/nodes") as r:
        assert (r.status, await r.json()) == (
            401,
            {"detail": "missing or wrong API key (Authorization: Bearer <key>)"},
        )
    async with http.get(hub.url + "/api/tags") as r:
        assert r.status == 401 and "API key" in (await r.json())["error"]
    async with http.get(
        hub.url + "/v1/models", headers={"Authorization": "Bearer nope-0123456789abcdef"}
    ) as r:
        assert r.status == 401 and (await r.json())["error"]["type"] == "invalid_request_error"
    for open_path in ("/healthz", "/"):
        async with http.get(hub.url + open_path) as r:
            assert r.status == 200
    async with http.post(
        hub.url + "/jobs",
        json={"model": "llama3", "prompt": "x", "stream": False},
        headers={"Authorization": "Bearer k2-0123456789abcdef"},
    ) as r:
        assert r.status == 200
    client = ollama.AsyncClient(
        host=hub.url, headers={"Authorization": "Bearer k1-0123456789abcdef"}
    )  # as OLLAMA_API_KEY does
    try:
        assert (await client.generate(model="llama3", prompt="x")).done
    finally:
        await client.close()


async def test_the_registry_survives_a_hub_restart(fleet, http, tmp_path, monkeypatch):
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path))  # as systemd's StateDirectory= sets it
    hub = await fleet.hub()
    await fleet.node(hub, await fleet.sim(), "n1")  # heartbeats every 30 s: none will come during this test
    port = hub.port
    await hub.stop()
    assert "n1" in (tmp_path / "registry.json").read_text()
    again = await fleet.hub(HUB_PORT=str(port))
    async with http.get(again.url + "/nodes/n1") as r:
        assert (await r.json())["status"] == "online"
    async with http.post(again.url + "/jobs", json={"model": "llama3", "prompt": "x", "stream": False}) as r:
        assert r.status == 200 and r.headers["X-Node-Id"] == "n1"


async def test_a_damaged_saved_registry_is_ignored(fleet, http, tmp_path):
    state = tmp_path / "registry.json"
    state.write_text('[{"heartbeat": {"node_id": ""}}, "junk"')
    hub = await fleet.hub(HUB_STATE_FILE=str(state))
    assert len(hub.registry) == 0
    state.write_text('[{"heartbeat": {"node_id": "", "port": 1}, "base_url": "x", "last_seen": 0}, 7]')
    assert len((await fleet.hub(HUB_STATE_FILE=str(state))).registry) == 0


@pytest.mark.parametrize(("settings", "host"), [(HubSettings, "HUB_HOST"), (NodeSettings, "NODE_HOST")])
def test_no_token_beyond_loopback_only_when_the_operator_says_so(settings, host):
    with pytest.raises(ConfigError, match=f"CLUSTER_TOKEN is not set and {host} listens on 0.0.0.0"):
        settings.from_env({})
    with pytest.raises(ConfigError, match="ALLOW_OPEN_CLUSTER=1"):
        settings.from_env({host: "127.0.0.1,192.0.2.1"})
    assert settings.from_env({host: "127.0.0.1,::1,localhost"}).cluster_token is None  # loopback: fine
    assert settings.from_env({"ALLOW_OPEN_CLUSTER": "1"}).allow_open_cluster
    assert settings.from_env({"CLUSTER_TOKEN": "secret-0123456789abcdef"}).hosts == ["0.0.0.0"]


async def test_two_agents_with_one_node_id_are_told_not_taken_in_turns(fleet, http, caplog):
    hub = await fleet.hub()
    first = await fleet.node(hub, await fleet.sim(models=["llama3"]), "twin")
    beat = hub.registry.get("twin").beat.model_dump() | {"models": ["mistral"]}
    # The same id from another address of this machine: a cloned VM with the same host name.
    elsewhere = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
    async with (
        aiohttp.ClientSession(connector=elsewhere) as clone,
        clone.post(hub.url + "/nodes/heartbeat", json=beat) as r,
    ):
        assert r.status == 409 and "is taken by the agent at 127.0.0.1" in (await r.json())["detail"]
    record = hub.registry.get("twin")
    assert "mistral" not in record.beat.models and record.base_url.endswith(f":{first.port}")
    assert "refused a heartbeat as twin from 127.0.0.2" in caplog.text


async def test_a_node_restored_after_a_restart_keeps_its_status_until_it_is_heard(
    fleet, http, tmp_path, caplog
):
    state = str(tmp_path / "registry.json")
    hub = await fleet.hub(HUB_STATE_FILE=state, NODE_MAX_FAILURES="1")
    sim = await fleet.sim(fail_rate=1.0)
    agent = await fleet.node(hub, sim, "dead")
    async with http.post(hub.url + "/jobs", json={"model": "llama3", "prompt": "x", "stream": False}) as r:
        assert r.status == 503
    assert hub.registry.status(hub.registry.get("dead")) == "degraded"
    await agent.stop()
    await hub.stop()  # saves the registry
    with caplog.at_level(logging.INFO):
        again = await fleet.hub(HUB_STATE_FILE=state)
    async with http.get(again.url + "/nodes/dead") as r:
        node = await r.json()
    assert node["status"] == "degraded" and node["restored"] and "simulated" in node["last_error"]["message"]
    assert "node dead restored from the saved registry" in caplog.text
    async with http.post(again.url + "/jobs", json={"model": "llama3", "prompt": "x", "stream": False}) as r:
        assert (
            r.status == 503 and not sim.stats.requests - 1
        )  # not offered the job: its one request was before
