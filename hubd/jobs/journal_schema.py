"""The journal's schema, one for SQLite and PostgreSQL, and the migrations that bring any journal to it at
start-up, in order, each once (`schema_version` says which have run). On PostgreSQL they run under an
advisory lock, so two hubs starting at once do not both migrate.

Version 1 is the schema of the hub before versions were kept (a SQLite file of that time has it already, or an
older form of it: the columns it lacks are added). Version 2 adds what several hubs sharing one journal need:
the owner of an unfinished async job and its lease, a cancellation asked of another hub, and the model's
canonical name, which the hub matches on (`llama3` is `llama3:latest`) and PostgreSQL cannot compute.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

from ollama_connector.hubd.jobs.journal_db import dialect
from ollama_connector.shared.modelnames import canonical

log = logging.getLogger("ollama_connector.hubd.jobs.journal")
LOCK_ID = 7_346_201_028  # the advisory lock the migrations of PostgreSQL hold

SCHEMA_V1 = """
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

SCHEMA_V2 = """
ALTER TABLE jobs ADD COLUMN model_key TEXT;
ALTER TABLE jobs ADD COLUMN owner TEXT;  -- the hub running an unfinished async job
ALTER TABLE jobs ADD COLUMN lease_until REAL;  -- until when it holds it (the database's clock)
ALTER TABLE jobs ADD COLUMN cancel_requested REAL;  -- DELETE asked of another hub: when
CREATE INDEX IF NOT EXISTS jobs_unfinished ON jobs (status, lease_until)
    WHERE status IN ('queued', 'running');
CREATE INDEX IF NOT EXISTS jobs_by_model ON jobs (model_key);
"""

_PG_TYPES = {"REAL": "DOUBLE PRECISION", "BLOB": "BYTEA", "INTEGER": "BIGINT"}


def statements(script: str, db: object) -> list[str]:
    """The script's statements, in the database's own words."""
    if dialect(db) == "postgres":
        script = re.sub(r"\b(REAL|BLOB|INTEGER)\b", lambda m: _PG_TYPES[m.group(1)], script)
        script = script.replace(" WITHOUT ROWID", "")
    lines = [line.split("--")[0].rstrip() for line in script.splitlines()]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


def _v1(db: Any) -> None:
    for statement in statements(SCHEMA_V1, db):
        db.execute(statement)
    if dialect(db) == "sqlite":
        add_old_columns(db)


def _v2(db: Any) -> None:
    for statement in statements(SCHEMA_V2, db):
        db.execute(statement)
    for (model,) in db.execute("SELECT DISTINCT model FROM jobs WHERE model_key IS NULL").fetchall():
        db.execute("UPDATE jobs SET model_key = ? WHERE model = ?", (canonical(model), model))


MIGRATIONS: list[tuple[int, Callable[[Any], None]]] = [(1, _v1), (2, _v2)]
VERSION = MIGRATIONS[-1][0]


def migrate(db: Any) -> None:
    """Bring the journal to VERSION, in one transaction."""
    postgres = dialect(db) == "postgres"
    db.execute("BEGIN" if postgres else "BEGIN IMMEDIATE")
    try:
        if postgres:
            db.execute("SELECT pg_advisory_xact_lock(?)", (LOCK_ID,))
        db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        at = db.execute("SELECT max(version) FROM schema_version").fetchone()[0] or 0
        for version, step in MIGRATIONS:
            if version > at:
                step(db)
                db.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
        if 0 < at < VERSION:  # a new journal is simply made; an older one is said to be brought up to date
            log.info("job journal: migrated from version %d to %d", at, VERSION)
        if at > VERSION:
            log.warning("the job journal is of version %d, newer than this hub's %d", at, VERSION)
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def add_old_columns(db: Any) -> None:
    """A SQLite journal written before versions were kept may lack columns of version 1: add them."""
    have = {row["name"] for row in db.execute("PRAGMA table_info(jobs)")}
    declared = {
        line.split()[0]: line.split()[1].rstrip(",")
        for line in SCHEMA_V1.split("CREATE TABLE IF NOT EXISTS jobs (")[1].split(");")[0].splitlines()
        if line.strip() and not line.strip().startswith("--")
    }
    for column, kind in declared.items():
        if column not in have:
            db.execute(f"ALTER TABLE jobs ADD COLUMN {column} {kind}")
