"""Heartbeats to the hub: at start, then every HEARTBEAT_INTERVAL, with backoff while the hub is away."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from urllib.parse import quote

import aiohttp
from aiohttp import web

from ollama_connector.noded.gpus import default_context
from ollama_connector.noded.keys import SESSION, SETTINGS, STATE, TASKS
from ollama_connector.noded.ollama import refresh_ollama
from ollama_connector.noded.sysinfo import current_load, disk_free, machine_metadata, primary_addresses
from ollama_connector.shared.auth import bearer
from ollama_connector.shared.lifecycle import background
from ollama_connector.shared.relay import describe
from ollama_connector.shared.wire import MAX_MODEL_NAME, MAX_MODELS, Capacity, Heartbeat

log = logging.getLogger(__name__)
HEARTBEAT_TIMEOUT = aiohttp.ClientTimeout(total=10.0)
FIRST_RETRY = 1.0


class HubRefused(Exception):
    pass


def reportable(models: list[str], sizes: dict[str, int]) -> tuple[list[str], dict[str, int]]:
    """The models a heartbeat can carry: at most MAX_MODELS, names within MAX_MODEL_NAME (said once)."""
    kept = [m for m in models if 0 < len(m) <= MAX_MODEL_NAME][:MAX_MODELS]
    if len(kept) < len(models) and not _said_dropped:
        _said_dropped.append(True)
        log.warning(
            "Ollama lists %d models; the hub hears of %d (at most %d, names of at most %d characters)",
            len(models),
            len(kept),
            MAX_MODELS,
            MAX_MODEL_NAME,
        )
    chosen = set(kept)
    return kept, {name: size for name, size in sizes.items() if name in chosen}


_said_dropped: list[bool] = []


def build_heartbeat(app: web.Application) -> Heartbeat:
    settings, state = app[SETTINGS], app[STATE]
    models, sizes = reportable(state.models, state.sizes)
    detected_v4, detected_v6 = primary_addresses()
    gpus = state.nvml.read()
    vram = int(settings.vram_gb * 1e9) or sum(gpu.memory_total for gpu in gpus)
    return Heartbeat(
        node_id=settings.node_id,
        ipv4=settings.ipv4 or detected_v4,
        ipv6=settings.ipv6 or detected_v6,
        port=state.port,
        models=models,
        metadata=machine_metadata(state.ollama_version),
        load=current_load(),
        active_jobs=state.active_jobs,
        status="draining" if state.draining else "online",
        address=settings.address,
        tls=settings.tls_cert is not None,
        capacity=Capacity(
            num_parallel=settings.num_parallel,
            max_loaded_models=settings.max_loaded_models or 3,
            max_queue=settings.max_queue,
            vram_bytes=vram or None,
            default_context=default_context(settings.context_length, vram),
            weight=settings.weight,
        ),
        loaded=state.loaded,
        model_sizes=sizes,
        gpus=gpus,
        disk_free_bytes=disk_free(settings.models_dir),
        backend=settings.backend,
        hubs=len(settings.server_url),
        hubs_reached=sum(state.hubs_reached.values()) if state.hubs_reached else None,
        in_flight=state.slots.view(),
    )


async def send_heartbeat(app: web.Application, hub: str) -> None:
    settings = app[SETTINGS]
    await refresh_ollama(app, reuse=True)
    beat = build_heartbeat(app)
    url = hub + "/nodes/heartbeat"
    async with app[SESSION].post(
        url,
        json=beat.model_dump(),
        headers={**bearer(settings.hub_token), "X-Node-Id": quote(settings.node_id)},
        timeout=HEARTBEAT_TIMEOUT,
    ) as response:
        if response.status == 401:
            which = "NODE_TOKEN (from `ollama-hubd nodes add`)" if settings.node_token else "cluster token"
            raise HubRefused(f"the hub refused our {which}: check CLUSTER_TOKEN or NODE_TOKEN on both sides")
        if response.status == 404:
            raise HubRefused(f"{hub} has no /nodes/heartbeat: is SERVER_URL an Ollama, not the hub?")
        if response.status >= 400:
            raise HubRefused(f"the hub refused this node (HTTP {response.status}): {await said(response)}")


async def said(response: aiohttp.ClientResponse) -> str:
    """The hub's reason (its `{"detail"}`), or the start of whatever else it answered."""
    text = (await response.text(errors="replace"))[:300]
    try:
        return str(json.loads(text)["detail"])[:300]
    except (ValueError, KeyError, TypeError):
        return text


async def tell_every_hub(app: web.Application) -> None:
    """A heartbeat to each hub at once (draining: so every hub sends its jobs elsewhere); said per hub."""
    hubs = app[SETTINGS].server_url
    outcomes = await asyncio.gather(*(send_heartbeat(app, hub) for hub in hubs), return_exceptions=True)
    for hub, outcome in zip(hubs, outcomes, strict=True):
        if isinstance(outcome, aiohttp.ClientError | TimeoutError | HubRefused):
            log.warning("could not tell the hub at %s: %s", hub, describe(outcome))
        elif isinstance(outcome, BaseException):
            raise outcome


async def heartbeat_loop(app: web.Application) -> None:
    """Heartbeats to every hub in SERVER_URL, each on its own schedule and backoff."""
    state = app[STATE]
    await state.listening.wait()
    hubs = app[SETTINGS].server_url
    await asyncio.gather(*(beat_one_hub(app, hub, state.wake.event()) for hub in hubs))


async def beat_one_hub(app: web.Application, hub: str, wake: asyncio.Event) -> None:
    settings, state = app[SETTINGS], app[STATE]
    outage_since: float | None = None
    retry = ollama_retry = FIRST_RETRY
    while True:
        try:
            await send_heartbeat(app, hub)
        except (aiohttp.ClientError, TimeoutError, HubRefused) as exc:
            state.heartbeat_failures += 1
            state.hubs_reached[hub] = False
            if outage_since is None:
                outage_since = time.monotonic()
                log.warning(
                    "heartbeat to the hub at %s failed: %s; retrying with backoff", hub, describe(exc)
                )
            delay, retry = retry, min(retry * 2, settings.heartbeat_interval)
        else:
            state.hubs_reached[hub] = True
            if outage_since is not None:
                log.info("hub at %s reachable again after %.0f s", hub, time.monotonic() - outage_since)
                outage_since = None
            delay, retry = settings.heartbeat_interval, FIRST_RETRY
            # While Ollama is down, look again sooner, so the hub hears of its return within seconds.
            if state.ollama_up:
                ollama_retry = FIRST_RETRY
            else:
                delay, ollama_retry = (
                    min(delay, ollama_retry),
                    min(ollama_retry * 2, settings.heartbeat_interval),
                )
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await wake.wait()
        wake.clear()


heartbeat_ctx = background(heartbeat_loop, TASKS)
