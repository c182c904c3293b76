"""`ollama-hubd nodes add|list|revoke`: each node's own credential, in the nodes file beside the keys file,
which a running hub reads again within seconds. `add` prints the node token once, as the last line of its
output; give it to that machine's agent as NODE_TOKEN (`install.sh node` asks for it).
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path

from ollama_connector.hubd.guard.keyring import NAME, hub_secret
from ollama_connector.hubd.guard.keys_cli import fail, iso, keys_file, owned_by_the_hub
from ollama_connector.hubd.guard.node_tokens import NodeFile

NODES = "nodes"  # the command, in its error messages


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ollama-hubd nodes", description="Manage each node's own credential.")
    p.add_argument("--file", help="the nodes file (default: nodes.toml beside the keys file)")
    commands = p.add_subparsers(dest="command", required=True)
    add = commands.add_parser("add", help="make a node token for NAME and print it, once")
    add.add_argument("name", help="the node's NODE_ID: 1 to 64 letters, digits, '.', '_' or '-'")
    commands.add_parser("list", help="the nodes with a credential, and when each was made (never tokens)")
    revoke = commands.add_parser(
        "revoke", help="remove a node's credential: the hub refuses it within seconds"
    )
    revoke.add_argument("name")
    return p


def add(path: Path, name: str) -> int:
    if not NAME.fullmatch(name):
        return fail(
            f"a node's name is its NODE_ID: 1 to 64 letters, digits, '.', '_' or '-': {name!r}", "nodes"
        )
    named = NodeFile.read(path)
    if name in named.nodes:
        return fail(f"node {name!r} has a credential; revoke it first to make a new one", NODES)
    secret_path = path.with_name("nodes.secret")
    secret = hub_secret(secret_path)
    if not secret_path.exists():
        return fail(f"could not keep the hub's node secret in {secret_path}", NODES)
    token = named.add(name, secret, iso(datetime.now(UTC).timestamp()))
    named.write(path)
    owned_by_the_hub(path, secret_path)
    print(f"added node {name!r} to {path}; a running hub takes it within 5 s")
    print(f"its token, shown this once: on that machine set NODE_ID={name} and NODE_TOKEN to it")
    print(token)
    return 0


def listing(path: Path) -> int:
    named = NodeFile.read(path)
    if not named.nodes:
        print(f"no node credentials in {path} (nodes use CLUSTER_TOKEN, if it is set)")
        return 0
    print(f"{'NODE':<30} CREATED")
    for name, (_, entry) in sorted(named.nodes.items()):
        print(f"{name:<30} {entry.created or '-'}")
    return 0


def revoke(path: Path, name: str) -> int:
    named = NodeFile.read(path)
    if named.nodes.pop(name, None) is None:
        return fail(f"no node named {name!r} in {path}", NODES)
    named.write(path)
    owned_by_the_hub(path)
    print(f"revoked node {name!r} in {path}; a running hub refuses its heartbeats within 5 s")
    return 0


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    path = Path(args.file) if args.file else keys_file(None).with_name("nodes.toml")
    try:
        if args.command == "add":
            return add(path, args.name)
        if args.command == "revoke":
            return revoke(path, args.name)
        return listing(path)
    except (ValueError, OSError) as exc:
        return fail(str(exc), NODES)
