"""The pure pubsub service on a real (SQLite) store: permissions by affiliation and access
model, publish-options preconditions, pruning to max_items, and the exact XEP-0060 errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from salon.errors import StanzaErrorCondition as C
from salon.jid import JID
from salon.modules.pubsub.config import NodeConfig
from salon.modules.pubsub.service import (
    Limits,
    NodeEvent,
    PubSubError,
    PubSubService,
    ServicePolicy,
)
from salon.storage import Storage, open_storage
from salon.storage.interfaces import RosterItem
from salon.xml.element import Element

JULIET = JID.make("juliet", "example.org")
JULIET_RES = JID.make("juliet", "example.org", "balcony")
ROMEO = JID.make("romeo", "example.net", "orchard")
NURSE = JID.make("nurse", "example.org", "kitchen")
TYBALT = JID.make("tybalt", "example.net", "street")


class Rosters:
    def __init__(self) -> None:
        self.items: dict[tuple[JID, JID], RosterItem] = {}

    def put(self, owner: JID, contact: JID, subscription: str, *groups: str) -> None:
        self.items[(owner, contact)] = RosterItem(
            jid=str(contact), subscription=subscription, groups=tuple(groups)
        )

    async def roster_item(self, owner: JID, contact: JID) -> RosterItem | None:
        return self.items.get((owner, contact))


class Events:
    def __init__(self) -> None:
        self.seen: list[NodeEvent] = []

    async def __call__(self, event: NodeEvent) -> None:
        self.seen.append(event)


@pytest.fixture
async def storage(tmp_path: Path) -> AsyncIterator[Storage]:
    opened = await open_storage("sqlite:///pubsub.db", base_dir=tmp_path)
    yield opened
    await opened.close()


@pytest.fixture
def rosters() -> Rosters:
    return Rosters()


@pytest.fixture
def events() -> Events:
    return Events()


def pep(storage: Storage, rosters: Rosters, events: Events, **limits: int) -> PubSubService:
    policy = ServicePolicy(
        limits=Limits(**limits), auto_create=True, instant_nodes=False, defaults=NodeConfig()
    )
    return PubSubService(
        storage.pubsub, str(JULIET), policy, events, rosters, owner=JULIET, now=lambda: 1e9
    )


def component(storage: Storage, rosters: Rosters, events: Events) -> PubSubService:
    policy = ServicePolicy(defaults=NodeConfig(access_model=NodeConfig().access_model.OPEN))
    return PubSubService(
        storage.pubsub, "pubsub.example.org", policy, events, rosters, now=lambda: 1e9
    )


def entry(n: int | str = 1) -> Element:
    return Element("entry", "urn:example", children=[str(n)])


async def expect_error(coro: object, condition: C, app: str | None = None) -> PubSubError:
    with pytest.raises(PubSubError) as caught:
        await coro  # type: ignore[misc]
    assert caught.value.condition is condition
    assert caught.value.app == app
    return caught.value


# ---------------------------------------------------------------------- PEP node lifecycle
async def test_publish_creates_the_node_and_notifies(storage, rosters, events) -> None:
    svc = pep(storage, rosters, events)
    item_id = await svc.publish(JULIET_RES, "urn:example", "a", entry())
    assert item_id == "a"
    _node, config = await svc.node("urn:example")
    assert config == NodeConfig()
    [event] = events.seen
    assert (event.kind, event.node, event.owner) == ("items", "urn:example", JULIET)
    assert [i.id for i in event.items] == ["a"]


async def test_only_the_account_publishes_to_its_pep(storage, rosters, events) -> None:
    svc = pep(storage, rosters, events)
    await expect_error(svc.publish(ROMEO, "urn:example", "a", entry()), C.FORBIDDEN)
    await svc.publish(JULIET_RES, "urn:example", "a", entry())
    await expect_error(svc.publish(ROMEO, "urn:example", "b", entry()), C.FORBIDDEN)


async def test_item_id_is_generated_when_absent(storage, rosters, events) -> None:
    svc = pep(storage, rosters, events)
    item_id = await svc.publish(JULIET_RES, "urn:example", None, entry())
    assert item_id
    [item] = await svc.items(JULIET_RES, "urn:example")
    assert item.id == item_id


async def test_max_items_prunes_oldest(storage, rosters, events) -> None:
    svc = pep(storage, rosters, events)
    opts = {"pubsub#max_items": ["3"]}
    for n in range(5):
        await svc.publish(JULIET_RES, "urn:example", f"i{n}", entry(n), opts)
    assert [i.id for i in await svc.items(JULIET_RES, "urn:example")] == ["i2", "i3", "i4"]
    assert [i.id for i in await svc.items(JULIET_RES, "urn:example", max_items=2)] == ["i3", "i4"]
    by_id = await svc.items(JULIET_RES, "urn:example", ids=["i3"])
    assert [i.id for i in by_id] == ["i3"]


async def test_max_items_max_means_the_server_limit(storage, rosters, events) -> None:
    svc = pep(storage, rosters, events, max_items=4)
    for n in range(6):
        await svc.publish(JULIET_RES, "b", f"i{n}", entry(n), {"pubsub#max_items": ["max"]})
    assert len(await svc.items(JULIET_RES, "b")) == 4
    await expect_error(
        svc.publish(JULIET_RES, "c", "x", entry(), {"pubsub#max_items": ["5"]}), C.NOT_ACCEPTABLE
    )


async def test_default_pep_node_keeps_one_item(storage, rosters, events) -> None:
    svc = pep(storage, rosters, events)
    await svc.publish(JULIET_RES, "urn:example", "a", entry())
    await svc.publish(JULIET_RES, "urn:example", "b", entry())
    assert [i.id for i in await svc.items(JULIET_RES, "urn:example")] == ["b"]


async def test_non_persistent_node_keeps_only_the_last_item(storage, rosters, events) -> None:
    svc = pep(storage, rosters, events)
    opts = {"pubsub#persist_items": ["false"], "pubsub#max_items": ["10"]}
    for n in range(3):
        await svc.publish(JULIET_RES, "n", f"i{n}", entry(n), opts)
    assert [i.id for i in await svc.items(JULIET_RES, "n")] == ["i2"]


async def test_item_size_limit(storage, rosters, events) -> None:
    svc = pep(storage, rosters, events, max_item_bytes=100)
    big = Element("entry", "urn:example", children=["x" * 200])
    await expect_error(svc.publish(JULIET_RES, "n", "a", big), C.NOT_ACCEPTABLE, "payload-too-big")


async def test_node_count_limit(storage, rosters, events) -> None:
    svc = pep(storage, rosters, events, max_nodes=2)
    await svc.publish(JULIET_RES, "a", "1", entry())
    await svc.publish(JULIET_RES, "b", "1", entry())
    await expect_error(svc.publish(JULIET_RES, "c", "1", entry()), C.POLICY_VIOLATION)
    await svc.publish(JULIET_RES, "b", "2", entry())  # existing nodes still take items


async def test_payload_required_on_persistent_node(storage, rosters, events) -> None:
    svc = pep(storage, rosters, events)
    await expect_error(svc.publish(JULIET_RES, "n", "a", None), C.BAD_REQUEST, "payload-required")


# ---------------------------------------------------------------------- preconditions
async def test_publish_options_configure_a_new_node(storage, rosters, events) -> None:
    svc = pep(storage, rosters, events)
    await svc.publish(JULIET_RES, "dl", "current", entry(), {"pubsub#access_model": ["open"]})
    _node, config = await svc.node("dl")
    assert config.access_model == "open"


async def test_publish_options_must_match_an_existing_node(storage, rosters, events) -> None:
    svc = pep(storage, rosters, events)
    await svc.publish(JULIET_RES, "dl", "current", entry())
    err = await expect_error(
        svc.publish(JULIET_RES, "dl", "current", entry(2), {"pubsub#access_model": ["open"]}),
        C.CONFLICT,
        "precondition-not-met",
    )
    assert err.error_type == "cancel"
    await svc.publish(
        JULIET_RES,
        "dl",
        "current",
        entry(3),
        {"pubsub#access_model": ["presence"], "pubsub#persist_items": ["1"]},
    )
    [item] = await svc.items(JULIET_RES, "dl")
    assert ">3<" in item.payload


async def test_unknown_publish_option_is_not_met(storage, rosters, events) -> None:
    svc = pep(storage, rosters, events)
    await svc.publish(JULIET_RES, "dl", "a", entry())
    await expect_error(
        svc.publish(JULIET_RES, "dl", "a", entry(), {"pubsub#frobnicate": ["1"]}),
        C.CONFLICT,
        "precondition-not-met",
    )


async def test_private_storage_preconditions(storage, rosters, events) -> None:
    """XEP-0223: persist_items + access_model whitelist; others may not read."""
    svc = pep(storage, rosters, events)
    opts = {"pubsub#persist_items": ["true"], "pubsub#access_model": ["whitelist"]}
    await svc.publish(JULIET_RES, "storage:bookmarks", "current", entry(), opts)
    await svc.publish(JULIET_RES, "storage:bookmarks", "current", entry(2), opts)
    rosters.put(JULIET, ROMEO.bare, "both")
    await expect_error(svc.items(ROMEO, "storage:bookmarks"), C.NOT_ALLOWED, "closed-node")
    assert len(await svc.items(JULIET_RES, "storage:bookmarks")) == 1


# ---------------------------------------------------------------------- access matrix
@pytest.mark.parametrize(
    ("model", "subscription", "groups", "allowed", "condition", "app"),
    [
        ("open", None, (), True, None, None),
        ("presence", "both", (), True, None, None),
        ("presence", "from", (), True, None, None),
        ("presence", "to", (), False, C.NOT_AUTHORIZED, "presence-subscription-required"),
        ("presence", None, (), False, C.NOT_AUTHORIZED, "presence-subscription-required"),
        ("roster", "both", ("friends",), True, None, None),
        ("roster", "both", ("work",), False, C.NOT_AUTHORIZED, "not-in-roster-group"),
        ("roster", None, (), False, C.NOT_AUTHORIZED, "not-in-roster-group"),
        ("whitelist", "both", ("friends",), False, C.NOT_ALLOWED, "closed-node"),
        ("authorize", "both", (), False, C.NOT_AUTHORIZED, "not-subscribed"),
    ],
)
async def test_access_models(
    storage, rosters, events, model, subscription, groups, allowed, condition, app
) -> None:
    svc = pep(storage, rosters, events)
    opts = {"pubsub#access_model": [model], "pubsub#roster_groups_allowed": ["friends"]}
    await svc.publish(JULIET_RES, "n", "a", entry(), opts)
    if subscription is not None:
        rosters.put(JULIET, ROMEO.bare, subscription, *groups)
    if allowed:
        assert len(await svc.items(ROMEO, "n")) == 1
        assert await svc.may_access("n", (await svc.node("n"))[1], ROMEO)
    else:
        await expect_error(svc.items(ROMEO, "n"), condition, app)
        assert not await svc.may_access("n", (await svc.node("n"))[1], ROMEO)


@pytest.mark.parametrize(
    ("affiliation", "read", "publish", "retract", "purge"),
    [
        ("owner", True, True, True, True),
        ("publisher", True, True, True, False),
        ("publish-only", False, True, False, False),
        ("member", True, False, False, False),
        ("none", False, False, False, False),
        ("outcast", False, False, False, False),
    ],
)
async def test_affiliation_matrix(
    storage, rosters, events, affiliation, read, publish, retract, purge
) -> None:
    svc = component(storage, rosters, events)
    owner = JULIET_RES
    await svc.create(
        owner, "news", {"pubsub#access_model": ["whitelist"], "pubsub#max_items": ["10"]}
    )
    await svc.publish(owner, "news", "first", entry())
    if affiliation == "owner":
        actor = owner
    else:
        actor = ROMEO
        await svc.set_owner_affiliations(owner, "news", [(ROMEO.bare, affiliation)])
    if read:
        assert len(await svc.items(actor, "news")) == 1
    else:
        with pytest.raises(PubSubError) as err:
            await svc.items(actor, "news")
        assert err.value.condition in (C.FORBIDDEN, C.NOT_ALLOWED)
    if publish:
        await svc.publish(actor, "news", "mine", entry())
    else:
        await expect_error(svc.publish(actor, "news", "mine", entry()), C.FORBIDDEN)
    if retract:
        await svc.retract(actor, "news", "first", notify=None)
    else:
        await expect_error(svc.retract(actor, "news", "first", notify=None), C.FORBIDDEN)
    if purge:
        await svc.purge(actor, "news")
    else:
        await expect_error(svc.purge(actor, "news"), C.FORBIDDEN)
        await expect_error(svc.delete(actor, "news"), C.FORBIDDEN)
        await expect_error(svc.get_config(actor, "news"), C.FORBIDDEN)


async def test_publish_only_retracts_its_own_items(storage, rosters, events) -> None:
    svc = component(storage, rosters, events)
    await svc.create(JULIET_RES, "news", {"pubsub#max_items": ["10"]})
    await svc.set_owner_affiliations(JULIET_RES, "news", [(ROMEO.bare, "publish-only")])
    await svc.publish(ROMEO, "news", "mine", entry())
    await svc.publish(JULIET_RES, "news", "hers", entry())
    await expect_error(svc.retract(ROMEO, "news", "hers", notify=None), C.FORBIDDEN)
    await svc.retract(ROMEO, "news", "mine", notify=None)


# ---------------------------------------------------------------------- service nodes
async def test_create_errors(storage, rosters, events) -> None:
    svc = component(storage, rosters, events)
    name = await svc.create(JULIET_RES, None)
    assert name
    await svc.create(JULIET_RES, "news")
    await expect_error(svc.create(ROMEO, "news"), C.CONFLICT)
    await expect_error(
        svc.create(JULIET_RES, "bad", {"pubsub#access_model": ["nobody"]}), C.NOT_ACCEPTABLE
    )
    pep_svc = pep(storage, rosters, events)
    await expect_error(pep_svc.create(JULIET_RES, None), C.NOT_ACCEPTABLE, "nodeid-required")
    await expect_error(pep_svc.create(ROMEO, "x"), C.FORBIDDEN)


async def test_missing_node_errors(storage, rosters, events) -> None:
    svc = component(storage, rosters, events)
    for call in (
        svc.publish(JULIET_RES, "nope", "a", entry()),
        svc.items(JULIET_RES, "nope"),
        svc.subscribe(ROMEO, "nope", ROMEO),
        svc.retract(JULIET_RES, "nope", "a", None),
        svc.delete(JULIET_RES, "nope"),
        svc.purge(JULIET_RES, "nope"),
        svc.get_config(JULIET_RES, "nope"),
    ):
        await expect_error(call, C.ITEM_NOT_FOUND)


async def test_retract_missing_item(storage, rosters, events) -> None:
    svc = component(storage, rosters, events)
    await svc.create(JULIET_RES, "news")
    await expect_error(svc.retract(JULIET_RES, "news", "ghost", None), C.ITEM_NOT_FOUND)


async def test_subscribe_and_notifications(storage, rosters, events) -> None:
    svc = component(storage, rosters, events)
    await svc.create(JULIET_RES, "news", {"pubsub#max_items": ["5"]})
    await svc.publish(JULIET_RES, "news", "old", entry())
    events.seen.clear()
    sub = await svc.subscribe(ROMEO, "news", ROMEO)
    assert sub.state == "subscribed" and sub.subid
    # the last item on subscription (send_last_published_item defaults to on_sub_and_presence)
    [last] = events.seen
    assert last.last_item and last.recipients == (ROMEO,) and last.items[0].id == "old"
    assert await svc.subscribe(ROMEO, "news", ROMEO) == sub  # one subscription per JID
    events.seen.clear()
    await svc.publish(JULIET_RES, "news", "new", entry())
    [event] = events.seen
    assert event.recipients == (ROMEO,) and event.kind == "items"
    await svc.retract(JULIET_RES, "news", "new", notify=True)
    assert events.seen[-1].kind == "retract" and events.seen[-1].retracted == ("new",)
    await svc.purge(JULIET_RES, "news")
    assert events.seen[-1].kind == "purge"
    await svc.delete(JULIET_RES, "news")
    assert events.seen[-1].kind == "delete" and events.seen[-1].recipients == (ROMEO,)


async def test_retract_notification_follows_notify_retract(storage, rosters, events) -> None:
    svc = component(storage, rosters, events)
    await svc.create(
        JULIET_RES, "news", {"pubsub#max_items": ["5"], "pubsub#notify_retract": ["0"]}
    )
    await svc.publish(JULIET_RES, "news", "a", entry())
    await svc.publish(JULIET_RES, "news", "b", entry())
    events.seen.clear()
    await svc.retract(JULIET_RES, "news", "a", notify=None)
    assert events.seen == []
    await svc.retract(JULIET_RES, "news", "b", notify=True)
    assert [e.kind for e in events.seen] == ["retract"]


async def test_subscribe_errors(storage, rosters, events) -> None:
    svc = component(storage, rosters, events)
    await svc.create(JULIET_RES, "news")
    await expect_error(svc.subscribe(ROMEO, "news", NURSE), C.BAD_REQUEST, "invalid-jid")
    await svc.set_owner_affiliations(JULIET_RES, "news", [(TYBALT.bare, "outcast")])
    await expect_error(svc.subscribe(TYBALT, "news", TYBALT), C.FORBIDDEN)


async def test_unsubscribe_errors(storage, rosters, events) -> None:
    svc = component(storage, rosters, events)
    await svc.create(JULIET_RES, "news")
    await expect_error(
        svc.unsubscribe(ROMEO, "news", ROMEO, None), C.UNEXPECTED_REQUEST, "not-subscribed"
    )
    sub = await svc.subscribe(ROMEO, "news", ROMEO)
    await expect_error(
        svc.unsubscribe(ROMEO, "news", ROMEO, "wrong"), C.NOT_ACCEPTABLE, "invalid-subid"
    )
    await expect_error(svc.unsubscribe(NURSE, "news", ROMEO, None), C.FORBIDDEN)
    await svc.unsubscribe(ROMEO, "news", ROMEO, sub.subid)
    assert await svc.owner_subscriptions(JULIET_RES, "news") == []


async def test_authorize_model_waits_for_the_owner(storage, rosters, events) -> None:
    svc = component(storage, rosters, events)
    await svc.create(JULIET_RES, "news", {"pubsub#access_model": ["authorize"]})
    await svc.publish(JULIET_RES, "news", "a", entry())
    sub = await svc.subscribe(ROMEO, "news", ROMEO)
    assert sub.state == "pending"
    await expect_error(svc.items(ROMEO, "news"), C.NOT_AUTHORIZED, "not-subscribed")
    events.seen.clear()
    await svc.set_owner_subscriptions(JULIET_RES, "news", [(ROMEO, "subscribed", None)])
    assert [i.id for i in await svc.items(ROMEO, "news")] == ["a"]
    assert events.seen[-1].last_item  # approved: gets the last item
    await svc.set_owner_subscriptions(JULIET_RES, "news", [(ROMEO, "none", None)])
    await expect_error(svc.items(ROMEO, "news"), C.NOT_AUTHORIZED, "not-subscribed")


async def test_last_owner_cannot_leave(storage, rosters, events) -> None:
    svc = component(storage, rosters, events)
    await svc.create(JULIET_RES, "news")
    await expect_error(
        svc.set_owner_affiliations(JULIET_RES, "news", [(JULIET, "none")]), C.NOT_ACCEPTABLE
    )
    await svc.set_owner_affiliations(JULIET_RES, "news", [(ROMEO.bare, "owner"), (JULIET, "none")])
    assert await svc.owner_affiliations(ROMEO, "news") == {str(ROMEO.bare): "owner"}


async def test_outcast_loses_its_subscription(storage, rosters, events) -> None:
    svc = component(storage, rosters, events)
    await svc.create(JULIET_RES, "news")
    await svc.subscribe(ROMEO, "news", ROMEO)
    await svc.set_owner_affiliations(JULIET_RES, "news", [(ROMEO.bare, "outcast")])
    assert await svc.owner_subscriptions(JULIET_RES, "news") == []


async def test_configure(storage, rosters, events) -> None:
    svc = component(storage, rosters, events)
    await svc.create(JULIET_RES, "news")
    await svc.configure(JULIET_RES, "news", {"pubsub#title": ["News"], "pubsub#max_items": ["7"]})
    config = await svc.get_config(JULIET_RES, "news")
    assert (config.title, config.max_items) == ("News", 7)
    await expect_error(
        svc.configure(JULIET_RES, "news", {"pubsub#max_items": ["zero"]}), C.NOT_ACCEPTABLE
    )


async def test_subscriptions_and_affiliations_of_an_entity(storage, rosters, events) -> None:
    svc = component(storage, rosters, events)
    await svc.create(JULIET_RES, "a")
    await svc.create(JULIET_RES, "b")
    await svc.subscribe(ROMEO, "a", ROMEO)
    await svc.subscribe(ROMEO, "b", ROMEO.bare)
    assert sorted(n for n, _ in await svc.subscriptions_of(ROMEO, None)) == ["a", "b"]
    assert [n for n, _ in await svc.subscriptions_of(ROMEO, "b")] == ["b"]
    assert await svc.affiliations_of(JULIET_RES, None) == {"a": "owner", "b": "owner"}
