"""For each canonical model name, the nodes that list it, kept sorted best first (hubd.routing.ranking).

Keeping the order current on every change (a job starting or ending, a heartbeat, a failure) costs a binary
search per model of the node; in return a routing decision is a walk from the front of one list, whatever
the size of the fleet.
"""

from __future__ import annotations

from bisect import bisect_left, insort

from ollama_connector.hubd.routing.node import NodeRecord
from ollama_connector.hubd.routing.ranking import Rank, rank_of


class ModelIndex:
    def __init__(self) -> None:
        self._by_model: dict[str, list[Rank]] = {}

    def add(self, record: NodeRecord) -> None:
        record.rank = rank_of(record)
        for key in record.model_keys:
            insort(self._by_model.setdefault(key, []), record.rank)

    def remove(self, record: NodeRecord) -> None:
        for key in record.model_keys:
            ranks = self._by_model.get(key)
            if ranks is None:
                continue
            i = bisect_left(ranks, record.rank)
            if i < len(ranks) and ranks[i] == record.rank:
                del ranks[i]
            if not ranks:
                del self._by_model[key]

    def rerank(self, record: NodeRecord) -> None:
        self.remove(record)
        self.add(record)

    def __contains__(self, key: str) -> bool:
        return key in self._by_model

    def models(self) -> set[str]:
        return set(self._by_model)

    def node_ids(self, key: str) -> list[str]:
        """The ids of the nodes that list the model, best first (a snapshot)."""
        return [rank[-1] for rank in self._by_model.get(key, ())]
