"""What an operator reads when something is set up wrong: misspelt settings, a wrong token, an Ollama given
as the hub, refused heartbeats in the hub's log; each in the project's words, never a library's repr."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

from ollama_connector.hubd.settings import HubSettings
from ollama_connector.noded.settings import NodeSettings
from tests.conftest import Processes

TOKEN = "right-token-0123456789"


def run(program: str, **env: str) -> subprocess.CompletedProcess:
    path = str(Path(sys.executable).with_name(program))
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("HUB_", "NODE_", "OLLAMA_"))}
    return subprocess.run([path, "--check"], env={**clean, **env}, capture_output=True, text=True, timeout=60)


def test_a_misspelt_setting_is_named_with_the_closest_real_one():
    said = HubSettings.strays(
        "ollama-hubd", {"HUB_PROT": "1", "API_KEY": "x", "PATH": "/bin", "HUB_PORT": "1"}
    )
    assert said == [
        "API_KEY is set, but ollama-hubd has no such setting; did you mean API_KEYS?",
        "HUB_PROT is set, but ollama-hubd has no such setting; did you mean HUB_PORT?",
    ]
    strays = NodeSettings.strays(
        "ollama-noded", {"NODE_OPTIONS": "x", "OLLAMA_HOST": "0.0.0.0", "NODE_ID": "a"}
    )
    assert strays == ["OLLAMA_HOST is set, but ollama-noded has no such setting (see ollama-noded --help)"]
    checked = run("ollama-hubd", HUB_HOST="127.0.0.1", HUB_PROT="16020")
    assert (
        checked.returncode == 0
        and "warn  HUB_PROT is set" in checked.stdout
        and "HUB_PORT?" in checked.stdout
    )
    refused = run("ollama-noded", SERVER_URL="hub.lan:8000", NODE_WEIGTH="2")
    assert refused.returncode != 0
    assert (
        "SERVER_URL='hub.lan:8000'" in refused.stderr
        and "needs a scheme, like http://hub.lan:8000" in refused.stderr
    )
    assert "did you mean NODE_WEIGHT?" in refused.stderr


def test_the_agents_check_proves_its_token_and_knows_an_ollama_from_a_hub(tmp_path):
    fleet = Processes(logs=tmp_path)
    try:
        ollama, _ = fleet.sim()
        hub, _ = fleet.hub(CLUSTER_TOKEN=TOKEN)
        common = {"NODE_HOST": "127.0.0.1", "NODE_PORT": "0", "OLLAMA_BASE_URL": ollama, "NODE_ID": "checked"}
        wrong = run("ollama-noded", SERVER_URL=hub, CLUSTER_TOKEN="wrong-token-0123456789", **common)
        assert wrong.returncode == 1 and f"FAIL  the hub at {hub} refused our CLUSTER_TOKEN" in wrong.stdout
        right = run("ollama-noded", SERVER_URL=hub, CLUSTER_TOKEN=TOKEN, **common)
        assert right.returncode == 0, right.stdout
        assert f"ok    the hub at {hub} accepts this node's CLUSTER_TOKEN as node 'checked'" in right.stdout
        assert "checked" not in (tmp_path / "hub-registry").name and '"checked"' not in _get(hub + "/nodes")
        ollama_as_hub = run("ollama-noded", SERVER_URL=ollama, CLUSTER_TOKEN=TOKEN, **common)
        assert "is an Ollama server, not a hub" in ollama_as_hub.stdout
        down = run(
            "ollama-noded",
            SERVER_URL="http://127.0.0.1:9",
            **{**common, "OLLAMA_BASE_URL": "http://127.0.0.1:9"},
        )
        assert "connection refused by 127.0.0.1:9" in down.stdout and "Errno" not in down.stdout
    finally:
        fleet.stop()


def _get(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read().decode()


async def test_refused_heartbeats_are_logged_once_per_source_until_it_gets_in(fleet, http, caplog):
    hub = await fleet.hub(CLUSTER_TOKEN=TOKEN)
    beat = {"node_id": "lost", "port": 9}

    async def send(token: str) -> int:
        headers = {"Authorization": f"Bearer {token}", "X-Node-Id": "lost"}
        async with http.post(hub.url + "/nodes/heartbeat", json=beat, headers=headers) as r:
            return r.status

    with caplog.at_level(logging.WARNING):
        assert [await send("wrong-token-0123456789") for _ in range(3)] == [401] * 3
        assert await send(TOKEN) == 200
        assert await send("wrong-token-0123456789") == 401
    said = [r.getMessage() for r in caplog.records if "refused a heartbeat" in r.getMessage()]
    assert len(said) == 2 and all("claiming node 'lost'" in s and "from 127.0.0.1" in s for s in said)
