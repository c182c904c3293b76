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
import logging
import sqlite3
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from ollama_connector.hubd.jobs.journal_tables import (
    JOB_ROWS,
    SCHEMA,
    Rows,
    add_new_columns,
    row_of,
)
from ollama_connector.hubd.jobs.record import JobRecord

log = logging.getLogger(__name__)
T = TypeVar("T")
FLUSH_SECONDS = 0.2
BATCH_ROWS = 500
PRUNE_EVERY = 60.0  # seconds between two passes of retention


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

    def audit(self, entry: Mapping[str, Any]) -> None:
        """An entry of the audit trail (hubd.guard.audit), kept as long as jobs are."""
        if self._db is not None:
            self._queue(
                "INSERT INTO audit (at, who, what, place) VALUES (?, ?, ?, ?)",
                (entry["at"], entry["who"], entry["what"], entry["where"]),
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
            add_new_columns(db)
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
        db.execute("DELETE FROM audit WHERE at < ?", (cutoff,))
        db.execute(
            "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs WHERE ended IS NOT NULL"
            " ORDER BY arrived DESC LIMIT -1 OFFSET ?)",
            (self.max_jobs,),
        )


def _retrieve(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()  # _commit reports its own failures; nothing else is expected
