"""XEP-0060 at pubsub.localhost: discovery, node creation and configuration, subscriptions
with subids, publish/retract notifications, owner-managed affiliations and subscriptions,
access models, and the exact errors."""

from __future__ import annotations

from tests.integration.harness import RunningServer
from tests.integration.pubsub_helpers import (
    NS_OWNER,
    NS_PUBSUB,
    error_of,
    event,
    event_item_ids,
    get_items,
    iq_xml,
    item_ids,
    options,
    publish_xml,
)
from tests.integration.test_xep0163_pep import pep_client

SERVICE = "pubsub.localhost"
NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
NS_DISCO_ITEMS = "http://jabber.org/protocol/disco#items"
NODE_CONFIG = "http://jabber.org/protocol/pubsub#node_config"


def entry(text: str) -> str:
    return f"<entry xmlns='http://www.w3.org/2005/Atom'><title>{text}</title></entry>"


async def create(client, node: str, **config: str):  # type: ignore[no-untyped-def]
    configure = f"<configure>{options(NODE_CONFIG, **config)}</configure>" if config else ""
    xml = f"<pubsub xmlns='{NS_PUBSUB}'><create node='{node}'/>{configure}</pubsub>"
    return await iq_xml(client, xml, "set", SERVICE)


async def subscribe(client, node: str, jid: str | None = None):  # type: ignore[no-untyped-def]
    xml = (
        f"<pubsub xmlns='{NS_PUBSUB}'><subscribe node='{node}' jid='{jid or client.jid}'/></pubsub>"
    )
    return await iq_xml(client, xml, "set", SERVICE)


async def test_service_is_discoverable(server: RunningServer) -> None:
    client = await pep_client(server, await server.add_user(), available=False)
    items = await iq_xml(client, f"<query xmlns='{NS_DISCO_ITEMS}'/>", "get", "localhost")
    assert SERVICE in {i.get("jid") for i in items.xml.iter(f"{{{NS_DISCO_ITEMS}}}item")}
    info = await iq_xml(client, f"<query xmlns='{NS_DISCO_INFO}'/>", "get", SERVICE)
    identities = {
        (i.get("category"), i.get("type")) for i in info.xml.iter(f"{{{NS_DISCO_INFO}}}identity")
    }
    assert ("pubsub", "service") in identities
    features = {f.get("var") for f in info.xml.iter(f"{{{NS_DISCO_INFO}}}feature")}
    assert {NS_PUBSUB, f"{NS_PUBSUB}#create-nodes", f"{NS_PUBSUB}#publish-options"} <= features
    await client.disconnect()


async def test_create_publish_subscribe_notify_retract(server: RunningServer) -> None:
    owner = await pep_client(server, await server.add_user())
    reader = await pep_client(server, await server.add_user())
    assert (await create(owner, "news", max_items="10", title="News"))["type"] == "result"
    assert error_of(await create(reader, "news")) == ("cancel", "conflict", None)
    # listed in disco#items of the service
    listing = await iq_xml(reader, f"<query xmlns='{NS_DISCO_ITEMS}'/>", "get", SERVICE)
    assert "news" in {i.get("node") for i in listing.xml.iter(f"{{{NS_DISCO_ITEMS}}}item")}

    sub = await subscribe(reader, "news")
    subscription = sub.xml.find(f"{{{NS_PUBSUB}}}pubsub/{{{NS_PUBSUB}}}subscription")
    assert subscription is not None
    assert subscription.get("subscription") == "subscribed" and subscription.get("subid")
    subid = subscription.get("subid")

    result = await iq_xml(owner, publish_xml("news", "first", entry("hello")), "set", SERVICE)
    assert result["type"] == "result"
    got = await reader.expect(event("news", sender=SERVICE))
    assert event_item_ids(got) == ["first"] and got["type"] == "headline"
    assert item_ids(await get_items(reader, SERVICE, "news")) == ["first"]

    # only publishers publish
    refused = await iq_xml(reader, publish_xml("news", "x", entry("x")), "set", SERVICE)
    assert error_of(refused) == ("auth", "forbidden", None)

    retract = (
        f"<pubsub xmlns='{NS_PUBSUB}'><retract node='news'><item id='first'/></retract></pubsub>"
    )
    assert (await iq_xml(owner, retract, "set", SERVICE))["type"] == "result"
    await reader.expect(event("news", "retract", sender=SERVICE))

    # unsubscribe: a wrong subid, then the right one, then not subscribed any more
    def unsub(sid: str) -> str:
        return (
            f"<pubsub xmlns='{NS_PUBSUB}'><unsubscribe node='news' jid='{reader.jid}' "
            f"subid='{sid}'/></pubsub>"
        )

    assert error_of(await iq_xml(reader, unsub("nope"), "set", SERVICE)) == (
        "modify",
        "not-acceptable",
        "invalid-subid",
    )
    assert (await iq_xml(reader, unsub(subid), "set", SERVICE))["type"] == "result"
    assert error_of(await iq_xml(reader, unsub(subid), "set", SERVICE)) == (
        "cancel",
        "unexpected-request",
        "not-subscribed",
    )
    await iq_xml(owner, publish_xml("news", "second", entry("again")), "set", SERVICE)
    await reader.expect_nothing(event("news"))
    await owner.disconnect()
    await reader.disconnect()


async def test_errors_of_requests(server: RunningServer) -> None:
    client = await pep_client(server, await server.add_user(), available=False)
    missing = await get_items(client, SERVICE, "nothing-here")
    assert error_of(missing) == ("cancel", "item-not-found", None)
    other = await subscribe(client, "nothing-here", "someone@localhost")
    assert error_of(other) == ("modify", "bad-request", "invalid-jid")
    no_node = f"<pubsub xmlns='{NS_PUBSUB}'><items/></pubsub>"
    assert error_of(await iq_xml(client, no_node, "get", SERVICE)) == (
        "modify",
        "bad-request",
        "nodeid-required",
    )
    instant = await iq_xml(
        client, f"<pubsub xmlns='{NS_PUBSUB}'><create/></pubsub>", "set", SERVICE
    )
    created = instant.xml.find(f"{{{NS_PUBSUB}}}pubsub/{{{NS_PUBSUB}}}create")
    assert created is not None and created.get("node")
    await client.disconnect()


async def test_owner_manages_affiliations_and_whitelist(server: RunningServer) -> None:
    owner = await pep_client(server, await server.add_user(), available=False)
    member_jid = await server.add_user()
    member = await pep_client(server, member_jid, available=False)
    outsider = await pep_client(server, await server.add_user(), available=False)
    await create(owner, "club", access_model="whitelist", max_items="5")
    await iq_xml(owner, publish_xml("club", "a", entry("secret")), "set", SERVICE)

    assert error_of(await get_items(member, SERVICE, "club")) == (
        "cancel",
        "not-allowed",
        "closed-node",
    )
    affs = (
        f"<pubsub xmlns='{NS_OWNER}'><affiliations node='club'>"
        f"<affiliation jid='{member_jid}' affiliation='member'/></affiliations></pubsub>"
    )
    assert error_of(await iq_xml(member, affs, "set", SERVICE)) == ("auth", "forbidden", None)
    assert (await iq_xml(owner, affs, "set", SERVICE))["type"] == "result"
    assert item_ids(await get_items(member, SERVICE, "club")) == ["a"]
    assert error_of(await get_items(outsider, SERVICE, "club"))[2] == "closed-node"

    listing = await iq_xml(
        owner, f"<pubsub xmlns='{NS_OWNER}'><affiliations node='club'/></pubsub>", "get", SERVICE
    )
    found = {
        a.get("jid"): a.get("affiliation") for a in listing.xml.iter(f"{{{NS_OWNER}}}affiliation")
    }
    assert found[member_jid] == "member"

    # owner lists and removes subscriptions
    await subscribe(member, "club")
    subs = await iq_xml(
        owner, f"<pubsub xmlns='{NS_OWNER}'><subscriptions node='club'/></pubsub>", "get", SERVICE
    )
    assert [s.get("jid") for s in subs.xml.iter(f"{{{NS_OWNER}}}subscription")] == [member.jid]
    remove = (
        f"<pubsub xmlns='{NS_OWNER}'><subscriptions node='club'>"
        f"<subscription jid='{member.jid}' subscription='none'/></subscriptions></pubsub>"
    )
    assert (await iq_xml(owner, remove, "set", SERVICE))["type"] == "result"
    subs = await iq_xml(
        owner, f"<pubsub xmlns='{NS_OWNER}'><subscriptions node='club'/></pubsub>", "get", SERVICE
    )
    assert list(subs.xml.iter(f"{{{NS_OWNER}}}subscription")) == []

    # configure and delete: owner only; subscribers hear of the deletion
    await subscribe(member, "club")
    form = options(NODE_CONFIG, title="Club")
    conf = f"<pubsub xmlns='{NS_OWNER}'><configure node='club'>{form}</configure></pubsub>"
    assert error_of(await iq_xml(member, conf, "set", SERVICE)) == ("auth", "forbidden", None)
    assert (await iq_xml(owner, conf, "set", SERVICE))["type"] == "result"
    delete = f"<pubsub xmlns='{NS_OWNER}'><delete node='club'/></pubsub>"
    assert error_of(await iq_xml(member, delete, "set", SERVICE)) == ("auth", "forbidden", None)
    assert (await iq_xml(owner, delete, "set", SERVICE))["type"] == "result"
    await member.expect(event("club", "delete", sender=SERVICE))
    assert error_of(await get_items(owner, SERVICE, "club"))[1] == "item-not-found"
    for c in (owner, member, outsider):
        await c.disconnect()
