"""Where the journal lives: an embedded SQLite file (the default), or PostgreSQL (JOURNAL_URL), which every
hub of a cluster shares.

The journal's code speaks to both through the surface sqlite3 gives: `db.execute(sql, params)`, rows read by
index or by name. Its SQL is written once, in what both dialects accept, with `?` placeholders (turned into
psycopg's here); the few things that differ (column types, the clock) are said here and in
hubd.jobs.journal_schema. PostgreSQL is reached with psycopg 3, on the journal's own thread as SQLite is, so
the event loop never waits on the database; a connection that breaks is opened again for the next batch (the
failed batch waits and is tried again).
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator, Sequence
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg

CONNECT_SECONDS = 5.0
# What a failed read or write of either database raises: said as the journal being unavailable.
DB_ERRORS: tuple[type[BaseException], ...] = (sqlite3.Error, psycopg.Error)


def redacted(url: str) -> str:
    """A JOURNAL_URL as logs and pages may show it: without its password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def passing(exc: BaseException) -> bool:
    """A fault of the disk, the file, the network or the server, not of the rows: worth trying them again."""
    if isinstance(exc, sqlite3.OperationalError) and not isinstance(exc, sqlite3.IntegrityError):
        return True
    return isinstance(
        exc,
        psycopg.OperationalError
        | psycopg.InterfaceError
        | psycopg.errors.InsufficientResources
        | psycopg.errors.AdminShutdown,
    )


class Row(Sequence):
    """A row by index or by column name, as sqlite3.Row is."""

    __slots__ = ("_index", "_values")

    def __init__(self, index: dict[str, int], values: Sequence[Any]) -> None:
        self._index, self._values = index, values

    def __getitem__(self, key: Any) -> Any:  # type: ignore[override]
        return self._values[self._index[key] if isinstance(key, str) else key]

    def __len__(self) -> int:
        return len(self._values)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)

    def keys(self) -> list[str]:
        return list(self._index)


def _rows(cursor: psycopg.Cursor) -> Any:
    index = {column.name: n for n, column in enumerate(cursor.description or ())}
    return lambda values: Row(index, values)


@lru_cache(maxsize=512)
def _dialect(sql: str) -> str:
    return sql.replace("?", "%s")


class Postgres:
    """A PostgreSQL database with sqlite3's surface, for the journal's thread: one connection, the only one
    the hub needs (every read and write of the journal runs on that thread, one at a time), opened again at
    the next statement after it breaks. So a server that is away fails each statement at once (refused), and
    the first batch after its return lands; a pool's reconnection would back off, and each call wait out its
    timeout, for as long."""

    dialect = "postgres"

    def __init__(self, url: str) -> None:
        self.url = url
        self._conn: psycopg.Connection | None = None

    def open(self) -> None:
        self._connection()

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(
                self.url, autocommit=True, row_factory=_rows, connect_timeout=int(CONNECT_SECONDS)
            )
        return self._conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> psycopg.Cursor:
        conn = self._connection()
        try:
            return conn.execute(_dialect(sql), params)  # type: ignore[arg-type]
        except (psycopg.OperationalError, psycopg.InterfaceError):
            self.close()  # broken: the next statement opens another
            raise

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
            self._conn = None


def dialect(db: object) -> str:
    return getattr(db, "dialect", "sqlite")


def now_sql(db: object) -> str:
    """The database's clock in unix seconds: leases are judged by one clock, whichever hub reads them."""
    if dialect(db) == "postgres":
        return "extract(epoch from clock_timestamp())::double precision"
    return "((julianday('now') - 2440587.5) * 86400.0)"
