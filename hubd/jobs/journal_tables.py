"""The journal's rows: how a job's record becomes a row and back, and the reads `Journal.read` runs on its
thread, in SQL both SQLite and PostgreSQL take (hubd.jobs.journal_db; the schema is hubd.jobs.journal_schema).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

from ollama_connector.hubd.jobs.record import JobRecord
from ollama_connector.shared.modelnames import canonical

Db = Any  # a sqlite3.Connection, or hubd.jobs.journal_db.Postgres: the same surface

RECORD_COLUMNS = [
    "id",
    "route",
    "model",
    "caller",
    "arrived",
    "started",
    "first_token",
    "ended",
    "status",
    "error",
    "nodes",
    "node",
    "prompt_tokens",
    "output_tokens",
    "eval_seconds",
    "durable",
    "key",
]


class Rows:
    """An INSERT whose queued rows are written as one statement per batch: one step of SQLite for
    hundreds of jobs, so the journal's thread takes the GIL from the event loop once, not once a row (and
    one round trip to PostgreSQL)."""

    def __init__(self, table: str, columns: list[str], tail: str = "", key_columns: int = 1) -> None:
        self.head = f"INSERT INTO {table} ({', '.join(columns)}) VALUES "
        self.row = "(" + ", ".join("?" * len(columns)) + ")"
        self.tail = tail
        self.columns = len(columns)
        self.key_columns = key_columns

    def statements(self, rows: list[tuple[Any, ...]], max_params: int) -> Iterator[tuple[str, list[Any]]]:
        """As few statements as the database's bound on parameters allows (999 before SQLite 3.32). A row
        queued twice (a job's record as it starts, then as it ends) goes once, as last queued: PostgreSQL
        will not update one row twice in a statement."""
        latest = {row[: self.key_columns]: row for row in rows}
        rows = list(latest.values()) if len(latest) < len(rows) else rows
        per_statement = max(1, max_params // self.columns)
        for start in range(0, len(rows), per_statement):
            part = rows[start : start + per_statement]
            yield self.head + ", ".join([self.row] * len(part)) + self.tail, [v for row in part for v in row]


# Insert or update: an async job's record is written when it is submitted and again when it ends.
WRITTEN_COLUMNS = [*RECORD_COLUMNS, "model_key", "owner"]
# A record written by a hub that no longer owns the job (another took it over: hubd.jobs.leases) changes
# nothing; a hub alone on its journal names no owner.
JOB_ROWS = Rows(
    "jobs",
    WRITTEN_COLUMNS,
    " ON CONFLICT (id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in WRITTEN_COLUMNS if c != "id")
    + " WHERE jobs.owner IS NULL OR jobs.owner = excluded.owner",
)
CHUNK_ROWS = Rows(
    "chunks", ["job_id", "seq", "data"], " ON CONFLICT (job_id, seq) DO UPDATE SET data = excluded.data", 2
)


def row_of(record: JobRecord, owner: str | None = None) -> tuple[Any, ...]:
    return (
        record.job_id,
        record.route,
        record.model,
        record.caller,
        record.arrived,
        record.started,
        record.first_token,
        record.ended,
        record.status,
        record.error,
        json.dumps(record.nodes),
        record.node,
        record.prompt_tokens,
        record.output_tokens,
        record.eval_seconds,
        int(record.durable),
        record.key,
        canonical(record.model),
        owner if record.durable else None,
    )


def record_of(row: Mapping[str, Any]) -> JobRecord:
    return JobRecord(
        job_id=row["id"],
        route=row["route"],
        model=row["model"],
        caller=row["caller"],
        arrived=row["arrived"],
        started=row["started"],
        first_token=row["first_token"],
        ended=row["ended"],
        status=row["status"],
        error=row["error"],
        nodes=json.loads(row["nodes"]),
        node=row["node"],
        prompt_tokens=row["prompt_tokens"],
        output_tokens=row["output_tokens"],
        eval_seconds=row["eval_seconds"],
        durable=bool(row["durable"]),
        key=row["key"],
    )


def find(
    db: Db,
    limit: int,
    model: str | None = None,
    node: str | None = None,
    status: str | None = None,
    since: float | None = None,
    caller: str | None = None,
) -> list[JobRecord]:
    """The newest jobs first, filtered (`caller`: only that caller's)."""
    where, params = [], []
    if model is not None:  # as the hub matches names: `llama3` is `llama3:latest`
        where.append("model_key = ?")
        params.append(canonical(model))
    for column, value in (("node", node), ("status", status), ("caller", caller)):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    if since is not None:
        where.append("arrived >= ?")
        params.append(since)
    sql = f"SELECT {', '.join(RECORD_COLUMNS)} FROM jobs"
    if where:
        sql += " WHERE " + " AND ".join(where)
    rows = db.execute(sql + " ORDER BY arrived DESC LIMIT ?", (*params, limit)).fetchall()
    return [record_of(row) for row in rows]


def one(db: Db, job_id: str) -> tuple[JobRecord, bytes | None] | None:
    """A job and its stored answer (async jobs)."""
    row = db.execute(
        f"SELECT {', '.join(RECORD_COLUMNS)}, answer FROM jobs WHERE id = ?", (job_id,)
    ).fetchone()
    return (record_of(row), row["answer"]) if row else None


def request_of(db: Db, job_id: str) -> bytes:
    """An async job's request, as it was accepted."""
    row = db.execute("SELECT request FROM jobs WHERE id = ?", (job_id,)).fetchone()
    return bytes(row["request"]) if row and row["request"] is not None else b""


def ids_matching(db: Db, part: str, caller: str | None = None, limit: int = 2) -> list[str]:
    """Ids that end (or begin) with `part` (hex digits and dashes: nothing LIKE reads as a wildcard), of
    `caller`'s jobs when one is named."""
    query, params = "SELECT id FROM jobs WHERE (id LIKE ? OR id LIKE ?)", [f"%{part}", f"{part}%"]
    if caller is not None:
        query, params = query + " AND caller = ?", [*params, caller]
    return [row["id"] for row in db.execute(query + " LIMIT ?", (*params, limit))]


def tokens_by_key(db: Db, since: float) -> list[tuple[str, float, int]]:
    """(key, ended, prompt and output tokens) of the named keys' jobs ended since then, oldest first."""
    rows = db.execute(
        "SELECT key, ended, coalesce(prompt_tokens, 0) + coalesce(output_tokens, 0) FROM jobs"
        " WHERE key IS NOT NULL AND ended >= ? ORDER BY ended",
        (since,),
    )
    return [tuple(row) for row in rows]


def usage(db: Db, since: float, key: str | None, model: str | None) -> list[dict[str, Any]]:
    """Jobs, tokens, generation time and failures by key and model, of the jobs that arrived since then."""
    where, params = ["arrived >= ?"], [since]
    for column, value in (("key", key), ("model", model)):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    rows = db.execute(
        "SELECT key, model, count(*) AS jobs, sum(coalesce(prompt_tokens, 0)) AS prompt_tokens,"
        " sum(coalesce(output_tokens, 0)) AS output_tokens,"
        " sum(coalesce(eval_seconds, 0)) AS generation_seconds,"
        " sum(CASE WHEN status = 'failed' THEN 1 ELSE 0 END) AS failures"
        f" FROM jobs WHERE {' AND '.join(where)} GROUP BY key, model ORDER BY key, model",
        params,
    )
    # PostgreSQL sums integers as numeric: the same JSON numbers as SQLite's.
    return [
        {
            **dict(row),
            **{name: int(row[name]) for name in ("jobs", "prompt_tokens", "output_tokens", "failures")},
            "generation_seconds": round(float(row["generation_seconds"]), 3),
        }
        for row in rows
    ]


def audit_entries(db: Db, since: float, limit: int) -> list[dict[str, Any]]:
    """The newest entries of the audit trail first."""
    rows = db.execute(
        'SELECT at, who, what, place AS "where" FROM audit WHERE at >= ? ORDER BY at DESC LIMIT ?',
        (since, limit),
    )
    return [dict(row) for row in rows]


def lines_from(db: Db, job_id: str, seq: int, limit: int | None = None) -> list[bytes]:
    query = "SELECT data FROM chunks WHERE job_id = ? AND seq >= ? ORDER BY seq"
    if limit is None:
        return [bytes(row["data"]) for row in db.execute(query, (job_id, seq))]
    return [bytes(row["data"]) for row in db.execute(query + " LIMIT ?", (job_id, seq, limit))]


def unfinished(db: Db) -> list[tuple[JobRecord, bytes | None, int]]:
    """Jobs a previous run of the hub left queued or running: each with its request and chunk count."""
    rows = db.execute(
        f"SELECT {', '.join(RECORD_COLUMNS)}, request,"
        " (SELECT count(*) FROM chunks WHERE job_id = jobs.id) AS chunk_count"
        " FROM jobs WHERE status IN ('queued', 'running') ORDER BY arrived"
    ).fetchall()
    return [(record_of(row), row["request"], row["chunk_count"]) for row in rows]
