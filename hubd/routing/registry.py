"""The in-memory registry of nodes: fed by heartbeats, read by routing and by GET /nodes."""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

from ollama_connector.hubd.routing.model_index import ModelIndex
from ollama_connector.hubd.routing.node import NodeRecord, Ticket, node_url
from ollama_connector.shared.modelnames import canonical
from ollama_connector.shared.wire import Heartbeat, NodeStatus

log = logging.getLogger(__name__)


class Registry:
    """Nodes by id, and for each canonical model name the nodes that have it, kept sorted best first
    (hubd.routing.model_index): what heartbeats, jobs, failures and probes change."""

    def __init__(self, ttl: float, remove_after: float, max_failures: int, probe_interval: float) -> None:
        self.expected_hubs: int | None = None  # EXPECTED_HUBS: fewer is flagged (hubd.routing.node_view)
        self.ttl, self.remove_after, self.max_failures = ttl, remove_after, max_failures
        self.probe_interval = probe_interval
        self._nodes: dict[str, NodeRecord] = {}
        self._index = ModelIndex()
        self._assignments = itertools.count(1)
        self.full_announced = False  # MAX_NODES reached, and said so in the log
        self.job_ended: list = []  # callbacks: a slot may have freed (hubd.routing.placement waits on them)
        self.heard: list = []  # callbacks: a heartbeat came (jobs run again after a restart wait on them)
        self.started, self.heard_since_start = time.monotonic(), False  # for GET /readyz

    def __len__(self) -> int:
        return len(self._nodes)

    def heartbeat(self, beat: Heartbeat, peer: str, credential: str | None = None) -> NodeRecord:
        """Register or refresh a node; the hub will dial `beat.address`, or else the heartbeat's source."""
        record = self._upsert(beat, node_url(beat.address or peer, beat.port, beat.tls), time.time())
        record.source, record.credential, record.restored = peer, credential, False
        self.heard_since_start = True
        return record

    def claimed_elsewhere(self, node_id: str, peer: str, credential: str | None) -> NodeRecord | None:
        """The node, when another agent holds its id: two agents with one NODE_ID (cloned machines share a
        host name) must not take turns on one entry. A node with its own token is that token's, wherever it
        is; without one, the id is its first source address's until the node is pruned."""
        record = self._nodes.get(node_id)
        if record is None or credential or not record.source or record.source == peer:
            return None
        return record

    def restore(self, beat: Heartbeat, base_url: str, seen_at: float, saved: dict) -> NodeRecord | None:
        """Bring back a node saved by a previous run, as of its last heartbeat (`seen_at`, wall clock), as
        it was: a degraded node stays degraded (and is probed), and each is `restored` until it beats."""
        if time.time() - seen_at > self.remove_after:
            return None
        record = self._upsert(beat, base_url, seen_at, restored=True)
        record.resume(saved, self.probe_interval)
        return record

    def change_models(
        self, record: NodeRecord, added: tuple[str, ...] = (), removed: tuple[str, ...] = ()
    ) -> None:
        """What a pull, create, copy or delete through the hub changed on a node, known here before its
        success is said, so the next request finds the model where it now is (the next heartbeat confirms)."""
        self._index.remove(record)
        record.change_models(added, removed)
        self._index.add(record)

    def _upsert(self, beat: Heartbeat, url: str, wall: float, restored: bool = False) -> NodeRecord:
        keys = frozenset(canonical(m) for m in beat.models)
        now = time.monotonic() - max(0.0, time.time() - wall)
        record = self._nodes.get(beat.node_id)
        if record is None:
            record = self._nodes[beat.node_id] = NodeRecord(beat, url, keys, now, wall, restored=restored)
            how = "restored from the saved registry" if restored else "registered"
            log.info("node %s %s at %s with %d model(s)", beat.node_id, how, url, len(keys))
        else:
            if record.announced_offline:
                log.info("node %s is back", beat.node_id)
            self._index.remove(record)
            record.beat, record.base_url, record.model_keys = beat, url, keys
            record.last_seen, record.last_seen_wall, record.announced_offline = now, wall, False
        record.learn_loaded()
        self._index.add(record)
        if beat.in_flight is not None and record.heard_in_flight(beat.in_flight):
            self._slot_freed()
        for listener in self.heard:
            listener()
        return record

    def _rerank(self, record: NodeRecord) -> None:
        if self._nodes.get(record.node_id) is record:
            self._index.rerank(record)

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

    def knows(self, key: str) -> bool:
        """Whether some registered node lists the model (a canonical name)."""
        return key in self._index

    def known_models(self) -> set[str]:
        """Every canonical model name some registered node lists."""
        return self._index.models()

    def holders(self, model: str) -> list[NodeRecord]:
        """Every registered node that lists the model, whatever its status."""
        return [self._nodes[node_id] for node_id in self._index.node_ids(canonical(model))]

    def candidates(self, model: str) -> Iterator[NodeRecord]:
        """Online nodes with the model, best first (see hubd.routing.ranking).

        The order is the one at the call (a snapshot); the nodes are checked as they are taken, so taking the
        first is cheap.
        """
        for node_id in self._index.node_ids(canonical(model)):
            record = self._nodes.get(node_id)
            if record is not None and self.status(record) == "online":
                yield record

    @contextmanager
    def job(
        self, record: NodeRecord, model: str | None = None, num_ctx: int | None = None
    ) -> Iterator[Ticket]:
        """Count a job against a node (and its model) for as long as it runs, however it ends."""
        key = canonical(model) if model else None
        ticket = Ticket(key, others=sum(record.running.values()))
        record.active_jobs += 1
        record.last_assigned = next(self._assignments)
        if key is not None:
            if not record.compatible(key, num_ctx):
                ticket.loads = True  # the node must load (or reload) it first
                record.expect_load(key, num_ctx)
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
            self._slot_freed()

    def heard_in_flight(self, record: NodeRecord, counts: dict[str, int], full: str | None = None) -> None:
        """What a node's agent says it has in flight (an answer's header, a heartbeat)."""
        if record.heard_in_flight(counts, full):  # more room than the hub thought: waiting jobs look again
            self._slot_freed()

    def _slot_freed(self) -> None:
        for listener in self.job_ended:
            listener()

    def record_success(self, record: NodeRecord) -> None:
        record.consecutive_failures = record.consecutive_stalls = 0
        record.served += 1

    def record_failure(self, record: NodeRecord, reason: str, stalled: bool = False) -> None:
        """One failure in the node's streak; MAX_FAILURES in a row (or two stalls) degrade it."""
        record.last_error, record.last_error_at = reason[:500], time.time()
        record.failure_count += 1
        record.consecutive_failures += 1
        record.consecutive_stalls = record.consecutive_stalls + 1 if stalled else 0
        self._rerank(record)
        if not record.degraded and (
            record.consecutive_failures >= self.max_failures or record.consecutive_stalls >= 2
        ):
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

    def sweep(self) -> None:
        """Announce nodes that went offline, and remove those silent for longer than `remove_after`."""
        now = time.monotonic()
        for record in list(self._nodes.values()):
            silent = now - record.last_seen
            if silent > self.remove_after:
                del self._nodes[record.node_id]
                self._index.remove(record)
                log.warning("node %s removed after %.0f s without a heartbeat", record.node_id, silent)
            elif silent > self.ttl and not record.announced_offline:
                record.announced_offline = True
                log.warning("node %s offline: no heartbeat for %.0f s", record.node_id, silent)
