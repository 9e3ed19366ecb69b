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
fail on a lock upgrade. A transaction that only reads goes through :func:`reader`: on SQLite
it begins with a plain (deferred) ``BEGIN``, which takes no write lock, so in WAL mode it
runs beside a writer instead of queueing behind every other transaction.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
import time
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import AsyncAdaptedQueuePool, ConnectionPoolEntry
from sqlalchemy.schema import CreateSchema

__all__ = [
    "MIGRATION_LOCK_KEY",
    "Reads",
    "dispose",
    "open_engine",
    "reader",
    "reads",
    "to_async_url",
    "writes",
]

_T = TypeVar("_T")

BUSY_TIMEOUT_MS = 10_000
"""How long a SQLite writer waits for another writer before failing."""

MIGRATION_LOCK_KEY = 0x5A10_0DB
"""PostgreSQL advisory lock key that serialises schema changes between servers."""

READ_POOL_SIZE = 4
"""Connections of a SQLite file's read engine (see :func:`reader`)."""

READ_THREADS = 1
"""Threads that run a SQLite file's synchronous reads (see :class:`Reads`). One: SQLite
answers a login's reads in well under a millisecond, and each extra thread is one more
contender for the GIL. With four, the event loop waited for the GIL behind them in a login
storm: a watchdog sampling the loop thread during its long turns found it outside any
Python frame, and the chat p99 during the storm fell from about 200 ms to 100 ms with one
thread, at the same number of logins per second."""

READ_ONLY = "salon_read_only"
"""Execution option marking a transaction that only reads (see :func:`reader`)."""

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


def _sqlite_engine(url: URL, *, read_only: bool = False) -> AsyncEngine:
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
        if read_only:
            # A fixed set of connections: an overflow connection would be opened and closed
            # again for every burst of reads; waiting reads queue in order instead.
            kwargs.update(pool_size=READ_POOL_SIZE, max_overflow=0)
    engine = create_async_engine(url, **kwargs)
    # WAL is a property of the file: switched once, by the first connection of the writing
    # engine. Doing it for every new connection would take a lock each time (and retry, with a
    # pause on the event loop, while a writer holds it).
    wal_pending = not is_memory and not read_only

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
            nonlocal wal_pending
            if wal_pending:
                _enable_wal(cursor)
                wal_pending = False
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA foreign_keys=ON")
            if read_only:
                cursor.execute("PRAGMA query_only=ON")
        finally:
            cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # IMMEDIATE takes the write lock up front (waiting up to the busy
        # timeout), so no transaction fails later when it starts writing. A
        # read-only transaction takes none: in WAL mode it reads a snapshot
        # while a writer works.
        if read_only or conn.get_execution_options().get(READ_ONLY):
            conn.exec_driver_sql("BEGIN")
        else:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def reader(engine: AsyncEngine) -> AsyncEngine:
    """The engine for transactions that only read.

    On a SQLite file it is a second engine on the same file with its own pool, whose
    transactions begin without the write lock (``BEGIN``) and whose connections refuse writes
    (``PRAGMA query_only``): in WAL mode its reads run beside the writer, and a write never
    waits for a pool connection behind a crowd of reads (a login storm's). On an in-memory
    SQLite database (one connection holds it) it is the same engine with the read-only
    option; on PostgreSQL the engine itself. :func:`dispose` closes both.
    """
    if engine.dialect.name != "sqlite":
        return engine
    known = _READERS.get(engine)
    if known is not None:
        return known
    if engine.url.database in _MEMORY:
        made = engine.execution_options(**{READ_ONLY: True})
    else:
        made = _sqlite_engine(engine.url, read_only=True)
    _READERS[engine] = made
    return made


class Reads:
    """Runs a read-only function ``fn(conn, *args)`` on a synchronous connection, in one
    transaction. See :func:`reads`."""

    def __init__(self, engine: AsyncEngine, *, write: bool = False) -> None:
        self._engine = engine
        self._sync: Engine | None = None
        self._executor: ThreadPoolExecutor | None = None
        if engine.dialect.name == "sqlite" and engine.url.database not in _MEMORY:
            threads = 1 if write else READ_THREADS
            self._sync = _sqlite_sync_engine(engine.url, threads, write=write)
            name = "salon-write" if write else "salon-read"
            self._executor = ThreadPoolExecutor(threads, thread_name_prefix=name)
        else:
            self._async = engine if write else reader(engine)

    async def run(self, fn: Callable[..., _T], *args: Any) -> _T:
        if self._executor is None:
            async with self._async.begin() as conn:
                return await conn.run_sync(fn, *args)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._call, fn, args)

    def _call(self, fn: Callable[..., _T], args: tuple[Any, ...]) -> _T:
        assert self._sync is not None
        with self._sync.begin() as conn:
            return fn(conn, *args)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        if self._sync is not None:
            self._sync.dispose()


def reads(engine: AsyncEngine) -> Reads:
    """The read runner of ``engine``: the reads a login makes, each in one round trip.

    Through the async driver (aiosqlite) a transaction is about eight hops between the event
    loop and the driver's thread (begin, cursor, execute, fetch, close, commit), each waiting
    for a turn of the loop; while the loop is busy (a login storm) a read then takes many
    turns, and the reads queue for connections. On a SQLite file the runner makes the whole
    transaction one call in a small thread pool, on a synchronous read-only connection. On
    PostgreSQL (and in-memory SQLite) it runs ``fn`` through the async connection
    (``run_sync``). :func:`dispose` closes it.
    """
    known = _READS.get(engine)
    if known is None:
        known = _READS[engine] = Reads(engine)
    return known


def writes(engine: AsyncEngine) -> Reads:
    """Like :func:`reads`, for write transactions that must not cost a hop per statement
    (the archive's group commit): on a SQLite file one writing thread with its own
    connection, ``BEGIN IMMEDIATE`` as on the async engine; elsewhere the engine itself."""
    known = _WRITES.get(engine)
    if known is None:
        known = _WRITES[engine] = Reads(engine, write=True)
    return known


async def dispose(engine: AsyncEngine) -> None:
    """Close the pooled connections of ``engine`` and of its :func:`reader` and :func:`reads`."""
    made = _READERS.pop(engine, None)
    if made is not None and made is not engine:
        await made.dispose()
    for runners in (_READS, _WRITES):
        runner = runners.pop(engine, None)
        if runner is not None:
            await asyncio.get_running_loop().run_in_executor(None, runner.close)
    await engine.dispose()


_READERS: weakref.WeakKeyDictionary[AsyncEngine, AsyncEngine] = weakref.WeakKeyDictionary()
_READS: weakref.WeakKeyDictionary[AsyncEngine, Reads] = weakref.WeakKeyDictionary()
_WRITES: weakref.WeakKeyDictionary[AsyncEngine, Reads] = weakref.WeakKeyDictionary()


def _sqlite_sync_engine(url: URL, connections: int, *, write: bool) -> Engine:
    """A synchronous engine (the standard sqlite3 module) on the file: read-only, or a writer
    with the async engine's settings."""
    engine = create_engine(
        url.set(drivername="sqlite"),
        pool_size=connections,
        max_overflow=0,
        connect_args={"check_same_thread": False},
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        dbapi_connection.isolation_level = None  # transactions begin in _on_begin
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA foreign_keys=ON")
            if not write:
                cursor.execute("PRAGMA query_only=ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # A reader takes a snapshot and no write lock; a writer takes the lock up front.
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


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
