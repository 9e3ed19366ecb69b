"""Fixtures for the storage contract suites: every backend runs every test.

``backend`` is parametrised over ``sqlite`` (a fresh file under ``tmp_path``)
and ``postgres`` (the real server at ``SALON_TEST_POSTGRES_URL``, default
``postgresql://postgres@127.0.0.1:5432/test``).

PostgreSQL isolation: each test gets its own freshly created schema
(``salon_test_<random>``), passed to the storage URL as ``?schema=``, so every
connection of the storage has it as its ``search_path``. Tests therefore start
from an empty database, cannot see each other (or a concurrent run by someone
else), and the schema is dropped with CASCADE afterwards.

If PostgreSQL is unreachable the postgres tests fail, unless the environment
sets ``SALON_SKIP_POSTGRES=1``; ``-m "not postgres"`` also deselects them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.schema import DropSchema

from salon.storage import Storage, open_storage
from salon.storage.sql import SqlStorage
from salon.storage.sql.engine import to_async_url

POSTGRES_URL = os.environ.get(
    "SALON_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


@dataclass(frozen=True, slots=True)
class Backend:
    """Where a test's storage lives, so that a test can open it again."""

    name: str
    url: str
    base_dir: Path | None = None

    async def open(self) -> SqlStorage:
        """Open (and migrate) the storage; the caller closes it."""
        storage = await open_storage(self.url, base_dir=self.base_dir)
        assert isinstance(storage, SqlStorage)
        return storage


async def _admin_engine() -> AsyncEngine:
    """Connect to the test server, failing (or skipping, if allowed) if it is down."""
    url, _ = to_async_url(POSTGRES_URL)
    engine = create_async_engine(url, connect_args={"timeout": 5})
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as exc:
        await engine.dispose()
        reason = f"PostgreSQL unreachable at {POSTGRES_URL}: {exc!r}"
        if os.environ.get("SALON_SKIP_POSTGRES") == "1":
            pytest.skip(reason)
        pytest.fail(f"{reason} (set SALON_SKIP_POSTGRES=1 to skip)", pytrace=False)
    return engine


@pytest.fixture(
    params=[
        pytest.param("sqlite"),
        pytest.param("postgres", marks=pytest.mark.postgres),
    ]
)
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    """An empty storage location on each engine."""
    if request.param == "sqlite":
        yield Backend("sqlite", "sqlite:///salon.db", base_dir=tmp_path)
        return
    admin = await _admin_engine()
    schema = f"salon_test_{uuid.uuid4().hex[:16]}"
    try:
        separator = "&" if "?" in POSTGRES_URL else "?"
        yield Backend("postgres", f"{POSTGRES_URL}{separator}schema={schema}")
    finally:
        async with admin.begin() as conn:
            await conn.execute(DropSchema(schema, cascade=True, if_exists=True))
        await admin.dispose()


@pytest.fixture
async def storage(backend: Backend) -> AsyncIterator[Storage]:
    """A freshly migrated, empty storage, closed after the test."""
    opened = await backend.open()
    try:
        yield opened
    finally:
        await opened.close()
