"""`make demo`: a hub, two node agents and two simulated Ollamas on loopback, watched with ollama-top.

Quitting ollama-top stops the fleet. Without a terminal, the fleet runs until Ctrl-C or SIGTERM.
If a real Ollama answers on 127.0.0.1:11434, the first node uses it instead of a simulator.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

BIN = Path(sys.executable).parent
HUB = "http://127.0.0.1:8000"
REAL_OLLAMA = "http://127.0.0.1:11434"


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def start(argv: list[str], **env: str) -> subprocess.Popen:
    environ = {**os.environ, "LOG_LEVEL": "WARNING", **env}
    # A session of its own: Ctrl-C reaches only the demo, which then stops the fleet in order.
    return subprocess.Popen([str(BIN / argv[0]), *argv[1:]], env=environ, start_new_session=True)


def wait_for(url: str, what: str, within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while not answers(url):
        if time.monotonic() > deadline:
            sys.exit(f"demo: {what} did not start; is port {url.rsplit(':', 1)[-1]} free?")
        time.sleep(0.1)


def main() -> None:
    procs: list[subprocess.Popen] = []
    token = secrets.token_urlsafe(24)  # the demo fleet is secured like a real one
    try:
        ollamas = []
        for number, sim_port in ((1, 11435), (2, 11436)):
            if number == 1 and answers(REAL_OLLAMA + "/api/version"):
                print(f"demo: a real Ollama answers at {REAL_OLLAMA}; node-1 uses it")
                ollamas.append(REAL_OLLAMA)
                continue
            url = f"http://127.0.0.1:{sim_port}"
            procs.append(
                start(
                    [
                        "ollama-sim",
                        "--port",
                        str(sim_port),
                        "--tokens-per-second",
                        "30",
                        "--log-level",
                        "WARNING",
                    ]
                )
            )
            wait_for(url + "/api/version", f"ollama-sim on {url}")
            ollamas.append(url)
        procs.append(start(["ollama-hubd"], HUB_HOST="127.0.0.1", HUB_PORT="8000", CLUSTER_TOKEN=token))
        wait_for(HUB + "/healthz", "the hub")
        for number, ollama in enumerate(ollamas, start=1):
            procs.append(
                start(
                    ["ollama-noded"],
                    SERVER_URL=HUB,
                    NODE_ID=f"node-{number}",
                    NODE_HOST="127.0.0.1",
                    NODE_PORT=str(8000 + number),
                    OLLAMA_BASE_URL=ollama,
                    HEARTBEAT_INTERVAL="5",
                    SKIP_MODEL_PULL="1",
                    CLUSTER_TOKEN=token,
                )
            )
        if sys.stdin.isatty() and sys.stdout.isatty():
            # The fleet monitor in the foreground; quitting it (q) stops the fleet.
            subprocess.run([str(BIN / "ollama-top"), "--hub", HUB, "--interval", "1"], check=False)
            return
        print(
            f"""
ollama-connector demo: hub on {HUB}, nodes node-1 and node-2, heartbeats every 5 s.
Try, in another terminal:
  curl {HUB}/nodes
  curl {HUB}/jobs -d '{{"model": "llama3", "prompt": "Why is the sky blue?"}}'
  .venv/bin/ollama-top --hub {HUB}
Press Ctrl-C to stop the fleet.
""",
            flush=True,
        )
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        while all(proc.poll() is None for proc in procs):
            time.sleep(0.5)
        print("demo: a process of the fleet exited; stopping the rest")
    except KeyboardInterrupt:
        pass
    finally:
        # The reverse of the start: agents drain and tell the hub, then the hub stops, then the simulators.
        for proc in reversed(procs):
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
        print("demo: stopped")


if __name__ == "__main__":
    main()
