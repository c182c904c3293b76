"""Typed application state of the node agent."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from aiohttp import ClientSession, web

from ollama_connector.noded.gpus import Nvml
from ollama_connector.noded.settings import NodeSettings
from ollama_connector.noded.slots import Slots
from ollama_connector.shared.lifecycle import Supervised
from ollama_connector.shared.wire import LoadedModel


class Wake:
    """A heartbeat now, to every hub: each hub's loop waits on its own event, so none misses a wake-up that
    another has already cleared."""

    def __init__(self) -> None:
        self.events: list[asyncio.Event] = []

    def event(self) -> asyncio.Event:
        self.events.append(asyncio.Event())
        return self.events[-1]

    def set(self) -> None:
        for event in self.events:
            event.set()


@dataclass
class AgentState:
    """What the agent knows at run time."""

    port: int = 0  # the port actually bound, reported in heartbeats
    listening: asyncio.Event = field(default_factory=asyncio.Event)
    wake: Wake = field(default_factory=lambda: Wake())  # set() sends a heartbeat to every hub now
    active_jobs: int = 0
    slots: Slots = field(default_factory=lambda: Slots(1, 3, lambda: None))  # set up by the app factory
    draining: bool = False
    models: list[str] = field(default_factory=list)
    ollama_version: str | None = None
    ollama_up: bool | None = None  # None until the first check
    refreshed_at: float = 0.0  # monotonic, when Ollama last answered the agent's look (noded.ollama)
    loaded: list[LoadedModel] = field(default_factory=list)  # from /api/ps at the last check
    sizes: dict[str, int] = field(default_factory=dict)  # from /api/tags: bytes per model
    nvml: Nvml = field(default_factory=Nvml)
    # Counters since the start, for GET /metrics (noded.metrics).
    jobs: dict[str, int] = field(default_factory=dict)  # by route
    relay_errors: int = 0  # Ollama unreachable, or failing mid-answer
    heartbeat_failures: int = 0
    hubs_reached: dict[str, bool] = field(default_factory=dict)  # by hub: whether it took the last heartbeat
    pulls: dict[str, int] = field(default_factory=dict)  # by outcome: success, failure


SETTINGS = web.AppKey("settings", NodeSettings)
STATE = web.AppKey("state", AgentState)
TASKS = web.AppKey("tasks", dict[str, Supervised])  # the background loops, by name: /healthz reads them
SESSION = web.AppKey("session", ClientSession)
