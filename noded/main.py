"""`ollama-noded`: the agent beside each Ollama."""

from __future__ import annotations

import sys

from noded.app import create_app, drain, mark_listening
from noded.settings import NodeSettings
from shared.http import bound_port, run, serve_until_signalled
from shared.logs import setup_logging
from shared.settings import ConfigError


def main() -> None:
    try:
        settings = NodeSettings.from_env()
    except ConfigError as exc:
        sys.exit(f"ollama-noded: bad configuration: {exc}")
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
