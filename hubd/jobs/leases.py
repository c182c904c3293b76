"""Async jobs in a journal several hubs share (JOURNAL_URL): who runs each, for how long, who takes it over.

A hub that accepts an async job owns it, with a lease of JOB_LEASE_SECONDS by the database's clock, renewed
every third of that while the job is unfinished. Every renewal also brings back the jobs whose cancellation
another hub was asked for (`DELETE /jobs/{id}` there), and the jobs this hub no longer holds (its lease lapsed
while the database was away, and another hub took them: they stop here, quietly, since they run there now).

Every hub looks, as often, for unfinished async jobs whose lease has lapsed (their hub died, or lost the
database) and takes them over, a few at a time (`FOR UPDATE SKIP LOCKED`: two hubs never take the same job);
hubd.jobs.durable runs each again from the start. A record a hub writes says it is the owner, and an update
from a hub that is no longer the owner changes nothing (hubd.jobs.journal_tables).
"""

from __future__ import annotations

import logging
import socket
import uuid
from typing import Any

from ollama_connector.hubd.jobs.journal_db import now_sql
from ollama_connector.hubd.jobs.journal_tables import RECORD_COLUMNS, Db, record_of
from ollama_connector.hubd.jobs.record import JobRecord

log = logging.getLogger(__name__)
TAKE_AT_ONCE = 20  # jobs one look takes over at most (the next look takes more)
UNFINISHED = "status IN ('queued', 'running')"


def new_hub_id(port: int) -> str:
    """This run of this hub, as job records name their owner: its host, port and a random tail."""
    return f"{socket.gethostname()[:60]}:{port}:{uuid.uuid4().hex[:8]}"


def lease_sql(db: Db) -> str:
    """Set a job's lease (parameters: seconds, job id), by the database's clock."""
    return f"UPDATE jobs SET lease_until = {now_sql(db)} + ? WHERE id = ?"


def renew(db: Db, owner: str, seconds: float) -> tuple[set[str], set[str]]:
    """Extend the leases of the owner's unfinished jobs: (the ids it still holds, those asked to cancel)."""
    held = db.execute(
        f"UPDATE jobs SET lease_until = {now_sql(db)} + ? WHERE owner = ? AND {UNFINISHED}"
        " RETURNING id, cancel_requested",
        (seconds, owner),
    ).fetchall()
    return {row[0] for row in held}, {row[0] for row in held if row[1] is not None}


def take_lapsed(db: Db, owner: str, seconds: float) -> list[tuple[JobRecord, bytes | None, int, bool]]:
    """Take over unfinished async jobs whose lease lapsed: each with its request, its line count and
    whether its cancellation was asked."""
    now = now_sql(db)
    taken = db.execute(
        f"UPDATE jobs SET owner = ?, lease_until = {now} + ? WHERE id IN ("
        f" SELECT id FROM jobs WHERE {UNFINISHED} AND durable = 1"
        f" AND (lease_until < {now} OR lease_until IS NULL AND owner IS NULL)"
        " ORDER BY arrived LIMIT ? FOR UPDATE SKIP LOCKED) RETURNING id",
        (owner, seconds, TAKE_AT_ONCE),
    ).fetchall()
    if not taken:
        return []
    ids = [row[0] for row in taken]
    rows = db.execute(
        f"SELECT {', '.join(RECORD_COLUMNS)}, request, cancel_requested,"
        " (SELECT count(*) FROM chunks WHERE job_id = jobs.id) AS chunk_count"
        f" FROM jobs WHERE id IN ({', '.join('?' * len(ids))}) ORDER BY arrived",
        ids,
    ).fetchall()
    return [
        (record_of(row), _bytes(row["request"]), row["chunk_count"], row["cancel_requested"] is not None)
        for row in rows
    ]


def ask_cancel(db: Db, job_id: str) -> bool:
    """Ask the hub running the job to cancel it; False when it is no longer unfinished."""
    asked = db.execute(
        f"UPDATE jobs SET cancel_requested = {now_sql(db)} WHERE id = ? AND {UNFINISHED} RETURNING id",
        (job_id,),
    ).fetchall()
    return bool(asked)


def _bytes(value: Any) -> bytes | None:
    return None if value is None else bytes(value)
