"""Read-only transactions (``reader(engine).begin()``) do not wait for a writer: on SQLite
they begin deferred, so with WAL a read goes on while another transaction holds the write lock (an
ordinary transaction would wait up to the busy timeout, then fail)."""

from __future__ import annotations

import asyncio

from sqlalchemy import insert, select

from salon.storage.sql.engine import reader
from salon.storage.sql.schema import blocklist
from tests.storage.conftest import Backend


async def test_a_read_goes_on_while_a_writer_holds_the_lock(backend: Backend) -> None:
    storage = await backend.open()
    try:
        engine = storage.engine
        async with engine.begin() as writer:  # holds SQLite's write lock until commit
            await writer.execute(
                insert(blocklist).values(host="example.org", username="juliet", jid="a@b")
            )

            async def read() -> list[str]:
                async with reader(engine).begin() as conn:
                    rows = await conn.scalars(select(blocklist.c.jid))
                    return list(rows)

            # the writer has not committed: the reader sees the snapshot before it
            assert await asyncio.wait_for(read(), 5) == []
        assert await asyncio.wait_for(read(), 5) == ["a@b"]
        # and the stores' reads use it: the blocklist while a writer holds the lock
        async with engine.begin() as writer:
            await writer.execute(
                insert(blocklist).values(host="example.org", username="romeo", jid="c@d")
            )
            assert await asyncio.wait_for(storage.blocklist.get("example.org", "juliet"), 5) == [
                "a@b"
            ]
            assert await asyncio.wait_for(storage.pubsub.get_node("x@example.org", "n"), 5) is None
    finally:
        await storage.close()
