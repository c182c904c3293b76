"""The audit trail: who (a key's name, or an address on an open hub) did what, where, for what needs an admin:
model management, changes of the keys file, and admin requests refused. Each entry is logged and handed to the
trail's sinks (the job journal keeps them: GET /audit); the guard room writes it without knowing where it
goes."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypedDict

log = logging.getLogger("hubd.audit")


class AuditEntry(TypedDict):
    at: float
    who: str
    what: str
    where: str


class AuditTrail:
    def __init__(self) -> None:
        self.sinks: list[Callable[[AuditEntry], None]] = []

    def record(self, who: str, what: str, where: str = "") -> None:
        entry = AuditEntry(at=time.time(), who=who, what=what[:500], where=where[:500])
        log.info("audit: %s %s%s", who, what[:500], f" ({where[:500]})" if where else "")
        for sink in self.sinks:
            sink(entry)
