"""Where ollama-top finds its hub: the command line, then the environment, then a config file."""

from __future__ import annotations

import argparse
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from platformdirs import user_config_path

from ollama_connector.shared.cli import package_version

DEFAULT_HUB = "http://localhost:8000"
DEFAULT_INTERVAL = 2.0


def config_file() -> Path:
    return user_config_path("ollama-connector") / "ollama-top.toml"


@dataclass(frozen=True)
class TopConfig:
    hub_url: str = DEFAULT_HUB
    interval: float = DEFAULT_INTERVAL
    api_key: str | None = None


def read_file(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SystemExit(f"ollama-top: cannot read {path}: {exc}") from None


def resolve(
    args: argparse.Namespace, environ: dict[str, str] | None = None, path: Path | None = None
) -> TopConfig:
    """The command line beats the environment, which beats the config file."""
    environ = dict(os.environ) if environ is None else environ
    file = read_file(path or config_file())
    hub = args.hub or environ.get("OLLAMA_HUB_URL") or file.get("hub") or DEFAULT_HUB
    interval = first_interval(
        ("--interval", args.interval),
        ("OLLAMA_TOP_INTERVAL", environ.get("OLLAMA_TOP_INTERVAL")),
        (f"interval in {path or config_file()}", file.get("interval")),
    )
    api_key = args.api_key or environ.get("OLLAMA_HUB_API_KEY") or file.get("api_key") or None
    hubs = [part.strip() for part in hub.split(",") if part.strip()] or [DEFAULT_HUB]
    hubs = [(url if "://" in url else "http://" + url).rstrip("/") for url in hubs]
    return TopConfig(hub_url=",".join(hubs), interval=interval, api_key=api_key)


def first_interval(*sources: tuple[str, object]) -> float:
    """The first interval given, checked (seconds, at least 0.2); an error names where it came from."""
    for where, value in sources:
        if value is None or value == "":
            continue
        try:
            seconds = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise SystemExit(f"ollama-top: {where}={value!r} is not a number of seconds") from None
        if not seconds >= 0.2:  # also refuses nan
            raise SystemExit(f"ollama-top: {where}={value!r}: polls must be at least 0.2 seconds apart")
        return seconds
    return DEFAULT_INTERVAL


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ollama-top", description="Watch an ollama-connector fleet from the terminal."
    )
    p.add_argument(
        "--hub",
        help=f"hub URL, or several comma-separated: it follows whichever answers (env OLLAMA_HUB_URL,"
        f" config file, default {DEFAULT_HUB})",
    )
    p.add_argument("--interval", help=f"seconds between polls, at least 0.2 (default {DEFAULT_INTERVAL:g})")
    p.add_argument("--api-key", help="bearer token for the hub (env OLLAMA_HUB_API_KEY)")
    p.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    return p
