"""The job journal: every job the hub runs, in an embedded SQLite database in the hub's state directory.

A job never waits on the disk: writes are queued and committed in batches (every FLUSH_SECONDS, or at
BATCH_ROWS) on one thread of the journal's own, one batch at a time. Reads run on that same thread after the
writes queued before them, so a reader sees every job that ended before it asked. A database that cannot be
opened (corrupt, unwritable) is logged once, and the hub goes on routing without it.

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
from ollama_connector.hubd.jobs.journal_writer import JournalWriter, is_full
from ollama_connector.hubd.jobs.record import JobRecord
from ollama_connector.shared.modelnames import canonical

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
    def __init__(self, path: Path | None, max_days: float, max_jobs: int) -> None:
        self.path = path
        self.unavailable: str | None = "JOURNAL_PATH=off" if path is None else None
        self.writer = JournalWriter(path, max_days, max_jobs)  # on the journal's thread
        self._db: sqlite3.Connection | None = None
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

    async def read(self, query: Callable[..., T], *args: Any) -> T:
        """Run `query(db, *args)` after every write queued so far."""
        if self._db is None:
            raise JournalUnavailable(self.unavailable or "closed")
        await self._settle()
        return await self._run(query, self._db, *args)

    async def _settle(self) -> None:
        """Let the batch under way end (a failed one goes back in the queue), then send what is queued."""
        if self._writing and self._last_write is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._last_write)
        self._kick()

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
            self._connect()
        except sqlite3.DatabaseError as exc:  # damaged, or not a database: kept aside, and a fresh one made
            if not isinstance(exc, sqlite3.OperationalError) and self.path.exists():
                aside = self.path.with_name(f"{self.path.name}.damaged-{time.strftime('%Y%m%dT%H%M%S')}")
                for suffix in ("", "-wal", "-shm"):
                    if (part := Path(f"{self.path}{suffix}")).exists():
                        part.rename(f"{aside}{suffix}")
                log.error(
                    "the job journal %s is damaged (%s): kept as %s, and a new one started",
                    self.path,
                    exc,
                    aside,
                )
                with contextlib.suppress(OSError, sqlite3.Error):
                    self._connect()
                    return
            self._unavailable(exc)
        except OSError as exc:
            self._unavailable(exc)

    def _unavailable(self, exc: Exception) -> None:
        self.unavailable = f"{self.path}: {exc}"
        log.error(
            "the job journal is unavailable (%s); jobs run unrecorded, and async jobs are refused",
            self.unavailable,
        )

    def _connect(self) -> None:
        assert self.path is not None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Prompts and answers of async jobs are in it: only the hub's user may read it (and its -wal, -shm).
        self.path.touch(mode=0o600, exist_ok=True)
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        try:
            db.row_factory = sqlite3.Row
            db.create_function("canonical", 1, canonical, deterministic=True)
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")
            db.execute("PRAGMA foreign_keys = ON")
            db.executescript(SCHEMA)
            add_new_columns(db)
            self.writer.max_params = db.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
            if (said := db.execute("PRAGMA quick_check").fetchone()[0]) != "ok":
                raise sqlite3.DatabaseError(f"quick_check: {said}")
        except BaseException:
            db.close()
            raise
        self._db = db
        log.info("job journal: %s", self.path)
