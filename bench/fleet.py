"""Processes for the benchmarks: simulators, hub, agents and nginx, each on its own loopback port."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psutil

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not answer within {within:.0f} s") from None
            time.sleep(0.05)


class Fleet:
    """Starts what a scenario needs and stops all of it afterwards."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []
        self.tmp = Path(tempfile.mkdtemp(prefix="ollama-connector-bench-"))

    def _spawn(self, argv: list[str], **env: str) -> subprocess.Popen:
        log = (self.tmp / f"{len(self.procs)}-{Path(argv[0]).name}.log").open("wb")
        proc = subprocess.Popen(
            argv, env={**os.environ, "LOG_LEVEL": "WARNING", **env}, stdout=log, stderr=log
        )
        log.close()
        self.procs.append(proc)
        return proc

    def sim(self, tokens_per_second: float = 0, models: str = "llama3") -> str:
        port = free_port()
        argv = [str(BIN / "ollama-sim"), "--port", str(port), "--models", models, "--log-level", "WARNING"]
        self.sim_process = psutil.Process(
            self._spawn([*argv, "--tokens-per-second", str(tokens_per_second)]).pid
        )
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/api/version")
        return url

    def hub(self, **env: str) -> tuple[str, psutil.Process]:
        port = free_port()
        proc = self._spawn([str(BIN / "ollama-hubd")], HUB_HOST="127.0.0.1", HUB_PORT=str(port), **env)
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/healthz")
        return url, psutil.Process(proc.pid)

    def node(self, hub: str, ollama: str, node_id: str) -> tuple[str, psutil.Process]:
        port = free_port()
        proc = self._spawn(
            [str(BIN / "ollama-noded")],
            SERVER_URL=hub,
            NODE_ID=node_id,
            NODE_HOST="127.0.0.1",
            NODE_PORT=str(port),
            OLLAMA_BASE_URL=ollama,
            SKIP_MODEL_PULL="1",
        )
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/healthz")
        deadline = time.monotonic() + 20
        while node_id not in urllib.request.urlopen(hub + "/nodes", timeout=2).read().decode():
            if time.monotonic() > deadline:
                raise RuntimeError(f"{node_id} did not register")
            time.sleep(0.05)
        return url, psutil.Process(proc.pid)

    def nginx(self, upstream: str) -> str | None:
        """nginx as a plain reverse proxy to `upstream`; None when nginx is not installed."""
        binary = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
        if binary is None:
            return None
        port = free_port()
        prefix = self.tmp / "nginx"
        prefix.mkdir()
        temp = " ".join(
            f"{kind}_temp_path {prefix}/{kind};"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        (prefix / "nginx.conf").write_text(
            f"""
daemon off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
{"user root;" if os.geteuid() == 0 else ""}
events {{ worker_connections 4096; }}
http {{
  access_log off;
  {temp}
  upstream sim {{ server {upstream.removeprefix("http://")}; keepalive 128; }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://sim;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }}
  }}
}}
"""
        )
        master = self._spawn(
            [binary, "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-e", str(prefix / "error.log")]
        )
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/api/version")
        self.nginx_workers = psutil.Process(master.pid).children()
        return url

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)
