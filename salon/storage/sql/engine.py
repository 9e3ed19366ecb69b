"""Engine creation: storage URLs to tuned SQLAlchemy async engines.

Accepted URLs:

* ``sqlite:///data/salon.db`` - a file, relative to ``base_dir``;
  ``sqlite:////var/lib/salon/salon.db`` - an absolute path;
* ``sqlite:///:memory:`` (or ``sqlite://``) - a private in-memory database;
* ``postgresql://user[:password]@host[:port]/dbname[?schema=name]`` -
  PostgreSQL through asyncpg. The optional ``schema`` parameter puts all of
  Salon's tables in that schema (created if missing), which lets several
  servers or test runs share one database. Other query parameters are passed
  to asyncpg.

SQLite is set up for durability (accepted messages must never be lost):
WAL journal, ``synchronous=FULL``, foreign keys on, a busy timeout, and real
transactions (``BEGIN IMMEDIATE``) instead of the sqlite3 module's implicit
ones, so that DDL is transactional and a read-then-write transaction cannot
fail on a lock upgrade.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import AsyncAdaptedQueuePool, ConnectionPoolEntry
from sqlalchemy.schema import CreateSchema

__all__ = ["MIGRATION_LOCK_KEY", "READ_ONLY", "open_engine", "reading", "to_async_url"]

BUSY_TIMEOUT_MS = 10_000
"""How long a SQLite writer waits for another writer before failing."""

MIGRATION_LOCK_KEY = 0x5A10_0DB
"""PostgreSQL advisory lock key that serialises schema changes between servers."""

_SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}\Z")
_MEMORY = {None, "", ":memory:"}


def to_async_url(url: str, *, base_dir: Path | None = None) -> tuple[URL, str | None]:
    """Translate a storage URL to an async driver URL.

    Returns the URL for :func:`create_async_engine` and the PostgreSQL schema
    named by the ``schema`` query parameter, if any. Relative SQLite paths are
    resolved against ``base_dir`` (default: the working directory).

    Raises :class:`ValueError` for malformed URLs and unsupported engines.
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ValueError(f"invalid storage URL {url!r}") from exc
    backend = parsed.get_backend_name()
    # A bare scheme (no "+driver") or the async driver we use.
    driver = parsed.drivername.partition("+")[2]
    if backend == "sqlite" and driver in ("", "aiosqlite"):
        if parsed.query:
            raise ValueError(f"SQLite storage URL takes no parameters: {url!r}")
        database = parsed.database
        if database not in _MEMORY:
            assert database is not None
            path = Path(database).expanduser()
            if not path.is_absolute():
                path = (base_dir if base_dir is not None else Path.cwd()) / path
            database = str(path)
        else:
            database = ":memory:"
        return parsed.set(drivername="sqlite+aiosqlite", database=database), None
    if backend == "postgresql" and driver in ("", "asyncpg"):
        schema = parsed.query.get("schema")
        if isinstance(schema, tuple):
            raise ValueError(f"storage URL names more than one schema: {url!r}")
        if schema is not None and not _SCHEMA_NAME.match(schema):
            raise ValueError(f"invalid PostgreSQL schema name {schema!r}")
        converted = parsed.set(drivername="postgresql+asyncpg").difference_update_query(["schema"])
        return converted, schema
    raise ValueError(
        f"unsupported storage URL {parsed.render_as_string(hide_password=True)!r}: "
        "use sqlite:///path or postgresql://user@host/db"
    )


async def open_engine(url: str, *, base_dir: Path | None = None) -> AsyncEngine:
    """Create an engine for a storage URL, ready for migrations.

    For SQLite files the parent directory is created if needed. For
    PostgreSQL with a ``schema`` parameter the schema is created if needed and
    every connection uses it as its ``search_path``.
    """
    async_url, schema = to_async_url(url, base_dir=base_dir)
    if async_url.get_backend_name() == "sqlite":
        return _sqlite_engine(async_url)
    engine = _postgres_engine(async_url, schema)
    if schema is not None:
        try:
            async with engine.begin() as conn:
                # The lock makes concurrent first starts safe: CREATE SCHEMA
                # IF NOT EXISTS alone can still race on the catalog.
                await conn.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
                )
                await conn.execute(CreateSchema(schema, if_not_exists=True))
        except BaseException:
            await engine.dispose()
            raise
    return engine


def _sqlite_engine(url: URL) -> AsyncEngine:
    database = url.database
    is_memory = database == ":memory:"
    kwargs: dict[str, Any] = {}
    if is_memory:
        # One connection holds the database; a queue of size one (instead of
        # the default StaticPool) makes concurrent tasks wait their turn
        # rather than share one transaction.
        kwargs.update(poolclass=AsyncAdaptedQueuePool, pool_size=1, max_overflow=0)
    else:
        assert database is not None
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(url, **kwargs)

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        # Take transaction control away from the sqlite3 module (it would not
        # BEGIN before DDL or SELECT); _on_begin below emits BEGIN instead.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            # The busy timeout first: switching a new file to WAL needs the lock too, and
            # several processes may open the same fresh database at once.
            cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            if not is_memory:
                _enable_wal(cursor)
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA foreign_keys=ON")
        finally:
            cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # IMMEDIATE takes the write lock up front (waiting up to the busy
        # timeout), so no transaction fails later when it starts writing. A
        # read-only transaction (see reading()) begins deferred: in WAL mode it
        # reads a snapshot and neither takes nor waits for the write lock.
        if conn.get_execution_options().get(READ_ONLY):
            conn.exec_driver_sql("BEGIN")
        else:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


READ_ONLY = "salon_read_only"
"""Execution option of a connection whose transactions only read (see :func:`reading`)."""


@contextlib.asynccontextmanager
async def reading(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A transaction that only reads. On SQLite it begins deferred instead of
    ``BEGIN IMMEDIATE``: with WAL it never waits for (or holds up) a writer, so
    thousands of reads at once (contacts coming online, a burst of publishes)
    cannot starve past the busy timeout. Writing in it is an error on SQLite's
    side only if another writer got there first; do not."""
    async with engine.connect() as conn:
        await conn.execution_options(**{READ_ONLY: True})
        async with conn.begin():
            yield conn


def _enable_wal(cursor: Any) -> None:
    """Switch to WAL. SQLite may answer "database is locked" at once, without waiting for the
    busy timeout, while another connection switches the same new file; try again briefly."""
    for attempt in range(50):
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == 49:
                raise
            time.sleep(0.1)


def _postgres_engine(url: URL, schema: str | None) -> AsyncEngine:
    connect_args: dict[str, Any] = {}
    if schema is not None:
        connect_args["server_settings"] = {"search_path": schema}
    return create_async_engine(url, pool_pre_ping=True, connect_args=connect_args)
