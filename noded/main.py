"""`ollama-noded`: the agent beside each Ollama."""

from __future__ import annotations

import json
import socket
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator

from ollama_connector.noded.app import create_app, drain, mark_listening, runner_options
from ollama_connector.noded.settings import NodeSettings
from ollama_connector.shared.cli import can_listen, start_daemon
from ollama_connector.shared.daemon import bound_port, run, serve_until_signalled
from ollama_connector.shared.tls import check_files, client_context

PROGRAM = "ollama-noded"


def fetch_json(
    url: str, context: ssl.SSLContext | None = None, body: dict | None = None, **headers: str
) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json", **headers})
    with urllib.request.urlopen(request, timeout=5, context=context) as response:
        return json.load(response)


def plainly(exc: Exception, url: str) -> str:
    """Why a request of --check failed, in words (not urllib's `<urlopen error [Errno 111] ...>`)."""
    parts = urllib.parse.urlsplit(url)
    where = f"{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}"
    if isinstance(exc, urllib.error.HTTPError):
        return f"it answered HTTP {exc.code}"
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, ConnectionRefusedError):
        return f"connection refused by {where}"
    if isinstance(reason, socket.gaierror):
        return f"the host name {parts.hostname} does not resolve"
    if isinstance(reason, TimeoutError):
        return f"no answer from {where} within 5 s"
    if isinstance(reason, ssl.SSLError):
        return f"TLS with {where} failed: {reason.reason or reason}"
    if isinstance(reason, OSError):
        return f"cannot connect to {where}: {reason.strerror or reason}"
    if isinstance(exc, ValueError):
        return f"what answers at {where} does not speak JSON"
    return str(reason)


def refusal(exc: urllib.error.HTTPError) -> str:
    try:
        return str(json.loads(exc.read()).get("detail") or f"HTTP {exc.code}")
    except (ValueError, AttributeError, OSError):
        return f"HTTP {exc.code}"


def hub_checks(settings: NodeSettings) -> Iterator[tuple[bool, str]]:
    """Each hub of SERVER_URL answers, is a hub (not an Ollama), and takes this node's credential and id."""
    for url in settings.server_url:
        yield from hub_check(settings, url)


def hub_check(settings: NodeSettings, url: str) -> Iterator[tuple[bool, str]]:
    context = client_context(settings.hub_ca_file)
    try:
        answer = fetch_json(url + "/healthz", context)
    except urllib.error.HTTPError as exc:
        if exc.code == 404 and _answers(url + "/api/version", context):
            yield (
                False,
                f"SERVER_URL {url} is an Ollama server, not a hub: give the hub's address (port 8000)",
            )
        else:
            yield False, f"the hub at {url} (SERVER_URL) does not answer /healthz: {plainly(exc, url)}"
        return
    except (OSError, ValueError) as exc:
        yield False, f"the hub at {url} (SERVER_URL) does not answer: {plainly(exc, url)}"
        return
    yield answer.get("status") == "ok", f"the hub answers at {url}"
    beat = {
        "node_id": settings.node_id,
        "port": settings.port or 1,  # 0: any free port, chosen at start
        "address": settings.address,
        "tls": settings.tls_cert is not None,
    }
    token = settings.hub_token
    headers = {"X-Node-Id": urllib.parse.quote(settings.node_id)}
    if token:
        headers["Authorization"] = f"Bearer {token.get_secret_value()}"
    which = "NODE_TOKEN" if settings.node_token else "CLUSTER_TOKEN"
    try:
        fetch_json(url + "/nodes/heartbeat?check=1", context, beat, **headers)
    except urllib.error.HTTPError as exc:
        if exc.code == 401:
            yield (
                False,
                f"the hub at {url} refused our {which}: it must be its own (or from `ollama-hubd nodes add`)",
            )
        else:
            yield False, f"the hub at {url} refused this node: {refusal(exc)}"
    except (OSError, ValueError) as exc:
        yield False, f"the hub at {url} did not judge a heartbeat: {plainly(exc, url)}"
    else:
        yield True, f"the hub at {url} accepts this node's {which} as node {settings.node_id!r}"


def _answers(url: str, context: ssl.SSLContext | None) -> bool:
    try:
        fetch_json(url, context)
    except (OSError, ValueError):
        return False
    return True


def checks(settings: NodeSettings) -> Iterator[tuple[bool, str]]:
    yield True, "settings are valid"
    for host in settings.hosts:
        yield can_listen(host, settings.port)
    yield from check_files(settings.tls_cert, settings.tls_key, settings.hub_ca_file)
    try:
        version = fetch_json(settings.ollama_url + "/api/version").get("version", "?")
        models = fetch_json(settings.ollama_url + "/api/tags").get("models") or []
    except (OSError, ValueError) as exc:
        yield (
            False,
            f"Ollama at {settings.ollama_url} (OLLAMA_BASE_URL) does not answer:"
            f" {plainly(exc, settings.ollama_url)}",
        )
    else:
        yield True, f"Ollama {version} answers at {settings.ollama_url} with {len(models)} model(s)"
    yield from hub_checks(settings)


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
