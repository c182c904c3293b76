"""Who may call the hub: the keys of `API_KEYS` (users) and `ADMIN_KEYS` (admins) from the environment, and
the named keys of the keys file (`KEYS_FILE`, written by `ollama-hubd keys`), each with its role, its models
and its limits.

The file holds a SHA-256 of each secret, never the secret: a key is found by the digest of what a caller
presents. Secrets made by `keys add` carry 256 random bits, so a digest without a salt or a slow hash is as
safe as the secret itself. A file that cannot be read or parsed leaves the keys in force as they were.
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from ollama_connector.hubd.guard.toml_files import read_table, write_private
from ollama_connector.shared.modelnames import canonical, display

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
ENV = "env"  # the name usage gives the keys of API_KEYS and ADMIN_KEYS
LIMITS = ("rpm", "concurrency", "tokens_per_day")


def digest(secret: str) -> str:
    return "sha256:" + hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class Key:
    """One caller's key as the hub knows it: never its secret."""

    name: str
    admin: bool = False
    models: tuple[str, ...] = ()  # shell-style globs; none: every model
    rpm: int | None = None  # requests a minute
    concurrency: int | None = None  # jobs running or queued at once
    tokens_per_day: int | None = None  # prompt and output tokens over a rolling 24 hours
    share: float | None = None  # of each hub-wide cap (jobs, async jobs, pulls) it may hold: CALLER_SHARE
    created: str | None = None
    caller_id: str = ""  # who the key is to the queue's turns, the journal and GET /jobs

    def may_use(self, model: str) -> bool:
        if not self.models:
            return True
        names = {model, display(canonical(model))}
        return any(fnmatch.fnmatchcase(name, glob) for glob in self.models for name in names)

    @property
    def role(self) -> str:
        return "admin" if self.admin else "user"


@dataclass
class KeyFile:
    """The keys file's named keys, by name, as read or about to be written."""

    keys: dict[str, tuple[str, Key]] = field(default_factory=dict)  # name: (digest, key)

    @classmethod
    def read(cls, path: Path) -> KeyFile:
        """The file's keys; none when it does not exist. ValueError naming what is wrong with it."""
        return cls({name: _entry(path, name, entry) for name, entry in read_table(path, "keys").items()})

    def write(self, path: Path) -> None:
        """Atomically, readable by its owner only."""
        lines = [
            "# ollama-connector's named API keys: written by `ollama-hubd keys`; no secret is kept here.",
            "",
        ]
        for name, (hashed, key) in sorted(self.keys.items()):
            lines += [f"[keys.{name}]", f'hash = "{hashed}"', f"admin = {'true' if key.admin else 'false'}"]
            if key.models:
                lines.append("models = [" + ", ".join(_toml_string(m) for m in key.models) + "]")
            lines += [
                f"{limit} = {getattr(key, limit)}" for limit in LIMITS if getattr(key, limit) is not None
            ]
            if key.share is not None:
                lines.append(f"share = {key.share:g}")
            if key.created:
                lines.append(f'created = "{key.created}"')
            lines.append("")
        write_private(path, lines)


def _toml_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _entry(path: Path, name: str, entry: Any) -> tuple[str, Key]:
    where = f"{path}: key {name!r}"
    if not NAME.fullmatch(name) or name == ENV:
        raise ValueError(f"{where}: a name is 1 to 64 letters, digits, '.', '_' or '-' (and not {ENV!r})")
    if not isinstance(entry, dict) or not isinstance(entry.get("hash"), str):
        raise ValueError(f"{where}: no hash")
    models = entry.get("models", [])
    if not isinstance(models, list) or not all(isinstance(m, str) and m for m in models):
        raise ValueError(f"{where}: models must be a list of names or globs")
    limits = {limit: entry.get(limit) for limit in LIMITS}
    for limit, value in limits.items():
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise ValueError(f"{where}: {limit} must be a whole number of at least 1")
    share = entry.get("share")
    if share is not None and (
        isinstance(share, bool) or not isinstance(share, int | float) or not 0 < share <= 1
    ):
        raise ValueError(f"{where}: share must be a fraction above 0 and at most 1")
    key = Key(
        name,
        share=float(share) if share is not None else None,
        admin=entry.get("admin") is True,
        models=tuple(models),
        created=str(entry["created"]) if entry.get("created") else None,
        caller_id=f"key:{name}",
        **limits,
    )
    return entry["hash"], key


def share_of(cap: int, share: float) -> int:
    """How much of a hub-wide cap one caller may hold (CALLER_SHARE, or its key's own): at least one."""
    return max(1, math.ceil(cap * share))


def hub_secret(path: Path) -> bytes:
    """The hub's own secret (for the callers' ids), made once beside the keys file and kept there, readable by
    its owner only; a fresh one for this run when it cannot be kept (ids then change at a restart)."""
    try:
        return bytes.fromhex(path.read_text().strip())
    except (OSError, ValueError):
        pass
    secret = os.urandom(32)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secret.hex())
    except OSError:
        pass
    return secret


class KeyRing:
    """Every key in force, by the digest of its secret."""

    def __init__(
        self, users: list[SecretStr], admins: list[SecretStr], named: KeyFile | None = None, salt: bytes = b""
    ) -> None:
        self._env: dict[str, Key] = {}
        for secrets, admin in ((users, False), (admins, True)):
            for secret in secrets:
                value = secret.get_secret_value().encode()
                # Who the key is in the journal and GET /jobs: keyed with the hub's own secret, so a weak key
                # cannot be found again from it offline.
                caller = "env:" + hmac.new(salt, value, hashlib.sha256).hexdigest()[:16]
                self._env[digest(secret.get_secret_value())] = Key(ENV, admin=admin, caller_id=caller)
        self._by_digest: dict[str, Key] = {}
        self.names: set[str] = set()
        self.locked = False
        self.replace(named or KeyFile())

    def lock(self) -> None:
        """No caller gets in: the keys file could not be read at start, and the hub must not run open."""
        self.locked = True

    def replace(self, named: KeyFile) -> None:
        """The keys file's keys, in force from now on (the environment's stay)."""
        self._by_digest = {**{h: k for h, k in named.keys.values()}, **self._env}
        self.names = set(named.keys)
        self.locked = False

    def __bool__(self) -> bool:
        """Whether any key is in force: with none, the hub is open to whoever reaches it."""
        return bool(self._by_digest) or self.locked

    def find(self, presented: str) -> Key | None:
        return self._by_digest.get(digest(presented))
