"""Real daemons on real loopback sockets: the app factories the console scripts use, started in-process."""

from __future__ import annotations

import asyncio
import inspect
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from hubd.app import create_app as create_hub
from hubd.keys import REGISTRY
from hubd.registry import Registry
from hubd.settings import HubSettings
from noded.app import create_app as create_node
from noded.app import mark_listening
from noded.keys import STATE, AgentState
from noded.settings import NodeSettings
from shared.http import bound_port, start_runner
from shared.wire import Load
from sim.app import create_app as create_sim
from sim.behaviour import Behaviour
from sim.keys import ENGINE

MODELS = ["llama3", "mistral:7b", "nomic-embed-text"]
BIN = Path(sys.executable).parent


_handed_out: set[int] = set()


def free_port() -> int:
    """A port nothing listens on, never the same twice in a run (the kernel may offer one again at once)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port


class Processes:
    """The console scripts as real processes; each one's log goes to a file, shown when a test fails."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.procs: list[subprocess.Popen] = []

    def start(self, *argv: str, **env: str) -> subprocess.Popen:
        log = (self.logs / f"{len(self.procs)}-{argv[0]}.log").open("wb")
        proc = subprocess.Popen(
            [str(BIN / argv[0]), *argv[1:]],
            env={**os.environ, "LOG_LEVEL": "WARNING", **env},
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        log.close()
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for log in sorted(self.logs.glob("*.log")):
            if text := log.read_text(errors="replace").strip():
                print(f"--- {log.name}\n{text}")  # pytest shows this only for a failing test


async def answers(http: aiohttp.ClientSession, url: str) -> bool:
    try:
        async with http.get(url) as r:
            return r.status == 200
    except aiohttp.ClientError:
        return False


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    procs = Processes(tmp_path)
    yield procs
    procs.stop_all()


async def wait_until(predicate: Callable[[], object], within: float = 10.0, what: str = "condition") -> None:
    """Wait for a state another process or task will reach; fail with `what` if it never comes.

    The predicate may be a coroutine function (for a check made over HTTP).
    """
    deadline = time.monotonic() + within
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


@dataclass
class Running:
    app: web.Application
    runner: web.AppRunner
    host: str
    port: int

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def stop(self) -> None:
        if self.runner.server is not None:
            await self.runner.cleanup()


@dataclass
class Sim(Running):
    @property
    def behaviour(self) -> Behaviour:
        return self.app[ENGINE].behaviour

    @property
    def stats(self):
        return self.app[ENGINE].stats


@dataclass
class Hub(Running):
    @property
    def registry(self) -> Registry:
        return self.app[REGISTRY]


@dataclass
class Node(Running):
    node_id: str = ""

    @property
    def state(self) -> AgentState:
        return self.app[STATE]


class Fleet:
    """Starts simulators, hubs and nodes for one test and stops them all at its end."""

    def __init__(self) -> None:
        self.running: list[Running] = []

    async def _start(self, cls, app: web.Application, host: str, port: int = 0, **extra) -> Running:
        runner = await start_runner(app, [host], port)
        started = cls(app, runner, host, bound_port(runner), **extra)
        self.running.append(started)
        return started

    async def sim(self, models: list[str] = MODELS, host: str = "127.0.0.1", port: int = 0, **knobs) -> Sim:
        knobs.setdefault("tokens_per_second", 0)
        return await self._start(Sim, create_sim(models, Behaviour(**knobs)), host, port)

    async def hub(self, host: str = "127.0.0.1", **env: str) -> Hub:
        settings = HubSettings.from_env({"HUB_HOST": host, "HUB_PORT": "0", **env})
        return await self._start(Hub, create_hub(settings), host, settings.port)

    async def node(
        self,
        hub: Hub | str,
        sim: Sim | str,
        node_id: str,
        host: str = "127.0.0.1",
        wait: bool = True,
        **env: str,
    ) -> Node:
        environ = {
            "SERVER_URL": hub if isinstance(hub, str) else hub.url,
            "OLLAMA_BASE_URL": sim if isinstance(sim, str) else sim.url,
            "NODE_ID": node_id,
            "NODE_HOST": host,
            "NODE_PORT": "0",
            "HEARTBEAT_INTERVAL": "30",
            "SKIP_MODEL_PULL": "1",
            **env,
        }
        app = create_node(NodeSettings.from_env(environ))
        node = await self._start(Node, app, host, node_id=node_id)
        mark_listening(app, node.port)
        if wait and isinstance(hub, Hub):
            await wait_until(lambda: hub.registry.get(node_id) is not None, what=f"{node_id} to register")
        return node

    async def stop_all(self) -> None:
        for running in reversed(self.running):
            await running.stop()


@pytest.fixture
async def fleet() -> AsyncIterator[Fleet]:
    fleet = Fleet()
    try:
        yield fleet
    finally:
        await fleet.stop_all()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def report_cpu(http: aiohttp.ClientSession, hub: Hub, node: Node | str, cpu: float) -> None:
    """Re-send a node's last heartbeat with a chosen CPU load, so the hub's ranking is known in advance."""
    node_id = node if isinstance(node, str) else node.node_id
    beat = hub.registry.get(node_id).beat.model_copy(update={"load": Load(cpu=cpu, memory=0.5)})
    async with http.post(hub.url + "/nodes/heartbeat", json=beat.model_dump()) as r:
        assert r.status == 200
