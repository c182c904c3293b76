"""`ollama-noded`: the agent beside each Ollama."""

from __future__ import annotations

from noded.app import create_app, drain, mark_listening
from noded.settings import NodeSettings
from shared.http import bound_port, run, serve_until_signalled
from shared.logs import setup_logging


def main() -> None:
    settings = NodeSettings.for_daemon("ollama-noded")
    setup_logging(settings.log_level, settings.log_format)
    app = create_app(settings)
    run(
        serve_until_signalled(
            app,
            settings.hosts,
            settings.port,
            name="ollama-noded",
            on_ready=lambda runner: mark_listening(app, bound_port(runner)),
            before_stop=lambda: drain(app),
            drain_timeout=settings.drain_timeout,
        )
    )


if __name__ == "__main__":
    main()
