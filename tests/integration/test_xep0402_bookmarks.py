"""XEP-0402 PEP Native Bookmarks with #compat (XEP-0049 private XML) and #compat-pep
(the XEP-0048 PEP node): each way of storing bookmarks shows up in the other two."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

from tests.integration.harness import RunningServer, q
from tests.integration.pubsub_helpers import (
    NS_EVENT,
    NS_PUBSUB,
    error_of,
    event,
    event_item_ids,
    get_items,
    iq_xml,
    item_ids,
    publish,
)
from tests.integration.test_xep0163_pep import pep_client

NS_BOOKMARKS = "urn:xmpp:bookmarks:1"
NS_LEGACY = "storage:bookmarks"
NS_PRIVATE = "jabber:iq:private"
NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
NATIVE_OPTIONS = {
    "persist_items": "true",
    "max_items": "max",
    "send_last_published_item": "never",
    "access_model": "whitelist",
}


def native(name: str, *, autojoin: bool = True, nick: str | None = None, ext: str = "") -> str:
    inner = f"<nick>{nick}</nick>" if nick else ""
    inner += f"<extensions>{ext}</extensions>" if ext else ""
    flag = "true" if autojoin else "false"
    return (
        f"<conference xmlns='{NS_BOOKMARKS}' name='{name}' autojoin='{flag}'>{inner}</conference>"
    )


async def private_get(client: Any) -> ET.Element:
    reply = await iq_xml(
        client, f"<query xmlns='{NS_PRIVATE}'><storage xmlns='{NS_LEGACY}'/></query>", "get"
    )
    assert reply["type"] == "result", reply
    storage = reply.xml.find(f"{q(NS_PRIVATE, 'query')}/{q(NS_LEGACY, 'storage')}")
    assert storage is not None
    return storage


async def private_set(client: Any, storage: str) -> None:
    reply = await iq_xml(client, f"<query xmlns='{NS_PRIVATE}'>{storage}</query>")
    assert reply["type"] == "result", reply


def conferences(storage: ET.Element) -> dict[str, ET.Element]:
    return {c.get("jid") or "": c for c in storage.findall(q(NS_LEGACY, "conference"))}


async def native_items(client: Any, jid: str) -> dict[str, ET.Element]:
    reply = await get_items(client, jid, NS_BOOKMARKS)
    assert reply["type"] == "result", reply
    items = reply.xml.find(f"{q(NS_PUBSUB, 'pubsub')}/{q(NS_PUBSUB, 'items')}")
    found = {}
    for item in items.findall(q(NS_PUBSUB, "item")):
        conference = item.find(q(NS_BOOKMARKS, "conference"))
        assert conference is not None
        found[item.get("id") or ""] = conference
    return found


async def legacy_pep(client: Any, jid: str) -> ET.Element:
    reply = await get_items(client, jid, NS_LEGACY)
    assert reply["type"] == "result", reply
    assert item_ids(reply) == ["current"]
    storage = reply.xml.find(
        f"{q(NS_PUBSUB, 'pubsub')}/{q(NS_PUBSUB, 'items')}/{q(NS_PUBSUB, 'item')}/"
        f"{q(NS_LEGACY, 'storage')}"
    )
    assert storage is not None
    return storage


async def test_account_advertises_compat_features(server: RunningServer) -> None:
    jid = await server.add_user()
    client = await pep_client(server, jid, available=False)
    reply = await iq_xml(client, f"<query xmlns='{NS_DISCO_INFO}'/>", "get", jid)
    features = {f.get("var") for f in reply.xml.iter(q(NS_DISCO_INFO, "feature"))}
    assert {f"{NS_BOOKMARKS}#compat", f"{NS_BOOKMARKS}#compat-pep"} <= features
    await client.disconnect()


async def test_native_publish_shows_in_private_xml_and_legacy_pep(server: RunningServer) -> None:
    jid = await server.add_user()
    client = await pep_client(server, jid, available=False)
    ext = "<state xmlns='urn:example:ext'>pinned</state>"
    room = "orchard@conference.localhost"
    result = await publish(
        client, NS_BOOKMARKS, room, native("Orchard", nick="J", ext=ext), **NATIVE_OPTIONS
    )
    assert result["type"] == "result", result
    for storage in (await private_get(client), await legacy_pep(client, jid)):
        found = conferences(storage)
        assert list(found) == [room]
        conference = found[room]
        assert conference.get("name") == "Orchard"
        assert conference.get("autojoin") in ("true", "1")
        assert conference.findtext(q(NS_LEGACY, "nick")) == "J"
        # the native <extensions/> children travel as children of the legacy conference
        assert conference.findtext(q("urn:example:ext", "state")) == "pinned"
    # a second room, then retracting the first: the legacy forms follow
    other = "garden@conference.localhost"
    await publish(client, NS_BOOKMARKS, other, native("Garden", autojoin=False), **NATIVE_OPTIONS)
    retract = (
        f"<pubsub xmlns='{NS_PUBSUB}'><retract node='{NS_BOOKMARKS}' notify='true'>"
        f"<item id='{room}'/></retract></pubsub>"
    )
    assert (await iq_xml(client, retract))["type"] == "result"
    for storage in (await private_get(client), await legacy_pep(client, jid)):
        found = conferences(storage)
        assert list(found) == [other]
        assert found[other].get("autojoin") in ("false", "0")
    await client.disconnect()


async def test_private_xml_write_becomes_native_items_with_notifications(
    server: RunningServer,
) -> None:
    jid = await server.add_user()
    watcher = await pep_client(server, jid, (NS_BOOKMARKS,))
    legacy = await pep_client(server, jid, available=False)
    a, b = "a@conference.localhost", "b@conference.localhost"
    url = "<url name='Site' url='https://example.org/'/>"
    await private_set(
        legacy,
        f"<storage xmlns='{NS_LEGACY}'>"
        f"<conference jid='{a}' name='A' autojoin='true'><nick>me</nick>"
        "<password>pw</password></conference>"
        f"<conference jid='{b}' name='B'/>{url}</storage>",
    )
    seen = set()
    for _ in range(2):
        seen.update(event_item_ids(await watcher.expect(event(NS_BOOKMARKS, sender=jid))))
    assert seen == {a, b}
    items = await native_items(legacy, jid)
    assert set(items) == {a, b}
    assert items[a].get("name") == "A" and items[a].get("autojoin") in ("true", "1")
    assert items[a].findtext(q(NS_BOOKMARKS, "nick")) == "me"
    assert items[a].findtext(q(NS_BOOKMARKS, "password")) == "pw"
    assert items[b].get("autojoin") in ("false", "0")
    # the legacy PEP node has the same storage
    assert set(conferences(await legacy_pep(legacy, jid))) == {a, b}
    # dropping a room from the private XML retracts its native item, with a notification
    await private_set(
        legacy,
        f"<storage xmlns='{NS_LEGACY}'><conference jid='{a}' name='A' autojoin='true'>"
        f"<nick>me</nick><password>pw</password></conference>{url}</storage>",
    )
    retracted = await watcher.expect(event(NS_BOOKMARKS, "retract", sender=jid))
    node = retracted.xml.find(f"{q(NS_EVENT, 'event')}/{q(NS_EVENT, 'items')}")
    assert [r.get("id") for r in node.findall(q(NS_EVENT, "retract"))] == [b]
    # the unchanged room was not published again
    await watcher.expect_nothing(event(NS_BOOKMARKS, sender=jid))
    assert set(await native_items(legacy, jid)) == {a}
    # a native publish keeps the legacy <url/> bookmarks, which have no native form
    await publish(legacy, NS_BOOKMARKS, b, native("B again"), **NATIVE_OPTIONS)
    storage = await private_get(legacy)
    assert set(conferences(storage)) == {a, b}
    assert [u.get("url") for u in storage.findall(q(NS_LEGACY, "url"))] == ["https://example.org/"]
    await watcher.disconnect()
    await legacy.disconnect()


async def test_legacy_pep_publish_reaches_private_xml_and_native(server: RunningServer) -> None:
    jid = await server.add_user()
    client = await pep_client(server, jid, available=False)
    room = "c@conference.localhost"
    storage = (
        f"<storage xmlns='{NS_LEGACY}'><conference jid='{room}' name='C' autojoin='1'/></storage>"
    )
    result = await publish(
        client, NS_LEGACY, "current", storage, persist_items="true", access_model="whitelist"
    )
    assert result["type"] == "result", result
    assert list(conferences(await private_get(client))) == [room]
    items = await native_items(client, jid)
    assert list(items) == [room]
    assert items[room].get("name") == "C"
    assert items[room].get("autojoin") in ("true", "1")
    await client.disconnect()


async def test_native_bookmarks_are_private(server: RunningServer) -> None:
    owner, other = await server.add_user(), await server.add_user()
    client = await pep_client(server, owner, available=False)
    stranger = await pep_client(server, other, available=False)
    await private_set(
        client,
        f"<storage xmlns='{NS_LEGACY}'><conference jid='x@conference.localhost'/></storage>",
    )
    # the server published with the whitelist access model of XEP-0402 §3
    assert error_of(await get_items(stranger, owner, NS_BOOKMARKS)) == (
        "cancel",
        "not-allowed",
        "closed-node",
    )
    assert error_of(await get_items(stranger, owner, NS_LEGACY))[1] == "not-allowed"
    # and a client publishing with the same publish-options meets the node's configuration
    result = await publish(
        client, NS_BOOKMARKS, "y@conference.localhost", native("Y"), **NATIVE_OPTIONS
    )
    assert result["type"] == "result", result
    await client.disconnect()
    await stranger.disconnect()
