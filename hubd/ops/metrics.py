"""GET /metrics: the hub's Prometheus metrics, with prometheus-client.

Job outcomes, durations and tokens are counted as jobs end (`HubMetrics.job_ended`); everything that is a
state (nodes, slots, queue, journal) is read from the hub's own structures at scrape time, so it is never
stale and a removed node's series go with it. Labels stay bounded: node ids (at most MAX_NODES), model names
some node lists (any other name is `other`), route families and named reasons; never job ids or keys. Series
of models no node lists any more, and of pruned nodes, are dropped at each scrape (`forget_gone`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ollama_connector.hubd.jobs.counters import JobCounters
from ollama_connector.hubd.jobs.journal import Journal
from ollama_connector.hubd.jobs.record import JobRecord, family_of
from ollama_connector.hubd.jobs.runs import Runs
from ollama_connector.hubd.routing.placement import Placement
from ollama_connector.hubd.routing.registry import Registry
from ollama_connector.shared.modelnames import canonical, display

OTHER = "other"
SECONDS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


def model_label(registry: Registry, model: str) -> str:
    """The model's name when some node lists it; `other` for anything a caller made up."""
    key = canonical(model)
    return display(key) if registry.knows(key) else OTHER


class HubMetrics:
    def __init__(
        self, registry: Registry, placement: Placement, counters: JobCounters, journal: Journal, runs: Runs
    ) -> None:
        self.registry = CollectorRegistry()
        self._nodes = registry
        r = self.registry
        self.jobs = Counter(
            "ollama_hub_jobs", "Jobs ended, by outcome", ["model", "node", "route", "outcome"], registry=r
        )
        self.duration = Histogram(
            "ollama_hub_job_duration_seconds",
            "Jobs' time from arrival to end",
            ["model"],
            buckets=SECONDS,
            registry=r,
        )
        self.first_token = Histogram(
            "ollama_hub_time_to_first_token_seconds",
            "Jobs' time from arrival to the first byte of their answer",
            ["model"],
            buckets=SECONDS,
            registry=r,
        )
        self.queue_wait = Histogram(
            "ollama_hub_queue_wait_seconds",
            "Jobs' time in the hub's queue before a node was chosen",
            ["model"],
            buckets=SECONDS,
            registry=r,
        )
        self.output_tokens = Counter(
            "ollama_hub_tokens_generated",
            "Tokens generated, by model and node",
            ["model", "node"],
            registry=r,
        )
        self.prompt_tokens = Counter(
            "ollama_hub_prompt_tokens",
            "Prompt tokens evaluated, by model and node",
            ["model", "node"],
            registry=r,
        )
        self.key_tokens = Counter(
            "ollama_hub_key_tokens",
            "Prompt and output tokens, by the caller's key (its name: `env` for API_KEYS and ADMIN_KEYS,"
            " `none` on an open hub) and model",
            ["key", "model"],
            registry=r,
        )
        self.failovers = Counter(
            "ollama_hub_failovers",
            "Jobs sent to another node, by the reason the first did not serve",
            ["reason"],
            registry=r,
        )
        r.register(FleetCollector(registry, placement, counters, journal, runs))
        self._labeled = [
            (self.jobs, ("model", "node", "route", "outcome")),
            (self.duration, ("model",)),
            (self.first_token, ("model",)),
            (self.queue_wait, ("model",)),
            (self.output_tokens, ("model", "node")),
            (self.prompt_tokens, ("model", "node")),
            (self.key_tokens, ("key", "model")),
        ]

    def forget_gone(self) -> int:
        """Drop the series of models no node lists any more (a thousand copies made and deleted) and of nodes
        pruned, so the series follow the fleet rather than only grow; how many went."""
        nodes = {record.node_id for record in self._nodes.all()} | {""}
        dropped = 0
        for metric, names in self._labeled:
            seen = {
                tuple(sample.labels[name] for name in names)
                for family in metric.collect()
                for sample in family.samples
                if all(name in sample.labels for name in names)
            }
            for values in seen:
                labels = dict(zip(names, values, strict=True))
                model = labels.get("model", OTHER)
                if (model != OTHER and not self._nodes.knows(canonical(model))) or labels.get(
                    "node", ""
                ) not in nodes:
                    metric.remove(*values)
                    dropped += 1
        return dropped

    def model(self, model: str) -> str:
        return model_label(self._nodes, model)

    def queued(self, record: JobRecord) -> None:
        if record.started is not None:
            self.queue_wait.labels(self.model(record.model)).observe(
                max(0.0, record.started - record.arrived)
            )

    def failed_over(self, reason: str) -> None:
        self.failovers.labels(reason).inc()

    def job_ended(self, record: JobRecord) -> None:
        model, node = self.model(record.model), record.node or ""
        self.jobs.labels(model, node, family_of(record.route), record.status).inc()
        if record.ended is not None:
            self.duration.labels(model).observe(max(0.0, record.ended - record.arrived))
        if record.first_token is not None:
            self.first_token.labels(model).observe(max(0.0, record.first_token - record.arrived))
        if record.node is not None:
            if record.output_tokens:
                self.output_tokens.labels(model, node).inc(record.output_tokens)
            if record.prompt_tokens:
                self.prompt_tokens.labels(model, node).inc(record.prompt_tokens)
            if tokens := (record.prompt_tokens or 0) + (record.output_tokens or 0):
                self.key_tokens.labels(record.key or "none", model).inc(tokens)


class FleetCollector(Collector):
    """The fleet's state at scrape time."""

    def __init__(
        self, registry: Registry, placement: Placement, counters: JobCounters, journal: Journal, runs: Runs
    ) -> None:
        self._registry, self._placement, self._counters, self._journal, self._runs = (
            registry,
            placement,
            counters,
            journal,
            runs,
        )

    def collect(self) -> Iterator[Metric]:
        registry, now = self._registry, time.monotonic()
        nodes = GaugeMetricFamily("ollama_hub_nodes", "Registered nodes by status", labels=["status"])
        per_node = {
            name: GaugeMetricFamily(f"ollama_hub_node_{name}", text, labels=["node"])
            for name, text in (
                ("online", "1 when the node gets jobs (fresh heartbeat, not degraded or draining)"),
                ("active_jobs", "Jobs the hub has running on the node"),
                ("slots", "Jobs the node runs at once without a load (NUM_PARALLEL per loaded model)"),
                ("slots_used", "Slots running a job now"),
                ("models_loaded", "Models loaded in the node's Ollama"),
                ("heartbeat_age_seconds", "Seconds since the node's last heartbeat"),
                ("cpu_ratio", "The node's CPU load (0 to 1)"),
                ("memory_ratio", "The node's memory in use (0 to 1)"),
                ("vram_bytes", "Memory for models on the node's GPUs"),
                ("vram_used_bytes", "GPU memory in use, from NVML"),
            )
        }
        failures = CounterMetricFamily(
            "ollama_hub_node_failures", "Failures the hub counted against the node", labels=["node"]
        )
        saved = CounterMetricFamily(
            "ollama_hub_node_prompt_tokens_cached",
            "Prompt tokens the node read from its prompt cache (from Ollama's timings, else predicted)",
            labels=["node"],
        )
        counts = dict.fromkeys(("online", "offline", "degraded", "draining"), 0)
        for record in registry.all():
            node, status, beat = record.node_id, registry.status(record, now), record.beat
            counts[status] += 1
            values = {
                "online": float(status == "online"),
                "active_jobs": record.active_jobs,
                "slots": record.slots(),
                "slots_used": sum(record.running.values()),
                "models_loaded": len(record.loaded),
                "heartbeat_age_seconds": max(0.0, now - record.last_seen),
                "cpu_ratio": beat.load.cpu,
                "memory_ratio": beat.load.memory,
            }
            if (vram := record.capacity.vram_bytes) is not None:
                values["vram_bytes"] = vram
            if beat.gpus:
                values["vram_used_bytes"] = sum(gpu.memory_used for gpu in beat.gpus)
            for name, value in values.items():
                per_node[name].add_metric([node], value)
            failures.add_metric([node], record.failure_count)
            saved.add_metric([node], record.prompts.cached_tokens)
        for status, count in counts.items():
            nodes.add_metric([status], count)
        yield nodes
        yield from per_node.values()
        yield failures
        yield saved
        yield from self._hub()

    def _hub(self) -> Iterator[Metric]:
        queue = self._placement.queue_view(time.monotonic())
        depth = GaugeMetricFamily(
            "ollama_hub_queue_depth", "Jobs waiting at the hub for a node", labels=["model"]
        )
        for model, count in queue["by_model"].items():
            depth.add_metric([model], count)
        yield depth
        yield GaugeMetricFamily(
            "ollama_hub_jobs_running", "Jobs the hub is running now", value=self._counters.running
        )
        yield GaugeMetricFamily(
            "ollama_hub_async_jobs_unfinished",
            "Async jobs queued or running",
            value=len(self._runs.unfinished),
        )
        journal = self._journal
        yield GaugeMetricFamily(
            "ollama_hub_journal_up",
            "1 when the job journal is open and its last write succeeded",
            value=float(journal.unavailable is None and not journal.failing),
        )
        yield CounterMetricFamily(
            "ollama_hub_journal_jobs_written", "Job records written", value=journal.written
        )
        yield CounterMetricFamily(
            "ollama_hub_journal_write_cpu_seconds",
            "CPU time of the journal's writes",
            value=journal.cpu_seconds,
        )
