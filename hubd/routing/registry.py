"""The in-memory registry of nodes: fed by heartbeats, read by routing and by GET /nodes."""

from __future__ import annotations

import itertools
import logging
import time
from bisect import bisect_left, insort
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ollama_connector.hubd.routing.ranking import rank_of
from ollama_connector.hubd.routing.speeds import Ewma, ModelSpeed
from ollama_connector.shared.modelnames import canonical, display
from ollama_connector.shared.wire import Capacity, Heartbeat, NodeStatus, NodeView

DEFAULT_CAPACITY = Capacity()

log = logging.getLogger(__name__)
MAX_PROBE_BACKOFF = 300.0


@dataclass(slots=True)
class Ticket:
    """One job on one node, from the hub's side."""

    key: str | None
    started: float = field(default_factory=time.monotonic)
    loads: bool = False  # the model was not loaded there (as the hub saw it): the job loads it first


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
    announced_offline: bool = field(default=False)
    rank: tuple = ()  # its place in the ranking lists, from hubd.routing.ranking

    @property
    def node_id(self) -> str:
        return self.beat.node_id


def node_url(host: str, port: int, tls: bool = False) -> str:
    scheme = "https" if tls else "http"
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


def iso_utc(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Registry:
    """Nodes by id, and for each canonical model name the nodes that have it, kept sorted best first.

    Keeping the order current on every change (a job starting or ending, a heartbeat, a failure) costs a
    binary search per model of the node; in return a routing decision is a walk from the front of one list,
    whatever the size of the fleet.
    """

    def __init__(self, ttl: float, remove_after: float, max_failures: int, probe_interval: float) -> None:
        self.ttl = ttl
        self.remove_after = remove_after
        self.max_failures = max_failures
        self.probe_interval = probe_interval
        self._nodes: dict[str, NodeRecord] = {}
        self._by_model: dict[str, list[tuple]] = {}
        self._assignments = itertools.count(1)
        self.full_announced = False  # MAX_NODES reached, and said so in the log
        self.job_ended: list = []  # callbacks: a slot may have freed (hubd.routing.placement waits on them)
        self.heard: list = []  # callbacks: a heartbeat came (jobs run again after a restart wait on them)

    def __len__(self) -> int:
        return len(self._nodes)

    def heartbeat(self, beat: Heartbeat, peer: str) -> NodeRecord:
        """Register or refresh a node; the hub will dial `beat.address`, or else the heartbeat's source."""
        return self._upsert(beat, node_url(beat.address or peer, beat.port, beat.tls), time.time())

    def restore(self, beat: Heartbeat, base_url: str, seen_at: float) -> NodeRecord | None:
        """Bring back a node saved by a previous run, as of its last heartbeat (`seen_at`, wall clock)."""
        if time.time() - seen_at > self.remove_after:
            return None
        return self._upsert(beat, base_url, seen_at)

    def _upsert(self, beat: Heartbeat, url: str, wall: float) -> NodeRecord:
        keys = frozenset(canonical(m) for m in beat.models)
        now = time.monotonic() - max(0.0, time.time() - wall)
        record = self._nodes.get(beat.node_id)
        if record is None:
            record = NodeRecord(beat, url, keys, now, wall)
            self._nodes[beat.node_id] = record
            log.info("node %s registered at %s with %d model(s)", beat.node_id, url, len(keys))
        else:
            if record.announced_offline:
                log.info("node %s is back", beat.node_id)
            self._unindex(record)
            record.beat, record.base_url, record.model_keys = beat, url, keys
            record.last_seen, record.last_seen_wall, record.announced_offline = now, wall, False
        self._learn_loaded(record)
        self._index(record)
        for listener in self.heard:
            listener()
        return record

    def _learn_loaded(self, record: NodeRecord) -> None:
        """What /api/ps said, plus what the hub has sent since (a model being served is loaded there)."""
        record.sizes = {canonical(name): size for name, size in record.beat.model_sizes.items()}
        reported = {canonical(m.name): m.context_length for m in record.beat.loaded}
        for key in list(record.running) + list(record.loading):
            if key in record.loaded:
                reported[key] = record.loaded[key]  # what the hub sent since is newer than /api/ps
        record.loaded = reported
        for key in [k for k in record.speeds if k not in record.model_keys]:
            del record.speeds[key]  # bounded by the models the node lists

    def context_for(self, record: NodeRecord, num_ctx: int | None) -> int | None:
        """The context a job gets there: its own num_ctx, or the node's default (None: unknown)."""
        return num_ctx or self.capacity(record).default_context

    def compatible(self, record: NodeRecord, key: str, num_ctx: int | None, larger_ok: bool = False) -> bool:
        """Whether the model is loaded there with a context the job can use without a reload: the same, or
        with `larger_ok` (a job that leaves num_ctx to the server) a larger one (see context_to_send)."""
        if key not in record.loaded:
            return False
        loaded, wanted = record.loaded[key], self.context_for(record, num_ctx)
        if loaded is None or wanted is None or loaded == wanted:
            return True
        return larger_ok and num_ctx is None and loaded > wanted

    def context_to_send(
        self, record: NodeRecord, key: str, num_ctx: int | None, larger_ok: bool
    ) -> int | None:
        """The num_ctx to give a job so it runs on the runner loaded there: a job that leaves num_ctx to the
        server gets the loaded runner's larger one, instead of making Ollama reload the model (sched.go
        reloads on any other context). None: the job goes as it came."""
        if not larger_ok or num_ctx is not None or key not in record.loaded:
            return None
        loaded, wanted = record.loaded[key], self.context_for(record, None)
        return loaded if loaded is not None and wanted is not None and loaded > wanted else None

    def capacity(self, record: NodeRecord) -> Capacity:
        return record.beat.capacity or DEFAULT_CAPACITY

    def fits(self, record: NodeRecord, key: str, loaded: Iterable[str] | None = None) -> bool:
        """Whether the node could load the model beside `loaded` (its other loaded models) without evicting
        any."""
        loaded = [k for k in (record.loaded if loaded is None else loaded) if k != key]
        capacity = self.capacity(record)
        if len(loaded) >= capacity.max_loaded_models:
            return False
        if capacity.vram_bytes is None:
            return True
        sizes = record.sizes
        return sum(sizes.get(k, 0) for k in loaded) + sizes.get(key, 0) <= capacity.vram_bytes

    def evictions(self, record: NodeRecord, key: str) -> tuple[list[str], bool]:
        """The idle models Ollama would unload to load `key` there (shortest keep-alive, then name: by name
        among equal keep-alives), and whether `key` then fits; False: busy models are in the way."""
        others = [k for k in record.loaded if k != key]
        evicted: list[str] = []
        while not self.fits(record, key, others):
            idle = sorted(k for k in others if not record.running.get(k))
            if not idle:
                return evicted, False  # Ollama waits for a busy model to finish
            others.remove(idle[0])
            evicted.append(idle[0])
        return evicted, True

    def _expect_evictions(self, record: NodeRecord, key: str) -> None:
        """A load needs room: drop from the hub's view the idle models Ollama will unload for it; the next
        heartbeat corrects any guess."""
        for evicted in self.evictions(record, key)[0]:
            del record.loaded[evicted]

    def saved(self) -> list[dict]:
        """What a restart needs to bring the nodes back: their last heartbeats and where to reach them."""
        return [
            {"heartbeat": r.beat.model_dump(), "base_url": r.base_url, "last_seen": r.last_seen_wall}
            for r in self._nodes.values()
        ]

    def _index(self, record: NodeRecord) -> None:
        record.rank = rank_of(record)
        for key in record.model_keys:
            insort(self._by_model.setdefault(key, []), record.rank)

    def _unindex(self, record: NodeRecord) -> None:
        for key in record.model_keys:
            ranks = self._by_model.get(key)
            if ranks is None:
                continue
            i = bisect_left(ranks, record.rank)
            if i < len(ranks) and ranks[i] == record.rank:
                del ranks[i]
            if not ranks:
                del self._by_model[key]

    def _rerank(self, record: NodeRecord) -> None:
        if self._nodes.get(record.node_id) is record:
            self._unindex(record)
            self._index(record)

    def get(self, node_id: str) -> NodeRecord | None:
        return self._nodes.get(node_id)

    def all(self) -> list[NodeRecord]:
        return list(self._nodes.values())

    def status(self, record: NodeRecord, now: float | None = None) -> NodeStatus:
        if (now if now is not None else time.monotonic()) - record.last_seen > self.ttl:
            return "offline"
        if record.degraded:
            return "degraded"
        if record.beat.status == "draining":
            return "draining"
        return "online"

    def view(self, record: NodeRecord, now: float | None = None) -> NodeView:
        # A plain dict rather than a model: GET /nodes builds thousands of these.
        beat = record.beat
        return {
            "node_id": beat.node_id,
            "ipv4": beat.ipv4,
            "ipv6": beat.ipv6,
            "port": beat.port,
            "models": beat.models,
            "metadata": beat.metadata,
            "load": {"cpu": beat.load.cpu, "memory": beat.load.memory},
            "last_seen": iso_utc(record.last_seen_wall),
            "status": self.status(record, now),
            "active_jobs": record.active_jobs,
            "failure_count": record.failure_count,
            # Beside the seed's fields: where the hub really dials it, what it served, and its last error.
            "dial_address": record.base_url.split("://", 1)[1],
            "served": record.served,
            "last_error": (
                {"message": record.last_error, "at": iso_utc(record.last_error_at)}
                if record.last_error
                else None
            ),
            # What the capacity policy routes on: Ollama's settings there, and the hub's view of its models.
            "capacity": self.capacity(record).model_dump(),
            "loaded": sorted(display(key) for key in record.loaded),
            "running": {display(key): count for key, count in record.running.items()},
            "slots": {"used": sum(record.running.values()), "total": self.slots(record)},
            "models_loaded": self._loaded_view(record),
            "gpus": [gpu.model_dump() for gpu in beat.gpus] if beat.gpus is not None else None,
            "speeds": {display(key): speed.view() for key, speed in sorted(record.speeds.items())},
            "load_seconds_per_gb": round(record.load_rate.value, 3) if record.load_rate.samples else None,
            "backend": beat.backend,
        }

    def slots(self, record: NodeRecord) -> int:
        """Jobs the node can run at once without a load: NUM_PARALLEL for each loaded model."""
        return self.capacity(record).num_parallel * max(1, len(record.loaded))

    def _loaded_view(self, record: NodeRecord) -> list[dict]:
        """Loaded models with what /api/ps said of them (expiry, VRAM), and those the hub is loading."""
        reported = {canonical(m.name): m for m in record.beat.loaded}
        entries = []
        for key in sorted(record.loaded):
            entry = reported.get(key)
            entries.append(
                {
                    "name": display(key),
                    "context_length": record.loaded[key],
                    "size_vram": entry.size_vram if entry else record.sizes.get(key),
                    "expires_at": entry.expires_at if entry else None,
                    "loading": key in record.loading,
                    "running": record.running.get(key, 0),
                }
            )
        return entries

    def knows(self, key: str) -> bool:
        """Whether some registered node lists the model (a canonical name)."""
        return key in self._by_model

    def known_models(self) -> set[str]:
        """Every canonical model name some registered node lists."""
        return set(self._by_model)

    def holders(self, model: str) -> list[NodeRecord]:
        """Every registered node that lists the model, whatever its status."""
        return [self._nodes[rank[-1]] for rank in self._by_model.get(canonical(model), ())]

    def candidates(self, model: str) -> Iterator[NodeRecord]:
        """Online nodes with the model, best first (see hubd.routing.ranking).

        The order is the one at the call (a snapshot); the nodes are checked as they are taken, so taking the
        first is cheap.
        """
        for rank in tuple(self._by_model.get(canonical(model), ())):
            record = self._nodes.get(rank[-1])
            if record is not None and self.status(record) == "online":
                yield record

    @contextmanager
    def job(
        self, record: NodeRecord, model: str | None = None, num_ctx: int | None = None
    ) -> Iterator[Ticket]:
        """Count a job against a node (and its model) for as long as it runs, however it ends."""
        key = canonical(model) if model else None
        ticket = Ticket(key)
        record.active_jobs += 1
        record.last_assigned = next(self._assignments)
        if key is not None:
            if not self.compatible(record, key, num_ctx):
                ticket.loads = True
                record.loading.add(key)  # the node must load (or reload) it first
                record.loaded.pop(key, None)
                self._expect_evictions(record, key)
                record.loaded[key] = self.context_for(record, num_ctx)
            record.running[key] = record.running.get(key, 0) + 1
        self._rerank(record)
        try:
            yield ticket
        finally:
            record.active_jobs -= 1
            if key is not None:
                record.running[key] -= 1
                if not record.running[key]:
                    del record.running[key]
                record.loading.discard(key)
            self._rerank(record)
            for listener in self.job_ended:
                listener()

    def record_success(self, record: NodeRecord) -> None:
        record.consecutive_failures = 0
        record.served += 1

    def record_failure(self, record: NodeRecord, reason: str) -> None:
        record.last_error, record.last_error_at = reason[:500], time.time()
        record.failure_count += 1
        record.consecutive_failures += 1
        self._rerank(record)
        if not record.degraded and record.consecutive_failures >= self.max_failures:
            record.degraded = True
            record.probe_backoff = self.probe_interval
            record.next_probe = time.monotonic() + record.probe_backoff
            log.warning(
                "node %s degraded after %d consecutive failures (last: %s); probing in %.0f s",
                record.node_id,
                record.consecutive_failures,
                reason,
                record.probe_backoff,
            )

    def due_probes(self) -> list[NodeRecord]:
        now = time.monotonic()
        return [
            r
            for r in self._nodes.values()
            if r.degraded and r.next_probe <= now and self.status(r, now) != "offline"
        ]

    def probe_result(self, record: NodeRecord, healthy: bool, detail: str) -> None:
        if healthy:
            record.degraded = False
            record.consecutive_failures = 0
            log.info("node %s passed its health probe and is back in rotation", record.node_id)
            return
        record.probe_backoff = min(record.probe_backoff * 2, MAX_PROBE_BACKOFF)
        record.next_probe = time.monotonic() + record.probe_backoff
        log.debug(
            "node %s still unhealthy (%s); next probe in %.0f s", record.node_id, detail, record.probe_backoff
        )

    def sweep(self) -> None:
        """Announce nodes that went offline, and remove those silent for longer than `remove_after`."""
        now = time.monotonic()
        for record in list(self._nodes.values()):
            silent = now - record.last_seen
            if silent > self.remove_after:
                del self._nodes[record.node_id]
                self._unindex(record)
                log.warning("node %s removed after %.0f s without a heartbeat", record.node_id, silent)
            elif silent > self.ttl and not record.announced_offline:
                record.announced_offline = True
                log.warning("node %s offline: no heartbeat for %.0f s", record.node_id, silent)
