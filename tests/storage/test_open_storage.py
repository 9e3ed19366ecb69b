"""open_storage URL handling and the SQLite engine settings."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import text

from salon.storage import Storage, open_storage
from salon.storage.sql import SqlStorage
from salon.storage.sql.engine import to_async_url
from tests.storage.test_accounts_contract import cred


def test_sqlite_relative_path_is_resolved_against_base_dir(tmp_path: Path) -> None:
    url, schema = to_async_url("sqlite:///data/salon.db", base_dir=tmp_path)
    assert url.drivername == "sqlite+aiosqlite"
    assert url.database == str(tmp_path / "data" / "salon.db")
    assert schema is None


def test_sqlite_absolute_path_ignores_base_dir(tmp_path: Path) -> None:
    url, _ = to_async_url(f"sqlite:///{tmp_path}/salon.db", base_dir=Path("/elsewhere"))
    assert url.database == f"{tmp_path}/salon.db"


@pytest.mark.parametrize("raw", ["sqlite:///:memory:", "sqlite://"])
def test_sqlite_memory_urls(raw: str) -> None:
    url, _ = to_async_url(raw)
    assert url.drivername == "sqlite+aiosqlite"
    assert url.database == ":memory:"


def test_postgresql_url_uses_asyncpg_and_extracts_schema() -> None:
    url, schema = to_async_url("postgresql://salon:secret@db.example:5433/xmpp?schema=salon")
    assert url.drivername == "postgresql+asyncpg"
    assert (url.username, url.password, url.host, url.port) == (
        "salon",
        "secret",
        "db.example",
        5433,
    )
    assert url.database == "xmpp"
    assert "schema" not in url.query
    assert schema == "salon"


@pytest.mark.parametrize(
    "raw",
    [
        "mysql://root@localhost/salon",
        "postgresql+psycopg://u@h/db",
        "sqlite:///x.db?mode=ro",
        "postgresql://u@h/db?schema=bad;drop",
        "not a url",
    ],
)
def test_unsupported_urls_are_rejected(raw: str) -> None:
    with pytest.raises(ValueError):
        to_async_url(raw)


async def test_memory_storage_works_and_serialises_concurrent_use() -> None:
    storage = await open_storage("sqlite:///:memory:")
    try:
        await asyncio.gather(
            *(storage.accounts.create("example.org", f"u{i}", [cred()]) for i in range(10))
        )
        assert await storage.accounts.count("example.org") == 10
    finally:
        await storage.close()


async def test_sqlite_file_is_created_in_missing_directory(tmp_path: Path) -> None:
    storage = await open_storage("sqlite:///nested/dir/salon.db", base_dir=tmp_path)
    await storage.close()
    assert (tmp_path / "nested" / "dir" / "salon.db").is_file()


async def test_sqlite_connections_are_durable_and_enforce_foreign_keys(tmp_path: Path) -> None:
    storage: Storage = await open_storage("sqlite:///salon.db", base_dir=tmp_path)
    assert isinstance(storage, SqlStorage)
    try:
        async with storage.engine.connect() as conn:
            assert await conn.scalar(text("PRAGMA journal_mode")) == "wal"
            assert await conn.scalar(text("PRAGMA synchronous")) == 2  # FULL
            assert await conn.scalar(text("PRAGMA foreign_keys")) == 1
            assert await conn.scalar(text("PRAGMA busy_timeout")) >= 1000
    finally:
        await storage.close()
