"""The few statements that differ between SQLite and PostgreSQL.

Keep dialect branches here, and only here, so that the stores stay one
implementation for both engines.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

__all__ = ["upsert"]


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
    name = conn.dialect.name
    if name == "postgresql":
        stmt: Any = postgresql.insert(table)
    elif name == "sqlite":
        stmt = sqlite.insert(table)
    else:  # pragma: no cover - open_engine only creates the two above
        raise NotImplementedError(f"upsert is not implemented for {name}")
    stmt = stmt.values(dict(values))
    updates = {col: stmt.excluded[col] for col in values if col not in key}
    if updates:
        stmt = stmt.on_conflict_do_update(index_elements=list(key), set_=updates)
    else:
        stmt = stmt.on_conflict_do_nothing(index_elements=list(key))
    await conn.execute(stmt)
