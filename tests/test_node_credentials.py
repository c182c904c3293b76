"""Nodes that cannot pose as each other: each node's own token (`ollama-hubd nodes`), bound to its id; the
shared CLUSTER_TOKEN binding an id to its first address; the agent's proof on every answer; and claims held
to sanity."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from ollama_connector.hubd.settings import HubSettings
from tests.conftest import wait_until

TOKEN = "t" * 32
GENERATE = {"model": "llama3", "prompt": "x", "stream": False}


def nodes(path: Path, *args: str) -> subprocess.CompletedProcess:
    """The real command line: `ollama-hubd nodes ...`."""
    program = str(Path(sys.executable).with_name("ollama-hubd"))
    return subprocess.run([program, "nodes", "--file", str(path), *args], capture_output=True, text=True)


def made(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_a_node_with_its_own_token_serves_and_cannot_pose_as_another(fleet, http, tmp_path, caplog):
    path = tmp_path / "nodes.toml"
    alpha, beta = made(nodes(path, "add", "alpha")), made(nodes(path, "add", "beta"))
    assert alpha.startswith("ocnn_") and alpha != beta
    assert alpha not in path.read_text() and oct(path.stat().st_mode & 0o777) == "0o600"
    assert "alpha" in nodes(path, "list").stdout and alpha not in nodes(path, "list").stdout
    hub = await fleet.hub(KEYS_FILE=str(tmp_path / "keys.toml"), CLUSTER_TOKEN=TOKEN)
    await fleet.node(hub, await fleet.sim(), "alpha", NODE_TOKEN=alpha)
    async with http.post(hub.url + "/api/generate", json=GENERATE) as r:
        assert r.status == 200 and r.headers["X-Node-Id"] == "alpha", await r.text()

    beat = hub.registry.get("alpha").beat.model_dump()
    async with http.post(
        hub.url + "/nodes/heartbeat", json=beat | {"node_id": "beta"}, headers=bearer(alpha)
    ) as r:
        assert r.status == 403 and "this node token is node 'alpha'" in (await r.json())["detail"]
    # The shared token cannot speak for a node that has its own.
    async with http.post(hub.url + "/nodes/heartbeat", json=beat, headers=bearer(TOKEN)) as r:
        assert r.status == 403 and "must present NODE_TOKEN" in (await r.json())["detail"]
    assert hub.registry.get("beta") is None

    # Revoked while the hub runs: its heartbeats are refused within seconds.
    assert nodes(path, "revoke", "alpha").returncode == 0
    with caplog.at_level(logging.INFO):

        async def refused() -> bool:
            async with http.post(hub.url + "/nodes/heartbeat", json=beat, headers=bearer(alpha)) as r:
                return r.status == 401

        await wait_until(refused, within=6, what="the revoked token to be refused")
    assert "revoked node alpha" in caplog.text
    assert nodes(path, "add", "alpha").returncode == 0  # a new token, unlike the old one
    assert made(nodes(path, "revoke", "alpha")) and nodes(path, "revoke", "alpha").returncode == 1


async def test_an_agent_whose_id_is_another_nodes_says_so(fleet, http, tmp_path, caplog):
    path = tmp_path / "nodes.toml"
    alpha = made(nodes(path, "add", "alpha"))
    hub = await fleet.hub(KEYS_FILE=str(tmp_path / "keys.toml"))
    with caplog.at_level(logging.WARNING):
        await fleet.node(hub, await fleet.sim(), "gamma", wait=False, NODE_TOKEN=alpha)
        await wait_until(
            lambda: "this node token is node 'alpha'" in caplog.text, what="the agent to say why"
        )
    assert hub.registry.get("gamma") is None


def test_a_hub_beyond_loopback_needs_no_shared_token_when_nodes_have_their_own(tmp_path):
    keys = str(tmp_path / "keys.toml")
    with pytest.raises(ValueError, match="CLUSTER_TOKEN is not set"):
        HubSettings.from_env({"KEYS_FILE": keys, "HUB_HOST": "0.0.0.0"})
    made(nodes(tmp_path / "nodes.toml", "add", "alpha"))
    assert HubSettings.from_env({"KEYS_FILE": keys, "HUB_HOST": "0.0.0.0"}).cluster_token is None


async def test_with_the_shared_token_an_id_stays_with_its_first_address_until_pruned(fleet, http):
    hub = await fleet.hub(CLUSTER_TOKEN=TOKEN, HEARTBEAT_TTL_SECONDS="0.2", HEARTBEAT_OFFLINE_SECONDS="60")
    beat = {"node_id": "solo", "port": 9, "models": ["llama3"]}
    async with http.post(hub.url + "/nodes/heartbeat", json=beat, headers=bearer(TOKEN)) as r:
        assert r.status == 200
    await wait_until(lambda: hub.registry.status(hub.registry.get("solo")) == "offline", what="offline")
    elsewhere = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
    async with (
        aiohttp.ClientSession(connector=elsewhere) as clone,
        clone.post(hub.url + "/nodes/heartbeat", json=beat, headers=bearer(TOKEN)) as r,
    ):
        assert r.status == 409, await r.text()  # offline is not gone: the id is still 127.0.0.1's


class NotAnAgent:
    """Whatever else may listen where a node said it is: it answers every request 200, with its own body."""

    def __init__(self) -> None:
        self.app = web.Application()
        self.app.router.add_route("*", "/{tail:.*}", self.answer)
        self.seen: list[str] = []

    async def answer(self, request: web.Request) -> web.Response:
        self.seen.append(request.path)
        return web.json_response({"response": "SECRET-FROM-ELSEWHERE", "done": True})


async def test_an_answer_without_the_agents_proof_is_never_relayed(fleet, http):
    hub = await fleet.hub(CLUSTER_TOKEN=TOKEN)
    impostor = NotAnAgent()
    runner = web.AppRunner(impostor.app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = site._server.sockets[0].getsockname()[1]
        beat = {"node_id": "elsewhere", "port": port, "models": ["llama3"], "capacity": {"weight": 10}}
        async with http.post(hub.url + "/nodes/heartbeat", json=beat, headers=bearer(TOKEN)) as r:
            assert r.status == 200
        await fleet.node(hub, await fleet.sim(), "real", CLUSTER_TOKEN=TOKEN)
        for _ in range(3):
            async with http.post(hub.url + "/api/generate", json=GENERATE) as r:
                body = await r.text()
                assert (
                    r.status == 200
                    and "SECRET-FROM-ELSEWHERE" not in body
                    and r.headers["X-Node-Id"] == "real"
                )
        assert impostor.seen  # it was tried, and its answer dropped
        async with http.get(hub.url + "/jobs") as r:
            assert "SECRET-FROM-ELSEWHERE" not in await r.text()
        record = hub.registry.get("elsewhere")
        assert record.failure_count >= 1 and "did not prove it is node elsewhere's agent" in record.last_error
    finally:
        await runner.cleanup()


async def test_what_a_node_claims_is_held_to_sanity(fleet, http, caplog):
    hub = await fleet.hub(CLUSTER_TOKEN=TOKEN, NODE_MAX_SLOTS="8")
    claims = {"num_parallel": 1024, "max_loaded_models": 1024, "weight": 1000}
    beat = {"node_id": "greedy", "port": 9, "models": ["llama3"], "capacity": claims}
    with caplog.at_level(logging.WARNING):
        for _ in range(2):
            async with http.post(hub.url + "/nodes/heartbeat", json=beat, headers=bearer(TOKEN)) as r:
                assert r.status == 200
    capacity = hub.registry.get("greedy").beat.capacity
    assert (capacity.num_parallel, capacity.max_loaded_models, capacity.weight) == (8, 8, 10.0)
    assert caplog.text.count("node greedy claims num_parallel=1024") == 1  # said once, not every beat
