"""RFC 6121 §8.5: how the server handles messages to local accounts, by type and address.

Juliet is online with five resources: ``a`` and ``b`` at priority 5, ``c`` at 1, ``d`` at
-1, and ``e`` connected but never available. Romeo sends.
"""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pytest

from tests.integration.harness import RunningServer, SlixClient, connect_slixmpp, q
from tests.integration.message_helpers import (
    MODULES,
    available,
    delay_of,
    is_error_message,
    is_message,
    send_message,
    sync,
)

Factory = Callable[..., Awaitable[RunningServer]]
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"


@dataclass
class Scene:
    srv: RunningServer
    romeo: SlixClient
    juliet: dict[str, SlixClient]  # by resource

    @property
    def bare(self) -> str:
        return "juliet@localhost"

    async def delivered(self, body: str, *resources: str) -> None:
        """Each of ``resources`` receives ``body`` as its next message."""
        for resource in resources:
            message = await self.juliet[resource].expect(is_message)
            assert message["body"] == body, (resource, message["body"], body)

    async def nothing_else(self) -> None:
        """No other message reached any of Juliet's resources (checked side by side)."""
        await asyncio.gather(
            *(c.expect_nothing(lambda s: s.name == "message") for c in self.juliet.values())
        )

    async def romeo_gets_no_error(self) -> None:
        await sync(self.romeo)
        await self.romeo.expect_nothing(lambda s: s.name == "message")

    async def romeo_gets(self, condition: str, body: str) -> None:
        error = await self.romeo.expect(lambda s: is_error_message(s, condition))
        assert error["body"] == body  # RFC 6120 §8.3.1: the original payload comes back


async def make_scene(server_factory: Factory) -> Scene:
    srv = await server_factory(modules=MODULES)
    await srv.add_user("juliet")
    priorities = {"a": 5, "b": 5, "c": 1, "d": -1, "e": None}
    romeo, *clients = await asyncio.gather(
        connect_slixmpp(srv, await srv.add_user("romeo")),
        *(connect_slixmpp(srv, f"juliet@localhost/{r}") for r in priorities),
    )
    juliet = dict(zip(priorities, clients, strict=True))
    for resource, priority in priorities.items():
        if priority is not None:
            await available(juliet[resource], priority)
    return Scene(srv, romeo, juliet)


@pytest.fixture
async def scene(server_factory: Factory) -> Scene:
    return await make_scene(server_factory)


def error_element() -> ET.Element:
    error = ET.Element(q("jabber:client", "error"), {"type": "cancel"})
    error.append(ET.Element(q(NS_STANZAS, "item-not-found")))
    return error


# --------------------------------------------------------------------------- bare JID
async def test_bare_jid_rules_by_type(scene: Scene) -> None:
    """§8.5.2.1.1: chat and normal go to the highest non-negative priority resources,
    headline to every non-negative one, groupchat is refused, error is dropped; a resource
    that never sent presence gets none of them."""
    send_message(scene.romeo, scene.bare, "chat", "chat")
    await scene.delivered("chat", "a", "b")
    send_message(scene.romeo, scene.bare, "normal", None)
    await scene.delivered("normal", "a", "b")
    send_message(scene.romeo, scene.bare, "news", "headline")
    await scene.delivered("news", "a", "b", "c")
    send_message(scene.romeo, scene.bare, "room talk", "groupchat")
    await scene.romeo_gets("service-unavailable", "room talk")
    send_message(scene.romeo, scene.bare, "oops", "error", (error_element(),))
    await scene.romeo_gets_no_error()
    await scene.nothing_else()


async def test_only_negative_resources_means_offline_storage(server_factory: Factory) -> None:
    srv = await server_factory(modules=MODULES)
    romeo = await connect_slixmpp(srv, await srv.add_user("romeo"))
    juliet = await connect_slixmpp(srv, f"{await srv.add_user('juliet')}/shy")
    await available(juliet, -5)
    send_message(romeo, "juliet@localhost", "kept for later")
    await sync(romeo)
    await romeo.expect_nothing(lambda s: s.name == "message")  # §8.5.2.1.2 → §8.5.2.2
    await juliet.expect_nothing(is_message)
    assert await srv.server.core.storage.offline.count("localhost", "juliet") == 1


# --------------------------------------------------------------------------- full JID
async def test_full_jid_of_a_connected_resource_gets_every_type(scene: Scene) -> None:
    """§8.5.3.1: delivered to that resource, even at negative priority (d) or before it sent
    presence (e)."""
    for resource in ("d", "e"):
        for mtype in ("chat", None, "headline", "groupchat"):
            body = f"{mtype} for {resource}"
            send_message(scene.romeo, f"{scene.bare}/{resource}", body, mtype)
            await scene.delivered(body, resource)
    await scene.romeo_gets_no_error()
    await scene.nothing_else()


async def test_full_jid_of_an_absent_resource_rules_by_type(scene: Scene) -> None:
    """§8.5.3.2.1: chat follows the bare JID rules; normal and groupchat are bounced (the
    RFC allows dropping them, but nothing accepted is dropped here); headline and error are
    silently ignored."""
    gone = f"{scene.bare}/gone"
    send_message(scene.romeo, gone, "where art thou", "chat")
    await scene.delivered("where art thou", "a", "b")
    for mtype in (None, "groupchat"):
        send_message(scene.romeo, gone, f"{mtype} anyone", mtype)
        await scene.romeo_gets("service-unavailable", f"{mtype} anyone")
    send_message(scene.romeo, gone, "lost news", "headline")
    send_message(scene.romeo, gone, "lost error", "error", (error_element(),))
    await scene.romeo_gets_no_error()
    await scene.nothing_else()


# --------------------------------------------------------------------------- offline user
async def test_messages_to_an_offline_user(server_factory: Factory) -> None:
    srv = await server_factory(modules=MODULES)
    romeo = await connect_slixmpp(srv, await srv.add_user("romeo"))
    await srv.add_user("juliet")
    send_message(romeo, "juliet@localhost", "stored chat", "chat")  # §8.5.2.2.1: storage
    send_message(romeo, "juliet@localhost/balcony", "stored via full", "chat")  # §8.5.3.2.1
    send_message(romeo, "juliet@localhost", "stale news", "headline")  # silently ignored
    send_message(romeo, "juliet@localhost", "room", "groupchat")
    await romeo.expect(lambda s: is_error_message(s, "service-unavailable"))
    await sync(romeo)
    await romeo.expect_nothing(lambda s: s.name == "message")
    juliet = await connect_slixmpp(srv, "juliet@localhost/home")
    juliet.xmpp.send_presence()
    got = [await juliet.expect(is_message) for _ in range(2)]
    assert [m["body"] for m in got] == ["stored chat", "stored via full"]
    assert all(delay_of(m) is not None for m in got)
    await juliet.expect_nothing(is_message)


async def test_without_offline_storage_the_sender_hears_service_unavailable(
    server_factory: Factory,
) -> None:
    modules = [m for m in MODULES if m != "offline"]
    srv = await server_factory(modules=modules)
    romeo = await connect_slixmpp(srv, await srv.add_user("romeo"))
    await srv.add_user("juliet")
    send_message(romeo, "juliet@localhost", "nobody home", "chat")  # §8.5.2.2.1
    error = await romeo.expect(lambda s: is_error_message(s, "service-unavailable"))
    assert error["body"] == "nobody home"


async def test_no_such_user_is_service_unavailable(server_factory: Factory) -> None:
    srv = await server_factory(modules=MODULES)
    romeo = await connect_slixmpp(srv, await srv.add_user("romeo"))
    send_message(romeo, "nobody@localhost", "hello?", "chat")  # §8.5.1
    error = await romeo.expect(lambda s: is_error_message(s, "service-unavailable"))
    assert error["body"] == "hello?"
