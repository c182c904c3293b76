"""Processes for the benchmarks: the project's process fleet, with psutil handles to measure, and nginx."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import psutil

from ollama_connector.sim.processes import BIN, ProcessFleet, free_port, wait_http

__all__ = ["BIN", "Fleet"]


class Fleet(ProcessFleet):
    """Starts what a scenario needs and stops all of it afterwards; logs go to a temporary folder."""

    def __init__(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="ollama-connector-bench-"))
        super().__init__(logs=self.tmp)

    # The overhead, streaming and footprint scenarios measure the hub, not Ollama's scheduling: their
    # simulator serves this many requests at once (and the agent says so), like a big node's NUM_PARALLEL.
    PARALLEL = 256

    def sim(self, tokens_per_second: float = 0, models: str = "llama3") -> str:  # type: ignore[override]
        url, proc = super().sim(
            None,
            "--models",
            models,
            "--tokens-per-second",
            str(tokens_per_second),
            "--num-parallel",
            str(self.PARALLEL),
        )
        self.sim_process = psutil.Process(proc.pid)
        return url

    def sim_with(self, *args: str) -> str:
        """A simulator with these command-line options."""
        return super().sim(None, *args)[0]

    def hub(self, **env: str) -> tuple[str, psutil.Process]:  # type: ignore[override]
        url, proc = super().hub(**env)
        return url, psutil.Process(proc.pid)

    def node(self, hub: str, ollama: str, node_id: str, **env: str) -> tuple[str, psutil.Process]:  # type: ignore[override]
        env.setdefault("OLLAMA_NUM_PARALLEL", str(self.PARALLEL))
        url, proc = super().node(hub, ollama, node_id, **env)
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
        master = self.spawn(
            [binary, "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-e", str(prefix / "error.log")]
        )
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/api/version")
        self.nginx_workers = psutil.Process(master.pid).children()
        return url

    def stop(self) -> None:
        super().stop()
        shutil.rmtree(self.tmp, ignore_errors=True)
