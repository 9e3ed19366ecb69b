"""XEP-0280 Message Carbons on a real server, observed by slixmpp clients."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from slixmpp.exceptions import IqError

from tests.integration.harness import RunningServer, SlixClient, connect_slixmpp
from tests.integration.message_helpers import (
    MODULES,
    NS_CARBONS,
    NS_CHATSTATES,
    NS_FORWARD,
    NS_HINTS,
    available,
    carbon_original,
    disco_features,
    el,
    is_carbon,
    is_message,
    send_message,
    sync,
)

Factory = Callable[..., Awaitable[RunningServer]]


async def set_carbons(client: SlixClient, action: str = "enable", to: str | None = None) -> None:
    iq = client.xmpp.make_iq_set(ito=to)
    iq.xml.append(el(NS_CARBONS, action))
    await iq.send(timeout=5)


async def login(srv: RunningServer, jid: str, *, carbons: bool, priority: int = 0) -> SlixClient:
    client = await connect_slixmpp(srv, jid)
    if carbons:
        await set_carbons(client)
    await available(client, priority)
    return client


class Romeo:
    """Romeo with three resources: desk and phone have carbons on, laptop has not."""

    def __init__(self, desk: SlixClient, phone: SlixClient, laptop: SlixClient) -> None:
        self.desk, self.phone, self.laptop = desk, phone, laptop

    async def nothing_more(self) -> None:
        """No further message reaches any of Romeo's resources (checked side by side)."""
        await asyncio.gather(
            *(
                client.expect_nothing(lambda s: s.name == "message")
                for client in (self.desk, self.phone, self.laptop)
            )
        )


@pytest.fixture
async def srv(server_factory: Factory) -> RunningServer:
    return await server_factory(modules=MODULES)


async def setup(srv: RunningServer) -> tuple[Romeo, SlixClient]:
    romeo = await srv.add_user("romeo")
    juliet = await login(srv, f"{await srv.add_user('juliet')}/balcony", carbons=False)
    desk = await login(srv, f"{romeo}/desk", carbons=True, priority=5)
    phone = await login(srv, f"{romeo}/phone", carbons=True, priority=1)
    laptop = await login(srv, f"{romeo}/laptop", carbons=False, priority=1)
    return Romeo(desk, phone, laptop), juliet


async def test_server_advertises_carbons(srv: RunningServer) -> None:
    client = await connect_slixmpp(srv, await srv.add_user())
    assert NS_CARBONS in await disco_features(client, "localhost")


async def test_received_copy_goes_to_other_enabled_resources(srv: RunningServer) -> None:
    romeo, juliet = await setup(srv)
    send_message(juliet, "romeo@localhost/laptop", "to the laptop")
    original = await romeo.laptop.expect(is_message)
    assert (
        original["body"] == "to the laptop"
        and original.xml.find(f"{{{NS_CARBONS}}}received") is None
    )
    for client in (romeo.desk, romeo.phone):
        carbon = await client.expect(is_carbon("received"))
        # §7: from the bare JID, to the receiving resource, same type, original inside.
        assert str(carbon["from"]) == "romeo@localhost"
        assert str(carbon["to"]) == client.jid and carbon["type"] == "chat"
        inner = carbon_original(carbon, "received")
        assert inner.get("from") == juliet.jid and inner.get("to") == "romeo@localhost/laptop"
        assert inner.findtext("{jabber:client}body") == "to the laptop"
    await romeo.nothing_more()


async def test_bare_jid_message_is_copied_to_enabled_resources_it_did_not_reach(
    srv: RunningServer,
) -> None:
    romeo, juliet = await setup(srv)
    send_message(juliet, "romeo@localhost", "to the account")
    assert (await romeo.desk.expect(is_message))["body"] == "to the account"  # priority 5
    carbon = await romeo.phone.expect(is_carbon("received"))
    assert carbon_original(carbon, "received").get("to") == "romeo@localhost"
    await romeo.nothing_more()  # desk has it already; laptop did not enable carbons


async def test_sent_copy_goes_to_other_enabled_resources_only(srv: RunningServer) -> None:
    romeo, juliet = await setup(srv)
    send_message(romeo.laptop, juliet.jid, "from the laptop")  # sender need not enable (§8)
    assert (await juliet.expect(is_message))["body"] == "from the laptop"
    for client in (romeo.desk, romeo.phone):
        carbon = await client.expect(is_carbon("sent"))
        assert str(carbon["from"]) == "romeo@localhost" and str(carbon["to"]) == client.jid
        inner = carbon_original(carbon, "sent")
        assert inner.get("from") == romeo.laptop.jid and inner.get("to") == juliet.jid
    send_message(romeo.desk, juliet.jid, "from the desk")
    await romeo.phone.expect(is_carbon("sent"))
    await romeo.nothing_more()  # never back to the sending desk, never to the laptop


async def test_disabled_resource_gets_no_more_copies(srv: RunningServer) -> None:
    romeo, juliet = await setup(srv)
    await set_carbons(romeo.phone, "disable")
    await set_carbons(romeo.phone, "disable")  # §10.1: again is not an error
    send_message(juliet, "romeo@localhost/laptop", "in")
    send_message(romeo.laptop, juliet.jid, "out")
    await romeo.desk.expect(is_carbon("received"))
    await romeo.desk.expect(is_carbon("sent"))
    await romeo.phone.expect_nothing(lambda s: s.name == "message")


async def test_private_messages_are_not_copied_and_lose_the_marker(srv: RunningServer) -> None:
    romeo, juliet = await setup(srv)
    send_message(romeo.desk, juliet.jid, "secret", extra=(el(NS_CARBONS, "private"),))
    got = await juliet.expect(is_message)
    assert got["body"] == "secret"
    assert got.xml.find(f"{{{NS_CARBONS}}}private") is None  # §9: removed before delivery
    send_message(juliet, "romeo@localhost/laptop", "hush", extra=(el(NS_CARBONS, "private"),))
    assert (await romeo.laptop.expect(is_message))["body"] == "hush"
    await romeo.nothing_more()


async def test_no_copy_hint_is_honoured(srv: RunningServer) -> None:
    romeo, juliet = await setup(srv)
    send_message(romeo.desk, juliet.jid, "one copy", extra=(el(NS_HINTS, "no-copy"),))
    send_message(juliet, "romeo@localhost/laptop", "one copy", extra=(el(NS_HINTS, "no-copy"),))
    await juliet.expect(is_message)
    await romeo.laptop.expect(is_message)
    await romeo.nothing_more()


async def test_only_chat_and_normal_with_body_are_copied(srv: RunningServer) -> None:
    romeo, juliet = await setup(srv)
    to = "romeo@localhost/laptop"
    send_message(juliet, to, "a headline", "headline")
    send_message(juliet, to, None, None, (el(NS_CHATSTATES, "active"),))  # normal, no body
    send_message(juliet, to, "a groupchat line", "groupchat")
    for _ in range(3):
        await romeo.laptop.expect(is_message)
    await romeo.nothing_more()
    send_message(juliet, to, "a normal message", None)
    send_message(juliet, to, None, "chat", (el(NS_CHATSTATES, "composing"),))  # chat: copied
    for client in (romeo.desk, romeo.phone):
        carbons = [await client.expect(is_carbon("received")) for _ in range(2)]
        assert [carbon_original(c, "received").get("type") for c in carbons] == [None, "chat"]


async def test_carbons_sent_by_a_client_are_not_copied_again(srv: RunningServer) -> None:
    romeo, juliet = await setup(srv)
    forged = el(NS_CARBONS, "received")
    forged.append(el(NS_FORWARD, "forwarded"))
    send_message(juliet, "romeo@localhost/laptop", None, "chat", (forged,))
    await romeo.laptop.expect(is_message)
    send_message(romeo.laptop, juliet.jid, None, "chat", (el(NS_CARBONS, "sent"),))
    await juliet.expect(is_message)
    await romeo.nothing_more()


async def test_message_to_own_resource_is_copied_once(srv: RunningServer) -> None:
    romeo, _juliet = await setup(srv)
    send_message(romeo.desk, romeo.laptop.jid, "note to self")
    assert (await romeo.laptop.expect(is_message))["body"] == "note to self"
    assert carbon_original(await romeo.phone.expect(is_carbon("received")), "received") is not None
    await romeo.nothing_more()  # the phone got one copy, the desk none


async def test_enabling_for_someone_else_is_not_allowed(srv: RunningServer) -> None:
    _romeo, juliet = await setup(srv)
    with pytest.raises(IqError) as caught:
        await set_carbons(juliet, "enable", to="romeo@localhost")
    assert caught.value.iq["error"]["condition"] == "not-allowed"  # §4.1
    await sync(juliet)
