"""Configuration from environment variables, validated once at start."""

from __future__ import annotations

import difflib
import ipaddress
import logging
import os
from collections.abc import Mapping
from typing import Annotated, ClassVar, Literal, Self

from annotated_types import Len
from pydantic import (
    AfterValidator,
    AnyHttpUrl,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    SecretStr,
    ValidationError,
)


class ConfigError(ValueError):
    """A variable has a value the daemon cannot use; the message names it."""


def blank_to_none(value: object) -> object:
    return None if isinstance(value, str) and not value.strip() else value


def _split_commas(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


OptionalToken = Annotated[SecretStr | None, BeforeValidator(blank_to_none)]
OptionalStr = Annotated[str | None, BeforeValidator(blank_to_none)]
CommaList = Annotated[list[str], BeforeValidator(_split_commas)]
MIN_SECRET = 16  # characters of a key or token: a shorter one is guessed, online or from a digest


def _keys(value: object) -> object:
    if isinstance(value, str) and value.strip() and not value.replace(",", "").strip():
        raise ValueError("holds commas and spaces but no key (leave it empty for none)")
    return _split_commas(value)


def _long_enough(value: SecretStr | None) -> SecretStr | None:
    if value is not None and len(value.get_secret_value()) < MIN_SECRET:
        make = "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
        raise ValueError(f"is shorter than {MIN_SECRET} characters (make one: {make})")
    return value


def _all_long_enough(values: list[SecretStr]) -> list[SecretStr]:
    for value in values:
        _long_enough(value)
    return values


SecretList = Annotated[list[SecretStr], BeforeValidator(_keys), AfterValidator(_all_long_enough)]
"""Keys, comma-separated, each at least MIN_SECRET characters."""
StrongToken = Annotated[SecretStr | None, BeforeValidator(blank_to_none), AfterValidator(_long_enough)]
"""A shared secret of ours (CLUSTER_TOKEN): at least MIN_SECRET characters."""


def _networks(value: list[str]) -> list[str]:
    return [str(ipaddress.ip_network(v, strict=False)) for v in value]


NetworkList = Annotated[list[str], BeforeValidator(_split_commas), AfterValidator(_networks)]
"""CIDRs, comma-separated (`10.0.0.0/24, fd00::/64`)."""


def is_loopback(host: str) -> bool:
    """Whether listening on `host` keeps a daemon off the network."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def warn_if_open(log: logging.Logger, hosts: list[str], who_can: str) -> None:
    """A daemon without CLUSTER_TOKEN: a plain warning on loopback, a loud one under ALLOW_OPEN_CLUSTER."""
    exposed = [h for h in hosts if not is_loopback(h)]
    if exposed:
        log.warning(
            "OPEN CLUSTER (ALLOW_OPEN_CLUSTER=1, no CLUSTER_TOKEN) on %s: %s", ", ".join(exposed), who_can
        )
    else:
        log.warning("CLUSTER_TOKEN is not set (fine on loopback): %s", who_can)


def open_to_the_network(hosts: list[str], token: SecretStr | None, allowed: bool, who: str) -> None:
    """Secure by default: no listening beyond loopback without CLUSTER_TOKEN, unless ALLOW_OPEN_CLUSTER=1."""
    exposed = [h for h in hosts if not is_loopback(h)]
    if token is None and exposed and not allowed:
        raise ValueError(
            f"CLUSTER_TOKEN is not set and {who} listens on {', '.join(exposed)}, beyond loopback: anyone"
            " on the network could register a node and be sent prompts. Set CLUSTER_TOKEN (install.sh makes"
            " one; or give each node its own: ollama-hubd nodes add NAME, and NODE_TOKEN on that node), or"
            " ALLOW_OPEN_CLUSTER=1 to run open on purpose"
        )


# Other programs' variables that share a prefix of ours (Node.js's NODE_*), never worth a warning.
FOREIGN = frozenset(
    {
        "NODE_OPTIONS",
        "NODE_PATH",
        "NODE_ENV",
        "NODE_EXTRA_CA_CERTS",
        "NODE_TLS_REJECT_UNAUTHORIZED",
        "NODE_NO_WARNINGS",
    }
)


class EnvSettings(BaseModel):
    """Base for a daemon's settings: each field's alias is its environment variable."""

    # The docstring under each field is its description: --help prints it.
    model_config = ConfigDict(
        frozen=True, populate_by_name=True, extra="forbid", use_attribute_docstrings=True
    )

    # Variables whose names say they are this daemon's (HUB_, NODE_...): one that is no setting is a typo.
    own_prefixes: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def strays(cls, program: str, environ: Mapping[str, str] | None = None) -> list[str]:
        """Variables that look like settings of ours but are none (`HUB_PROT`), each with the closest name."""
        environ = os.environ if environ is None else environ
        names = [field.alias or name for name, field in cls.model_fields.items()]
        said = []
        for var in sorted(environ):
            if var in names or var in FOREIGN:
                continue
            close = difflib.get_close_matches(var, names, n=1, cutoff=0.85)
            if close or var.startswith(cls.own_prefixes):
                hint = f"; did you mean {close[0]}?" if close else f" (see {program} --help)"
                said.append(f"{var} is set, but {program} has no such setting{hint}")
        return said

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Self:
        environ = os.environ if environ is None else environ
        names = [field.alias or name for name, field in cls.model_fields.items()]
        values = {name: environ[name] for name in names if name in environ}
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            raise ConfigError(describe_errors(exc, values)) from None


def describe_errors(exc: ValidationError, values: Mapping[str, object]) -> str:
    """One line per bad variable: its name, the value given, and what is wrong."""
    lines = []
    for error in exc.errors():
        name = ".".join(str(part) for part in error["loc"]) or "settings"
        value = values.get(name)
        if len(error["loc"]) == 2 and isinstance(error["loc"][1], int) and str(error["loc"][0]) in values:
            name, value = str(error["loc"][0]), error.get("input")  # one item of a comma-separated list
        if name in values and any(word in name for word in ("TOKEN", "KEY")):  # a secret is never shown
            lines.append(f"{name} (its value not shown): {error['msg']}")
        elif name in values:
            lines.append(f"{name}={value!r}: {error['msg']}")
        else:
            lines.append(f"{name}: {error['msg']}")
    return "; ".join(lines)


def _upper(value: object) -> object:
    return value.upper() if isinstance(value, str) else value


LogLevel = Annotated[Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], BeforeValidator(_upper)]


def _http_url(value: str) -> str:
    if "://" not in value:
        raise ValueError(f"needs a scheme, like http://{value or 'host.lan:8000'}")
    AnyHttpUrl(value)  # raises a clear error for anything else that is not an http(s) URL
    return value.rstrip("/")


HttpUrl = Annotated[str, AfterValidator(_http_url)]
"""An http(s) URL kept as the string the user wrote, less any trailing slash."""


def _distinct(urls: list[str]) -> list[str]:
    return list(dict.fromkeys(urls))


HttpUrlList = Annotated[
    list[HttpUrl], BeforeValidator(_split_commas), AfterValidator(_distinct), Len(min_length=1, max_length=8)
]
"""One to eight http(s) URLs, comma-separated, each as HttpUrl; a URL given twice counts once."""

LogFormat = Annotated[
    Literal["text", "json"], BeforeValidator(lambda v: v.lower() if isinstance(v, str) else v)
]
