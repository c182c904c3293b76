"""Pulling the REQUIRED_MODELS the local Ollama lacks: at start, then again while a pull keeps failing."""

from __future__ import annotations

import asyncio
import json
import logging

import aiohttp
from aiohttp import web

from ollama_connector.noded.keys import SESSION, SETTINGS, STATE, TASKS
from ollama_connector.noded.ollama import refresh_ollama
from ollama_connector.shared.error_formats import Ollama
from ollama_connector.shared.lifecycle import background
from ollama_connector.shared.modelnames import canonical
from ollama_connector.shared.relay import describe

log = logging.getLogger(__name__)
PULL_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=10.0, sock_read=600.0)
FIRST_RETRY, MAX_RETRY = 60.0, 1800.0


class PullFailed(Exception):
    pass


async def pull(app: web.Application, model: str) -> None:
    """One pull through Ollama's /api/pull, logging progress at each status and every quarter of a layer."""
    settings = app[SETTINGS]
    url = settings.ollama_url + "/api/pull"
    log.info("pulling %s", model)
    last_status, last_quarter = "", -1
    try:
        async with app[SESSION].post(
            url, json={"model": model, "stream": True}, timeout=PULL_TIMEOUT
        ) as response:
            if response.status != 200:
                raise PullFailed(f"HTTP {response.status}: {(await response.text())[:300]}")
            async for line in response.content:
                if not line.strip():
                    continue
                progress = json.loads(line)
                if (message := Ollama.message_in(progress)) is not None:
                    raise PullFailed(message)
                status = progress.get("status", "")
                total, done = progress.get("total"), progress.get("completed", 0)
                quarter = int(4 * done / total) if total else -1
                if status != last_status or quarter != last_quarter:
                    suffix = f" {100 * done / total:.0f}%" if total else ""
                    log.info("pull %s: %s%s", model, status, suffix)
                    last_status, last_quarter = status, quarter
                if status == "success":
                    return
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        raise PullFailed(describe(exc)) from exc
    raise PullFailed("the stream ended before success")


async def pull_loop(app: web.Application) -> None:
    settings, state = app[SETTINGS], app[STATE]
    if settings.skip_model_pull or not settings.required_models:
        return
    retry = FIRST_RETRY
    while True:
        await refresh_ollama(app)
        have = {canonical(m) for m in state.models}
        missing = [m for m in settings.required_models if canonical(m) not in have]
        if not missing:
            return
        failed = False
        if state.ollama_up:
            for model in missing:
                try:
                    await pull(app, model)
                except PullFailed as exc:
                    failed = True
                    state.pulls["failure"] = state.pulls.get("failure", 0) + 1
                    log.warning("pull of %s failed: %s; retrying in %.0f s", model, exc, retry)
                else:
                    await refresh_ollama(app)
                    if canonical(model) not in {canonical(m) for m in state.models}:
                        # Pulling again at once would spin: wait as after a failed pull.
                        failed = True
                        log.warning(
                            "pull of %s reported success, but Ollama does not list it; retrying in %.0f s",
                            model,
                            retry,
                        )
                        continue
                    log.info("pulled %s", model)
                    state.pulls["success"] = state.pulls.get("success", 0) + 1
                    state.wake.set()  # a heartbeat now, so the hub can route to the new model
        else:
            failed = True
        if not failed:
            continue
        await asyncio.sleep(retry)
        retry = min(retry * 2, MAX_RETRY)


pull_ctx = background(pull_loop, TASKS)
