"""The journal's tables: the schema (one for every version of the hub: columns added since are added to an
older file), how a job's record becomes a row and back, and the reads `Journal.read` runs on its thread.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Mapping
from typing import Any

from ollama_connector.hubd.jobs.record import JobRecord
from ollama_connector.shared.modelnames import canonical

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    route TEXT NOT NULL,
    model TEXT NOT NULL,
    caller TEXT NOT NULL,
    arrived REAL NOT NULL,
    started REAL,
    first_token REAL,
    ended REAL,
    status TEXT NOT NULL,
    error TEXT,
    nodes TEXT NOT NULL,
    node TEXT,
    prompt_tokens INTEGER,
    output_tokens INTEGER,
    eval_seconds REAL,
    durable INTEGER NOT NULL,
    key TEXT,  -- the caller's key's name
    request BLOB,  -- async jobs: the body to run again after a restart
    answer BLOB  -- async jobs: the answer a synchronous job would have had
);
CREATE INDEX IF NOT EXISTS jobs_by_arrival ON jobs (arrived);
CREATE TABLE IF NOT EXISTS audit (
    at REAL NOT NULL,
    who TEXT NOT NULL,
    what TEXT NOT NULL,
    place TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_by_time ON audit (at);
CREATE TABLE IF NOT EXISTS chunks (
    job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (job_id, seq)
) WITHOUT ROWID;
"""


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
    hundreds of jobs, so the journal's thread takes the GIL from the event loop once, not once a row."""

    def __init__(self, table: str, columns: list[str], tail: str = "") -> None:
        self.head = f"INSERT INTO {table} ({', '.join(columns)}) VALUES "
        self.row = "(" + ", ".join("?" * len(columns)) + ")"
        self.tail = tail
        self.columns = len(columns)

    def statements(self, rows: list[tuple[Any, ...]], max_params: int) -> Iterator[tuple[str, list[Any]]]:
        """As few statements as the database's bound on parameters allows (999 before SQLite 3.32)."""
        per_statement = max(1, max_params // self.columns)
        for start in range(0, len(rows), per_statement):
            part = rows[start : start + per_statement]
            yield self.head + ", ".join([self.row] * len(part)) + self.tail, [v for row in part for v in row]


# Insert or update: an async job's record is written when it is submitted and again when it ends.
JOB_ROWS = Rows(
    "jobs",
    RECORD_COLUMNS,
    " ON CONFLICT (id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in RECORD_COLUMNS if c != "id"),
)


CHUNK_ROWS = Rows("chunks", ["job_id", "seq", "data"], " ON CONFLICT DO NOTHING")


def row_of(record: JobRecord) -> tuple[Any, ...]:
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


def add_new_columns(db: sqlite3.Connection) -> None:
    """A journal written by an older version of the hub lacks the columns added since: add them."""
    have = {row["name"] for row in db.execute("PRAGMA table_info(jobs)")}
    declared = {
        line.split()[0]: line.split()[1].rstrip(",")
        for line in SCHEMA.split("CREATE TABLE IF NOT EXISTS jobs (")[1].split(");")[0].splitlines()
        if line.strip() and not line.strip().startswith("--")
    }
    for column, kind in declared.items():
        if column not in have:
            db.execute(f"ALTER TABLE jobs ADD COLUMN {column} {kind}")


def find(
    db: sqlite3.Connection,
    limit: int,
    model: str | None = None,
    node: str | None = None,
    status: str | None = None,
    since: float | None = None,
    caller: str | None = None,
) -> list[JobRecord]:
    """The newest jobs first, filtered (`caller`: only that caller's)."""
    where, params = [], []
    if model is not None:  # as the hub matches names: `llama3` is `llama3:latest` (hubd.jobs.journal)
        where.append("canonical(model) = ?")
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


def one(db: sqlite3.Connection, job_id: str) -> tuple[JobRecord, bytes | None] | None:
    """A job and its stored answer (async jobs)."""
    row = db.execute(
        f"SELECT {', '.join(RECORD_COLUMNS)}, answer FROM jobs WHERE id = ?", (job_id,)
    ).fetchone()
    return (record_of(row), row["answer"]) if row else None


def request_of(db: sqlite3.Connection, job_id: str) -> bytes:
    """An async job's request, as it was accepted."""
    row = db.execute("SELECT request FROM jobs WHERE id = ?", (job_id,)).fetchone()
    return bytes(row["request"]) if row and row["request"] is not None else b""


def ids_matching(db: sqlite3.Connection, part: str, caller: str | None = None, limit: int = 2) -> list[str]:
    """Ids that end (or begin) with `part` (hex digits and dashes: nothing LIKE reads as a wildcard), of
    `caller`'s jobs when one is named."""
    query = "SELECT id FROM jobs WHERE (id LIKE ? OR id LIKE ?) AND (? IS NULL OR caller = ?) LIMIT ?"
    return [row["id"] for row in db.execute(query, (f"%{part}", f"{part}%", caller, caller, limit))]


def tokens_by_key(db: sqlite3.Connection, since: float) -> list[tuple[str, float, int]]:
    """(key, ended, prompt and output tokens) of the named keys' jobs ended since then, oldest first."""
    rows = db.execute(
        "SELECT key, ended, coalesce(prompt_tokens, 0) + coalesce(output_tokens, 0) FROM jobs"
        " WHERE key IS NOT NULL AND ended >= ? ORDER BY ended",
        (since,),
    )
    return [tuple(row) for row in rows]


def usage(db: sqlite3.Connection, since: float, key: str | None, model: str | None) -> list[dict[str, Any]]:
    """Jobs, tokens, generation time and failures by key and model, of the jobs that arrived since then."""
    where, params = ["arrived >= ?"], [since]
    for column, value in (("key", key), ("model", model)):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    rows = db.execute(
        "SELECT key, model, count(*) AS jobs, sum(coalesce(prompt_tokens, 0)) AS prompt_tokens,"
        " sum(coalesce(output_tokens, 0)) AS output_tokens,"
        " round(sum(coalesce(eval_seconds, 0)), 3) AS generation_seconds,"
        " sum(status = 'failed') AS failures"
        f" FROM jobs WHERE {' AND '.join(where)} GROUP BY key, model ORDER BY key, model",
        params,
    )
    return [dict(row) for row in rows]


def audit_entries(db: sqlite3.Connection, since: float, limit: int) -> list[dict[str, Any]]:
    """The newest entries of the audit trail first."""
    rows = db.execute(
        "SELECT at, who, what, place AS 'where' FROM audit WHERE at >= ? ORDER BY at DESC LIMIT ?",
        (since, limit),
    )
    return [dict(row) for row in rows]


def lines_from(db: sqlite3.Connection, job_id: str, seq: int, limit: int = -1) -> list[bytes]:
    rows = db.execute(
        "SELECT data FROM chunks WHERE job_id = ? AND seq >= ? ORDER BY seq LIMIT ?", (job_id, seq, limit)
    )
    return [row["data"] for row in rows]


def unfinished(db: sqlite3.Connection) -> list[tuple[JobRecord, bytes | None, int]]:
    """Jobs a previous run of the hub left queued or running: each with its request and chunk count."""
    rows = db.execute(
        f"SELECT {', '.join(RECORD_COLUMNS)}, request,"
        " (SELECT count(*) FROM chunks WHERE job_id = jobs.id) AS chunk_count"
        " FROM jobs WHERE status IN ('queued', 'running') ORDER BY arrived"
    ).fetchall()
    return [(record_of(row), row["request"], row["chunk_count"]) for row in rows]
