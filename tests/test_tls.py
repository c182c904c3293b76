"""TLS on every hop: callers to the hub, agents to the hub, the hub to agents, with certificates made here."""

from __future__ import annotations

import logging
import shutil
import subprocess
from pathlib import Path

import aiohttp
import pytest
import trustme

from ollama_connector.shared.tls import client_context
from tests.conftest import wait_until

TOKEN = "t" * 16

INSTALLER = Path(__file__).resolve().parent.parent / "systemd" / "install.sh"


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, str]:
    """A private CA, and certificates it signed for the hub and an agent on 127.0.0.1."""
    ca = trustme.CA()
    files = {"ca": tmp_path / "ca.pem", "hub": tmp_path / "hub.pem", "node": tmp_path / "node.pem"}
    ca.cert_pem.write_to_path(str(files["ca"]))
    for name in ("hub", "node"):
        ca.issue_cert("127.0.0.1", "localhost").private_key_and_cert_chain_pem.write_to_path(str(files[name]))
    return {name: str(path) for name, path in files.items()}


async def test_jobs_run_over_tls_on_every_hop(fleet, http, pki):
    hub = await fleet.hub(HUB_TLS_CERT=pki["hub"], NODE_CA_FILE=pki["ca"], CLUSTER_TOKEN=TOKEN)
    await fleet.node(
        hub,
        await fleet.sim(),
        "secure",
        NODE_TLS_CERT=pki["node"],
        HUB_CA_FILE=pki["ca"],
        CLUSTER_TOKEN=TOKEN,
    )
    assert hub.url.startswith("https://") and hub.registry.get("secure").base_url.startswith(
        "https://127.0.0.1:"
    )
    trusted = client_context(pki["ca"])
    job = {"model": "llama3", "prompt": "x", "stream": False}
    async with http.post(hub.url + "/jobs", json=job, ssl=trusted) as r:
        assert r.status == 200 and r.headers["X-Node-Id"] == "secure" and (await r.json())["done"]
    with pytest.raises(
        aiohttp.ClientConnectorCertificateError
    ):  # a caller that does not trust the fleet's CA
        async with http.get(hub.url + "/healthz"):
            pass


async def test_an_agent_that_does_not_trust_the_hubs_certificate_does_not_register(fleet, pki, caplog):
    hub = await fleet.hub(HUB_TLS_CERT=pki["hub"], CLUSTER_TOKEN=TOKEN)
    caplog.set_level(logging.WARNING, logger="ollama_connector.noded.heartbeat")
    await fleet.node(hub, await fleet.sim(), "doubtful", wait=False, CLUSTER_TOKEN=TOKEN)  # no HUB_CA_FILE
    await wait_until(lambda: "certificate verify failed" in caplog.text, what="the agent to refuse the hub")
    assert hub.registry.get("doubtful") is None


async def test_the_hub_does_not_dial_an_agent_it_cannot_verify(fleet, http, pki):
    hub = await fleet.hub(CLUSTER_TOKEN=TOKEN)  # no NODE_CA_FILE: the agent's private CA is not trusted
    await fleet.node(hub, await fleet.sim(), "unverified", NODE_TLS_CERT=pki["node"], CLUSTER_TOKEN=TOKEN)
    async with http.post(hub.url + "/jobs", json={"model": "llama3", "prompt": "x", "stream": False}) as r:
        detail = (await r.json())["detail"]
    assert r.status == 503 and "certificate verify failed" in detail["errors"][0]["message"].lower()


@pytest.fixture
def installer_certs(tmp_path: Path) -> tuple[Path, str]:
    """`install.sh certs` for a hub and an agent on 127.0.0.1: the folder, and what it printed."""
    if shutil.which("openssl") is None:
        pytest.skip("needs openssl (make test installs it)")
    tls = tmp_path / "tls"
    for name in ("hub", "node-1"):  # "hub" is a name here, not the installer's hub role
        result = subprocess.run(
            ["bash", str(INSTALLER), "certs", name, "--ip", "127.0.0.1", "--dir", str(tls)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
    assert oct((tls / "node-1.key").stat().st_mode)[-3:] == "600"  # the key is for root's eyes only
    return tls, result.stdout


async def test_the_installers_certificates_work_between_the_daemons(fleet, http, installer_certs):
    tls, printed = installer_certs
    assert "HUB_TLS_CERT=" in printed
    env = {"CLUSTER_TOKEN": TOKEN}
    hub = await fleet.hub(
        HUB_TLS_CERT=str(tls / "hub.pem"),
        HUB_TLS_KEY=str(tls / "hub.key"),
        NODE_CA_FILE=str(tls / "ca.pem"),
        **env,
    )
    node_tls = {"NODE_TLS_CERT": str(tls / "node-1.pem"), "NODE_TLS_KEY": str(tls / "node-1.key")}
    await fleet.node(hub, await fleet.sim(), "node-1", HUB_CA_FILE=str(tls / "ca.pem"), **node_tls, **env)
    job = {"model": "llama3", "prompt": "x", "stream": False}
    async with http.post(hub.url + "/jobs", json=job, ssl=client_context(str(tls / "ca.pem"))) as r:
        assert r.status == 200 and r.headers["X-Node-Id"] == "node-1"
