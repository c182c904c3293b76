"""A throwaway PostgreSQL for the tests, the bench and a try-out of two hubs: a cluster made with initdb in a
temporary directory, run by an unprivileged user (as root: Debian's `postgres`), on loopback only, with a
password (so that what the hub shows and logs of JOURNAL_URL can be checked for it). `make test` installs
Debian's `postgresql` when it is missing; nothing here depends on its system service.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import psutil
import psycopg

from ollama_connector.sim.processes import free_port

READY = "database system is ready to accept connections"
START_SECONDS = 60.0


def bin_dir() -> Path | None:
    """Where initdb and postgres are: on PATH, or Debian's /usr/lib/postgresql/<newest>/bin."""
    if found := shutil.which("initdb"):
        return Path(found).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    return Path(versions[-1]).parent if versions else None


class Postgres:
    """One running cluster; `database()` gives a fresh database's URL."""

    def __init__(self) -> None:
        found = bin_dir()
        if found is None:
            raise RuntimeError("PostgreSQL is not installed (make test installs Debian's postgresql)")
        self.bin = found
        self.password = "pw-" + secrets.token_hex(8)
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="ollama-connector-pg-"))
        self.user = _owner()
        self.process: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None
        self._made = 0

    def _as_owner(self, command: list[str]) -> list[str]:
        return ["runuser", "-u", self.user, "--", *command] if os.geteuid() == 0 else command

    def start(self) -> Postgres:
        data, password_file = self.root / "data", self.root / "password"
        password_file.write_text(self.password + "\n")
        if os.geteuid() == 0:
            entry = pwd.getpwnam(self.user)
            for path in (self.root, password_file):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        initdb = [str(self.bin / "initdb"), "-D", str(data), "-U", "postgres", "--pwfile", str(password_file)]
        initdb += ["--auth-host=scram-sha-256", "--auth-local=peer", "-E", "UTF8", "--locale=C"]
        subprocess.run(self._as_owner(initdb), check=True, capture_output=True, text=True)
        self._serve()
        return self

    def _serve(self) -> None:
        server = [str(self.bin / "postgres"), "-D", str(self.root / "data"), "-p", str(self.port)]
        server += ["-k", str(self.root), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"]
        server += ["-c", "full_page_writes=off", "-c", "max_connections=200"]  # commits stay synchronous
        self.process = subprocess.Popen(
            self._as_owner(server),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._wait_ready()

    def crash(self) -> None:
        """The server killed at once (SIGKILL to its postmaster: every connection drops); its data stays."""
        assert self.process is not None
        started = psutil.Process(self.process.pid)  # runuser, when run as root: the postmaster is below it
        everyone = [started, *started.children(recursive=True)]
        for process in everyone:
            with contextlib.suppress(psutil.Error):
                if process.name() == "postgres" and process.ppid() in (started.pid, started.ppid()):
                    process.kill()
        psutil.wait_procs(everyone, timeout=15)  # its backends notice and leave; runuser with them
        self.process.wait(5)
        self._close_log()

    def restart(self) -> None:
        """Serve the same data again, on the same port, after `crash`."""
        (self.root / "data" / "postmaster.pid").unlink(missing_ok=True)
        self._serve()

    def _wait_ready(self) -> None:
        """Until the server says it accepts connections (its own log line), then its log is drained."""
        assert self.process is not None and self.process.stderr is not None
        ready, said = threading.Event(), []

        def read() -> None:
            assert self.process is not None and self.process.stderr is not None
            for line in self.process.stderr:
                said.append(line)
                if READY in line:
                    ready.set()

        self._reader = threading.Thread(target=read, daemon=True)
        self._reader.start()
        if not ready.wait(START_SECONDS):
            self.stop()
            raise RuntimeError("PostgreSQL did not start: " + "".join(said[-20:]))

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres:{self.password}@127.0.0.1:{self.port}/{database}"

    def database(self) -> str:
        """A new, empty database; its URL."""
        self._made += 1
        name = f"t{self._made}_{secrets.token_hex(3)}"
        with psycopg.connect(self.url(), autocommit=True) as db:
            db.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()  # SIGTERM: PostgreSQL's "smart" shutdown, then fast if it lingers
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self._close_log()
        with contextlib.suppress(OSError):
            shutil.rmtree(self.root)

    def _close_log(self) -> None:
        if self.process is not None and self.process.stderr is not None:
            if self._reader is not None:
                self._reader.join(5)  # its log read to the end
            self.process.stderr.close()


def _owner() -> str:
    """Who runs the cluster: ourselves, or (as root, whom initdb refuses) `postgres` or else `nobody`."""
    if os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid()).pw_name
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    raise RuntimeError("as root, PostgreSQL needs an unprivileged user to run it (postgres or nobody)")
