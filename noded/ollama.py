"""The agent's view of its local Ollama: which models it has, which version, whether it answers."""

from __future__ import annotations

import asyncio
import logging
import time

import aiohttp
from aiohttp import web

from ollama_connector.noded.keys import SESSION, SETTINGS, STATE
from ollama_connector.noded.proxy import engine_auth
from ollama_connector.shared.relay import describe
from ollama_connector.shared.wire import LoadedModel

log = logging.getLogger(__name__)
OLLAMA_TIMEOUT = aiohttp.ClientTimeout(total=5.0)
FRESH_FOR = 1.0  # seconds a look at Ollama serves every heartbeat (each hub's, and those a freed slot sends)


async def ollama_json(app: web.Application, path: str) -> dict:
    settings = app[SETTINGS]
    headers = engine_auth(settings)
    async with app[SESSION].get(
        settings.ollama_url + path, timeout=OLLAMA_TIMEOUT, headers=headers
    ) as response:
        response.raise_for_status()
        return await response.json(content_type=None)


def loaded_models(ps: object) -> list[LoadedModel]:
    """Ollama's /api/ps as the heartbeat carries it; entries it cannot read are left out."""
    loaded = []
    for entry in (ps.get("models") if isinstance(ps, dict) else None) or []:
        try:
            loaded.append(LoadedModel.model_validate(entry))
        except ValueError:
            continue
    return loaded[:64]


async def refresh_ollama(app: web.Application, reuse: bool = False) -> bool:
    """Update the model list and version; with Ollama down the list is empty, so the hub sends nothing."""
    state, settings = app[STATE], app[SETTINGS]
    was_up = state.ollama_up
    if reuse and was_up and time.monotonic() - state.refreshed_at < FRESH_FOR:  # one look, every hub's beat
        return True
    try:
        if settings.backend == "openai":  # its /v1/models is all it says: no version or sizes
            listed = await ollama_json(app, "/v1/models")
            data = [
                m for m in listed.get("data") or [] if isinstance(m, dict) and isinstance(m.get("id"), str)
            ]
            tags = {"models": [{"model": m["id"]} for m in data]}
            # It serves the models it lists (llama-server and vLLM load theirs at start): all are loaded.
            version, ps = {"version": None}, {"models": [{"name": m["id"]} for m in data]}
        else:
            tags, version, ps = await asyncio.gather(
                ollama_json(app, "/api/tags"), ollama_json(app, "/api/version"), ollama_json(app, "/api/ps")
            )
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        if was_up is not False:
            log.warning(
                "Ollama at %s is not answering: %s; reporting no models", settings.ollama_url, describe(exc)
            )
        state.models, state.ollama_version, state.ollama_up, state.loaded, state.sizes = (
            [],
            None,
            False,
            [],
            {},
        )
        return False
    state.models = [
        m.get("model") or m.get("name") for m in tags.get("models") or [] if m.get("model") or m.get("name")
    ]
    state.ollama_version = None if version.get("version") is None else str(version["version"])
    state.ollama_up, state.refreshed_at = True, time.monotonic()
    state.loaded = loaded_models(ps)
    state.sizes = {
        m["model"]: m["size"]
        for m in tags.get("models") or []
        if isinstance(m.get("model"), str) and isinstance(m.get("size"), int) and len(m["model"]) <= 300
    }
    if was_up is not True:
        log.info(
            "Ollama %s at %s has %d model(s)", state.ollama_version, settings.ollama_url, len(state.models)
        )
    return True
