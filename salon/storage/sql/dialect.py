"""The few statements that differ between SQLite and PostgreSQL.

Keep dialect branches here, and only here, so that the stores stay one
implementation for both engines.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Table, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

__all__ = ["increment", "lock_user", "upsert", "upsert_many"]


async def upsert(
    conn: AsyncConnection,
    table: Table,
    values: Mapping[str, Any],
    *,
    key: Sequence[str],
) -> None:
    """Insert a row, or update its non-key columns if ``key`` already exists.

    ``key`` names the columns of a primary key or unique constraint. Uses
    ``INSERT ... ON CONFLICT (key) DO UPDATE``, which both engines support
    with the same semantics and which is atomic under concurrency.
    """
    stmt = _insert(conn, table).values(dict(values))
    updates = {col: stmt.excluded[col] for col in values if col not in key}
    if updates:
        stmt = stmt.on_conflict_do_update(index_elements=list(key), set_=updates)
    else:
        stmt = stmt.on_conflict_do_nothing(index_elements=list(key))
    await conn.execute(stmt)


async def upsert_many(
    conn: AsyncConnection,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    *,
    key: Sequence[str],
) -> None:
    """:func:`upsert` for many rows with the same columns, in one statement (executemany)."""
    if not rows:
        return
    stmt = _insert(conn, table)
    updates = {col: stmt.excluded[col] for col in rows[0] if col not in key}
    stmt = stmt.on_conflict_do_update(index_elements=list(key), set_=updates)
    await conn.execute(stmt, [dict(row) for row in rows])


async def increment(
    conn: AsyncConnection, table: Table, key: Mapping[str, Any], column: str
) -> int:
    """Add one to ``column`` of the row with primary key ``key`` and return the new value.

    A missing row is created with ``column`` at 1. One statement,
    ``INSERT ... ON CONFLICT DO UPDATE SET column = column + 1 RETURNING``,
    so the row cannot vanish between a check and the update, and concurrent
    callers (waiting on the row lock in PostgreSQL) get distinct values.
    """
    col = table.c[column]
    stmt = (
        _insert(conn, table)
        .values({**key, column: 1})
        .on_conflict_do_update(index_elements=list(key), set_={column: col + 1})
        .returning(col)
    )
    value = await conn.scalar(stmt)
    assert value is not None
    return int(value)


async def lock_user(conn: AsyncConnection, lock_class: int, host: str, username: str) -> None:
    """Serialise transactions on one user's rows of one store until commit.

    PostgreSQL: a transaction-level advisory lock keyed by ``lock_class`` (a
    per-store 32-bit constant) and a hash of the user, released at commit or
    rollback. A hash collision only makes two users wait for each other. The
    two-key form cannot collide with single-key locks such as the migration
    lock. SQLite: nothing to do, ``BEGIN IMMEDIATE`` already holds the
    database write lock for the whole transaction.
    """
    name = conn.dialect.name
    if name == "postgresql":
        await conn.execute(
            text(
                "SELECT pg_advisory_xact_lock(CAST(:lock_class AS integer), "
                "hashtext(CAST(:host AS text) || '@' || CAST(:username AS text)))"
            ),
            {"lock_class": lock_class, "host": host, "username": username},
        )
    elif name != "sqlite":  # pragma: no cover - open_engine only creates the two above
        raise NotImplementedError(f"lock_user is not implemented for {name}")


def _insert(conn: AsyncConnection, table: Table) -> Any:
    """The dialect's ``INSERT`` construct, which has ``on_conflict_*``."""
    name = conn.dialect.name
    if name == "postgresql":
        return postgresql.insert(table)
    if name == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"not implemented for {name}")  # pragma: no cover
