"""The registry's ranking and Ollama's model-name rules, on the real classes."""

from __future__ import annotations

import time

import pytest

from ollama_connector.hubd.routing.node import Ticket
from ollama_connector.hubd.routing.registry import Registry
from ollama_connector.hubd.routing.speeds import FleetSpeeds, Timings
from ollama_connector.shared.modelnames import canonical, display
from ollama_connector.shared.wire import Heartbeat, Load


def beat(node_id: str, cpu: float, models=("llama3:latest",)) -> Heartbeat:
    return Heartbeat(node_id=node_id, port=8001, models=list(models), load=Load(cpu=cpu))


def order(registry: Registry, model: str = "llama3") -> list[str]:
    return [r.node_id for r in registry.candidates(model)]


def test_ranking_follows_jobs_then_cpu_then_failures_and_stays_current():
    registry = Registry(ttl=90, remove_after=180, max_failures=2, probe_interval=30)
    for node_id, cpu in (("a", 0.5), ("b", 0.1), ("c", 0.9)):
        registry.heartbeat(beat(node_id, cpu), "127.0.0.1")
    assert order(registry) == ["b", "a", "c"]
    b = registry.get("b")
    with registry.job(b):
        assert order(registry) == ["a", "c", "b"]  # a job outweighs any CPU difference
    assert order(registry) == ["b", "a", "c"]
    registry.heartbeat(beat("b", 0.95), "127.0.0.1")
    assert order(registry) == ["a", "c", "b"]
    registry.record_failure(registry.get("a"), "boom")
    registry.record_failure(registry.get("a"), "boom")  # degraded: out of the candidates
    assert order(registry) == ["c", "b"]
    assert [r.node_id for r in registry.holders("llama3")] == ["a", "c", "b"]  # holders include degraded
    registry.heartbeat(beat("c", 0.2, models=["mistral"]), "127.0.0.1")  # c no longer has llama3
    assert order(registry) == ["b"] and order(registry, "mistral:latest") == ["c"]


@pytest.mark.parametrize(
    ("name", "key", "shown"),
    [
        ("llama3", "registry.ollama.ai/library/llama3:latest", "llama3:latest"),
        ("LLAMA3:Latest", "registry.ollama.ai/library/llama3:latest", "llama3:latest"),
        ("library/llama3:8b", "registry.ollama.ai/library/llama3:8b", "llama3:8b"),
        ("user/model", "registry.ollama.ai/user/model:latest", "user/model:latest"),
        ("host:5000/ns/model:q4", "host:5000/ns/model:q4", "host:5000/ns/model:q4"),
    ],
)
def test_model_names_follow_ollamas_rules(name, key, shown):
    assert canonical(name) == key and display(name) == shown


def test_what_a_node_reports_of_a_job_is_bounded_by_the_hubs_own_clock():
    registry = Registry(ttl=90, remove_after=180, max_failures=2, probe_interval=30)
    liar = registry.heartbeat(beat("liar", 0.1), "127.0.0.1")
    liar.sizes[canonical("llama3")] = 4_000_000_000
    speeds = FleetSpeeds()
    ticket = Ticket(canonical("llama3"), started=time.monotonic() - 2.0, loads=True)  # held 2 s here
    # 10^21 tokens a second, and a load of a day, in a job the hub saw take two seconds.
    speeds.learn(liar, ticket, Timings(load=86_400.0, eval_count=10**12, eval_seconds=1e-9))
    speed = liar.speeds[canonical("llama3")]
    assert speed.tokens_per_second.samples == 0 and not speeds.tokens_per_second
    assert liar.load_rate.value < 0.51  # at most the job's own time (2 s here), over its 4 GB
    honest = Ticket(canonical("llama3"), started=time.monotonic() - 2.0)
    speeds.learn(liar, honest, Timings(load=0.0, eval_count=60, eval_seconds=1.5))
    assert speed.tokens_per_second.value == 40.0
