"""One node as the hub knows it: its last heartbeat, the hub's own view of its Ollama between heartbeats, and
what its capacity allows (slots, contexts, room for another model). A leaf: the registry, the ranking, the
policy and the speeds all import it, and it imports none of them.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ollama_connector.hubd.routing.prefixes import NodePrompts, Prompt
from ollama_connector.shared.modelnames import canonical, display
from ollama_connector.shared.wire import MAX_MODELS, Capacity, Heartbeat

DEFAULT_CAPACITY = Capacity()
# How long what a node's agent said of other hubs' jobs there holds. Its next word replaces it: an answer, or
# a heartbeat, which the agent sends as soon as a slot frees after the node was full; past this, the hub
# assumes them gone (a wrong guess costs one node_full).
ELSEWHERE_FOR = 10.0
ALPHA = 0.2  # weight of the newest sample in a learned figure


@dataclass(slots=True)
class Ewma:
    """An exponentially weighted mean, so a node that slows down is noticed within a few jobs."""

    value: float = 0.0
    samples: int = 0

    def add(self, sample: float) -> None:
        self.value = sample if not self.samples else self.value + ALPHA * (sample - self.value)
        self.samples += 1

    def get(self, default: float) -> float:
        return self.value if self.samples else default


@dataclass(slots=True)
class ModelSpeed:
    """One model on one node (learned by hubd.routing.speeds)."""

    job_seconds: Ewma = field(default_factory=Ewma)
    tokens_per_second: Ewma = field(default_factory=Ewma)
    first_byte_seconds: Ewma = field(default_factory=Ewma)  # from sending the job to its first byte, no load
    prefill_rate: Ewma = field(default_factory=Ewma)  # prompt tokens a second, of prompts it had not cached

    def view(self) -> dict:
        return {
            "job_seconds": round(self.job_seconds.value, 3) if self.job_seconds.samples else None,
            "tokens_per_second": (
                round(self.tokens_per_second.value, 1) if self.tokens_per_second.samples else None
            ),
            "prefill_tokens_per_second": (
                round(self.prefill_rate.value, 1) if self.prefill_rate.samples else None
            ),
            "jobs": self.job_seconds.samples,
        }


@dataclass(slots=True)
class Ticket:
    """One job on one node, from the hub's side."""

    key: str | None
    started: float = field(default_factory=time.monotonic)
    loads: bool = False  # the model was not loaded there (as the hub saw it): the job loads it first
    first_byte: float | None = None  # monotonic, when its first byte came back
    prompt: Prompt | None = None  # its prompt, when the hub routes on prompts (hubd.routing.prefixes)
    predicted: int = 0  # tokens of it the node was expected to have cached
    age: int = 0  # blocks sent to the node since the last of those
    others: int = 0  # jobs already running on the node when it began (they share its compute)


@dataclass(eq=False, slots=True)
class NodeRecord:
    """What the hub knows of one node; `active_jobs` and the failure counts are the hub's own."""

    beat: Heartbeat
    base_url: str
    model_keys: frozenset[str]
    last_seen: float  # monotonic, for the TTL
    last_seen_wall: float  # wall clock, for display
    active_jobs: int = 0
    failure_count: int = 0
    consecutive_failures: int = 0
    consecutive_stalls: int = 0  # two in a row degrade the node until it serves again
    degraded: bool = False
    next_probe: float = 0.0
    probe_backoff: float = 0.0
    last_assigned: int = 0
    served: int = 0  # jobs it answered to the end
    last_error: str | None = None
    last_error_at: float = 0.0  # wall clock
    # The hub's own view of the node's Ollama, exact between heartbeats (see hubd.routing.placement).
    running: dict[str, int] = field(default_factory=dict)  # jobs running now, by canonical model name
    loaded: dict[str, int | None] = field(default_factory=dict)  # loaded models and their context length
    loading: set[str] = field(default_factory=set)  # models it was sent that were not loaded
    sizes: dict[str, int] = field(default_factory=dict)  # bytes per model, from its /api/tags
    speeds: dict[str, ModelSpeed] = field(default_factory=dict)  # learned from its jobs (hubd.routing.speeds)
    load_rate: Ewma = field(default_factory=Ewma)  # seconds per GB its loads took
    prompts: NodePrompts = field(default_factory=NodePrompts)  # what its prompt caches hold (predicted)
    # Jobs other hubs run there, per model (its agent's count less the hub's own), until `elsewhere_until`;
    # and the models it refused (node_full), until when.
    elsewhere: dict[str, int] = field(default_factory=dict)
    elsewhere_until: float = 0.0
    full_until: dict[str, float] = field(default_factory=dict)
    announced_offline: bool = field(default=False)
    source: str = ""  # the address its heartbeats come from: the id is bound to it until the node is pruned
    credential: str | None = None  # its own token's name; "": the shared CLUSTER_TOKEN; None: an open hub
    restored: bool = False  # brought back from the saved registry, not heard from since
    rank: tuple = ()  # its place in the ranking lists, from hubd.routing.ranking

    def resume(self, saved: dict, probe_interval: float) -> None:
        """What a previous run of the hub knew of it (hubd.ops.snapshot): where its beats came from, its
        credential's name, and whether it was degraded (then it stays so, and is probed)."""
        self.source, self.credential = str(saved.get("source") or ""), saved.get("credential")
        if saved.get("degraded") is True:
            self.degraded, self.probe_backoff = True, probe_interval
            self.next_probe = time.monotonic() + probe_interval
            self.last_error = str(saved.get("last_error") or "degraded before the hub restarted")[:500]

    def change_models(self, added: tuple[str, ...], removed: tuple[str, ...]) -> None:
        """Its model list with a change made through the hub (hubd.routing.registry keeps the index)."""
        gone = {canonical(m) for m in removed}
        models = [m for m in self.beat.models if canonical(m) not in gone]
        have = {canonical(m) for m in models}
        # As Ollama will list them at the next heartbeat: `phi3` is `phi3:latest`.
        fresh = [display(canonical(m)) for m in added if canonical(m) not in have]
        models += fresh[: max(0, MAX_MODELS - len(models))]
        self.beat = self.beat.model_copy(update={"models": models})
        self.model_keys = frozenset(canonical(m) for m in models)
        for key in gone:
            self.loaded.pop(key, None)

    @property
    def node_id(self) -> str:
        return self.beat.node_id

    @property
    def capacity(self) -> Capacity:
        return self.beat.capacity or DEFAULT_CAPACITY

    def slots(self) -> int:
        """Jobs the node can run at once without a load: NUM_PARALLEL for each loaded model."""
        return self.capacity.num_parallel * max(1, len(self.loaded))

    def busy(self, key: str) -> int:
        """Jobs of the model running there: the hub's own, and (while its agent's word holds) other hubs'."""
        own = self.running.get(key, 0)
        if not self.elsewhere and not self.full_until:
            return own
        now = time.monotonic()
        if self.full_until.get(key, 0.0) > now:
            return max(own, self.capacity.num_parallel)
        return own + self.elsewhere.get(key, 0) if now < self.elsewhere_until else own

    def busy_total(self) -> int:
        return sum(self.busy(key) for key in self.running.keys() | self.elsewhere.keys())

    def refused(self, key: str) -> bool:
        """Whether the node said, a moment ago, that it has no room for the model (node_full)."""
        return bool(self.full_until) and self.full_until.get(key, 0.0) > time.monotonic()

    def heard_in_flight(self, reported: dict[str, int], full: str | None = None) -> bool:
        """What its agent says it has in flight per model (every hub's jobs), and the model it just refused,
        if any; whether the picture has more room than before."""
        now = time.monotonic()
        before = sum(self.elsewhere.values()) if now < self.elsewhere_until else 0
        counts: dict[str, int] = {}
        for name, n in reported.items():
            key = canonical(name)
            counts[key] = counts.get(key, 0) + n
        self.elsewhere = {
            k: n - self.running.get(k, 0) for k, n in counts.items() if n > self.running.get(k, 0)
        }
        self.elsewhere_until = now + ELSEWHERE_FOR
        for key in self.elsewhere.keys() & self.model_keys:
            self.loaded.setdefault(key, None)  # loaded there, whatever its last heartbeat said
        # A refusal holds the model full until the agent's next word (its counts say then).
        self.full_until = {full: now + ELSEWHERE_FOR} if full is not None else {}
        return full is None and sum(self.elsewhere.values()) < before

    def learn_loaded(self) -> None:
        """What a heartbeat's /api/ps said, plus what the hub has sent since (a model being served is
        loaded there)."""
        self.sizes = {canonical(name): size for name, size in self.beat.model_sizes.items()}
        reported = {canonical(m.name): m.context_length for m in self.beat.loaded}
        for key in list(self.running) + list(self.loading):
            if key in self.loaded:
                reported[key] = self.loaded[key]  # what the hub sent since is newer than /api/ps
        self.loaded = reported
        self.prompts.forget(self.prompts.models.keys() - reported.keys())
        for key in [k for k in self.speeds if k not in self.model_keys]:
            del self.speeds[key]  # bounded by the models the node lists

    def context_for(self, num_ctx: int | None) -> int | None:
        """The context a job gets there: its own num_ctx, or the node's default (None: unknown)."""
        return num_ctx or self.capacity.default_context

    def compatible(self, key: str, num_ctx: int | None, larger_ok: bool = False) -> bool:
        """Whether the model is loaded there with a context the job can use without a reload: the same, or
        with `larger_ok` (a job that leaves num_ctx to the server) a larger one (see context_to_send)."""
        if key not in self.loaded:
            return False
        loaded, wanted = self.loaded[key], self.context_for(num_ctx)
        if loaded is None or wanted is None or loaded == wanted:
            return True
        return larger_ok and num_ctx is None and loaded > wanted

    def context_to_send(self, key: str, num_ctx: int | None, larger_ok: bool) -> int | None:
        """The num_ctx to give a job so it runs on the runner loaded there: a job that leaves num_ctx to the
        server gets the loaded runner's larger one, instead of making Ollama reload the model (sched.go
        reloads on any other context). None: the job goes as it came."""
        if not larger_ok or num_ctx is not None or key not in self.loaded:
            return None
        loaded, wanted = self.loaded[key], self.context_for(None)
        return loaded if loaded is not None and wanted is not None and loaded > wanted else None

    def fits(self, key: str, loaded: Iterable[str] | None = None) -> bool:
        """Whether the node could load the model beside `loaded` (its other loaded models) without evicting
        any."""
        loaded = [k for k in (self.loaded if loaded is None else loaded) if k != key]
        capacity = self.capacity
        if len(loaded) >= capacity.max_loaded_models:
            return False
        if capacity.vram_bytes is None:
            return True
        return sum(self.sizes.get(k, 0) for k in loaded) + self.sizes.get(key, 0) <= capacity.vram_bytes

    def evictions(self, key: str) -> tuple[list[str], bool]:
        """The idle models Ollama would unload to load `key` there (shortest keep-alive, then name: by name
        among equal keep-alives), and whether `key` then fits; False: busy models are in the way."""
        others = [k for k in self.loaded if k != key]
        evicted: list[str] = []
        while not self.fits(key, others):
            idle = sorted(k for k in others if not self.busy(k))
            if not idle:
                return evicted, False  # Ollama waits for a busy model to finish
            others.remove(idle[0])
            evicted.append(idle[0])
        return evicted, True

    def expect_load(self, key: str, num_ctx: int | None) -> None:
        """A job that must load (or reload) the model: the idle models Ollama will unload for it leave the
        hub's view, and the model is loading; the next heartbeat corrects any guess."""
        self.loading.add(key)
        self.loaded.pop(key, None)
        evicted = self.evictions(key)[0]
        for gone in evicted:
            del self.loaded[gone]
        self.prompts.forget({key, *evicted})  # a reload with another context starts with an empty cache
        self.loaded[key] = self.context_for(num_ctx)


def node_url(host: str, port: int, tls: bool = False) -> str:
    scheme = "https" if tls else "http"
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


def iso_utc(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
