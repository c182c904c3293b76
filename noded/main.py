"""`ollama-noded`: the agent beside each Ollama."""

from __future__ import annotations

import asyncio
import sys

from noded.app import create_app, mark_listening
from noded.settings import NodeSettings
from shared.http import bound_port, serve_until_signalled
from shared.logs import setup_logging
from shared.settings import ConfigError


def main() -> None:
    try:
        settings = NodeSettings.from_env()
    except ConfigError as exc:
        sys.exit(f"ollama-noded: bad configuration: {exc}")
    setup_logging(settings.log_level)
    app = create_app(settings)
    asyncio.run(
        serve_until_signalled(
            app, settings.hosts, settings.port, on_ready=lambda r: mark_listening(app, bound_port(r))
        )
    )


if __name__ == "__main__":
    main()
