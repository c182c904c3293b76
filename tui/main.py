"""`ollama-top [--hub URL] [--interval SECONDS] [--api-key KEY]`."""

from __future__ import annotations

from ollama_connector.tui.app import OllamaTop
from ollama_connector.tui.config import parser, resolve


def main(argv: list[str] | None = None) -> None:
    config = resolve(parser().parse_args(argv))
    OllamaTop(config.hub_url, interval=config.interval, api_key=config.api_key).run()


if __name__ == "__main__":
    main()
