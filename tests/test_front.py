"""The shipped front for two hubs (systemd/haproxy-hubs.cfg), run as written but for its addresses: callers
keep being served when the hub they used dies."""

from __future__ import annotations

import json
import shutil
import signal
import time
import urllib.request
from pathlib import Path

import pytest

from ollama_connector.sim.processes import ProcessFleet, answers, free_port, wait_http

HAPROXY = shutil.which("haproxy") or ("/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None)
CONFIG = Path(__file__).resolve().parent.parent / "systemd" / "haproxy-hubs.cfg"


def generate(url: str) -> tuple[int, str]:
    body = json.dumps({"model": "llama3", "prompt": "x", "stream": False}).encode()
    request = urllib.request.Request(url + "/api/generate", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status, response.headers["X-Node-Id"]


@pytest.mark.skipif(HAPROXY is None, reason="needs Debian's haproxy (make test installs it)")
def test_the_front_keeps_serving_when_a_hub_dies(tmp_path):
    fleet = ProcessFleet(logs=tmp_path)
    try:
        ollama, _ = fleet.sim()
        (hub1, first), (hub2, _) = fleet.hub(), fleet.hub()
        _, agent = fleet.node(f"{hub1},{hub2}", ollama, "n1", wait=False, HEARTBEAT_INTERVAL="0.5")
        port = free_port()
        config = CONFIG.read_text()
        config = config.replace("bind :8080", f"bind 127.0.0.1:{port}")
        config = config.replace("hub1.lan:8000", hub1.removeprefix("http://"))
        config = config.replace("hub2.lan:8000", hub2.removeprefix("http://"))
        (tmp_path / "haproxy.cfg").write_text(config)
        fleet.spawn([HAPROXY, "-db", "-f", str(tmp_path / "haproxy.cfg")])
        front = f"http://127.0.0.1:{port}"
        wait_http(front + "/healthz", what="haproxy")
        for hub in (hub1, hub2):
            wait_http(hub + "/nodes/n1", what=f"n1 registered with {hub}")
        assert generate(front) == (200, "n1")
        first.send_signal(signal.SIGKILL)  # the hub callers were on dies at once, with no goodbye
        first.wait(10)
        # Each request gets a refused connection on hub1 first (until the health check marks it down), and
        # is sent on to hub2: no caller sees the death.
        assert [generate(front) for _ in range(10)] == [(200, "n1")] * 10
        # Started again, a hub knows no node until their next heartbeats. Here none comes (n1 is gone too;
        # n2 reports to hub2 alone): it answers /healthz, but not /readyz, so the front keeps it out and no
        # caller is told 404 for the model by a hub that simply has not heard from its nodes yet.
        fleet.node(hub2, ollama, "n2", HEARTBEAT_INTERVAL="0.5")
        agent.kill()
        agent.wait(10)
        fleet.hub(int(hub1.rsplit(":", 1)[1]))
        served, until = [], time.monotonic() + 4  # the health check would have taken it back in 2 s
        while time.monotonic() < until:
            served.append(generate(front))
        assert set(served) == {(200, "n2")} and answers(hub1 + "/healthz") and not answers(hub1 + "/readyz")
    finally:
        fleet.stop()
