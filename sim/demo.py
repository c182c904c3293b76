"""`make demo`: a hub, two node agents and two simulated Ollamas on loopback, watched with ollama-top.

Quitting ollama-top stops the fleet. Without a terminal, the fleet runs until Ctrl-C or SIGTERM.
If a real Ollama answers on 127.0.0.1:11434, the first node uses it instead of a simulator.
"""

from __future__ import annotations

import secrets
import signal
import subprocess
import sys
import tempfile
import time

from ollama_connector.shared.cli import can_listen
from ollama_connector.sim.processes import BIN, ProcessFleet, answers

HUB_PORT = 8000
HUB = f"http://127.0.0.1:{HUB_PORT}"
REAL_OLLAMA = "http://127.0.0.1:11434"
HEARTBEAT = 5  # seconds; the production default is 30
SIM_PORTS = (11435, 11436)
DEMO_PORTS = (*SIM_PORTS, HUB_PORT, HUB_PORT + 1, HUB_PORT + 2)


def main() -> None:
    busy = [port for port in DEMO_PORTS if not can_listen("127.0.0.1", port)[0]]
    if busy:
        ports = f"port {busy[0]} is" if len(busy) == 1 else f"ports {', '.join(map(str, busy))} are"
        sys.exit(f"demo: {ports} already in use on 127.0.0.1 (is another demo running?)")
    token = secrets.token_urlsafe(24)  # the demo fleet is secured like a real one
    # The demo's journal in a folder of its own, gone when it stops: never the state of a real hub.
    state = tempfile.TemporaryDirectory(prefix="ollama-connector-demo-")
    # Each process in a session of its own: Ctrl-C reaches only the demo, which then stops the fleet in order.
    fleet = ProcessFleet(own_session=True, natural_answers=True)
    failed = False
    try:
        ollamas = []
        for number, sim_port in enumerate(SIM_PORTS, start=1):
            if number == 1 and answers(REAL_OLLAMA + "/api/version"):
                print(f"demo: a real Ollama answers at {REAL_OLLAMA}; node-1 uses it")
                ollamas.append(REAL_OLLAMA)
                continue
            url, _ = fleet.sim(sim_port, "--tokens-per-second", "30")
            ollamas.append(url)
        # Timeouts scaled to the heartbeats, so a killed node is offline within seconds and gone soon after.
        fleet.hub(
            HUB_PORT,
            CLUSTER_TOKEN=token,
            HEARTBEAT_TTL_SECONDS=str(3 * HEARTBEAT),
            HEARTBEAT_OFFLINE_SECONDS=str(6 * HEARTBEAT),
            JOURNAL_PATH=f"{state.name}/journal.sqlite3",
            KEYS_FILE=f"{state.name}/keys.toml",
        )
        agents = {}
        for number, ollama in enumerate(ollamas, start=1):
            _, agents[f"node-{number}"] = fleet.node(
                HUB,
                ollama,
                f"node-{number}",
                port=HUB_PORT + number,
                wait=False,
                HEARTBEAT_INTERVAL=str(HEARTBEAT),
                CLUSTER_TOKEN=token,
            )
        pids = ", ".join(f"{name} is process {proc.pid}" for name, proc in agents.items())
        print(f"demo: {pids} (kill -9 one of them, from another terminal, to watch the hub route around it)")
        if sys.stdin.isatty() and sys.stdout.isatty():
            # The fleet monitor in the foreground; quitting it (q) stops the fleet.
            subprocess.run([str(BIN / "ollama-top"), "--hub", HUB, "--interval", "1"], check=False)
            return
        print(
            f"""
ollama-connector demo: hub on {HUB}, nodes node-1 and node-2, heartbeats every {HEARTBEAT} s
(a silent node is offline after {3 * HEARTBEAT} s and removed after {6 * HEARTBEAT} s).
Try, in another terminal:
  curl {HUB}/nodes
  curl {HUB}/jobs -d '{{"model": "llama3", "prompt": "Why is the sky blue?"}}'
  .venv/bin/ollama-top --hub {HUB}
Press Ctrl-C to stop the fleet.
""",
            flush=True,
        )
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        while fleet.alive():
            time.sleep(0.5)
        print("demo: a process of the fleet exited; stopping the rest")
    except RuntimeError as exc:  # something did not start: most often, a port already in use
        print(f"demo: {exc}; is the port free?", file=sys.stderr)
        failed = True
    except KeyboardInterrupt:
        pass
    finally:
        # The reverse of the start: agents drain and tell the hub, then the hub stops, then the simulators.
        # A second Ctrl-C (or make passing one on) must not cut that short and leave processes behind.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        fleet.stop()
        state.cleanup()
        print("demo: stopped")
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
