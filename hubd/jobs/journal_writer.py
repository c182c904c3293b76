"""The job journal's writes, on its own thread (hubd.jobs.journal queues them and runs this there).

A batch is one transaction. One that fails on a passing fault of the disk or the file (full, locked,
failing) comes back whole, to be tried again in order; one that fails on a row the database will never take
(a wrong type, a string no UTF-8 can carry) is written row by row, and the bad rows are logged and dropped.
No transaction is ever left open for the next batch.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import time
from typing import Any

from ollama_connector.hubd.jobs.journal_db import DB_ERRORS, passing
from ollama_connector.hubd.jobs.journal_tables import JOB_ROWS, Db, Rows

log = logging.getLogger("ollama_connector.hubd.jobs.journal")
PRUNE_EVERY = 60.0  # seconds between two passes of retention
Batch = list[tuple[str | Rows, tuple[Any, ...]]]


def is_full(text: str | None) -> bool:
    return bool(text) and ("full" in text or "No space" in text)  # type: ignore[operator]


class JournalWriter:
    def __init__(self, path: str, max_days: float, max_jobs: int) -> None:
        self.path, self.max_days, self.max_jobs = path, max_days, max_jobs
        self.failing = False  # the last write failed (logged once until one succeeds)
        self.failure: str | None = None  # what the last failed write said
        self.dropped = 0  # rows the database refused for good
        self.written = 0  # jobs written, for the metrics
        self.cpu_seconds = 0.0  # CPU time of the journal's thread in its writes, for the metrics
        self.max_params = 999  # SQLite's bound on a statement's parameters (32,766 from 3.32)
        self._pruned_at = 0.0
        self._since_prune = 0  # jobs written since the last pass of retention

    def commit(self, db: Db | None, batch: Batch) -> tuple[int, Batch]:
        """(rows landed or dropped for good, rows to try again)."""
        if db is None:
            return len(batch), []
        started = time.thread_time()
        try:
            return self._write(db, batch)
        finally:
            self.cpu_seconds += time.thread_time() - started

    def _execute(self, db: Db, batch: list[tuple[str | Rows, tuple[Any, ...]]]) -> None:
        db.execute("BEGIN")
        try:
            for sql, group in itertools.groupby(batch, key=lambda op: op[0]):
                if isinstance(sql, Rows):
                    rows = [params for _, params in group]
                    for statement, values in sql.statements(rows, self.max_params):
                        db.execute(statement, values)
                else:
                    for _, params in group:
                        db.execute(sql, params)
            db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(*DB_ERRORS):
                db.execute("ROLLBACK")  # never a transaction left open for the next batch
            raise

    def _write(self, db: Db, batch: list[tuple[str | Rows, tuple[Any, ...]]]) -> tuple[int, list]:
        try:
            self._execute(db, batch)
        except Exception as exc:
            if passing(exc):
                return self._refused(exc, batch)
            return self._row_by_row(db, batch)
        self._landed_ok(batch)
        with contextlib.suppress(*DB_ERRORS):
            self._prune(db)
        return len(batch), []

    def _row_by_row(self, db: Db, batch: list) -> tuple[int, list]:
        """A batch with a row the database will never take: each row alone, the bad ones dropped."""
        for n, op in enumerate(batch):
            try:
                self._execute(db, [op])
            except Exception as exc:
                if passing(exc):
                    landed, again = self._refused(exc, batch[n:])
                    return n + landed, again
                self.dropped += 1
                log.error("dropped a row the job journal cannot take (%s): %s", type(exc).__name__, exc)
        self._landed_ok(batch)
        return len(batch), []

    def _refused(self, exc: Exception, batch: list) -> tuple[int, list]:
        self.failure = str(exc)
        if not self.failing:
            log.error(
                "could not write the job journal %s: %s; its rows wait and are tried again", self.path, exc
            )
        self.failing = True
        return 0, batch

    def _landed_ok(self, batch: list) -> None:
        if self.failing:
            log.info("the job journal %s is writable again", self.path)
        self.failing, self.failure = False, None
        jobs = sum(sql is JOB_ROWS for sql, _ in batch)
        self.written += jobs
        self._since_prune += jobs

    def _prune(self, db: Db) -> None:
        """Retention: finished jobs older than JOURNAL_MAX_DAYS, and past the newest JOURNAL_MAX_JOBS."""
        now = time.time()
        if now - self._pruned_at < PRUNE_EVERY and self._since_prune < max(1, self.max_jobs // 10):
            return
        self._pruned_at, self._since_prune = now, 0
        cutoff = now - self.max_days * 86400  # by arrival, which is indexed (a job ends after it arrives)
        db.execute("DELETE FROM jobs WHERE arrived < ? AND ended IS NOT NULL AND ended < ?", (cutoff, cutoff))
        db.execute("DELETE FROM audit WHERE at < ?", (cutoff,))
        oldest_kept = db.execute(
            "SELECT arrived FROM jobs WHERE ended IS NOT NULL ORDER BY arrived DESC LIMIT 1 OFFSET ?",
            (self.max_jobs - 1,),
        ).fetchone()
        if oldest_kept is not None:
            db.execute("DELETE FROM jobs WHERE ended IS NOT NULL AND arrived < ?", (oldest_kept[0],))
