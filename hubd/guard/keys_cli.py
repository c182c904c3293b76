"""`ollama-hubd keys add|list|revoke`: named API keys in the keys file, which a running hub reads again within
seconds. `add` prints the secret once, as the last line of its output; the file keeps only its digest.

The file is `--file`, else KEYS_FILE, else `keys.toml` in the hub's state directory: systemd's (the unit's
StateDirectory, found when run as root beside an installed hub), else the user's.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sqlite3
import sys
from datetime import UTC, datetime
from pathlib import Path

from ollama_connector.hubd.guard.keyring import ENV, LIMITS, NAME, Key, KeyFile, digest
from ollama_connector.hubd.settings import state_directory

INSTALLED_STATE = Path("/var/lib/ollama-connector-hub")  # the unit's StateDirectory=
PREFIX = "ocn_"  # a secret says what it is for when found in a file or a log


def keys_file(given: str | None) -> Path:
    if given:
        return Path(given)
    if os.environ.get("KEYS_FILE"):
        return Path(os.environ["KEYS_FILE"])
    if not os.environ.get("STATE_DIRECTORY") and INSTALLED_STATE.is_dir():
        return INSTALLED_STATE / "keys.toml"
    return state_directory() / "keys.toml"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ollama-hubd keys", description="Manage the hub's named API keys.")
    p.add_argument("--file", help="the keys file (default: KEYS_FILE, else keys.toml in the state directory)")
    commands = p.add_subparsers(dest="command", required=True)
    add = commands.add_parser("add", help="create a key and print its secret, once")
    add.add_argument("name", help="1 to 64 letters, digits, '.', '_' or '-'")
    add.add_argument("--admin", action="store_true", help="model management, every job, /metrics, /usage")
    add.add_argument("--models", help="comma-separated models or shell-style globs ('llama3*,qwen2.5:*')")
    add.add_argument("--rpm", type=int, help="requests a minute")
    add.add_argument("--concurrency", type=int, help="jobs running or queued at once")
    add.add_argument("--tokens-per-day", type=int, help="prompt and output tokens over a rolling 24 hours")
    add.add_argument(
        "--share",
        type=float,
        help="of each hub-wide cap (jobs, async jobs, pulls) it may hold (default: CALLER_SHARE)",
    )
    commands.add_parser("list", help="names, roles, limits, created and last used (never secrets)")
    revoke = commands.add_parser("revoke", help="remove a key: the hub refuses it within seconds")
    revoke.add_argument("name")
    return p


def describe(key: Key) -> str:
    parts = [key.role, "models " + ",".join(key.models) if key.models else "every model"]
    parts += [f"{limit.replace('_', ' ')} {getattr(key, limit)}" for limit in LIMITS if getattr(key, limit)]
    parts += [f"share {key.share:g}"] if key.share is not None else []
    return "; ".join(parts)


def add(path: Path, args: argparse.Namespace) -> int:
    if not NAME.fullmatch(args.name) or args.name == ENV:
        return fail(
            f"a key's name is 1 to 64 letters, digits, '.', '_' or '-' (and not {ENV!r}): {args.name!r}"
        )
    for limit in LIMITS:
        if (value := getattr(args, limit)) is not None and value < 1:
            return fail(f"--{limit.replace('_', '-')} must be at least 1")
    named = KeyFile.read(path)
    if args.name in named.keys:
        return fail(f"a key named {args.name!r} exists; revoke it first to make a new one")
    if args.share is not None and not 0 < args.share <= 1:
        return fail("--share must be a fraction above 0 and at most 1 (0.25: a quarter of each cap)")
    models = tuple(m.strip() for m in (args.models or "").split(",") if m.strip())
    created = iso(datetime.now(UTC).timestamp())
    limits = {limit: getattr(args, limit) for limit in LIMITS}
    key = Key(args.name, admin=args.admin, models=models, created=created, share=args.share, **limits)
    secret = PREFIX + secrets.token_urlsafe(32)
    named.keys[args.name] = (digest(secret), key)
    save(named, path)
    print(f"added {args.name!r} ({describe(key)}) to {path}; a running hub takes it within 5 s")
    print("its secret, shown this once (give it to its owner; the file keeps only a digest):")
    print(secret)
    return 0


def save(named: KeyFile, path: Path) -> None:
    named.write(path)
    owned_by_the_hub(path)


def owned_by_the_hub(*paths: Path) -> None:
    """Root writes for the hub's own user (systemd's DynamicUser): the files belong to the folder's owner."""
    for path in paths:
        if os.geteuid() == 0 and path.parent.exists():
            owner = path.parent.stat()
            os.chown(path, owner.st_uid, owner.st_gid)


def last_used(path: Path) -> dict[str, float]:
    """When each key last ran a job, from the journal beside the keys file (nothing when it is elsewhere)."""
    journal = Path(os.environ.get("JOURNAL_PATH") or path.with_name("journal.sqlite3"))
    try:
        with sqlite3.connect(f"file:{journal}?mode=ro", uri=True) as db:
            return dict(db.execute("SELECT key, max(arrived) FROM jobs WHERE key IS NOT NULL GROUP BY key"))
    except sqlite3.Error:
        return {}


def listing(path: Path) -> int:
    named = KeyFile.read(path)
    if not named.keys:
        print(f"no named keys in {path}")
        return 0
    used = last_used(path)
    print(f"{'NAME':<20} {'CREATED':<21} {'LAST USED':<21} ROLE, MODELS, LIMITS")
    for name, (_, key) in sorted(named.keys.items()):
        when = iso(used[name]) if name in used else "never"
        print(f"{name:<20} {key.created or '-':<21} {when:<21} {describe(key)}")
    return 0


def revoke(path: Path, name: str) -> int:
    named = KeyFile.read(path)
    if named.keys.pop(name, None) is None:
        return fail(f"no key named {name!r} in {path}")
    save(named, path)
    print(f"revoked {name!r} in {path}; a running hub refuses it within 5 s")
    return 0


def iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def fail(message: str, command: str = "keys") -> int:
    print(f"ollama-hubd {command}: {message}", file=sys.stderr)
    return 1


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    path = keys_file(args.file)
    try:
        if args.command == "add":
            return add(path, args)
        if args.command == "revoke":
            return revoke(path, args.name)
        return listing(path)
    except (ValueError, OSError) as exc:
        return fail(str(exc))
