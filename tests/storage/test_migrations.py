"""Schema versioning and durability, on every backend."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from salon.storage.sql.engine import open_engine
from salon.storage.sql.migrations import STORES, MigrationError, StoreSchema, migrate
from salon.storage.sql.schema import schema_version
from tests.storage.conftest import Backend
from tests.storage.test_accounts_contract import cred

HOST = "example.org"
EXPECTED_VERSIONS = {
    "accounts": 1,
    "kv": 1,
    "roster": 1,
    "offline": 1,
    "blocklist": 1,
    "muc": 1,
    "pubsub": 1,
    "archive": 1,
}


async def _versions(backend: Backend) -> dict[str, int]:
    storage = await backend.open()
    try:
        async with storage.engine.connect() as conn:
            rows = await conn.execute(select(schema_version.c.store, schema_version.c.version))
            return {store: version for store, version in rows}
    finally:
        await storage.close()


async def test_fresh_database_records_every_store_version(backend: Backend) -> None:
    assert await _versions(backend) == EXPECTED_VERSIONS
    assert {store.name: store.version for store in STORES} == EXPECTED_VERSIONS


async def test_migrate_is_idempotent_and_keeps_data(backend: Backend) -> None:
    storage = await backend.open()
    try:
        await storage.accounts.create(HOST, "juliet", [cred()])
        await storage.keyvalue("vcard").set(HOST, "juliet", "<vCard/>")

        assert await migrate(storage.engine) == EXPECTED_VERSIONS
        assert await migrate(storage.engine) == EXPECTED_VERSIONS

        account = await storage.accounts.get(HOST, "juliet")
        assert account is not None
        assert account.credentials == {"SHA-256": cred()}
        assert await storage.keyvalue("vcard").get(HOST, "juliet") == "<vCard/>"
    finally:
        await storage.close()
    assert await _versions(backend) == EXPECTED_VERSIONS


async def test_reopening_keeps_committed_data(backend: Backend) -> None:
    first = await backend.open()
    try:
        await first.accounts.create(HOST, "juliet", [cred("SHA-1", 1), cred("SHA-256", 2)])
        await first.keyvalue("private").set(HOST, "juliet", "<storage/>")
        created = await first.accounts.get(HOST, "juliet")
    finally:
        await first.close()

    second = await backend.open()
    try:
        assert await second.accounts.get(HOST, "juliet") == created
        assert await second.keyvalue("private").get(HOST, "juliet") == "<storage/>"
        assert await second.accounts.list_usernames(HOST) == ["juliet"]
    finally:
        await second.close()


async def test_concurrent_first_starts_migrate_once(backend: Backend) -> None:
    engines = [await open_engine(backend.url, base_dir=backend.base_dir) for _ in range(3)]
    try:
        results = await asyncio.gather(*(migrate(engine) for engine in engines))
    finally:
        for engine in engines:
            await engine.dispose()
    assert results == [EXPECTED_VERSIONS] * 3
    assert await _versions(backend) == EXPECTED_VERSIONS


async def test_database_from_a_newer_salon_is_refused(backend: Backend) -> None:
    storage = await backend.open()
    try:
        async with storage.engine.begin() as conn:
            await conn.execute(
                update(schema_version).where(schema_version.c.store == "kv").values(version=99)
            )
    finally:
        await storage.close()

    with pytest.raises(MigrationError, match="version 99"):
        await backend.open()


async def test_upgrade_steps_run_in_order_exactly_once(backend: Backend) -> None:
    """A store at version 1 is upgraded step by step, and only once."""
    widgets = Table(
        "widgets_test",
        MetaData(),
        Column("id", Integer, primary_key=True),
        Column("name", String(50), nullable=False),
        Column("colour", String(50), nullable=True),
    )
    calls: list[int] = []

    async def add_colour(conn: AsyncConnection) -> None:
        calls.append(2)
        await conn.execute(text("ALTER TABLE widgets_test ADD COLUMN colour VARCHAR(50)"))

    async def paint_everything(conn: AsyncConnection) -> None:
        calls.append(3)
        await conn.execute(widgets.update().values(colour="red"))

    v1_widgets = Table(
        "widgets_test",
        MetaData(),
        Column("id", Integer, primary_key=True),
        Column("name", String(50), nullable=False),
    )
    v1 = StoreSchema("widgets", 1, (v1_widgets,))
    v3 = StoreSchema("widgets", 3, (widgets,), (add_colour, paint_everything))

    engine = await open_engine(backend.url, base_dir=backend.base_dir)
    try:
        assert await migrate(engine, stores=[v1]) == {"widgets": 1}
        async with engine.begin() as conn:
            await conn.execute(insert(v1_widgets).values(id=1, name="gear"))

        assert await migrate(engine, stores=[v3]) == {"widgets": 3}
        assert await migrate(engine, stores=[v3]) == {"widgets": 3}

        assert calls == [2, 3]
        async with engine.connect() as conn:
            rows = [tuple(row) for row in await conn.execute(select(widgets))]
            version = await conn.scalar(
                select(schema_version.c.version).where(schema_version.c.store == "widgets")
            )
        assert rows == [(1, "gear", "red")]
        assert version == 3
    finally:
        await engine.dispose()


async def test_failed_upgrade_step_changes_nothing(backend: Backend) -> None:
    """The whole migration is one transaction: a failing step rolls back DDL too."""
    table = Table("gadgets_test", MetaData(), Column("id", Integer, primary_key=True))

    async def add_then_fail(conn: AsyncConnection) -> None:
        await conn.execute(text("ALTER TABLE gadgets_test ADD COLUMN size INTEGER"))
        raise RuntimeError("step failed")

    engine = await open_engine(backend.url, base_dir=backend.base_dir)
    try:
        await migrate(engine, stores=[StoreSchema("gadgets", 1, (table,))])
        broken = StoreSchema("gadgets", 2, (table,), (add_then_fail,))
        with pytest.raises(RuntimeError, match="step failed"):
            await migrate(engine, stores=[broken])

        async with engine.connect() as conn:
            version = await conn.scalar(
                select(schema_version.c.version).where(schema_version.c.store == "gadgets")
            )
            # The column was rolled back, so the upgrade can run again cleanly.
            await conn.execute(text("SELECT id FROM gadgets_test"))
            with pytest.raises(Exception, match="size"):
                await conn.execute(text("SELECT size FROM gadgets_test"))
        assert version == 1
    finally:
        await engine.dispose()


def test_store_schema_needs_one_step_per_version() -> None:
    table = Table("t", MetaData(), Column("id", Integer, primary_key=True))
    with pytest.raises(ValueError):
        StoreSchema("t", 2, (table,))
    with pytest.raises(ValueError):
        StoreSchema("t", 0, (table,))
