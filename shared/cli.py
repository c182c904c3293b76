"""The daemons' command lines: `--help` written from the settings models (so it cannot drift from them),
`--version`, `--check`, and one-line errors for what stops a daemon from starting."""

from __future__ import annotations

import argparse
import errno
import logging
import socket
import sys
import textwrap
from collections.abc import Callable, Iterable
from importlib.metadata import PackageNotFoundError, version
from typing import TypeVar

from pydantic import SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from ollama_connector.shared.logs import setup_logging
from ollama_connector.shared.settings import ConfigError, EnvSettings

S = TypeVar("S", bound=EnvSettings)


def package_version() -> str:
    try:
        return version("ollama-connector")
    except PackageNotFoundError:
        return "unknown"


def shown_default(field: FieldInfo) -> str:
    """A setting's default as a person writes it; a computed one (the host name) by what it is, so neither
    --help nor docs/configuration.md depends on the machine that wrote it."""
    if field.default_factory is not None and field.default_factory not in (list, dict):
        return (field.json_schema_extra or {}).get("shown_default", "computed at start")  # type: ignore[union-attr]
    factory = field.default_factory
    default = factory() if factory is not None else field.default  # type: ignore[call-arg]
    if default is None or default is PydanticUndefined or default == []:
        return "unset"
    if isinstance(default, list):
        return ",".join(str(v) for v in default)
    if isinstance(default, bool):
        return "1" if default else "0"
    if isinstance(default, SecretStr):
        return "set"
    return f"{default:g}" if isinstance(default, float) else str(default)


def settings_help(settings: type[EnvSettings]) -> str:
    """Every setting: its environment variable, its default and what it means, from the model itself."""
    lines = ["settings (environment variables; an env file under systemd):"]
    for name, field in settings.model_fields.items():
        lines.append(f"  {field.alias or name} (default: {shown_default(field)})")
        lines += textwrap.wrap(field.description or "", 76, initial_indent=" " * 6, subsequent_indent=" " * 6)
    return "\n".join(lines)


def parse_command_line(
    program: str, settings: type[EnvSettings], summary: str, check: str, argv: list[str] | None = None
) -> argparse.Namespace:
    """`--help`, `--version` and `--check`; anything else is an error that names it (exit 2)."""
    parser = argparse.ArgumentParser(
        prog=program,
        description=summary,
        epilog=settings_help(settings),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    parser.add_argument("--check", action="store_true", help=check)
    return parser.parse_args(argv)


def start_daemon(
    program: str,
    settings_model: type[S],
    summary: str,
    check: str,
    checks: Callable[[S], Iterable[tuple[bool, str]]],
    argv: list[str] | None = None,
) -> S:
    """The start of both daemons' main(): the command line, the settings (or one line naming the bad one),
    `--check` (which exits), then logging."""
    args = parse_command_line(program, settings_model, summary, check, argv)
    strays = settings_model.strays(program)
    try:
        settings = settings_model.from_env()
    except ConfigError as exc:  # a misspelt variable often explains a bad configuration: both are said
        sys.exit("\n".join([f"{program}: bad configuration: {exc}", *(f"{program}: {s}" for s in strays)]))
    if args.check:
        report_checks(program, [*((None, stray) for stray in strays), *checks(settings)])
    setup_logging(settings.log_level, settings.log_format)  # type: ignore[attr-defined]
    for stray in strays:
        logging.getLogger(program).warning("%s", stray)
    return settings


class CannotListen(Exception):
    """A listening address the daemon cannot use; the message says which, and why, in words."""

    def __init__(self, host: str, port: int, exc: OSError) -> None:
        super().__init__(f"cannot listen on {host}:{port}: {why_not(exc)}")


def why_not(exc: OSError) -> str:
    if isinstance(exc, socket.gaierror):
        return "the host name does not resolve"
    reasons = {
        errno.EADDRINUSE: "the port is already in use (is another copy running?)",
        errno.EADDRNOTAVAIL: "this machine has no such address",
        errno.EACCES: "permission denied (ports below 1024 need privileges)",
    }
    return reasons.get(exc.errno or 0, exc.strerror or str(exc))


def report_checks(program: str, results: Iterable[tuple[bool | None, str]]) -> None:
    """Print each check as `ok`, `warn` (None: worth a look, not a failure) or `FAIL` and exit: 0 when none
    failed, 1 otherwise."""
    failed = 0
    for passed, text in results:
        print(f"{'warn' if passed is None else 'ok  ' if passed else 'FAIL'}  {text}")
        failed += passed is False
    print(f"{program}: {'configuration ok' if not failed else f'{failed} check(s) failed'}")
    sys.exit(1 if failed else 0)


def can_listen(host: str, port: int) -> tuple[bool, str]:
    """Whether the daemon could listen there now (bound and released at once)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = infos[0]
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
    except OSError as exc:
        return False, f"listen on {host}:{port}: {why_not(exc)}"
    return True, f"can listen on {host}:{port}"
