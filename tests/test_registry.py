"""The registry's ranking and Ollama's model-name rules, on the real classes."""

from __future__ import annotations

import pytest

from ollama_connector.hubd.routing.registry import Registry
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
