"""`ollama-hubd`: the hub daemon."""

from __future__ import annotations

from hubd.app import create_app
from hubd.settings import HubSettings
from shared.http import run, serve_until_signalled
from shared.logs import setup_logging


def main() -> None:
    settings = HubSettings.for_daemon("ollama-hubd")
    setup_logging(settings.log_level, settings.log_format)
    app = create_app(settings)
    run(
        serve_until_signalled(
            app, settings.hosts, settings.port, name="ollama-hubd", drain_timeout=settings.drain_timeout
        )
    )


if __name__ == "__main__":
    main()
