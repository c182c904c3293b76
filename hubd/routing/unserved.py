"""Routes a node's engine does not serve (an Ollama older than the route, another engine), learned from
its answers (`Reason.ROUTE_MISSING`), so that later jobs on the route skip the node instead of failing over
from it every time. Forgotten after `FORGET` seconds, or at once when the node reports another engine
version: an upgrade brings the route. Kept by route, so a job on a route no node lacks costs one lookup."""

from __future__ import annotations

import time

from ollama_connector.hubd.routing.node import NodeRecord
from ollama_connector.hubd.routing.registry import Registry
from ollama_connector.shared.modelnames import canonical

FORGET = 600.0


def _version(node: NodeRecord) -> object:
    return node.beat.metadata.get("ollama_version")


class Unserved:
    def __init__(self) -> None:
        self._by_route: dict[str, dict[str, tuple[object, float]]] = {}  # node_id: (its version, when)

    def learn(self, node: NodeRecord, path: str) -> None:
        self._by_route.setdefault(path, {})[node.node_id] = (_version(node), time.monotonic())

    def lacking(self, registry: Registry, path: str, model: str) -> list[NodeRecord]:
        """The nodes with `model` known not to serve `path`; what no longer holds is forgotten."""
        learned = self._by_route.get(path)
        if not learned:
            return []
        found, now = [], time.monotonic()
        for node_id, (version, when) in list(learned.items()):
            node = registry.get(node_id)
            if node is None or version != _version(node) or now - when > FORGET:
                del learned[node_id]
            elif canonical(model) in node.model_keys:
                found.append(node)
        return found
