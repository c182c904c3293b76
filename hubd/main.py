"""`ollama-hubd`: the hub daemon."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg

from ollama_connector.hubd.app import create_app, runner_options
from ollama_connector.hubd.guard import keys_cli, nodes_cli
from ollama_connector.hubd.guard.keyring import KeyFile
from ollama_connector.hubd.jobs.journal_db import redacted
from ollama_connector.hubd.settings import HubSettings, has_node_tokens, keys_path, nodes_path
from ollama_connector.shared.cli import can_listen, start_daemon
from ollama_connector.shared.daemon import run, serve_until_signalled
from ollama_connector.shared.settings import is_loopback
from ollama_connector.shared.tls import check_files

PROGRAM = "ollama-hubd"


def checks(settings: HubSettings) -> Iterator[tuple[bool, str]]:
    yield True, "settings are valid"
    for host in settings.hosts:
        yield can_listen(host, settings.port)
    if settings.state_file:
        folder = Path(settings.state_file).parent
        yield os.access(folder, os.W_OK), f"HUB_STATE_FILE's folder {folder} is writable"
    yield from check_files(settings.tls_cert, settings.tls_key, settings.node_ca_file)
    if has_node_tokens(settings):
        yield True, f"nodes with their own credential: {nodes_path(settings)}"
    if settings.cluster_token is not None:
        yield True, "CLUSTER_TOKEN is shared by every node: give each its own (ollama-hubd nodes add NAME)"
    elif not has_node_tokens(settings):
        yield True, "CLUSTER_TOKEN is not set: any machine that reaches the hub can register as a node"
    why = open_api(settings)
    yield why is None, why or "callers need a key, or the hub listens on loopback only"
    if settings.journal_url is not None:
        yield journal_reachable(settings.journal_url.get_secret_value())


def journal_reachable(url: str) -> tuple[bool, str]:
    """JOURNAL_URL answers, with the credentials it holds (the password never shown)."""
    try:
        with psycopg.connect(url, connect_timeout=5) as db:
            db.execute("SELECT 1")
    except psycopg.Error as exc:
        return False, f"JOURNAL_URL {redacted(url)} does not answer: {str(exc).strip()}"
    return (
        True,
        f"JOURNAL_URL {redacted(url)} answers (PostgreSQL: a journal shared by the hubs that name it)",
    )


def open_api(settings: HubSettings) -> str | None:
    """Why the hub must not start open to the network, if so: beyond loopback with no caller key at all."""
    exposed = [host for host in settings.hosts if not is_loopback(host)]
    if not exposed or settings.allow_open_api or settings.api_keys or settings.admin_keys:
        return None
    try:
        if KeyFile.read(keys_path(settings)).keys:
            return None
    except ValueError:
        return None  # the hub starts closed, saying why (hubd.guard.key_reload)
    return (
        f"no caller key (API_KEYS, ADMIN_KEYS, or a key in {keys_path(settings)}) and HUB_HOST listens on"
        f" {', '.join(exposed)}, beyond loopback: anyone on the network could pull, delete and run models."
        " Add a key (ollama-hubd keys add NAME --admin), or set ALLOW_OPEN_API=1 to run open on purpose"
    )


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["keys"]:  # managing the keys file; the daemon's settings are not needed for that
        sys.exit(keys_cli.main(argv[1:]))
    if argv[:1] == ["nodes"]:
        sys.exit(nodes_cli.main(argv[1:]))
    settings = start_daemon(
        PROGRAM,
        HubSettings,
        "The hub: one endpoint for a fleet of Ollama machines.",
        "check the settings and that the hub could listen, then exit (0: ready to start)",
        checks,
        argv,
    )
    if (why := open_api(settings)) is not None:
        sys.exit(f"{PROGRAM}: bad configuration: {why}")
    app = create_app(settings)
    run(
        serve_until_signalled(
            app,
            settings.hosts,
            settings.port,
            name=PROGRAM,
            drain_timeout=settings.drain_timeout,
            **runner_options(settings),
        ),
        program=PROGRAM,
        listen_settings="HUB_HOST and HUB_PORT",
    )


if __name__ == "__main__":
    main()
