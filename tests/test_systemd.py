"""Running under systemd: the notify protocol, journald and JSON logs, the installer, and the units."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from ollama_connector.noded.gpus import nvidia_driver
from tests.conftest import BIN, free_port

REPO = Path(__file__).resolve().parents[1]
INSTALLER = REPO / "systemd" / "install.sh"


def notify_socket(tmp_path: Path, abstract: bool) -> tuple[socket.socket, str]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if abstract:
        name = f"ollama-connector-test-{os.getpid()}-{free_port()}"
        sock.bind("\0" + name)
        address = "@" + name
    else:
        address = str(tmp_path / "notify.sock")
        sock.bind(address)
    sock.settimeout(20)
    return sock, address


def accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@pytest.mark.parametrize(("program", "abstract"), [("ollama-hubd", False), ("ollama-noded", True)])
def test_ready_after_the_port_accepts_and_stopping_on_sigterm(tmp_path, program, abstract):
    sock, address = notify_socket(tmp_path, abstract)
    port = free_port()
    env = {
        **os.environ,
        "NOTIFY_SOCKET": address,
        "HUB_HOST": "127.0.0.1",
        "HUB_PORT": str(port),
        "NODE_HOST": "127.0.0.1",
        "NODE_PORT": str(port),
        "SERVER_URL": f"http://127.0.0.1:{free_port()}",  # no hub: the agent must still start
        "SKIP_MODEL_PULL": "1",
    }
    proc = subprocess.Popen([str(BIN / program)], env=env, stderr=subprocess.DEVNULL)
    try:
        ready = sock.recv(4096).decode()
        assert ready.splitlines()[0] == "READY=1"
        assert accepts(port), "READY=1 came before the port accepted connections"
        proc.terminate()
        assert sock.recv(4096).decode().splitlines()[0] == "STOPPING=1"
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        sock.close()


@pytest.mark.parametrize(
    ("env", "check"),
    [
        ({"LOG_FORMAT": "json"}, lambda line: json.loads(line)["level"] in {"INFO", "WARNING"}),
        # Under journald: a priority prefix, and no timestamp of our own.
        ({"JOURNAL_STREAM": "8:1234"}, lambda line: line[:3] in {"<6>", "<4>"} and not line[3].isdigit()),
    ],
)
def test_log_formats(env, check, tmp_path):
    port = free_port()
    journal = tmp_path / "journal.sqlite3"
    proc = subprocess.Popen(
        [str(BIN / "ollama-hubd")],
        env={
            **os.environ,
            "HUB_HOST": "127.0.0.1",
            "HUB_PORT": str(port),
            "JOURNAL_PATH": str(journal),
            **env,
        },
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # The warning about CLUSTER_TOKEN, where the job journal is, "listening on".
        lines = [proc.stderr.readline().rstrip("\n") for _ in range(3)]
        assert all(check(line) for line in lines), lines
        assert "CLUSTER_TOKEN" in lines[0] and str(journal) in lines[1] and "listening" in lines[2]
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        proc.stderr.close()


def run_installer(*args: str) -> str:
    result = subprocess.run(
        ["bash", str(INSTALLER), *args, "--source", str(REPO), "--python", sys.executable],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted((root / "etc").rglob("*"))
        if p.is_file()
    }


def test_installer_dry_run_touches_nothing(tmp_path):
    out = run_installer("hub", "--root", str(tmp_path / "root"), "--dry-run")
    assert "would: write" in out and "ollama-hubd.service" in out and "hub.env" in out
    assert "    CLUSTER_TOKEN=<secret>" in out and "    HUB_PORT=8000" in out  # the env file it would write
    assert not (tmp_path / "root").exists()
    node = run_installer(
        "node", "--hub", "http://hub:8000", "--token", "t", "--root", str(tmp_path / "root"), "--dry-run"
    )
    assert "node.env" in node and not (tmp_path / "root").exists()


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("install") / "root"
    run_installer("hub", "--root", str(root))
    run_installer(
        "node", "--root", str(root), "--hub", "http://hub.lan:8000", "--token", "t0k", "--node-id", "n7"
    )
    return root


def test_installer_lays_out_units_env_files_and_a_venv(installed):
    root = installed
    units = root / "etc/systemd/system"
    assert (units / "ollama-hubd.service").read_text() == (REPO / "systemd/ollama-hubd.service").read_text()
    assert (units / "multi-user.target.wants/ollama-noded.service").is_symlink()
    hub_env = (root / "etc/ollama-connector/hub.env").read_text()
    token = next(line.split("=", 1)[1] for line in hub_env.splitlines() if line.startswith("CLUSTER_TOKEN="))
    assert len(token) >= 32
    assert oct((root / "etc/ollama-connector/hub.env").stat().st_mode)[-3:] == "600"
    node_env = (root / "etc/ollama-connector/node.env").read_text()
    assert (
        "SERVER_URL=http://hub.lan:8000" in node_env
        and "CLUSTER_TOKEN=t0k" in node_env
        and "NODE_ID=n7" in node_env
    )
    for program in ("ollama-hubd", "ollama-noded", "ollama-top"):
        assert os.access(root / "opt/ollama-connector/bin" / program, os.X_OK)


def test_installer_second_run_changes_nothing(installed):
    before = digest(installed)
    out = run_installer("hub", "--root", str(installed))
    assert "nothing changed" in out and digest(installed) == before


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="needs systemd-analyze (make test installs it)"
)
def test_units_pass_systemd_analyze_verify(installed):
    # verify resolves ExecStart inside the root, and needs systemd's own units (multi-user.target) there too.
    system_units = installed / "usr/lib/systemd/system"
    if not system_units.exists():
        system_units.parent.mkdir(parents=True, exist_ok=True)
        system_units.symlink_to("/lib/systemd/system")
    if not (installed / "bin/kill").exists():  # ExecReload's kill, found inside the root too
        (installed / "bin").mkdir(exist_ok=True)
        shutil.copy(os.path.realpath("/bin/kill"), installed / "bin/kill")
    result = subprocess.run(
        [
            "systemd-analyze",
            "verify",
            "--man=no",
            f"--root={installed}",
            "ollama-hubd.service",
            "ollama-noded.service",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_installer_uninstall_keeps_env_files_unless_purged(tmp_path):
    root = tmp_path / "root"
    (root / "etc/systemd/system").mkdir(parents=True)
    # A node install whose venv step is already done, to keep this test quick: copy nothing, only the files.
    out = run_installer("node", "--root", str(root), "--hub", "http://hub:8000", "--token", "t", "--dry-run")
    assert "would:" in out
    (root / "etc/systemd/system/ollama-noded.service").write_text(
        (REPO / "systemd/ollama-noded.service").read_text()
    )
    (root / "etc/ollama-connector").mkdir(parents=True)
    (root / "etc/ollama-connector/node.env").write_text("SERVER_URL=http://hub:8000\n")
    (root / "opt/ollama-connector/bin").mkdir(parents=True)
    run_installer("node", "--root", str(root), "--uninstall")
    assert not (root / "etc/systemd/system/ollama-noded.service").exists()
    assert not (root / "opt/ollama-connector").exists()
    assert (root / "etc/ollama-connector/node.env").exists()
    run_installer("node", "--root", str(root), "--uninstall", "--purge")
    assert not (root / "etc/ollama-connector").exists()


def test_installer_run_again_applies_a_corrected_value_and_keeps_the_rest(installed):
    env_file = installed / "etc/ollama-connector/node.env"
    out = run_installer("node", "--root", str(installed), "--hub", "http://hub2.lan:8000", "--token", "n3w")
    assert "changing SERVER_URL in" in out and "'http://hub.lan:8000' -> 'http://hub2.lan:8000'" in out
    assert "changing CLUSTER_TOKEN in" in out and "n3w" not in out  # a secret is never printed
    env = env_file.read_text()
    assert "SERVER_URL=http://hub2.lan:8000" in env and "CLUSTER_TOKEN=n3w" in env and "NODE_ID=n7" in env
    assert "none will be pulled" in out
    out = run_installer("node", "--root", str(installed), "--models", "llama3,phi3")
    assert "REQUIRED_MODELS=llama3,phi3" in env_file.read_text() and "pulls llama3,phi3" in out
    assert "nothing changed" in run_installer("node", "--root", str(installed), "--models", "llama3,phi3")


def test_installer_copies_the_settings_of_an_existing_ollama_service(installed):
    units = installed / "etc/systemd/system"
    (units / "ollama.service").write_text(
        '[Service]\nExecStart=/usr/local/bin/ollama serve\nEnvironment="PATH=/usr/bin"\n'
        'Environment="OLLAMA_NUM_PARALLEL=2" "OLLAMA_MAX_QUEUE=64"\n'
    )
    (units / "ollama.service.d").mkdir()
    (units / "ollama.service.d/override.conf").write_text(  # what `systemctl edit ollama` writes
        "[Service]\nEnvironment=OLLAMA_NUM_PARALLEL=4 OLLAMA_CONTEXT_LENGTH=8192\n"
    )
    try:
        out = run_installer("node", "--root", str(installed))
        env = (installed / "etc/ollama-connector/node.env").read_text()
        # The drop-in overrides the unit, as systemd reads them; what no file sets keeps Ollama's default.
        assert "OLLAMA_NUM_PARALLEL=4" in env and "OLLAMA_MAX_QUEUE=64" in env
        assert "OLLAMA_CONTEXT_LENGTH=8192" in env and "#OLLAMA_MAX_LOADED_MODELS=0" in env
        assert "changing OLLAMA_NUM_PARALLEL in" in out and "-> '4'" in out  # said, as any change
        assert "nothing changed" in run_installer("node", "--root", str(installed))
    finally:
        shutil.rmtree(units / "ollama.service.d")
        (units / "ollama.service").unlink()


def test_installer_refuses_a_hub_without_a_scheme(tmp_path):
    result = subprocess.run(
        [
            "bash",
            str(INSTALLER),
            "node",
            "--hub",
            "hub.lan:8000",
            "--token",
            "t",
            "--root",
            str(tmp_path),
            "--dry-run",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "--hub must be a URL with its scheme" in result.stderr


def test_root_installs_run_from_their_prefix(installed):
    for program in ("ollama-hubd", "ollama-noded", "ollama-top"):
        first = (installed / "opt/ollama-connector/bin" / program).read_text().splitlines()[0]
        assert first == "#!/opt/ollama-connector/bin/python", first


def test_installer_asks_a_new_node_for_its_token(tmp_path):
    result = subprocess.run(
        ["bash", str(INSTALLER), "node", "--hub", "http://hub:8000", "--root", str(tmp_path), "--dry-run"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "a node needs --token" in result.stderr


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="needs systemd-analyze (make test installs it)"
)
@pytest.mark.parametrize("unit", ["ollama-hubd.service", "ollama-noded.service"])
def test_units_keep_a_low_exposure_score(installed, unit):
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", f"--root={installed}", "--no-pager", unit],
        capture_output=True,
        text=True,
        timeout=60,
    )
    [line] = [line for line in result.stdout.splitlines() if "Overall exposure" in line]
    score = line.split(":")[1].split()[0]
    assert float(score) <= 1.5, result.stdout  # 1.3 for both when written; 10 is an unhardened service


def test_the_agents_unit_lets_it_see_the_gpus_and_no_other_device(tmp_path):
    unit = (REPO / "systemd" / "ollama-noded.service").read_text().splitlines()
    # PrivateDevices=yes hides /dev/nvidia* from NVML: a GPU node would report itself as a CPU node.
    assert "PrivateDevices=yes" not in unit and "DevicePolicy=closed" in unit
    assert {"DeviceAllow=char-nvidia* rw", "DeviceAllow=char-drm rw"} <= set(unit)
    version = tmp_path / "version"
    version.write_text("NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.14\nGCC version: 12\n")
    assert nvidia_driver(version) == "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.14"
    assert nvidia_driver(tmp_path / "absent") is None
