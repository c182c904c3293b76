"""Real daemons on real loopback sockets: the app factories the console scripts use, started in-process."""

from __future__ import annotations

import asyncio
import inspect
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from ollama_connector.hubd.app import create_app as create_hub
from ollama_connector.hubd.app import runner_options
from ollama_connector.hubd.routing.keys import REGISTRY
from ollama_connector.hubd.routing.registry import Registry
from ollama_connector.hubd.settings import HubSettings
from ollama_connector.noded.app import create_app as create_node
from ollama_connector.noded.app import mark_listening
from ollama_connector.noded.app import runner_options as node_runner_options
from ollama_connector.noded.keys import STATE, AgentState
from ollama_connector.noded.settings import NodeSettings
from ollama_connector.shared.daemon import bound_port, start_runner
from ollama_connector.shared.wire import Load
from ollama_connector.sim.app import create_app as create_sim
from ollama_connector.sim.behaviour import Behaviour
from ollama_connector.sim.keys import ENGINE
from ollama_connector.sim.postgres import Postgres, bin_dir
from ollama_connector.sim.processes import BIN, ProcessFleet, agent_env, free_port

__all__ = ["BIN", "free_port"]

MODELS = ["llama3", "mistral:7b", "nomic-embed-text"]
# Pictures the tests take of what a person sees (the dashboard); listed at the end of the run.
SCREENSHOTS = Path(__file__).parent / "screenshots"


def pytest_addoption(parser) -> None:
    parser.addoption("--real", action="store_true", help="run tests/real: a real model (make test-real)")


def pytest_collection_modifyitems(config, items) -> None:
    """tests/real needs llama-cpp-python and a model: only `make test-real` (--real) runs it."""
    if config.getoption("--real"):
        return
    skip = pytest.mark.skip(reason="a real model: make test-real")
    for item in items:
        if "real" in item.keywords:
            item.add_marker(skip)


def pytest_sessionstart(session) -> None:
    for old in SCREENSHOTS.glob("*.png") if SCREENSHOTS.exists() else []:
        old.unlink()  # only this run's pictures are listed


def pytest_terminal_summary(terminalreporter) -> None:
    shots = sorted(SCREENSHOTS.glob("*.png")) if SCREENSHOTS.exists() else []
    if shots:
        terminalreporter.section("screenshots")
        for shot in shots:
            terminalreporter.write_line(str(shot))


class Processes(ProcessFleet):
    """The console scripts as real processes; each one's log goes to a file, shown when a test fails."""

    def show_logs(self) -> None:
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
async def processes(tmp_path: Path) -> AsyncIterator[Processes]:
    procs = Processes(logs=tmp_path)
    try:
        yield procs
    finally:
        # Waited for in a thread: an in-process hub must go on answering the agents' drain heartbeats.
        await procs.astop()
        procs.show_logs()


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
    tls: bool = False

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"

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

    @property
    def scheduler(self):
        return self.app[ENGINE].scheduler


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

    def __init__(self, state: Path) -> None:
        self.running: list[Running] = []
        self.state = state  # where hubs keep their job journals
        self.journal_url: str | None = None  # set: every hub's journal is this PostgreSQL database

    async def _start(
        self, cls, app: web.Application, host: str, port: int = 0, node_id: str = "", **options
    ) -> Running:
        runner = await start_runner(app, [host], port, **options)
        extra = {"node_id": node_id} if node_id else {}
        started = cls(app, runner, host, bound_port(runner), options.get("ssl_context") is not None, **extra)
        self.running.append(started)
        return started

    async def sim(
        self, models: list[str] = MODELS, host: str = "127.0.0.1", port: int = 0, api: str = "ollama", **knobs
    ) -> Sim:
        knobs.setdefault("tokens_per_second", 0)
        return await self._start(Sim, create_sim(models, Behaviour(**knobs), api=api), host, port)

    async def hub(self, host: str = "127.0.0.1", **env: str) -> Hub:
        env.setdefault("JOURNAL_PATH", str(self.state / f"journal-{len(self.running)}.sqlite3"))
        if self.journal_url is not None:
            env.setdefault("JOURNAL_URL", self.journal_url)
        env.setdefault("KEYS_FILE", str(self.state / f"keys-{len(self.running)}.toml"))  # never the user's
        settings = HubSettings.from_env({"HUB_HOST": host, "HUB_PORT": "0", **env})
        return await self._start(Hub, create_hub(settings), host, settings.port, **runner_options(settings))

    async def node(
        self,
        hub: Hub | str,
        sim: Sim | str,
        node_id: str,
        host: str = "127.0.0.1",
        wait: bool = True,
        **env: str,
    ) -> Node:
        hub_url = hub if isinstance(hub, str) else hub.url
        environ = agent_env(hub_url, sim if isinstance(sim, str) else sim.url, node_id, 0, host, **env)
        settings = NodeSettings.from_env(environ)
        app = create_node(settings)
        node = await self._start(Node, app, host, node_id=node_id, **node_runner_options(settings))
        mark_listening(app, node.port)
        if wait and isinstance(hub, Hub):
            await wait_until(lambda: hub.registry.get(node_id) is not None, what=f"{node_id} to register")
        return node

    async def stop_all(self) -> None:
        for running in reversed(self.running):
            await running.stop()


@pytest.fixture
async def fleet(tmp_path: Path) -> AsyncIterator[Fleet]:
    fleet = Fleet(tmp_path)
    try:
        yield fleet
    finally:
        await fleet.stop_all()


def throwaway_postgres() -> Iterator[Postgres]:
    """A PostgreSQL of its own (sim.postgres), removed afterwards; skipped where none is installed."""
    if bin_dir() is None:
        pytest.skip("needs PostgreSQL (make test installs Debian's postgresql)")
    server = Postgres().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """One throwaway PostgreSQL for the session; each test takes a database of its own."""
    yield from throwaway_postgres()


@pytest.fixture
def pg_url(postgres: Postgres) -> str:
    """A fresh, empty PostgreSQL database for one test: its URL."""
    return postgres.database()


@pytest.fixture(params=["sqlite", "postgres"])
def both_journals(request, fleet: Fleet) -> str:
    """Run the test twice: with each hub's own SQLite journal, then with one PostgreSQL journal for all."""
    if request.param == "postgres":
        fleet.journal_url = request.getfixturevalue("pg_url")
    return request.param


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    opened: list[socket.socket] = []

    def open_socket(address: tuple) -> socket.socket:
        family, kind, proto, *_ = address
        opened.append(socket.socket(family, kind, proto))
        return opened[-1]

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(socket_factory=open_socket)) as session:
        yield session
    # A request whose body the hub refused part-way leaves its connection closing until the last bytes are
    # sent: wait for it, so no open socket is left for a later test's garbage collection to find.
    await wait_until(lambda: all(s.fileno() == -1 for s in opened), what="the test's connections to close")


async def report_cpu(http: aiohttp.ClientSession, hub: Hub, node: Node | str, cpu: float) -> None:
    """Re-send a node's last heartbeat with a chosen CPU load, so the hub's ranking is known in advance."""
    node_id = node if isinstance(node, str) else node.node_id
    beat = hub.registry.get(node_id).beat.model_copy(update={"load": Load(cpu=cpu, memory=0.5)})
    async with http.post(hub.url + "/nodes/heartbeat", json=beat.model_dump()) as r:
        assert r.status == 200
