"""SQL implementation of :class:`~salon.storage.interfaces.OfflineStore`."""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import Connection, delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from salon.storage.interfaces import OfflineMessage
from salon.storage.sql.dialect import lock_user
from salon.storage.sql.engine import reader, reads
from salon.storage.sql.schema import offline_messages

__all__ = ["SqlOfflineStore"]

_LOCK_CLASS = 0x5A1_00F1
"""Advisory lock class (PostgreSQL) for one user's offline queue."""

_CHUNK = 500
"""Ids per ``IN (...)`` list: well below every engine's bound-parameter limit."""


class SqlOfflineStore:
    """Offline messages as rows of ``offline_messages``, in id (arrival) order."""

    def __init__(self, engine: AsyncEngine) -> None:
        """Use ``engine``; each method runs in its own transaction."""
        self._engine = engine
        self._reader = reader(engine)  # transactions that only read
        self._reads = reads(engine)  # one round trip per read (the login's offline read)

    async def push(self, host: str, username: str, stanza: str, *, limit: int) -> bool:
        """Store the message unless the user has ``limit`` already; commit before returning.

        The per-user lock makes the count and the insert one atomic step, so
        concurrent pushes never store more than ``limit`` messages.
        """
        if limit <= 0:
            return False
        async with self._engine.begin() as conn:
            await lock_user(conn, _LOCK_CLASS, host, username)
            stored = await conn.scalar(
                select(func.count())
                .select_from(offline_messages)
                .where(offline_messages.c.host == host, offline_messages.c.username == username)
            )
            if int(stored or 0) >= limit:
                return False
            await conn.execute(
                insert(offline_messages).values(
                    host=host, username=username, stanza=stanza, stored_at=datetime.now(UTC)
                )
            )
        # Leaving the block committed the transaction.
        return True

    async def list(self, host: str, username: str) -> builtins.list[OfflineMessage]:
        """Return the user's messages, oldest first."""
        return await self._reads.run(_list, host, username)

    async def delete(self, host: str, username: str, ids: Sequence[int]) -> None:
        """Delete the user's messages with these ids; unknown ids (or other users') are ignored."""
        unique = sorted(set(ids))
        if not unique:
            return
        async with self._engine.begin() as conn:
            for start in range(0, len(unique), _CHUNK):
                await conn.execute(
                    delete(offline_messages).where(
                        offline_messages.c.host == host,
                        offline_messages.c.username == username,
                        offline_messages.c.id.in_(unique[start : start + _CHUNK]),
                    )
                )

    async def holders(self, host: str, limit: int) -> builtins.list[str] | None:
        """The usernames with stored messages, or None when there are more than ``limit``."""
        async with self._reader.begin() as conn:
            names = await conn.scalars(
                select(offline_messages.c.username)
                .where(offline_messages.c.host == host)
                .distinct()
                .limit(max(limit, 0) + 1)
            )
            found = list(names)
        return None if len(found) > limit else sorted(found)

    async def count(self, host: str, username: str) -> int:
        """Return the number of messages held for the user."""
        async with self._reader.begin() as conn:
            total = await conn.scalar(
                select(func.count())
                .select_from(offline_messages)
                .where(offline_messages.c.host == host, offline_messages.c.username == username)
            )
            return int(total or 0)


def _list(conn: Connection, host: str, username: str) -> builtins.list[OfflineMessage]:
    result = conn.execute(
        select(offline_messages.c.id, offline_messages.c.stanza, offline_messages.c.stored_at)
        .where(offline_messages.c.host == host, offline_messages.c.username == username)
        .order_by(offline_messages.c.id)
    )
    return [
        OfflineMessage(id=int(row.id), stanza=row.stanza, stored_at=row.stored_at) for row in result
    ]
