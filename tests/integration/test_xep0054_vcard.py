"""XEP-0054: vcard-temp stored by the server; XEP-0153 avatar hashes pass through presence."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from slixmpp.exceptions import IqError

from tests.integration.harness import (
    RunningServer,
    SlixClient,
    connect_slixmpp,
    q,
    raw_session,
)

NS_VCARD = "vcard-temp"
NS_VCARD_UPDATE = "vcard-temp:x:update"
MODULES = ["disco", "presence", "message", "vcard"]
ServerFactory = Callable[..., Awaitable[RunningServer]]


@pytest.fixture
async def server(server_factory: ServerFactory) -> RunningServer:
    return await server_factory(modules=MODULES)


async def connect(server: RunningServer, jid: str | None = None) -> SlixClient:
    client = await connect_slixmpp(server, jid or await server.add_user())
    client.xmpp.register_plugin("xep_0054")
    return client


def make_vcard(client: SlixClient, name: str, photo: bytes = b"\x89PNG\r\n") -> Any:
    vcard = client.xmpp.plugin["xep_0054"].make_vcard()
    vcard["FN"] = name
    vcard["NICKNAME"] = name.split()[0].lower()
    vcard["N"]["GIVEN"] = name.split()[0]
    vcard["N"]["FAMILY"] = name.split()[-1]
    vcard["PHOTO"]["TYPE"] = "image/png"
    vcard["PHOTO"]["BINVAL"] = photo
    return vcard


def tree(element: ET.Element) -> tuple[Any, ...]:
    """An element as nested tuples, for comparing XML by content."""
    children = tuple(tree(child) for child in element)
    return (element.tag, dict(element.attrib), (element.text or "").strip(), children)


async def fetch(client: SlixClient, jid: str) -> ET.Element:
    reply = await client.xmpp.plugin["xep_0054"].get_vcard(jid)
    vcard = reply.xml.find(q(NS_VCARD, "vCard"))
    assert vcard is not None
    return vcard


async def error_of(coro: Awaitable[Any]) -> str:
    try:
        await coro
    except IqError as err:
        return str(err.condition)
    raise AssertionError("expected an error")


async def publish(client: SlixClient, vcard: Any, to: str | None = None) -> None:
    await client.xmpp.plugin["xep_0054"].publish_vcard(vcard, jid=to)


async def test_user_stores_and_reads_back_their_vcard(server: RunningServer) -> None:
    client = await connect(server)
    vcard = make_vcard(client, "Juliet Capulet")
    await publish(client, vcard)
    stored = await fetch(client, client.xmpp.boundjid.bare)
    assert tree(stored) == tree(vcard.xml)
    await client.disconnect()


async def test_others_read_a_users_vcard_from_the_server(server: RunningServer) -> None:
    juliet = await connect(server)
    vcard = make_vcard(juliet, "Juliet Capulet")
    await publish(juliet, vcard)
    await juliet.disconnect()  # the server answers for the account (XEP-0054 §3.3)
    romeo = await connect(server)
    reply = await romeo.xmpp.plugin["xep_0054"].get_vcard(juliet.xmpp.boundjid.bare)
    assert str(reply["from"]) == juliet.xmpp.boundjid.bare
    stored = reply.xml.find(q(NS_VCARD, "vCard"))
    assert stored is not None and tree(stored) == tree(vcard.xml)
    await romeo.disconnect()


async def test_a_new_vcard_replaces_the_whole_old_one(server: RunningServer) -> None:
    client = await connect(server)
    await publish(client, make_vcard(client, "Juliet Capulet"))
    second = client.xmpp.plugin["xep_0054"].make_vcard()
    second["FN"] = "Juliet Montague"
    await publish(client, second)
    stored = await fetch(client, client.xmpp.boundjid.bare)
    assert tree(stored) == tree(second.xml)
    assert stored.find(q(NS_VCARD, "PHOTO")) is None
    await client.disconnect()


async def test_own_vcard_when_none_is_stored_is_empty(server: RunningServer) -> None:
    client = await connect(server)
    stored = await fetch(client, client.xmpp.boundjid.bare)
    assert len(stored) == 0 and not (stored.text or "").strip()
    await client.disconnect()


async def test_an_empty_vcard_clears_the_stored_one(server: RunningServer) -> None:
    client = await connect(server)
    await publish(client, make_vcard(client, "Juliet Capulet"))
    await publish(client, client.xmpp.plugin["xep_0054"].make_vcard())
    assert len(await fetch(client, client.xmpp.boundjid.bare)) == 0
    await client.disconnect()


async def test_other_users_missing_vcard_is_item_not_found(server: RunningServer) -> None:
    client = await connect(server)
    other = await server.add_user()
    assert await error_of(fetch(client, other)) == "item-not-found"
    await client.disconnect()


async def test_vcard_of_an_unknown_account_is_service_unavailable(server: RunningServer) -> None:
    client = await connect(server)
    assert await error_of(fetch(client, f"nobody@{server.domain}")) == "service-unavailable"
    await client.disconnect()


async def test_setting_another_users_vcard_is_forbidden(server: RunningServer) -> None:
    juliet, romeo = await connect(server), await connect(server)
    original = make_vcard(juliet, "Juliet Capulet")
    await publish(juliet, original)
    forged = make_vcard(romeo, "Rosaline Capulet")
    juliet_jid = juliet.xmpp.boundjid.bare
    assert await error_of(publish(romeo, forged, to=juliet_jid)) == "forbidden"
    assert tree(await fetch(romeo, juliet_jid)) == tree(original.xml)
    await juliet.disconnect()
    await romeo.disconnect()


async def test_oversize_vcard_is_not_acceptable(server_factory: ServerFactory) -> None:
    server = await server_factory(modules=MODULES, module_options={"vcard": {"max_bytes": 2048}})
    client = await connect(server)
    small = make_vcard(client, "Juliet Capulet")
    await publish(client, small)
    big = make_vcard(client, "Juliet Capulet", photo=b"A" * 4096)
    assert await error_of(publish(client, big)) == "not-acceptable"
    assert tree(await fetch(client, client.xmpp.boundjid.bare)) == tree(small.xml)
    await client.disconnect()


async def test_vcard_temp_is_advertised_in_disco(server: RunningServer) -> None:
    client = await connect(server)
    info = await client.xmpp.plugin["xep_0030"].get_info(jid=server.domain)
    assert NS_VCARD in info["disco_info"]["features"]
    await client.disconnect()


async def test_avatar_hash_in_presence_reaches_other_resource_unchanged(
    server: RunningServer,
) -> None:
    # XEP-0153 §3: the server leaves <x xmlns='vcard-temp:x:update'/> in presence alone.
    jid = await server.add_user()
    watcher, _ = await raw_session(server, jid, resource="watcher")
    await watcher.send("<presence/>")
    await watcher.next()  # its own presence
    sender, sender_jid = await raw_session(server, jid, resource="sender")
    photo = "01b87fcd030b72895ff8e88db57ec525450f000d"
    await sender.send(
        f"<presence><show>away</show><x xmlns='{NS_VCARD_UPDATE}'>"
        f"<photo>{photo}</photo></x></presence>"
    )
    presence = await watcher.next()
    assert presence.get("from") == sender_jid
    update = presence.find(q(NS_VCARD_UPDATE, "x"))
    assert update is not None
    assert tree(update) == (
        q(NS_VCARD_UPDATE, "x"),
        {},
        "",
        ((q(NS_VCARD_UPDATE, "photo"), {}, photo, ()),),
    )
    await watcher.close()
    await sender.close()
