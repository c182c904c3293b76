"""Whose fault a failed attempt at a job is: the node's, or the job's.

An engine that answers 5xx (or fails its stream before the first token) may be broken, or may have been sent
something it cannot take (the real Ollama has had such inputs). One node cannot tell these apart; two can: a
failure that repeats word for word on a second node is the job's, and counts against neither (the job still
goes on to the next node, and ends as it would have). So an engine's failure is counted against its node only
once the job has been served elsewhere, or failed differently, or ended.
"""

from __future__ import annotations

from ollama_connector.hubd.routing.node import NodeRecord
from ollama_connector.hubd.routing.registry import Registry
from ollama_connector.shared.agent_contract import POLICY, Reason


class Blame:
    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.pending: tuple[NodeRecord, str] | None = None  # an engine's failure not yet counted

    def failed(self, node: NodeRecord, reason: Reason, message: str) -> str | None:
        """Note a failed attempt; the first node's id when it is the job's fault (the same failure twice)."""
        if not POLICY[reason].counts_against_node:
            return None
        if reason is not Reason.OLLAMA_FAILED:
            self.registry.record_failure(node, message, stalled=reason is Reason.STALLED)
            return None
        if self.pending is not None and self.pending[1] == message:
            first, self.pending = self.pending[0], None
            return first.node_id
        self.settle()
        self.pending = (node, message)
        return None

    def settle(self) -> None:
        """The job is over (or failed differently): an engine's failure still pending is the node's."""
        if self.pending is not None:
            node, message = self.pending
            self.pending = None
            self.registry.record_failure(node, message)
