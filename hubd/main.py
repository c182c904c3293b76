"""`ollama-hubd`: the hub daemon."""

from __future__ import annotations

import sys

from hubd.app import create_app
from hubd.settings import HubSettings
from shared.http import run, serve_until_signalled
from shared.logs import setup_logging
from shared.settings import ConfigError


def main() -> None:
    try:
        settings = HubSettings.from_env()
    except ConfigError as exc:
        sys.exit(f"ollama-hubd: bad configuration: {exc}")
    setup_logging(settings.log_level, settings.log_format)
    app = create_app(settings)
    run(
        serve_until_signalled(
            app, settings.hosts, settings.port, name="ollama-hubd", drain_timeout=settings.drain_timeout
        )
    )


if __name__ == "__main__":
    main()
