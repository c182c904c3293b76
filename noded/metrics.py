"""GET /metrics on the agent: its Ollama, its jobs, heartbeats and pulls, in Prometheus' format.

The figures are the agent's own counters (noded.keys.AgentState), read at scrape time. Behind CLUSTER_TOKEN
like every route but /healthz, unless METRICS_PUBLIC=1.
"""

from __future__ import annotations

from collections.abc import Iterator

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ollama_connector.noded.keys import SETTINGS, AgentState
from ollama_connector.noded.proxy import refusal
from ollama_connector.shared.agent_contract import Reason
from ollama_connector.shared.auth import is_authorized

routes = web.RouteTableDef()


class AgentCollector(Collector):
    def __init__(self, state: AgentState, node_id: str) -> None:
        self._state = state
        self._node = node_id

    def collect(self) -> Iterator[Metric]:
        state, node = self._state, [self._node]

        def gauge(name: str, text: str, value: float) -> GaugeMetricFamily:
            family = GaugeMetricFamily(name, text, labels=["node"])
            family.add_metric(node, value)
            return family

        def counter(name: str, text: str, label: str, values: dict[str, int]) -> CounterMetricFamily:
            family = CounterMetricFamily(name, text, labels=["node", label])
            for key, value in sorted(values.items()):
                family.add_metric([*node, key], value)
            return family

        yield gauge(
            "ollama_node_ollama_up",
            "1 when the local Ollama answered the last check",
            float(bool(state.ollama_up)),
        )
        yield gauge("ollama_node_draining", "1 while the agent drains before stopping", float(state.draining))
        yield gauge("ollama_node_requests_in_flight", "Jobs being relayed to Ollama now", state.active_jobs)
        yield gauge("ollama_node_models", "Models the local Ollama has", len(state.models))
        yield gauge("ollama_node_models_loaded", "Models loaded in the local Ollama", len(state.loaded))
        yield counter("ollama_node_jobs", "Jobs relayed to Ollama, by route", "route", state.jobs)
        yield counter("ollama_node_pulls", "Pulls of REQUIRED_MODELS, by outcome", "outcome", state.pulls)
        errors = CounterMetricFamily(
            "ollama_node_relay_errors", "Ollama unreachable, or failing mid-answer", labels=["node"]
        )
        errors.add_metric(node, state.relay_errors)
        yield errors
        beats = CounterMetricFamily(
            "ollama_node_heartbeat_failures", "Heartbeats the hub did not take", labels=["node"]
        )
        beats.add_metric(node, state.heartbeat_failures)
        yield beats
        full = CounterMetricFamily(
            "ollama_node_jobs_refused_full",
            "Jobs refused as node_full: every slot of the model busy, or too many models busy",
            labels=["node"],
        )
        full.add_metric(node, state.slots.refused)
        yield full


def metrics_registry(state: AgentState, node_id: str) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(AgentCollector(state, node_id))
    ProcessCollector(registry=registry)  # the agent's own CPU, memory and open files
    return registry


METRICS = web.AppKey("metrics", CollectorRegistry)


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    if not settings.metrics_public and not is_authorized(request, settings.hub_token):
        return refusal(request.path, 401, Reason.UNAUTHORIZED, "missing or wrong cluster token")
    body = generate_latest(request.app[METRICS])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
