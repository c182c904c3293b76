"""Asking every online node the same question (their models, what they have loaded), for the merged views."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
from aiohttp import web

from hubd.keys import REGISTRY, SESSION, SETTINGS
from hubd.registry import NodeRecord
from shared.auth import bearer
from shared.relay import describe

log = logging.getLogger(__name__)
FANOUT_TIMEOUT = aiohttp.ClientTimeout(total=5.0)


async def ask_online_nodes(app: web.Application, path: str) -> list[tuple[NodeRecord, Any]]:
    """GET `path` on every online node's agent at once; nodes that fail or are slow are left out."""
    registry = app[REGISTRY]
    nodes = [r for r in registry.all() if registry.status(r) == "online"]
    headers = bearer(app[SETTINGS].cluster_token)

    async def ask(node: NodeRecord) -> tuple[NodeRecord, Any] | None:
        try:
            async with app[SESSION].get(
                node.base_url + path, headers=headers, timeout=FANOUT_TIMEOUT
            ) as response:
                if response.status != 200:
                    log.info("node %s answered %s with HTTP %d", node.node_id, path, response.status)
                    return None
                return node, await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.info("node %s did not answer %s: %s", node.node_id, path, describe(exc))
            return None

    answers = await asyncio.gather(*(ask(node) for node in nodes))
    return [answer for answer in answers if answer is not None]
