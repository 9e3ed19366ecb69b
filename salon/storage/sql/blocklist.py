"""SQL implementation of :class:`~salon.storage.interfaces.BlocklistStore`."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, delete
from sqlalchemy.ext.asyncio import AsyncEngine

from salon.storage.sql.dialect import driver_tuples, upsert
from salon.storage.sql.engine import reads
from salon.storage.sql.schema import blocklist

__all__ = ["SqlBlocklistStore"]

_KEY = ("host", "username", "jid")

_CHUNK = 500
"""JIDs per ``IN (...)`` list: well below every engine's bound-parameter limit."""


class SqlBlocklistStore:
    """Blocked JIDs as rows of the ``blocklist`` table."""

    def __init__(self, engine: AsyncEngine) -> None:
        """Use ``engine``; each method runs in its own transaction."""
        self._engine = engine
        self._reads = reads(engine)  # one round trip per read

    async def get(self, host: str, username: str) -> list[str]:
        """Return the blocked JIDs in code point order."""
        return await self._reads.run(_get, host, username)

    async def add(self, host: str, username: str, jids: Sequence[str]) -> None:
        """Block these JIDs; already blocked ones (and repeats) are ignored."""
        # Sorted: concurrent adds then take the unique-index locks in the same
        # order, so they wait for each other instead of deadlocking (PostgreSQL).
        unique = sorted(set(jids))
        if not unique:
            return
        async with self._engine.begin() as conn:
            for jid in unique:
                # Only key columns: ON CONFLICT DO NOTHING.
                await upsert(
                    conn, blocklist, {"host": host, "username": username, "jid": jid}, key=_KEY
                )

    async def remove(self, host: str, username: str, jids: Sequence[str]) -> None:
        """Unblock these JIDs (unknown ones are ignored); an empty ``jids`` unblocks all."""
        user = (blocklist.c.host == host, blocklist.c.username == username)
        async with self._engine.begin() as conn:
            if not jids:
                await conn.execute(delete(blocklist).where(*user))
                return
            unique = sorted(set(jids))
            for start in range(0, len(unique), _CHUNK):
                await conn.execute(
                    delete(blocklist).where(
                        *user, blocklist.c.jid.in_(unique[start : start + _CHUNK])
                    )
                )


def _get(conn: Connection, host: str, username: str) -> list[str]:
    # Plain SQL to the driver (driver_tuples): every login reads its user's list.
    rows = driver_tuples(
        conn, "SELECT jid FROM blocklist WHERE host = ? AND username = ?", (host, username)
    )
    # Sorted here, not by ORDER BY: PostgreSQL collations vary by locale.
    return sorted(row[0] for row in rows)
