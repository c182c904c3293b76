"""Routes a node's engine does not serve (an Ollama older than the route, another engine), learned from
its answers (`Reason.ROUTE_MISSING`), so that later jobs on the route skip the node instead of failing over
from it every time. Forgotten after `FORGET` seconds, or at once when the node reports another engine
version: an upgrade brings the route."""

from __future__ import annotations

import time

from ollama_connector.hubd.registry import NodeRecord

FORGET = 600.0


def _version(node: NodeRecord) -> object:
    return node.beat.metadata.get("ollama_version")


def learn(node: NodeRecord, path: str) -> None:
    node.unserved[path] = (_version(node), time.monotonic())


def lacks(node: NodeRecord, path: str) -> bool:
    learned = node.unserved.get(path)
    if learned is None:
        return False
    version, when = learned
    if version != _version(node) or time.monotonic() - when > FORGET:
        del node.unserved[path]
        return False
    return True
