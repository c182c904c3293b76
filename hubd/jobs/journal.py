"""The job journal: every job the hub runs, in an embedded SQLite database in the hub's state directory.

A job never waits on the disk: writes are queued and committed in batches (every FLUSH_SECONDS, or at
BATCH_ROWS) on one thread of the journal's own. Reads run on that same thread after the writes queued
before them, so a reader sees every job that ended before it asked. A database that cannot be opened (corrupt,
unwritable) or a write that fails is logged once; the hub goes on routing without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from ollama_connector.hubd.jobs.record import JobRecord

log = logging.getLogger(__name__)
T = TypeVar("T")
FLUSH_SECONDS = 0.2
BATCH_ROWS = 500
PRUNE_EVERY = 60.0  # seconds between two passes of retention

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
    request BLOB,  -- async jobs: the body to run again after a restart
    answer BLOB  -- async jobs: the answer a synchronous job would have had
);
CREATE INDEX IF NOT EXISTS jobs_by_arrival ON jobs (arrived);
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
]


class Rows:
    """An INSERT whose queued rows are written as one statement per batch: one step of SQLite for
    hundreds of jobs, so the journal's thread takes the GIL from the event loop once, not once a row."""

    def __init__(self, table: str, columns: list[str], tail: str = "") -> None:
        self.head = f"INSERT INTO {table} ({', '.join(columns)}) VALUES "
        self.row = "(" + ", ".join("?" * len(columns)) + ")"
        self.tail = tail
        self.per_statement = 30_000 // len(columns)  # under SQLite's limit of 32,766 parameters

    def statements(self, rows: list[tuple[Any, ...]]) -> Iterator[tuple[str, list[Any]]]:
        for start in range(0, len(rows), self.per_statement):
            part = rows[start : start + self.per_statement]
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
    )


class JournalUnavailable(Exception):
    """The journal could not be opened: what it said."""


class Journal:
    def __init__(self, path: Path | None, max_days: float, max_jobs: int) -> None:
        self.path = path
        self.max_days = max_days
        self.max_jobs = max_jobs
        self.unavailable: str | None = "JOURNAL_PATH=off" if path is None else None
        self.failing = False  # the last write failed (logged once until one succeeds)
        self.written = 0  # jobs written, for the metrics
        self.cpu_seconds = 0.0  # CPU time of the journal's thread in its writes, for the metrics
        self._db: sqlite3.Connection | None = None
        self._pending: list[tuple[str | Rows, tuple[Any, ...]]] = []
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="journal")
        self._last_write: asyncio.Future[None] | None = None
        self._pruned_at = 0.0
        self._since_prune = 0  # jobs written since the last pass of retention

    # --- the event loop's side

    async def open(self) -> None:
        if self.path is not None:
            await self._run(self._open)

    def record(self, record: JobRecord, request: bytes | None = None) -> None:
        """Queue the record (insert or update); `request` once, for an async job."""
        if self._db is None:
            return
        self._queue(JOB_ROWS, row_of(record))
        if request is not None:
            self._queue("UPDATE jobs SET request = ? WHERE id = ?", (request, record.job_id))

    def chunks(self, job_id: str, first_seq: int, lines: list[bytes]) -> None:
        if self._db is not None:
            for seq, line in enumerate(lines, first_seq):
                self._queue(
                    "INSERT OR REPLACE INTO chunks (job_id, seq, data) VALUES (?, ?, ?)", (job_id, seq, line)
                )

    def answer(self, job_id: str, answer: bytes) -> None:
        if self._db is not None:
            self._queue("UPDATE jobs SET answer = ? WHERE id = ?", (answer, job_id))

    async def flush(self) -> None:
        """Commit what is queued and wait for it (an async job's 202 promises it is on disk)."""
        self._kick()
        if self._last_write is not None:
            await asyncio.shield(self._last_write)

    async def read(self, query: Callable[..., T], *args: Any) -> T:
        """Run `query(db, *args)` after every write queued so far."""
        if self._db is None:
            raise JournalUnavailable(self.unavailable or "closed")
        self._kick()
        return await self._run(query, self._db, *args)

    async def flusher(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            self._kick()

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.flush()
        if self._db is not None:
            await self._run(self._db.close)
            self._db = None
        self._executor.shutdown(wait=True)

    def _queue(self, sql: str | Rows, params: tuple[Any, ...]) -> None:
        self._pending.append((sql, params))
        if len(self._pending) >= BATCH_ROWS:
            self._kick()

    def _kick(self) -> None:
        if not self._pending or self._db is None:
            return
        batch, self._pending = self._pending, []
        self._last_write = asyncio.get_running_loop().run_in_executor(self._executor, self._commit, batch)
        self._last_write.add_done_callback(_retrieve)

    async def _run(self, function: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    # --- the journal's thread

    def _open(self) -> None:
        assert self.path is not None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Async jobs' prompts and answers are in it: only the hub's user may read it (SQLite gives its
            # -wal and -shm files the same permissions).
            self.path.touch(mode=0o600, exist_ok=True)
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")
            db.execute("PRAGMA foreign_keys = ON")
            db.executescript(SCHEMA)
            _add_new_columns(db)
            db.execute("PRAGMA quick_check").fetchone()
        except (OSError, sqlite3.Error) as exc:
            self.unavailable = f"{self.path}: {exc}"
            log.error(
                "the job journal is unavailable (%s); jobs run unrecorded, and async jobs are refused",
                self.unavailable,
            )
            return
        self._db = db
        log.info("job journal: %s", self.path)

    def _commit(self, batch: list[tuple[str | Rows, tuple[Any, ...]]]) -> None:
        db = self._db
        if db is None:
            return
        started = time.thread_time()
        try:
            self._write(db, batch)
        finally:
            self.cpu_seconds += time.thread_time() - started

    def _write(self, db: sqlite3.Connection, batch: list[tuple[str | Rows, tuple[Any, ...]]]) -> None:
        try:
            db.execute("BEGIN")
            for sql, group in itertools.groupby(batch, key=lambda op: op[0]):
                if isinstance(sql, Rows):
                    for statement, values in sql.statements([params for _, params in group]):
                        db.execute(statement, values)
                else:
                    for _, params in group:
                        db.execute(sql, params)
            db.execute("COMMIT")
            self._prune(db)
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            if not self.failing:
                log.error(
                    "could not write the job journal %s: %s; retrying with the next jobs", self.path, exc
                )
            self.failing = True
            return
        if self.failing:
            log.info("the job journal %s is writable again", self.path)
        self.failing = False
        jobs = sum(sql is JOB_ROWS for sql, _ in batch)
        self.written += jobs
        self._since_prune += jobs

    def _prune(self, db: sqlite3.Connection) -> None:
        """Retention: finished jobs older than JOURNAL_MAX_DAYS, and past the newest JOURNAL_MAX_JOBS."""
        now = time.time()
        if now - self._pruned_at < PRUNE_EVERY and self._since_prune < max(1, self.max_jobs // 10):
            return
        self._pruned_at, self._since_prune = now, 0
        cutoff = now - self.max_days * 86400  # by arrival, which is indexed (a job ends after it arrives)
        db.execute("DELETE FROM jobs WHERE arrived < ? AND ended IS NOT NULL AND ended < ?", (cutoff, cutoff))
        db.execute(
            "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs WHERE ended IS NOT NULL"
            " ORDER BY arrived DESC LIMIT -1 OFFSET ?)",
            (self.max_jobs,),
        )


def _add_new_columns(db: sqlite3.Connection) -> None:
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


# --- queries, for Journal.read


def find(
    db: sqlite3.Connection,
    limit: int,
    model: str | None = None,
    node: str | None = None,
    status: str | None = None,
    since: float | None = None,
) -> list[JobRecord]:
    """The newest jobs first, filtered."""
    where, params = [], []
    for column, value in (("model", model), ("node", node), ("status", status)):
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


def lines_from(db: sqlite3.Connection, job_id: str, seq: int) -> list[bytes]:
    rows = db.execute("SELECT data FROM chunks WHERE job_id = ? AND seq >= ? ORDER BY seq", (job_id, seq))
    return [row["data"] for row in rows]


def unfinished(db: sqlite3.Connection) -> list[tuple[JobRecord, bytes | None, int]]:
    """Jobs a previous run of the hub left queued or running: each with its request and chunk count."""
    rows = db.execute(
        f"SELECT {', '.join(RECORD_COLUMNS)}, request,"
        " (SELECT count(*) FROM chunks WHERE job_id = jobs.id) AS chunk_count"
        " FROM jobs WHERE status IN ('queued', 'running') ORDER BY arrived"
    ).fetchall()
    return [(record_of(row), row["request"], row["chunk_count"]) for row in rows]


def _retrieve(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()  # _commit reports its own failures; nothing else is expected
