"""What the agent lets through to its Ollama: at most OLLAMA_NUM_PARALLEL jobs of a model at once, and jobs of
at most OLLAMA_MAX_LOADED_MODELS models at once.

With several hubs routing to one node, no hub sees the jobs the others send; only the agent does. Past either
bound Ollama would queue the job out of sight (or unload a busy model's neighbour), so the agent refuses it at
once with the named reason `node_full` (shared.agent_contract): a hub takes that as "another node, or wait in
my queue", never as a failure. Every answer carries the jobs in flight per model (IN_FLIGHT_HEADER), and when
a slot frees after a refusal (or, with several hubs, after the node was full), a heartbeat goes to every hub
at once, so a hub holding a job for this node hears of the free slot without polling.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from ollama_connector.shared.modelnames import canonical, display


class Slots:
    def __init__(
        self, per_model: int, max_models: int, freed: Callable[[], None], several_hubs: bool = False
    ) -> None:
        self.per_model = per_model
        self.max_models = max_models
        self.freed = freed  # called when a slot frees after a refusal: a heartbeat to every hub
        # With several hubs, each may believe the node full from what it was last told: once it was full,
        # the next slot to free is announced too.
        self.several_hubs = several_hubs
        self.in_flight: dict[str, int] = {}  # canonical model name: jobs sent to Ollama and not yet answered
        self.refused = 0  # jobs refused since the start (for /metrics)
        self._someone_waits = False

    def why_full(self, key: str) -> str | None:
        """Why a job of the model cannot start now; None when it can."""
        running = self.in_flight.get(key, 0)
        if running >= self.per_model:
            return (
                f"all {self.per_model} slot(s) of {display(key)} on this node are busy (OLLAMA_NUM_PARALLEL)"
            )
        if not running and len(self.in_flight) >= self.max_models:
            return (
                f"{len(self.in_flight)} other models are busy on this node (OLLAMA_MAX_LOADED_MODELS="
                f"{self.max_models}): {display(key)} cannot load until one is idle"
            )
        return None

    def refuse(self) -> None:
        self.refused += 1
        self._someone_waits = True

    @contextmanager
    def taken(self, key: str) -> Iterator[None]:
        """One slot of the model for the length of the block (the caller checked `why_full` first)."""
        self.in_flight[key] = self.in_flight.get(key, 0) + 1
        if self.several_hubs and (
            self.in_flight[key] >= self.per_model or len(self.in_flight) >= self.max_models
        ):
            self._someone_waits = True
        try:
            yield
        finally:
            self.in_flight[key] -= 1
            if not self.in_flight[key]:
                del self.in_flight[key]
            if self._someone_waits:
                self._someone_waits = False
                self.freed()

    def view(self) -> dict[str, int]:
        """In flight per model, by the names Ollama lists (`phi3:latest`): what heartbeats and answers say."""
        return {display(key): n for key, n in self.in_flight.items()}


def model_of(headers: dict[str, str] | object, body: bytes, header: str) -> str:
    """The job's model (canonical): the hub says it in a header; anyone else's JSON body is read for it."""
    named = headers.get(header)  # type: ignore[attr-defined]
    if named:
        return canonical(named)
    try:
        decoded = json.loads(body)
    except ValueError:
        return ""
    model = decoded.get("model") if isinstance(decoded, dict) else None
    return canonical(model) if isinstance(model, str) else ""
