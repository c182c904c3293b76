"""`ollama-noded`: the agent beside each Ollama."""

from __future__ import annotations

import json
import ssl
import urllib.request
from collections.abc import Iterator

from ollama_connector.noded.app import create_app, drain, mark_listening, runner_options
from ollama_connector.noded.settings import NodeSettings
from ollama_connector.shared.cli import can_listen, start_daemon
from ollama_connector.shared.daemon import bound_port, run, serve_until_signalled
from ollama_connector.shared.tls import check_files, client_context

PROGRAM = "ollama-noded"


def fetch_json(url: str, context: ssl.SSLContext | None = None) -> dict:
    with urllib.request.urlopen(url, timeout=5, context=context) as response:
        return json.load(response)


def checks(settings: NodeSettings) -> Iterator[tuple[bool, str]]:
    yield True, "settings are valid"
    for host in settings.hosts:
        yield can_listen(host, settings.port)
    yield from check_files(settings.tls_cert, settings.tls_key, settings.hub_ca_file)
    try:
        version = fetch_json(settings.ollama_url + "/api/version").get("version", "?")
        models = fetch_json(settings.ollama_url + "/api/tags").get("models") or []
    except (OSError, ValueError) as exc:
        yield False, f"Ollama at {settings.ollama_url} (OLLAMA_BASE_URL) does not answer: {exc}"
    else:
        yield True, f"Ollama {version} answers at {settings.ollama_url} with {len(models)} model(s)"
    try:
        answer = fetch_json(settings.server_url + "/healthz", client_context(settings.hub_ca_file))
    except (OSError, ValueError) as exc:
        yield False, f"the hub at {settings.server_url} (SERVER_URL) does not answer: {exc}"
    else:
        yield answer.get("status") == "ok", f"the hub answers at {settings.server_url}"


def main(argv: list[str] | None = None) -> None:
    settings = start_daemon(
        PROGRAM,
        NodeSettings,
        "The node agent: registers this machine's Ollama with the hub and relays the hub's jobs to it.",
        "check the settings, that the agent could listen, and that Ollama and the hub answer; exit",
        checks,
        argv,
    )
    app = create_app(settings)
    run(
        serve_until_signalled(
            app,
            settings.hosts,
            settings.port,
            name=PROGRAM,
            on_ready=lambda runner: mark_listening(app, bound_port(runner)),
            before_stop=lambda: drain(app),
            drain_timeout=settings.drain_timeout,
            **runner_options(settings),
        ),
        program=PROGRAM,
        listen_settings="NODE_HOST and NODE_PORT",
    )


if __name__ == "__main__":
    main()
