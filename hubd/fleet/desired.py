"""FLEET_MODELS: the hub keeps each listed model on that many online nodes, pulling where it is missing.

`llama3:8b=all,qwen2.5:14b=2`: llama3:8b on every online node, qwen2.5:14b on two. The hub looks again after
heartbeats (at most every LOOK_SECONDS) and, for each model on too few nodes, pulls it onto the nodes with the
most free space that have room for it (nodes that have it already count first). It never deletes a model. What
it cannot place is said once in the log and shown in /stats; a node whose pull failed rests (RETRY_SECONDS,
doubling) before it is tried again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from ollama_connector.hubd.fleet.fanout import online
from ollama_connector.hubd.fleet.manage import no_room, start
from ollama_connector.hubd.fleet.transfers import Transfer
from ollama_connector.hubd.keys import SETTINGS
from ollama_connector.hubd.routing.keys import REGISTRY
from ollama_connector.hubd.routing.node import NodeRecord
from ollama_connector.hubd.settings import ALL, parse_fleet_models
from ollama_connector.shared.lifecycle import supervised
from ollama_connector.shared.modelnames import canonical

log = logging.getLogger(__name__)
LOOK_SECONDS = 5.0
RETRY_SECONDS, MAX_RETRY_SECONDS = 300.0, 3600.0


class Desired:
    def __init__(self, wanted: dict[str, str | int]) -> None:
        self.wanted = wanted
        self.state: dict[str, dict[str, Any]] = {}  # by model, for /stats
        self._pulls: dict[tuple[str, str], Transfer] = {}
        self._resting: dict[tuple[str, str], tuple[float, float]] = {}  # (node, key): (until, next rest)
        self._said: dict[str, str] = {}  # what the log last said of each model

    def look(self, app: web.Application, now: float) -> None:
        registry = app[REGISTRY]
        nodes = [node for node in online(app) if node.beat.backend == "ollama"]  # pulls are Ollama's
        for model, count in self.wanted.items():
            key = canonical(model)
            have = [n.node_id for n in nodes if key in n.model_keys]
            want = len(nodes) if count == ALL else count
            self._reap(key, now)
            pulling = [node for (node, k) in self._pulls if k == key]
            size = max((n.sizes.get(key, 0) for n in registry.all()), default=0)
            missing = max(0, want - len(have) - len(pulling))
            unplaced = ""
            if missing:
                chosen, why = self._candidates(nodes, key, size, set(have) | set(pulling), now)
                for node in chosen[:missing]:
                    payload = json.dumps({"model": model, "stream": True}).encode()
                    self._pulls[(node.node_id, key)] = start(app, node, "/api/pull", model, payload)
                    pulling.append(node.node_id)
                if len(chosen) < missing:
                    unplaced = f"on {len(have) + len(pulling)} of {want} node(s): " + (why or "no other node")
            self.state[model] = {
                "wanted": count,
                "on": have,
                "pulling": pulling,
                "unplaced": unplaced or None,
            }
            if unplaced != self._said.get(model, ""):
                if unplaced:
                    log.warning("FLEET_MODELS %s=%s: %s", model, count, unplaced)
                self._said[model] = unplaced

    def _candidates(
        self, nodes: list[NodeRecord], key: str, size: int, taken: set[str], now: float
    ) -> tuple[list[NodeRecord], str]:
        chosen, reasons = [], []
        for node in nodes:
            if node.node_id in taken:
                continue
            if (lacking := no_room(node, key, size)) is not None:
                reasons.append(f"{node.node_id}: {lacking}")
            elif self._resting.get((node.node_id, key), (0.0, 0.0))[0] > now:
                reasons.append(f"{node.node_id}: its last pull failed; trying again later")
            else:
                chosen.append(node)
        chosen.sort(key=lambda n: -(n.beat.disk_free_bytes or 0))
        return chosen, "; ".join(reasons)

    def _reap(self, key: str, now: float) -> None:
        for (node, k), transfer in list(self._pulls.items()):
            if k != key or not transfer.finished:
                continue
            del self._pulls[(node, k)]
            outcome = transfer.result
            if outcome is not None and not outcome.ok:
                _, rest = self._resting.get((node, k), (0.0, RETRY_SECONDS))
                self._resting[(node, k)] = (now + rest, min(rest * 2, MAX_RETRY_SECONDS))
                log.warning("FLEET_MODELS: pulling %s onto %s failed: %s", k, node, outcome.error)
            else:
                self._resting.pop((node, k), None)


async def desired_ctx(app: web.Application) -> AsyncIterator[None]:
    wanted = app[SETTINGS].fleet_models
    if not wanted:
        yield
        return
    desired = app[DESIRED] = Desired(parse_fleet_models(wanted))
    heard = asyncio.Event()
    app[REGISTRY].heard.append(heard.set)

    async def keep() -> None:
        while True:
            desired.look(app, time.monotonic())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(heard.wait(), LOOK_SECONDS)
            heard.clear()
            await asyncio.sleep(0.2)  # heartbeats come in bursts: one look for the burst

    async with supervised("FLEET_MODELS' keeper", keep):
        yield


DESIRED = web.AppKey("desired", Desired)
