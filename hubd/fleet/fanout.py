"""Asking several nodes the same thing at once: the merged views, and unloading a model everywhere."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import aiohttp
from aiohttp import web

from ollama_connector.hubd.routing.keys import NODES, REGISTRY
from ollama_connector.hubd.routing.node import NodeRecord
from ollama_connector.hubd.routing.node_client import QUICK

log = logging.getLogger(__name__)


def online(app: web.Application, nodes: list[NodeRecord] | None = None) -> list[NodeRecord]:
    registry = app[REGISTRY]
    return [r for r in (registry.all() if nodes is None else nodes) if registry.status(r) == "online"]


async def ask_nodes(
    app: web.Application,
    nodes: list[NodeRecord],
    method: str,
    path: str,
    payload: bytes | None = None,
    limit: aiohttp.ClientTimeout = QUICK,
) -> list[tuple[NodeRecord, int | None, bytes]]:
    """The same request to each node at once: (node, status, body), or (node, None, reason) when it failed."""
    client = app[NODES]

    async def ask(node: NodeRecord) -> tuple[NodeRecord, int | None, bytes]:
        return node, *(await client.ask(node, method, path, payload, limit))

    return list(await asyncio.gather(*(ask(node) for node in nodes)))


async def ask_online_nodes(app: web.Application, path: str) -> list[tuple[NodeRecord, Any]]:
    """GET `path` on every online node's agent; nodes that fail, are slow, or answer garbage are left out."""
    answers = []
    for node, status, body in await ask_nodes(app, online(app), "GET", path):
        if status != 200:
            continue
        try:
            answers.append((node, json.loads(body)))
        except ValueError:
            log.debug("node %s answered %s with something that is not JSON", node.node_id, path)
    return answers
