"""Contract tests for PubSubStore; every backend must pass them unchanged."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from salon.storage import Storage
from salon.storage.interfaces import PubSubItem, PubSubLimitReached, PubSubSubscription

PEP = "juliet@example.org"
SERVICE = "pubsub.example.org"
CONFIG = {"access_model": "presence", "max_items": 10, "persist_items": True}


def item(item_id: str, payload: str = "<entry xmlns='urn:x'/>") -> PubSubItem:
    return PubSubItem(item_id, "juliet@example.org/balcony", payload, datetime.now(UTC))


async def test_create_node_records_config_and_owner(storage: Storage) -> None:
    assert await storage.pubsub.create_node(PEP, "urn:x", CONFIG, PEP, max_nodes=10)

    node = await storage.pubsub.get_node(PEP, "urn:x")

    assert node is not None
    assert (node.service, node.node, node.config) == (PEP, "urn:x", CONFIG)
    assert node.created_at.tzinfo is not None
    assert await storage.pubsub.affiliations(PEP, "urn:x") == {PEP: "owner"}


async def test_create_existing_node_is_refused(storage: Storage) -> None:
    assert await storage.pubsub.create_node(PEP, "urn:x", CONFIG, PEP, max_nodes=10)
    assert not await storage.pubsub.create_node(PEP, "urn:x", {}, "romeo@example.net", max_nodes=10)
    node = await storage.pubsub.get_node(PEP, "urn:x")
    assert node is not None and node.config == CONFIG


async def test_node_limit_is_per_service(storage: Storage) -> None:
    for name in ("a", "b"):
        assert await storage.pubsub.create_node(PEP, name, {}, PEP, max_nodes=2)
    with pytest.raises(PubSubLimitReached):
        await storage.pubsub.create_node(PEP, "c", {}, PEP, max_nodes=2)
    assert await storage.pubsub.create_node(SERVICE, "c", {}, PEP, max_nodes=2)
    assert [n.node for n in await storage.pubsub.list_nodes(PEP)] == ["a", "b"]


async def test_set_config(storage: Storage) -> None:
    await storage.pubsub.create_node(PEP, "urn:x", CONFIG, PEP, max_nodes=10)
    assert await storage.pubsub.set_config(PEP, "urn:x", {"access_model": "open"})
    assert not await storage.pubsub.set_config(PEP, "missing", {})
    node = await storage.pubsub.get_node(PEP, "urn:x")
    assert node is not None and node.config == {"access_model": "open"}


async def test_items_are_kept_in_publication_order(storage: Storage) -> None:
    await storage.pubsub.create_node(PEP, "urn:x", CONFIG, PEP, max_nodes=10)
    for n in range(5):
        assert await storage.pubsub.publish(PEP, "urn:x", item(f"i{n}"), max_items=10) == []

    items = await storage.pubsub.get_items(PEP, "urn:x")

    assert [i.id for i in items] == ["i0", "i1", "i2", "i3", "i4"]
    assert items[0].publisher == "juliet@example.org/balcony"
    assert items[0].payload == "<entry xmlns='urn:x'/>"
    assert [i.id for i in await storage.pubsub.get_items(PEP, "urn:x", last=2)] == ["i3", "i4"]
    by_id = await storage.pubsub.get_items(PEP, "urn:x", ids=["i3", "nope", "i1"])
    assert [i.id for i in by_id] == ["i1", "i3"]


async def test_republishing_an_id_replaces_it_and_makes_it_newest(storage: Storage) -> None:
    await storage.pubsub.create_node(PEP, "urn:x", CONFIG, PEP, max_nodes=10)
    for n in range(3):
        await storage.pubsub.publish(PEP, "urn:x", item(f"i{n}"), max_items=10)
    await storage.pubsub.publish(PEP, "urn:x", item("i0", "<new xmlns='urn:x'/>"), max_items=10)

    items = await storage.pubsub.get_items(PEP, "urn:x")

    assert [i.id for i in items] == ["i1", "i2", "i0"]
    assert items[-1].payload == "<new xmlns='urn:x'/>"


async def test_publish_prunes_to_max_items_oldest_first(storage: Storage) -> None:
    await storage.pubsub.create_node(PEP, "urn:x", CONFIG, PEP, max_nodes=10)
    for n in range(3):
        await storage.pubsub.publish(PEP, "urn:x", item(f"i{n}"), max_items=3)

    pruned = await storage.pubsub.publish(PEP, "urn:x", item("i3"), max_items=2)

    assert sorted(pruned) == ["i0", "i1"]
    assert [i.id for i in await storage.pubsub.get_items(PEP, "urn:x")] == ["i2", "i3"]


async def test_pruning_leaves_other_nodes_alone(storage: Storage) -> None:
    for service in (PEP, SERVICE):
        await storage.pubsub.create_node(service, "urn:x", CONFIG, PEP, max_nodes=10)
        await storage.pubsub.publish(service, "urn:x", item("keep"), max_items=5)
    await storage.pubsub.publish(PEP, "urn:x", item("new"), max_items=1)
    assert [i.id for i in await storage.pubsub.get_items(SERVICE, "urn:x")] == ["keep"]
    assert [i.id for i in await storage.pubsub.get_items(PEP, "urn:x")] == ["new"]


async def test_concurrent_publishes_are_each_stored_and_pruned(storage: Storage) -> None:
    """Publishes arriving together (which an implementation may write in one transaction)
    each behave as if alone: every node keeps its newest items, a node published to twice
    at once keeps both in order, a republished id stays one item, and each publish names
    what it pruned."""
    users = [f"u{n}@example.org" for n in range(30)]
    for user in users:
        await storage.pubsub.create_node(user, "urn:x", CONFIG, user, max_nodes=10)
        await storage.pubsub.publish(user, "urn:x", item("old"), max_items=5)
    publishes = [storage.pubsub.publish(u, "urn:x", item("new"), max_items=1) for u in users]
    publishes.append(storage.pubsub.publish(PEP, "urn:y", item("a"), max_items=2))
    publishes.append(storage.pubsub.publish(PEP, "urn:y", item("b"), max_items=2))
    publishes.append(storage.pubsub.publish(PEP, "urn:y", item("a"), max_items=2))
    publishes.append(storage.pubsub.publish(SERVICE, "urn:z", item("z"), max_items=0))

    results = await asyncio.gather(*publishes)

    assert results[: len(users)] == [["old"]] * len(users)
    assert results[len(users) :] == [[], [], [], ["z"]]
    for user in users:
        assert [i.id for i in await storage.pubsub.get_items(user, "urn:x")] == ["new"]
    assert [i.id for i in await storage.pubsub.get_items(PEP, "urn:y")] == ["b", "a"]
    assert await storage.pubsub.get_items(SERVICE, "urn:z") == []


async def test_retract_and_purge(storage: Storage) -> None:
    await storage.pubsub.create_node(PEP, "urn:x", CONFIG, PEP, max_nodes=10)
    for n in range(3):
        await storage.pubsub.publish(PEP, "urn:x", item(f"i{n}"), max_items=10)
    assert await storage.pubsub.retract(PEP, "urn:x", "i1")
    assert not await storage.pubsub.retract(PEP, "urn:x", "i1")
    assert [i.id for i in await storage.pubsub.get_items(PEP, "urn:x")] == ["i0", "i2"]
    await storage.pubsub.purge(PEP, "urn:x")
    assert await storage.pubsub.get_items(PEP, "urn:x") == []
    assert await storage.pubsub.get_node(PEP, "urn:x") is not None


async def test_affiliations(storage: Storage) -> None:
    await storage.pubsub.create_node(SERVICE, "news", {}, PEP, max_nodes=10)
    await storage.pubsub.set_affiliation(SERVICE, "news", "romeo@example.net", "publisher")
    await storage.pubsub.set_affiliation(SERVICE, "news", "romeo@example.net", "member")
    await storage.pubsub.set_affiliation(SERVICE, "news", "tybalt@example.net", "outcast")
    await storage.pubsub.set_affiliation(SERVICE, "news", "tybalt@example.net", "none")

    assert await storage.pubsub.affiliations(SERVICE, "news") == {
        PEP: "owner",
        "romeo@example.net": "member",
    }
    assert await storage.pubsub.affiliations_of(SERVICE, PEP) == {"news": "owner"}


async def test_subscriptions(storage: Storage) -> None:
    await storage.pubsub.create_node(SERVICE, "news", {}, PEP, max_nodes=10)
    romeo = "romeo@example.net/orchard"
    await storage.pubsub.add_subscription(
        SERVICE, "news", PubSubSubscription(romeo, "s1", "pending")
    )
    await storage.pubsub.add_subscription(
        SERVICE, "news", PubSubSubscription(romeo, "s1", "subscribed")
    )
    await storage.pubsub.add_subscription(
        SERVICE, "news", PubSubSubscription(romeo, "s2", "subscribed")
    )

    subs = await storage.pubsub.subscriptions(SERVICE, "news")

    assert subs == [
        PubSubSubscription(romeo, "s1", "subscribed"),
        PubSubSubscription(romeo, "s2", "subscribed"),
    ]
    assert [n for n, _ in await storage.pubsub.subscriptions_of(SERVICE, romeo)] == ["news", "news"]
    assert await storage.pubsub.remove_subscription(SERVICE, "news", romeo, "s1")
    assert not await storage.pubsub.remove_subscription(SERVICE, "news", romeo, "s1")
    assert [s.subid for s in await storage.pubsub.subscriptions(SERVICE, "news")] == ["s2"]


async def test_delete_node_removes_everything_of_it(storage: Storage) -> None:
    await storage.pubsub.create_node(SERVICE, "news", {}, PEP, max_nodes=10)
    await storage.pubsub.create_node(SERVICE, "other", {}, PEP, max_nodes=10)
    await storage.pubsub.publish(SERVICE, "news", item("i"), max_items=10)
    await storage.pubsub.add_subscription(
        SERVICE, "news", PubSubSubscription("a@b", "s", "subscribed")
    )

    assert await storage.pubsub.delete_node(SERVICE, "news")
    assert not await storage.pubsub.delete_node(SERVICE, "news")

    assert await storage.pubsub.get_node(SERVICE, "news") is None
    assert await storage.pubsub.get_items(SERVICE, "news") == []
    assert await storage.pubsub.subscriptions(SERVICE, "news") == []
    assert await storage.pubsub.affiliations(SERVICE, "news") == {}
    # recreating starts empty
    assert await storage.pubsub.create_node(SERVICE, "news", {}, PEP, max_nodes=10)
    assert await storage.pubsub.get_items(SERVICE, "news") == []
    assert await storage.pubsub.get_node(SERVICE, "other") is not None


async def test_delete_service(storage: Storage) -> None:
    await storage.pubsub.create_node(PEP, "a", {}, PEP, max_nodes=10)
    await storage.pubsub.publish(PEP, "a", item("i"), max_items=10)
    await storage.pubsub.create_node(SERVICE, "a", {}, PEP, max_nodes=10)
    await storage.pubsub.delete_service(PEP)
    assert await storage.pubsub.list_nodes(PEP) == []
    assert await storage.pubsub.get_items(PEP, "a") == []
    assert [n.node for n in await storage.pubsub.list_nodes(SERVICE)] == ["a"]
