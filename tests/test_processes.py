"""The real console scripts as processes: the seed's examples, then a node SIGKILLed during a burst."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess

import pytest

from ollama_connector.hubd.settings import HubSettings
from ollama_connector.noded.settings import NodeSettings
from ollama_connector.sim.processes import agent_env
from tests.conftest import BIN, answers, free_port, wait_until


async def test_seed_examples_and_a_node_killed_during_a_burst(processes, http):
    hub_port = free_port()
    hub_url = f"http://127.0.0.1:{hub_port}"
    processes.start("ollama-hubd", HUB_HOST="127.0.0.1", HUB_PORT=str(hub_port))
    nodes = {}
    for name in ("ollama-node-1", "ollama-node-2"):
        sim_port, node_port = free_port(), free_port()
        processes.start(
            "ollama-sim",
            "--port",
            str(sim_port),
            "--tokens",
            "24",
            "--tokens-per-second",
            "200",
            "--models",
            "llama3,mistral",
        )
        nodes[name] = processes.start(
            "ollama-noded",
            **agent_env(hub_url, f"http://127.0.0.1:{sim_port}", name, node_port),
        )

    async def registered() -> bool:
        if not await answers(http, hub_url + "/healthz"):
            return False
        async with http.get(hub_url + "/nodes") as r:
            listed = await r.json()
        return len([n for n in listed if n["models"]]) == 2

    await wait_until(registered, within=30, what="two nodes with models registered")

    # The seed README's curl examples, as written there.
    async with http.get(hub_url + "/healthz") as r:
        assert await r.json() == {"status": "ok"}
    async with http.get(hub_url + "/nodes/ollama-node-1") as r:
        assert (await r.json())["status"] == "online"
    simple = {"model": "llama3", "prompt": "Explain quantum computing in simple terms", "stream": False}
    async with http.post(hub_url + "/jobs", json=simple) as r:
        assert r.status == 200 and (await r.json())["done"] is True
    with_options = {
        "model": "mistral",
        "prompt": "Write a haiku about programming",
        "options": {"temperature": 0.8, "num_predict": 50},
        "stream": False,
    }
    async with http.post(hub_url + "/jobs", json=with_options) as r:
        assert (await r.json())["eval_count"] == 50
    async with http.post(
        hub_url + "/jobs", json={"model": "llama3", "prompt": "Tell me a story", "stream": True}
    ) as r:
        lines = [json.loads(line) for line in (await r.read()).splitlines()]
        assert lines[-1]["done"] is True and all(not line["done"] for line in lines[:-1])

    # A burst of 40 jobs; one node is SIGKILLed while it holds some of them. None may fail.
    job = {"model": "llama3", "prompt": "burst", "stream": False, "options": {"num_predict": 40}}

    async def one() -> tuple[int, str]:
        async with http.post(hub_url + "/jobs", json=job) as r:
            body = await r.json()
            return r.status, r.headers.get("X-Node-Id", json.dumps(body))

    burst = [asyncio.create_task(one()) for _ in range(40)]

    async def victim_busy() -> bool:
        async with http.get(hub_url + "/nodes/ollama-node-1") as r:
            return (await r.json())["active_jobs"] > 0

    await wait_until(victim_busy, what="ollama-node-1 to hold a job")
    nodes["ollama-node-1"].send_signal(signal.SIGKILL)
    results = await asyncio.gather(*burst)
    assert [status for status, _ in results] == [200] * 40, results
    assert {node for _, node in results} <= {"ollama-node-1", "ollama-node-2"}
    assert any(node == "ollama-node-2" for _, node in results)

    async with http.get(hub_url + "/nodes") as r:
        listed = {n["node_id"]: n for n in await r.json()}
    assert all(n["active_jobs"] == 0 for n in listed.values()), listed
    assert listed["ollama-node-1"]["failure_count"] >= 1


def test_bad_configuration_exits_with_a_message():
    result = subprocess.run(
        [str(BIN / "ollama-hubd")],
        env={**os.environ, "HUB_PORT": "eighty"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert "HUB_PORT='eighty': Input should be a valid integer" in result.stderr
    assert "Traceback" not in result.stderr


async def run_program(*argv: str, **env: str) -> tuple[int, str, str]:
    """A console script to its end, without blocking the loop that serves the in-process fleet."""
    proc = await asyncio.create_subprocess_exec(
        str(BIN / argv[0]),
        *argv[1:],
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.parametrize(
    ("program", "settings"), [("ollama-hubd", HubSettings), ("ollama-noded", NodeSettings)]
)
async def test_help_lists_every_setting_and_starts_nothing(program, settings):
    code, out, _ = await run_program(program, "--help")
    assert code == 0 and f"usage: {program}" in out
    for field in settings.model_fields.values():
        assert f"\n  {field.alias} (default: " in out
    assert "Port to listen on." in out or "Port the agent listens on." in out
    code, out, _ = await run_program(program, "--version")
    assert code == 0 and out.startswith(f"{program} 0.")
    code, _, err = await run_program(program, "--bogus")
    assert code == 2 and "unrecognized arguments: --bogus" in err


async def test_the_agents_check_reaches_ollama_and_the_hub(fleet):
    sim, hub = await fleet.sim(), await fleet.hub()
    env = agent_env(hub.url, sim.url, "checked", free_port())
    code, out, _ = await run_program("ollama-noded", "--check", **env)
    assert code == 0, out
    assert "ok    Ollama 0.33.0 answers" in out and "3 model(s)" in out and "ok    the hub answers" in out
    await sim.stop()
    code, out, _ = await run_program("ollama-noded", "--check", **env)
    assert code == 1 and "FAIL  Ollama at" in out and "(OLLAMA_BASE_URL) does not answer" in out


async def test_start_up_errors_are_one_line_naming_what_to_change():
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = str(held.getsockname()[1])
        code, _, err = await run_program("ollama-hubd", HUB_HOST="127.0.0.1", HUB_PORT=port)
        assert code == 1 and "Traceback" not in err
        assert f"cannot listen on 127.0.0.1:{port}: the port is already in use" in err and "HUB_PORT" in err
        code, out, _ = await run_program("ollama-hubd", "--check", HUB_HOST="127.0.0.1", HUB_PORT=port)
        assert code == 1 and "FAIL  listen on 127.0.0.1" in out
        code, _, err = await run_program("ollama-sim", "--port", port)
        assert code == 1 and "Traceback" not in err and "--port" in err
    code, _, err = await run_program(
        "ollama-hubd", HUB_HOST="notahost.invalid", HUB_PORT="0", CLUSTER_TOKEN="t" * 16, ADMIN_KEYS="k" * 16
    )
    assert code == 1 and "Traceback" not in err
    assert "notahost.invalid" in err and "does not resolve" in err and "HUB_HOST" in err
    code, _, err = await run_program("ollama-hubd", HUB_HOST="0.0.0.0", HUB_PORT="0", CLUSTER_TOKEN="t" * 16)
    assert code == 1 and "Traceback" not in err and "no caller key" in err and "ALLOW_OPEN_API=1" in err
