"""Jobs waiting at the hub for one model: in arrival order for each caller, callers served in turn.

One caller sending a burst of a hundred jobs does not make everyone else wait behind all of it: the next
free slot goes to the first job of the caller at the front of the rotation, and a caller who has just been
served goes to the back.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field


@dataclass(eq=False)
class Waiter:
    caller: str  # the API key's id, or the caller's address (hubd.guard.auth.caller_of)
    since: float = field(default_factory=time.monotonic)
    woken: asyncio.Event = field(default_factory=asyncio.Event)


class ModelQueue:
    def __init__(self) -> None:
        self._callers: OrderedDict[str, deque[Waiter]] = OrderedDict()
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def add(self, waiter: Waiter) -> None:
        self._callers.setdefault(waiter.caller, deque()).append(waiter)
        self.size += 1

    def remove(self, waiter: Waiter, served: bool) -> None:
        """Take a waiter out; one that leaves to run sends its caller to the back of the rotation."""
        queue = self._callers[waiter.caller]
        queue.remove(waiter)
        self.size -= 1
        if not queue:
            del self._callers[waiter.caller]
        elif served:
            self._callers.move_to_end(waiter.caller)

    def head(self) -> Waiter | None:
        """The waiter whose turn it is."""
        for queue in self._callers.values():
            return queue[0]
        return None

    def oldest(self) -> float:
        return min(queue[0].since for queue in self._callers.values())
