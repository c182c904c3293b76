"""Nothing fails silently: every background loop runs under one supervisor that logs a crash once, with
its traceback, and starts the loop again; the agent's /healthz says when one is down; and an Ollama with
more models than a heartbeat carries no longer kills the heartbeat."""

from __future__ import annotations

import asyncio
import logging

from ollama_connector.shared.lifecycle import Supervised, supervise
from ollama_connector.shared.wire import MAX_MODELS


async def test_a_crashing_loop_is_said_once_and_started_again(caplog):
    state, runs = Supervised("the test loop"), []

    async def loop() -> None:
        runs.append(state.crashed)
        if len(runs) < 4:
            raise RuntimeError("the same fault")

    with caplog.at_level(logging.DEBUG, logger="ollama_connector.tasks"):
        await asyncio.wait_for(supervise(state, loop, first_backoff=0.01), 5)
    said = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(runs) == 4 and state.crashes == 3 and not state.crashed
    assert len(said) == 1 and said[0].exc_info and "the test loop crashed" in said[0].getMessage()


async def test_an_ollama_with_too_many_models_still_registers(fleet, http, caplog):
    hub = await fleet.hub()
    with caplog.at_level(logging.WARNING):
        await fleet.node(hub, await fleet.sim(models=[f"model{n}" for n in range(MAX_MODELS + 1)]), "big")
    assert len(hub.registry.get("big").beat.models) == MAX_MODELS
    assert "the hub hears of 1000" in caplog.text
    node = next(r for r in fleet.running if getattr(r, "node_id", "") == "big")
    async with http.get(node.url + "/healthz") as r:
        assert r.status == 200 and (await r.json())["status"] == "ok"
