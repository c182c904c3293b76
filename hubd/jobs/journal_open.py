"""Opening the journal, on its thread: a SQLite file (a damaged one kept aside, and a fresh one started), or
PostgreSQL; either migrated to the hub's schema (hubd.jobs.journal_schema)."""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import time
from pathlib import Path

from ollama_connector.hubd.jobs.journal_db import Postgres
from ollama_connector.hubd.jobs.journal_schema import migrate
from ollama_connector.shared.modelnames import canonical

log = logging.getLogger("ollama_connector.hubd.jobs.journal")


def open_sqlite(path: Path) -> sqlite3.Connection:
    """The journal's file; OSError or sqlite3.Error when it cannot be opened, even afresh."""
    try:
        return _connect(path)
    except sqlite3.DatabaseError as exc:  # damaged, or not a database: kept aside, and a fresh one made
        if isinstance(exc, sqlite3.OperationalError) or not path.exists():
            raise
        aside = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%dT%H%M%S')}")
        for suffix in ("", "-wal", "-shm"):
            if (part := Path(f"{path}{suffix}")).exists():
                part.rename(f"{aside}{suffix}")
        log.error("the job journal %s is damaged (%s): kept as %s, and a new one started", path, exc, aside)
        with contextlib.suppress(OSError, sqlite3.Error):
            return _connect(path)
        raise


def _connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Prompts and answers of async jobs are in it: only the hub's user may read it (and its -wal, -shm).
    path.touch(mode=0o600, exist_ok=True)
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    try:
        db.row_factory = sqlite3.Row
        db.create_function("canonical", 1, canonical, deterministic=True)
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")
        db.execute("PRAGMA foreign_keys = ON")
        migrate(db)
        if (said := db.execute("PRAGMA quick_check").fetchone()[0]) != "ok":
            raise sqlite3.DatabaseError(f"quick_check: {said}")
    except BaseException:
        db.close()
        raise
    log.info("job journal: %s", path)
    return db


def open_postgres(url: str) -> Postgres:
    """The journal's database, reached and migrated; psycopg's errors when it cannot be."""
    db = Postgres(url)
    try:
        db.open()
        migrate(db)
    except BaseException:
        db.close()
        raise
    return db
