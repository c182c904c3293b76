"""The `affinity` policy: least-busy with fixed bonuses, as Herd routes Ollama, kept to measure the capacity
policy's prompt pricing against (`make bench`'s prefix scenario).

Each node that has the model scores its load (LOAD_POINTS a job running there) against two bonuses: the node
that served the conversation before (SESSION_BONUS) and one that holds a long system prompt of the job
(SYSTEM_BONUS, for a match of at least LONG_PROMPT tokens), both shrunk by the node's queue depth. The best
score wins; equal scores go in rank order (hubd.routing.ranking). It never waits at the hub.
"""

from __future__ import annotations

from ollama_connector.hubd.routing.node import NodeRecord
from ollama_connector.hubd.routing.prefixes import Prompt
from ollama_connector.hubd.routing.registry import Registry
from ollama_connector.shared.modelnames import canonical

SESSION_BONUS = 20.0
SYSTEM_BONUS = 10.0
LONG_PROMPT = 2000  # tokens
LOAD_POINTS = 10.0


def affinity(
    registry: Registry, model: str, tried: set[str], session_node: str | None, prompt: Prompt | None
) -> NodeRecord | None:
    key = canonical(model)
    best, best_score = None, float("-inf")
    for node in registry.candidates(model):
        if node.node_id in tried:
            continue
        bonus = SESSION_BONUS if node.node_id == session_node else 0.0
        if prompt is not None and node.prompts.matched(key, prompt) >= LONG_PROMPT:
            bonus += SYSTEM_BONUS
        score = bonus / (1 + node.active_jobs) - LOAD_POINTS * node.active_jobs
        if score > best_score:
            best, best_score = node, score
    return best
