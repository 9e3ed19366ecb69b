"""The SQL pubsub store's read cache (nodes, affiliations, subscriptions) and group commit:
what a publish and its notifications read costs no query, and no write is hidden by it
(writes through the store at once, another process's after the TTL).

A second store over the same database stands for another process (another cluster node);
a manual clock stands for time."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from sqlalchemy import event

from salon.storage.interfaces import PubSubItem, PubSubSubscription
from salon.storage.sql import SqlStorage
from salon.storage.sql.engine import reader
from salon.storage.sql.pubsub import SqlPubSubStore
from tests.storage.conftest import Backend

PEP = "juliet@example.org"
ROMEO = "romeo@example.net"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def _stores(backend: Backend, ttl: float = 60.0) -> tuple[SqlStorage, SqlPubSubStore, Clock]:
    storage = await backend.open()
    clock = Clock()
    return storage, SqlPubSubStore(storage.engine, cache_ttl=ttl, clock=clock), clock


async def test_own_writes_are_seen_at_once(backend: Backend) -> None:
    storage, store, _clock = await _stores(backend)
    try:
        await store.create_node(PEP, "urn:x", {"access_model": "presence"}, PEP, max_nodes=5)
        node = await store.get_node(PEP, "urn:x")
        assert node is not None and node.config == {"access_model": "presence"}
        assert await store.affiliations(PEP, "urn:x") == {PEP: "owner"}
        assert await store.subscriptions(PEP, "urn:x") == []

        await store.set_config(PEP, "urn:x", {"access_model": "open"})
        await store.set_affiliation(PEP, "urn:x", ROMEO, "publisher")
        await store.add_subscription(PEP, "urn:x", PubSubSubscription(ROMEO, "s1", "subscribed"))

        node = await store.get_node(PEP, "urn:x")
        assert node is not None and node.config == {"access_model": "open"}
        assert await store.affiliations(PEP, "urn:x") == {PEP: "owner", ROMEO: "publisher"}
        assert await store.subscriptions(PEP, "urn:x") == [
            PubSubSubscription(ROMEO, "s1", "subscribed")
        ]
        # a caller changing what it was given does not change the cache
        (await store.affiliations(PEP, "urn:x")).clear()
        assert await store.affiliations(PEP, "urn:x") == {PEP: "owner", ROMEO: "publisher"}

        await store.remove_subscription(PEP, "urn:x", ROMEO, "s1")
        assert await store.subscriptions(PEP, "urn:x") == []
        await store.delete_service(PEP)
        assert await store.get_node(PEP, "urn:x") is None
        assert await store.affiliations(PEP, "urn:x") == {}
    finally:
        await storage.close()


async def test_another_process_change_is_seen_after_the_ttl(backend: Backend) -> None:
    storage, store, clock = await _stores(backend, ttl=60.0)
    try:
        await store.create_node(PEP, "urn:x", {"access_model": "presence"}, PEP, max_nodes=5)
        assert await store.get_node(PEP, "urn:x") is not None
        assert await store.affiliations(PEP, "urn:x") == {PEP: "owner"}
        other = storage.pubsub  # another process's store over the same database
        await other.set_config(PEP, "urn:x", {"access_model": "whitelist"})
        await other.set_affiliation(PEP, "urn:x", ROMEO, "outcast")

        clock.now += 59.0
        node = await store.get_node(PEP, "urn:x")
        assert node is not None and node.config == {"access_model": "presence"}
        assert await store.affiliations(PEP, "urn:x") == {PEP: "owner"}

        clock.now += 2.0
        node = await store.get_node(PEP, "urn:x")
        assert node is not None and node.config == {"access_model": "whitelist"}
        assert await store.affiliations(PEP, "urn:x") == {PEP: "owner", ROMEO: "outcast"}
    finally:
        await storage.close()


async def test_a_node_made_elsewhere_is_seen_at_once(backend: Backend) -> None:
    """Only nodes that exist are cached: a miss is asked of the database every time."""
    storage, store, _clock = await _stores(backend)
    try:
        assert await store.get_node(PEP, "urn:x") is None
        await storage.pubsub.create_node(PEP, "urn:x", {}, PEP, max_nodes=5)
        assert await store.get_node(PEP, "urn:x") is not None
    finally:
        await storage.close()


async def test_ttl_zero_turns_the_cache_off(backend: Backend) -> None:
    storage, store, _clock = await _stores(backend, ttl=0.0)
    try:
        await store.create_node(PEP, "urn:x", {"a": 1}, PEP, max_nodes=5)
        assert await store.get_node(PEP, "urn:x") is not None
        await storage.pubsub.set_config(PEP, "urn:x", {"a": 2})
        node = await store.get_node(PEP, "urn:x")
        assert node is not None and node.config == {"a": 2}
    finally:
        await storage.close()


async def test_a_publish_answers_after_its_batch_is_committed(backend: Backend) -> None:
    """Publishes waiting together share one transaction; each returns only when its item
    can be read back by another connection (another process)."""
    storage, store, _clock = await _stores(backend)
    try:
        users = [f"u{n}@example.org" for n in range(100)]
        for user in users:
            await store.create_node(user, "urn:x", {}, user, max_nodes=5)

        readers = asyncio.Semaphore(2)  # few connections: the test database is shared

        async def publish_then_read(user: str) -> list[str]:
            item = PubSubItem("current", f"{user}/r", "<t xmlns='urn:x'/>", datetime.now(UTC))
            await store.publish(user, "urn:x", item, max_items=1)
            async with readers:
                return [i.id for i in await storage.pubsub.get_items(user, "urn:x")]

        found = await asyncio.gather(*(publish_then_read(u) for u in users))
        assert found == [["current"]] * len(users)
    finally:
        await storage.close()


async def test_a_failing_publish_fails_alone(backend: Backend) -> None:
    """A batch that the database refuses is written again one publish at a time: only the
    bad one fails."""
    storage, store, _clock = await _stores(backend)
    try:
        await store.create_node(PEP, "urn:x", {}, PEP, max_nodes=5)
        good = PubSubItem("ok", PEP, "<t xmlns='urn:x'/>", datetime.now(UTC))
        bad = PubSubItem("bad", PEP, None, datetime.now(UTC))  # type: ignore[arg-type]
        results = await asyncio.gather(
            store.publish(PEP, "urn:x", good, max_items=5),
            store.publish(PEP, "urn:y", bad, max_items=5),
            store.publish(PEP, "urn:z", good, max_items=5),
            return_exceptions=True,
        )
        assert results[0] == [] and results[2] == []
        assert isinstance(results[1], Exception)
        assert [i.id for i in await storage.pubsub.get_items(PEP, "urn:x")] == ["ok"]
        assert [i.id for i in await storage.pubsub.get_items(PEP, "urn:z")] == ["ok"]
    finally:
        await storage.close()


async def test_the_newest_item_follows_own_writes(backend: Backend) -> None:
    storage, store, clock = await _stores(backend)

    def item(item_id: str) -> PubSubItem:
        return PubSubItem(item_id, PEP, f"<t xmlns='urn:x'>{item_id}</t>", datetime.now(UTC))

    try:
        await store.create_node(PEP, "urn:x", {}, PEP, max_nodes=5)
        assert await store.get_items(PEP, "urn:x", last=1) == []
        await store.publish(PEP, "urn:x", item("a"), max_items=5)
        await store.publish(PEP, "urn:x", item("b"), max_items=5)
        assert [i.id for i in await store.get_items(PEP, "urn:x", last=1)] == ["b"]
        assert await store.retract(PEP, "urn:x", "b")
        assert [i.id for i in await store.get_items(PEP, "urn:x", last=1)] == ["a"]
        await store.publish(PEP, "urn:x", item("a"), max_items=5)  # republished: newest
        await store.publish(PEP, "urn:x", item("c"), max_items=0)  # keeps nothing
        assert await store.get_items(PEP, "urn:x", last=1) == []
        await store.publish(PEP, "urn:x", item("d"), max_items=5)
        await store.purge(PEP, "urn:x")
        assert await store.get_items(PEP, "urn:x", last=1) == []
        await store.publish(PEP, "urn:x", item("e"), max_items=5)
        assert [i.id for i in await store.get_items(PEP, "urn:x", last=1)] == ["e"]

        # another process publishes: seen when the entry expires
        await storage.pubsub.publish(PEP, "urn:x", item("f"), max_items=5)
        assert [i.id for i in await store.get_items(PEP, "urn:x", last=1)] == ["e"]
        clock.now += 61.0
        assert [i.id for i in await store.get_items(PEP, "urn:x", last=1)] == ["f"]

        await store.delete_node(PEP, "urn:x")
        assert await store.get_items(PEP, "urn:x", last=1) == []
    finally:
        await storage.close()


async def test_concurrent_misses_share_one_read(backend: Backend) -> None:
    """Thousands of contacts coming online at once ask for the same nodes: one query per
    node and kind, not one per caller; a write in between starts a fresh read."""
    storage, store, _clock = await _stores(backend)
    statements: list[str] = []

    def count(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        statements.append(statement)

    try:
        await store.create_node(PEP, "urn:x", {"a": 1}, PEP, max_nodes=5)
        store._nodes.entries.clear()  # cold, as after a restart
        store._affiliations.entries.clear()
        # reads run on the reader engine (a second engine on a SQLite file)
        engines = {storage.engine.sync_engine, reader(storage.engine).sync_engine}
        for engine in engines:
            event.listen(engine, "before_cursor_execute", count)
        nodes, affiliations, newest = await asyncio.gather(
            asyncio.gather(*(store.get_node(PEP, "urn:x") for _ in range(50))),
            asyncio.gather(*(store.affiliations(PEP, "urn:x") for _ in range(50))),
            asyncio.gather(*(store.get_items(PEP, "urn:x", last=1) for _ in range(50))),
        )
        for engine in engines:
            event.remove(engine, "before_cursor_execute", count)
        assert all(n is not None and n.config == {"a": 1} for n in nodes)
        assert affiliations == [{PEP: "owner"}] * 50
        assert newest == [[]] * 50
        selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
        assert len(selects) == 3, selects
        # every caller has its own copy to change
        affiliations[0].clear()
        assert await store.affiliations(PEP, "urn:x") == {PEP: "owner"}
    finally:
        await storage.close()
