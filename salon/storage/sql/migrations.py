"""Versioned schema migrations, per store.

The ``schema_version`` table holds one row per store name with the version of
that store's tables in this database. :func:`migrate` brings every store to
the version this code expects:

* no row: create the store's tables in their current shape (from
  :mod:`salon.storage.sql.schema`) and record the current version;
* an older version ``n``: run the store's upgrade steps ``n -> n+1 -> ...``
  in order, recording each;
* the current version: nothing;
* a newer version: refuse to start (:class:`MigrationError`), because this
  code would misread the data.

Everything runs in one transaction (both engines have transactional DDL)
under a lock (``BEGIN IMMEDIATE`` on SQLite, an advisory lock on
PostgreSQL), so :func:`migrate` is idempotent and safe to run on every start,
even by several servers at once.

To change a store's tables: edit :mod:`~salon.storage.sql.schema`, bump the
store's ``version`` below and append an upgrade step that turns the previous
version into the new one.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, Table, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from salon.storage.sql.engine import MIGRATION_LOCK_KEY
from salon.storage.sql.schema import (
    account_credentials,
    accounts,
    archive,
    blocklist,
    kv,
    muc_affiliations,
    muc_rooms,
    offline_messages,
    pending_subscriptions,
    pubsub_affiliations,
    pubsub_items,
    pubsub_nodes,
    pubsub_subscriptions,
    roster_items,
    roster_versions,
    schema_version,
)

__all__ = ["STORES", "MigrationError", "Step", "StoreSchema", "migrate"]

log = logging.getLogger(__name__)

Step = Callable[[AsyncConnection], Awaitable[None]]
"""An upgrade step; it runs inside the migration transaction."""


class MigrationError(RuntimeError):
    """The database cannot be brought to the schema this code expects."""


@dataclass(frozen=True, slots=True)
class StoreSchema:
    """The tables of one store and how to upgrade them."""

    name: str
    version: int
    """The current version: what the table definitions describe."""
    tables: tuple[Table, ...]
    """The store's tables, each after the tables it references."""
    upgrades: tuple[Step, ...] = ()
    """``upgrades[i]`` turns version ``i + 1`` into version ``i + 2``."""

    def __post_init__(self) -> None:
        """Check that there is exactly one step per version change."""
        if self.version < 1 or len(self.upgrades) != self.version - 1:
            raise ValueError(
                f"store {self.name!r}: version {self.version} needs "
                f"{self.version - 1} upgrade steps, got {len(self.upgrades)}"
            )


STORES: tuple[StoreSchema, ...] = (
    StoreSchema("accounts", 1, (accounts, account_credentials)),
    StoreSchema("kv", 1, (kv,)),
    StoreSchema("roster", 1, (roster_versions, roster_items, pending_subscriptions)),
    StoreSchema("offline", 1, (offline_messages,)),
    StoreSchema("blocklist", 1, (blocklist,)),
    StoreSchema("muc", 1, (muc_rooms, muc_affiliations)),
    StoreSchema(
        "pubsub", 1, (pubsub_nodes, pubsub_items, pubsub_affiliations, pubsub_subscriptions)
    ),
    StoreSchema("archive", 1, (archive,)),
)


async def migrate(engine: AsyncEngine, *, stores: Sequence[StoreSchema] = STORES) -> dict[str, int]:
    """Create or upgrade the tables of ``stores``; return their versions."""
    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            await conn.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
            )
        await conn.run_sync(_create_tables, (schema_version,))
        rows = await conn.execute(select(schema_version.c.store, schema_version.c.version))
        found: dict[str, int] = {store: version for store, version in rows}
        for store in stores:
            await _migrate_store(conn, store, found.get(store.name))
    return {store.name: store.version for store in stores}


async def _migrate_store(conn: AsyncConnection, store: StoreSchema, found: int | None) -> None:
    if found is None:
        await conn.run_sync(_create_tables, store.tables)
        await conn.execute(insert(schema_version).values(store=store.name, version=store.version))
        log.info("created store %s at version %d", store.name, store.version)
        return
    if found < 1:
        raise MigrationError(f"store {store.name!r} has invalid version {found}")
    if found > store.version:
        raise MigrationError(
            f"store {store.name!r} is at version {found} but this Salon only knows "
            f"up to {store.version}; upgrade Salon or restore a matching backup"
        )
    for version in range(found, store.version):
        await store.upgrades[version - 1](conn)
        await conn.execute(
            update(schema_version)
            .where(schema_version.c.store == store.name)
            .values(version=version + 1)
        )
        log.info("upgraded store %s to version %d", store.name, version + 1)


def _create_tables(conn: Connection, tables: Sequence[Table]) -> None:
    for table in tables:
        table.create(conn, checkfirst=True)
