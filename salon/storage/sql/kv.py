"""SQL implementation of :class:`~salon.storage.interfaces.KeyValueStore`."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from sqlalchemy import Connection, delete
from sqlalchemy.ext.asyncio import AsyncEngine

from salon.storage.sql.dialect import driver_tuples, upsert, upsert_many
from salon.storage.sql.engine import reads
from salon.storage.sql.schema import kv

__all__ = ["SqlKeyValueStore"]

_KEY = ("host", "username", "store")


class SqlKeyValueStore:
    """One named store's documents, as rows of the shared ``kv`` table."""

    def __init__(self, engine: AsyncEngine, store: str) -> None:
        """Serve the documents of ``store`` (e.g. ``"vcard"``) from ``engine``."""
        if not store or len(store) > 255:
            raise ValueError(f"invalid key-value store name {store!r}")
        self._engine = engine
        self._reads = reads(engine)  # one round trip per read
        self.store = store

    async def get(self, host: str, username: str) -> str | None:
        """Return the document, or ``None``."""
        return await self._reads.run(_get, host, username, self.store)

    async def set(self, host: str, username: str, value: str | None) -> None:
        """Insert or replace the document; ``None`` deletes it."""
        async with self._engine.begin() as conn:
            if value is None:
                await conn.execute(
                    delete(kv).where(
                        kv.c.host == host, kv.c.username == username, kv.c.store == self.store
                    )
                )
                return
            await upsert(
                conn,
                kv,
                {
                    "host": host,
                    "username": username,
                    "store": self.store,
                    "value": value,
                    "updated_at": datetime.now(UTC),
                },
                key=_KEY,
            )

    async def set_many(self, host: str, values: Mapping[str, str]) -> None:
        """Insert or replace the documents of many users (username -> document) in one
        transaction: one commit (one fsync with SQLite) for the lot."""
        if not values:
            return
        now = datetime.now(UTC)
        rows = [
            {"host": host, "username": u, "store": self.store, "value": v, "updated_at": now}
            for u, v in values.items()
        ]
        async with self._engine.begin() as conn:
            await upsert_many(conn, kv, rows, key=_KEY)


def _get(conn: Connection, host: str, username: str, store: str) -> str | None:
    # Plain SQL to the driver (driver_tuples): logins read documents (a vCard's photo hash).
    rows = driver_tuples(
        conn,
        "SELECT value FROM kv WHERE host = ? AND username = ? AND store = ?",
        (host, username, store),
    )
    return str(rows[0][0]) if rows else None
