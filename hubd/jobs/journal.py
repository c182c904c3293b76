"""The job journal: every job the hub runs, in an embedded SQLite database in the hub's state directory, or
in PostgreSQL (JOURNAL_URL), shared by every hub of a cluster (hubd.jobs.journal_db).

A job never waits on the disk: writes are queued and committed in batches (every FLUSH_SECONDS, or at
BATCH_ROWS) on one thread of the journal's own, one batch at a time. Reads run on that same thread after the
writes queued before them, so a reader sees every job that ended before it asked. A database that cannot be
opened (corrupt, unwritable) is logged once, and the hub goes on routing without it; a PostgreSQL server that
does not answer at start is tried again, with backoff, until it does.

A batch that fails is not lost: on a passing fault (a full disk, a locked or failing file) it goes back to
the front of the queue, in order, and is tried again; a row the database will never take is found by
writing the batch row by row, logged and dropped, and the rest lands. `flush()` returns only once what was
queued before it is on disk, and raises JournalUnavailable when it cannot be (an async job gets no 202).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from ollama_connector.hubd.jobs.journal_db import DB_ERRORS, Postgres, redacted
from ollama_connector.hubd.jobs.journal_open import open_postgres, open_sqlite
from ollama_connector.hubd.jobs.journal_tables import CHUNK_ROWS, JOB_ROWS, Rows, row_of
from ollama_connector.hubd.jobs.journal_writer import JournalWriter, is_full
from ollama_connector.hubd.jobs.record import JobRecord

log = logging.getLogger(__name__)
T = TypeVar("T")
FLUSH_SECONDS = 0.2
BATCH_ROWS = 500


MAX_PENDING = 200_000  # rows waiting while the disk refuses them; past it the oldest go (said once)
FLUSH_ATTEMPTS = 4


class JournalUnavailable(Exception):
    """The journal could not be opened, or written: what it said."""

    def __init__(self, message: str, full: bool = False) -> None:
        super().__init__(message)
        self.full = full  # the disk is full (507, not 503)


class Journal:
    def __init__(self, path: Path | None, max_days: float, max_jobs: int, url: str | None = None) -> None:
        self.path = path if url is None else None
        self.url = url
        self.where = redacted(url) if url else str(path)  # as logs and pages may say it: no password
        self.shared = url is not None  # one journal for several hubs (leases: hubd.jobs.leases)
        self.dialect = "postgres" if self.shared else "sqlite"
        self.unavailable: str | None = "JOURNAL_PATH=off" if path is None and url is None else None
        self.writer = JournalWriter(self.where, max_days, max_jobs)  # on the journal's thread
        self._db: sqlite3.Connection | Postgres | None = None
        self._retry = 1.0  # seconds before PostgreSQL is tried again, while it cannot be reached
        self.hub_id: str | None = None  # with a shared journal, this hub as the owner of its async jobs
        self._pending: list[tuple[str | Rows, tuple[Any, ...]]] = []
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="journal")
        self._last_write: asyncio.Future[tuple[int, list]] | None = None
        self._writing = False  # a batch is on the journal's thread (one at a time, so a retry keeps order)
        self._queued = 0  # rows queued since the start
        self._landed = 0  # rows written (or dropped for good) since the start, in queue order

    # What the metrics and GET /jobs show of it.
    @property
    def failing(self) -> bool:
        return self.writer.failing

    @property
    def written(self) -> int:
        return self.writer.written

    @property
    def cpu_seconds(self) -> float:
        return self.writer.cpu_seconds

    # --- the event loop's side

    async def open(self) -> None:
        if self.path is not None:
            await self._run(self._open)
        elif self.url is not None:
            await self._run(self._open_postgres)

    def record(self, record: JobRecord, request: bytes | None = None) -> None:
        """Queue the record (insert or update); `request` once, for an async job."""
        if self._db is None:
            return
        self._queue(JOB_ROWS, row_of(record, self.hub_id))
        if request is not None:
            self._queue("UPDATE jobs SET request = ? WHERE id = ?", (request, record.job_id))

    def chunks(self, job_id: str, first_seq: int, lines: list[bytes]) -> None:
        if self._db is not None:
            for seq, line in enumerate(lines, first_seq):
                self._queue(CHUNK_ROWS, (job_id, seq, line))

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
        """Return once everything queued before the call is on disk (an async job's 202 promises it);
        JournalUnavailable when it could not be written after FLUSH_ATTEMPTS tries."""
        target = self._queued
        for attempt in range(FLUSH_ATTEMPTS):
            await self._settle()
            if self._last_write is not None and self._writing:
                await asyncio.shield(self._last_write)
            if self._landed >= target or self._db is None:
                return
            await asyncio.sleep(0.05 * 2**attempt)
        raise JournalUnavailable(
            f"could not write the job journal: {self.writer.failure}", full=is_full(self.writer.failure)
        )

    def write(self, sql: str, params: tuple[Any, ...]) -> None:
        """Queue a statement, in order with the records (a lease, a cancellation asked of another hub)."""
        if self._db is not None:
            self._queue(sql, params)

    async def read(self, query: Callable[..., T], *args: Any) -> T:
        """Run `query(db, *args)` after every write queued so far; JournalUnavailable when the database
        fails it (a PostgreSQL server away, a damaged SQLite page)."""
        if self._db is None:
            raise JournalUnavailable(self.unavailable or "closed")
        await self._settle()
        try:
            return await self._run(query, self._db, *args)
        except DB_ERRORS as exc:
            raise JournalUnavailable(f"the job journal {self.where} failed a read: {exc}") from exc

    async def _settle(self) -> None:
        """Let the batch under way end (a failed one goes back in the queue), then send what is queued."""
        if self._writing and self._last_write is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._last_write)
        self._kick()

    async def flusher(self) -> None:
        waited = 0.0
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            waited += FLUSH_SECONDS
            if self._db is None and self.url is not None and waited >= self._retry:
                waited, self._retry = 0.0, min(self._retry * 2, 30.0)
                await self._run(self._open_postgres)  # away at start: tried again, with backoff
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
        self._queued += 1
        if len(self._pending) > MAX_PENDING:  # the disk has refused rows for long: the oldest go
            del self._pending[: len(self._pending) - MAX_PENDING]
            self._landed = self._queued - len(self._pending)
            if not self.writer.dropped:
                log.error("the job journal has refused writes for long; dropping its oldest unwritten rows")
            self.writer.dropped += 1
        if len(self._pending) >= BATCH_ROWS:
            self._kick()

    def _kick(self) -> None:
        if not self._pending or self._db is None or self._writing:
            return
        batch, self._pending = self._pending, []
        self._writing = True
        self._last_write = asyncio.get_running_loop().run_in_executor(
            self._executor, self.writer.commit, self._db, batch
        )
        self._last_write.add_done_callback(self._written)

    def _written(self, future: asyncio.Future[tuple[int, list]]) -> None:
        """On the event loop, before anyone awaiting the write: count what landed, requeue what did not."""
        self._writing = False
        if future.cancelled():
            return
        if (exc := future.exception()) is not None:
            log.error("the job journal's writer failed", exc_info=exc)
            return
        landed, again = future.result()
        self._landed += landed
        if again:
            self._pending[:0] = again

    async def _run(self, function: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    # --- the journal's thread

    def _open(self) -> None:
        assert self.path is not None
        try:
            self._db = open_sqlite(self.path)
        except (OSError, sqlite3.Error) as exc:
            self._unavailable(exc)
            return
        self.writer.max_params = self._db.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)

    def _open_postgres(self) -> None:
        assert self.url is not None
        try:
            self._db = open_postgres(self.url)
        except DB_ERRORS as exc:
            self._unavailable(exc if str(exc) else TimeoutError("no answer"))
            return
        self.writer.max_params = 30_000  # PostgreSQL takes 65,535 a statement
        if self.unavailable is not None:
            log.info("the job journal %s is reachable again", self.where)
        self.unavailable, self._retry = None, 1.0
        log.info("job journal: %s (PostgreSQL, shared by every hub that names it)", self.where)

    def _unavailable(self, exc: Exception) -> None:
        said = self.unavailable is not None
        self.unavailable = f"{self.where}: {exc}"
        if not said:  # PostgreSQL still away: said once
            log.error(
                "the job journal is unavailable (%s); jobs run unrecorded, and async jobs are refused",
                self.unavailable,
            )
