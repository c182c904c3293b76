"""Each node's own credential: `ollama-hubd nodes add NAME` makes a node token, the agent holds it as
NODE_TOKEN, and the hub takes a heartbeat with it only as node NAME. So a node cannot pose as another, and
revoking one machine does not mean changing a secret on all of them (as the shared CLUSTER_TOKEN does).

The nodes file (`nodes.toml` beside the keys file) keeps, for each node, a digest of its token (to know it
when presented) and a nonce. The token itself is an HMAC of the name and nonce with the hub's node secret
(`nodes.secret`, beside it, readable by its owner only), so the hub can present it back to that agent when it
dials it, and check the proof of each answer (shared.agent_contract), without keeping any token on disk.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from ollama_connector.hubd.guard.keyring import NAME, digest
from ollama_connector.hubd.guard.toml_files import read_table, write_private

PREFIX = "ocnn_"  # a node token says what it is when found in a file or a log


@dataclass(frozen=True)
class NodeEntry:
    name: str
    nonce: str
    created: str | None = None


@dataclass
class NodeFile:
    """The nodes file's entries, by name, as read or about to be written."""

    nodes: dict[str, tuple[str, NodeEntry]] = field(default_factory=dict)  # name: (digest, entry)

    @classmethod
    def read(cls, path: Path) -> NodeFile:
        """The file's nodes; none when it does not exist. ValueError naming what is wrong with it."""
        nodes = {}
        for name, entry in read_table(path, "nodes").items():
            if not NAME.fullmatch(name):
                raise ValueError(f"{path}: node {name!r}: a name is 1 to 64 letters, digits, '.', '_' or '-'")
            if not isinstance(entry, dict) or not all(
                isinstance(entry.get(k), str) for k in ("hash", "nonce")
            ):
                raise ValueError(f"{path}: node {name!r}: needs a hash and a nonce")
            created = str(entry["created"]) if entry.get("created") else None
            nodes[name] = (entry["hash"], NodeEntry(name, entry["nonce"], created))
        return cls(nodes)

    def write(self, path: Path) -> None:
        """Atomically, readable by its owner only."""
        lines = [
            "# ollama-connector's node credentials: written by `ollama-hubd nodes`; no token is kept here.",
            "",
        ]
        for name, (hashed, entry) in sorted(self.nodes.items()):
            lines += [f"[nodes.{name}]", f'hash = "{hashed}"', f'nonce = "{entry.nonce}"']
            if entry.created:
                lines.append(f'created = "{entry.created}"')
            lines.append("")
        write_private(path, lines)

    def add(self, name: str, secret: bytes, created: str) -> str:
        """A new entry for `name`, and its token (to be shown once)."""
        entry = NodeEntry(name, secrets.token_hex(16), created)
        token = derive(secret, entry)
        self.nodes[name] = (digest(token), entry)
        return token


def derive(secret: bytes, entry: NodeEntry) -> str:
    mac = hmac.new(secret, f"{entry.name}\n{entry.nonce}".encode(), hashlib.sha256).digest()
    return PREFIX + base64.urlsafe_b64encode(mac).decode().rstrip("=")


class NodeTokens:
    """The node tokens in force: who presents one, and what to present to each node."""

    def __init__(self, secret: bytes) -> None:
        self.secret = secret
        self._by_digest: dict[str, str] = {}
        self._tokens: dict[str, str] = {}  # name: token, to dial that node

    def replace(self, named: NodeFile) -> None:
        self._by_digest = {hashed: name for name, (hashed, _) in named.nodes.items()}
        self._tokens = {name: derive(self.secret, entry) for name, (_, entry) in named.nodes.items()}

    @property
    def names(self) -> set[str]:
        return set(self._tokens)

    def __bool__(self) -> bool:
        return bool(self._tokens)

    def find(self, presented: str | None) -> str | None:
        """The node whose token was presented, if any (found by its digest: no comparison leaks timing)."""
        return self._by_digest.get(digest(presented)) if presented else None

    def token_for(self, name: str) -> str | None:
        return self._tokens.get(name)
