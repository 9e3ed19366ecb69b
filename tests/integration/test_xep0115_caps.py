"""XEP-0115: the server's Entity Capabilities, offered as a stream feature (§6.3)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable
from typing import Any

from slixmpp.exceptions import IqError

from tests.integration.harness import (
    NS_SASL,
    RawClient,
    RunningServer,
    SlixClient,
    connect_slixmpp,
    q,
)

NS_CAPS = "http://jabber.org/protocol/caps"
NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
DEFAULT_NODE = "https://salon.example/caps"
MODULES = ["disco", "ping", "version", "presence", "message", "caps"]
ServerFactory = Callable[..., Awaitable[RunningServer]]


async def stream_features(server: RunningServer) -> tuple[ET.Element, ET.Element]:
    """The features offered before and after authentication."""
    jid = await server.add_user()
    client = await RawClient.connect(server)
    await client.open()
    await client.starttls(server)
    before = await client.open()
    success = await client.auth_plain(jid)
    assert success.tag == q(NS_SASL, "success")
    after = await client.open()
    await client.close()
    return before, after


async def advertised_caps(server: RunningServer) -> ET.Element:
    _, after = await stream_features(server)
    caps = after.find(q(NS_CAPS, "c"))
    assert caps is not None, ET.tostring(after)
    return caps


async def disco_client(server: RunningServer) -> SlixClient:
    client = await connect_slixmpp(server, await server.add_user())
    client.xmpp.register_plugin("xep_0030")
    client.xmpp.register_plugin("xep_0115")  # a real client's own ver computation
    return client


async def disco_info(client: SlixClient, server: RunningServer, node: str | None = None) -> Any:
    reply = await client.xmpp.plugin["xep_0030"].get_info(jid=server.domain, node=node)
    return reply["disco_info"]


def content(info: Any) -> tuple[Any, ...]:
    """What the hash covers, independent of element order."""
    forms = sorted(ET.tostring(x) for x in info.xml.findall("{jabber:x:data}x"))
    return (sorted(info["identities"]), sorted(info["features"]), forms)


async def test_caps_are_offered_after_authentication_only(server_factory: ServerFactory) -> None:
    server = await server_factory(modules=MODULES)
    before, after = await stream_features(server)
    assert before.find(q(NS_CAPS, "c")) is None
    caps = after.find(q(NS_CAPS, "c"))
    assert caps is not None
    assert caps.get("hash") == "sha-1"
    assert caps.get("node") == DEFAULT_NODE
    assert caps.get("ver")


async def test_ver_is_the_hash_of_the_info_at_its_node(server_factory: ServerFactory) -> None:
    server = await server_factory(modules=MODULES)
    caps = await advertised_caps(server)
    ver = caps.get("ver")
    client = await disco_client(server)
    info = await disco_info(client, server, node=f"{DEFAULT_NODE}#{ver}")
    assert info["node"] == f"{DEFAULT_NODE}#{ver}"  # XEP-0115 §6.2: the node is echoed
    assert client.xmpp.plugin["xep_0115"].generate_verstring(info, "sha-1") == ver
    assert content(info) == content(await disco_info(client, server))
    await client.disconnect()


async def test_ver_covers_extension_forms(server_factory: ServerFactory) -> None:
    plain = await server_factory(modules=MODULES)
    options = {"contact": {"admin": ["mailto:xmpp@example.org", "xmpp:admin@example.org"]}}
    with_form = await server_factory(modules=[*MODULES, "contact"], module_options=options)
    plain_ver = (await advertised_caps(plain)).get("ver")
    ver = (await advertised_caps(with_form)).get("ver")
    assert ver != plain_ver
    client = await disco_client(with_form)
    info = await disco_info(client, with_form, node=f"{DEFAULT_NODE}#{ver}")
    assert info.xml.find("{jabber:x:data}x") is not None
    assert client.xmpp.plugin["xep_0115"].generate_verstring(info, "sha-1") == ver
    await client.disconnect()


async def test_node_can_be_configured(server_factory: ServerFactory) -> None:
    node = "https://salon.test/caps"
    server = await server_factory(modules=MODULES, module_options={"caps": {"node": node}})
    caps = await advertised_caps(server)
    assert caps.get("node") == node
    client = await disco_client(server)
    info = await disco_info(client, server, node=f"{node}#{caps.get('ver')}")
    assert info["node"] == f"{node}#{caps.get('ver')}"
    await client.disconnect()


async def test_other_node_is_item_not_found(server_factory: ServerFactory) -> None:
    server = await server_factory(modules=MODULES)
    client = await disco_client(server)
    try:
        await disco_info(client, server, node=f"{DEFAULT_NODE}#bm90IHRoZSB2ZXI=")
    except IqError as err:
        assert err.condition == "item-not-found"
    else:
        raise AssertionError("expected an error")
    await client.disconnect()


async def test_caps_optimisation_is_not_claimed(server_factory: ServerFactory) -> None:
    # XEP-0115 §8.4: announcing the caps feature would oblige the server to strip and
    # replay caps in presence, which it does not do.
    server = await server_factory(modules=MODULES)
    client = await disco_client(server)
    assert NS_CAPS not in (await disco_info(client, server))["features"]
    await client.disconnect()
