"""Wrong keys: said in the log once per burst from each address (with how many came since), and slowed per
address: after WRONG_BURST wrong keys, WRONG_PER_MINUTE a minute, and past that the address gets 429 before
its key is even looked at, so guessing keys from one address goes at a minute's pace, not thousands a
second."""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict

from ollama_connector.hubd.errors import HubError
from ollama_connector.hubd.guard.buckets import Buckets

log = logging.getLogger(__name__)
WRONG_BURST = 10
WRONG_PER_MINUTE = 30
QUIET = 60.0  # seconds without a wrong key from an address that end its burst
MAX_ADDRESSES = 10_000


class TooManyWrongKeys(HubError):
    status = 429


class WrongKeys:
    def __init__(self) -> None:
        self._buckets = Buckets(WRONG_PER_MINUTE, WRONG_BURST)
        self._bursts: OrderedDict[str, tuple[float, int]] = OrderedDict()  # address: (last wrong key, unsaid)

    def check(self, address: str) -> None:
        """Before a key is looked at: 429 while the address has used up its wrong keys."""
        if (wait := self._buckets.wait(address)) > 0:
            seconds = max(1, math.ceil(wait))
            raise TooManyWrongKeys(
                f"too many wrong API keys from {address}; retry in {seconds} s",
                headers={"Retry-After": str(seconds)},
            )

    def wrong(self, address: str, path: str, now: float | None = None, what: str = "wrong API key") -> None:
        now = time.monotonic() if now is None else now
        self._buckets.take(address, now)
        last, unsaid = self._bursts.pop(address, (-math.inf, 0))
        if now - last > QUIET:  # a new burst: said, with the count of the last one's unsaid
            more = f" ({unsaid} more in its last burst)" if unsaid else ""
            log.warning("%s from %s on %s%s", what, address, path[:100], more)
            unsaid = 0
        else:
            unsaid += 1
        self._bursts[address] = (now, unsaid)
        while len(self._bursts) > MAX_ADDRESSES:
            self._bursts.popitem(last=False)

    def forgive(self, address: str) -> None:
        """The address got in: its next wrong key starts a new burst, and is said."""
        self._bursts.pop(address, None)
