"""The SQL account store's credential cache: returning users cost no query, and no write is
ever hidden by it (writes through the store at once, other processes' after the TTL).

A second store over the same database stands for another process (``salon passwd``, another
cluster node); a manual clock stands for time."""

from __future__ import annotations

import asyncio

from sqlalchemy import delete as sql_delete

from salon.storage import ScramCredential
from salon.storage.sql import SqlStorage
from salon.storage.sql.accounts import SqlAccountStore
from salon.storage.sql.schema import accounts as accounts_table
from tests.storage.conftest import Backend

HOST = "example.org"


def cred(seed: int) -> ScramCredential:
    return ScramCredential(
        hash_name="SHA-1",
        salt=bytes([seed]) * 16,
        iterations=4096,
        stored_key=bytes([seed + 1]) * 20,
        server_key=bytes([seed + 2]) * 20,
    )


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def _stores(backend: Backend, **kw: float) -> tuple[SqlStorage, SqlAccountStore, Clock]:
    storage = await backend.open()
    clock = Clock()
    store = SqlAccountStore(storage.engine, clock=clock, **kw)  # type: ignore[arg-type]
    return storage, store, clock


async def test_a_returning_user_is_served_from_the_cache_until_the_ttl(backend: Backend) -> None:
    storage, store, clock = await _stores(backend, cache_ttl=60.0)
    try:
        await store.create(HOST, "juliet", [cred(1)])
        first = await store.get(HOST, "juliet")
        assert first is not None
        # another process changes the password: this one keeps its copy until the TTL ...
        await storage.accounts.set_credentials(HOST, "juliet", [cred(5)])
        clock.now += 59.0
        assert await store.get(HOST, "juliet") == first  # the old credentials, no query
        # ... and no longer
        clock.now += 2.0
        again = await store.get(HOST, "juliet")
        assert again is not None and again.credentials["SHA-1"] == cred(5)
    finally:
        await storage.close()


async def test_a_cached_account_is_exactly_the_stored_one(backend: Backend) -> None:
    storage, store, _clock = await _stores(backend)
    try:
        three = [
            ScramCredential("SHA-1", b"s" * 16, 4096, b"a" * 20, b"b" * 20),
            ScramCredential("SHA-256", b"\x00\xff" * 12, 10_000, b"c" * 32, b"d" * 32),
            ScramCredential("SHA-512", b"t" * 40, 4096, b"e" * 64, b"f" * 64),
        ]
        await store.create(HOST, "juliet", three)
        fresh = await storage.accounts.get(HOST, "juliet")
        assert store.cached(HOST, "juliet") is None
        assert await store.get(HOST, "juliet") == fresh
        assert store.cached(HOST, "juliet") == fresh
        assert await store.get(HOST, "juliet") == fresh
    finally:
        await storage.close()


async def test_writes_through_the_store_take_effect_at_once(backend: Backend) -> None:
    storage, store, _clock = await _stores(backend)
    try:
        await store.create(HOST, "romeo", [cred(1)])
        assert (await store.get(HOST, "romeo")) is not None
        await store.set_credentials(HOST, "romeo", [cred(7)])
        account = await store.get(HOST, "romeo")
        assert account is not None and account.credentials == {"SHA-1": cred(7)}
        assert await store.delete(HOST, "romeo") is True
        assert await store.get(HOST, "romeo") is None
    finally:
        await storage.close()


async def test_unknown_accounts_are_not_cached(backend: Backend) -> None:
    """An account another process creates can log in at once."""
    storage, store, _clock = await _stores(backend)
    try:
        assert await store.get(HOST, "nurse") is None
        await storage.accounts.create(HOST, "nurse", [cred(2)])
        assert await store.get(HOST, "nurse") is not None
    finally:
        await storage.close()


async def test_a_read_overlapping_a_write_is_not_kept(backend: Backend) -> None:
    storage, store, _clock = await _stores(backend)
    try:
        await store.create(HOST, "tybalt", [cred(1)])
        reads = [asyncio.ensure_future(store.get(HOST, "tybalt")) for _ in range(5)]
        await store.set_credentials(HOST, "tybalt", [cred(9)])
        await asyncio.gather(*reads)
        # whatever the reads saw, what the store now serves is the written credential
        account = await store.get(HOST, "tybalt")
        assert account is not None and account.credentials == {"SHA-1": cred(9)}
    finally:
        await storage.close()


async def test_the_cache_is_bounded_and_ttl_zero_turns_it_off(backend: Backend) -> None:
    storage, store, clock = await _stores(backend, cache_size=2)
    _s2, off, _c2 = await _stores(backend, cache_ttl=0.0)
    try:
        for name in ("a", "b", "c"):
            await store.create(HOST, name, [cred(1)])
            await store.get(HOST, name)
        assert len(store._cache) == 2
        # entries past their TTL go as new ones come in, whatever the size bound
        clock.now += 3600.0
        await store.get(HOST, "a")
        assert list(store._cache) == [(HOST, "a")]
        assert await off.get(HOST, "a") is not None
        assert len(off._cache) == 0
        # 'a' vanishes behind both stores' backs: the uncached store sees it at once
        async with storage.engine.begin() as conn:
            await conn.execute(sql_delete(accounts_table).where(accounts_table.c.username == "a"))
        assert await off.get(HOST, "a") is None
    finally:
        await storage.close()
        await _s2.close()
