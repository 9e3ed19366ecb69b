"""XEP-0191 Blocking Command on a real server: the list, its pushes, enforcement both ways."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from slixmpp.exceptions import IqError

from salon.modules.blocking import Blocking
from salon.storage.interfaces import RosterItem
from tests.integration import test_federation as fed
from tests.integration.harness import (
    RunningServer,
    SlixClient,
    connect_slixmpp,
    q,
    raw_session,
    stanza_error_condition,
)

NS_BLOCKING = "urn:xmpp:blocking"
NS_BLOCKING_ERRORS = "urn:xmpp:blocking:errors"
NS_PING = "urn:xmpp:ping"
NS_CLIENT = "jabber:client"
MODULES = ["disco", "ping", "presence", "message", "blocking"]
Factory = Callable[..., Awaitable[RunningServer]]
federation = fed.federation  # two federating servers (a fixture of the federation tests)


@pytest.fixture
async def server(server_factory: Factory) -> RunningServer:
    return await server_factory(modules=MODULES)


# --------------------------------------------------------------------------- helpers
async def connect(srv: RunningServer, jid: str, *, fetch: bool = True) -> SlixClient:
    """A bound client with the blocking plugin; ``fetch`` asks for the blocklist, which makes
    the resource one that gets pushes (§3.3)."""
    client = await connect_slixmpp(srv, jid)
    client.xmpp.register_plugin("xep_0191")
    if fetch:
        await blocklist(client)
    return client


async def blocklist(client: SlixClient) -> set[str]:
    jids = await client.xmpp.plugin["xep_0191"].get_blocked_jids(timeout=5)
    return {str(jid) for jid in jids}


async def block(client: SlixClient, *jids: str) -> None:
    await client.xmpp.plugin["xep_0191"].block(list(jids), timeout=5)


async def unblock(client: SlixClient, *jids: str) -> None:
    """Unblock ``jids``; none at all unblocks everything (§3.5)."""
    iq = client.xmpp.make_iq_set()
    unblock_el = ET.SubElement(iq.xml, q(NS_BLOCKING, "unblock"))
    for jid in jids:
        ET.SubElement(unblock_el, q(NS_BLOCKING, "item"), {"jid": jid})
    await iq.send(timeout=5)


async def sync(client: SlixClient) -> None:
    """A ping round trip: everything the client sent before has been routed by then."""
    iq = client.xmpp.make_iq_get(ito=client.xmpp.boundjid.domain)
    iq.xml.append(ET.Element(q(NS_PING, "ping")))
    await iq.send(timeout=5)


async def available(client: SlixClient) -> None:
    client.xmpp.send_presence()
    await client.expect(lambda s: s.name == "presence" and s["from"] == client.xmpp.boundjid)


def send_message(client: SlixClient, to: str, body: str) -> None:
    client.xmpp.make_message(mto=to, mbody=body, mtype="chat").send()


def is_message(body: str) -> Callable[[Any], bool]:
    return lambda s: s.name == "message" and s["type"] != "error" and s["body"] == body


def is_error(kind: str, condition: str) -> Callable[[Any], bool]:
    return lambda s: (
        s.name == kind and s["type"] == "error" and s["error"]["condition"] == condition
    )


def has_blocked_condition(stanza: Any) -> bool:
    return (
        stanza.xml.find(f"{q(NS_CLIENT, 'error')}/{q(NS_BLOCKING_ERRORS, 'blocked')}") is not None
    )


def is_push(tag: str) -> Callable[[Any], bool]:
    return lambda s: (
        s.name == "iq" and s["type"] == "set" and s.xml.find(q(NS_BLOCKING, tag)) is not None
    )


def push_items(stanza: Any, tag: str) -> set[str]:
    payload = stanza.xml.find(q(NS_BLOCKING, tag))
    return {item.get("jid") for item in payload.findall(q(NS_BLOCKING, "item"))}


def is_presence(sender: str, ptype: str | None = None) -> Callable[[Any], bool]:
    def check(s: Any) -> bool:
        if s.name != "presence" or str(s["from"]) != sender:
            return False
        return ptype is None or s["type"] == ptype

    return check


async def ping(client: SlixClient, to: str) -> Any:
    iq = client.xmpp.make_iq_get(ito=to)
    iq.xml.append(ET.Element(q(NS_PING, "ping")))
    return await iq.send(timeout=5)


async def iq_error(client: SlixClient, to: str) -> IqError:
    with pytest.raises(IqError) as caught:
        await ping(client, to)
    return caught.value


async def pair(srv: RunningServer) -> tuple[SlixClient, SlixClient, str, str]:
    """Juliet and Romeo, both online; returns the clients and their bare JIDs."""
    juliet_jid, romeo_jid = await srv.add_user("juliet"), await srv.add_user("romeo")
    juliet = await connect(srv, f"{juliet_jid}/balcony")
    romeo = await connect(srv, f"{romeo_jid}/orchard")
    return juliet, romeo, juliet_jid, romeo_jid


# --------------------------------------------------------------------------- the list
async def test_blocking_is_among_the_default_modules(server_factory: Factory) -> None:
    srv = await server_factory()
    client, _ = await raw_session(srv)
    await client.send(f"<iq type='get' id='bl'><blocklist xmlns='{NS_BLOCKING}'/></iq>")
    reply = await client.next()
    assert reply.get("type") == "result" and reply.find(q(NS_BLOCKING, "blocklist")) is not None
    await client.close()


async def test_server_and_account_advertise_blocking(server: RunningServer) -> None:
    juliet_jid = await server.add_user("juliet")
    juliet = await connect(server, juliet_jid, fetch=False)
    disco = juliet.xmpp.plugin["xep_0030"]
    for target in (server.domain, juliet_jid):
        info = await disco.get_info(jid=target, timeout=5)
        assert NS_BLOCKING in info["disco_info"]["features"], target
    await juliet.disconnect()


async def test_blocklist_starts_empty_then_lists_what_was_blocked(server: RunningServer) -> None:
    juliet_jid = await server.add_user("juliet")
    juliet = await connect(server, juliet_jid, fetch=False)
    assert await blocklist(juliet) == set()
    await block(juliet, "romeo@localhost", "Nurse@Localhost/Kitchen", "example.test")
    assert await blocklist(juliet) == {"romeo@localhost", "nurse@localhost/Kitchen", "example.test"}
    await block(juliet, "romeo@localhost")  # again: idempotent
    assert await blocklist(juliet) == {"romeo@localhost", "nurse@localhost/Kitchen", "example.test"}
    await unblock(juliet, "romeo@localhost", "tybalt@localhost")  # one was never blocked
    assert await blocklist(juliet) == {"nurse@localhost/Kitchen", "example.test"}
    await juliet.disconnect()


async def test_unblock_without_items_unblocks_everything(server: RunningServer) -> None:
    juliet_jid = await server.add_user("juliet")
    juliet = await connect(server, juliet_jid)
    await block(juliet, "romeo@localhost", "example.test")
    await unblock(juliet)
    assert await blocklist(juliet) == set()
    await juliet.disconnect()


async def test_changes_are_pushed_to_resources_that_fetched_the_list(
    server: RunningServer,
) -> None:
    juliet_jid = await server.add_user("juliet")
    balcony = await connect(server, f"{juliet_jid}/balcony")
    chamber = await connect(server, f"{juliet_jid}/chamber")
    garden = await connect(server, f"{juliet_jid}/garden", fetch=False)

    await block(balcony, "romeo@localhost", "tybalt@localhost")
    for client in (balcony, chamber):
        push = await client.expect(is_push("block"))
        assert push_items(push, "block") == {"romeo@localhost", "tybalt@localhost"}
        assert str(push["to"]) == client.jid
    await unblock(chamber, "tybalt@localhost")
    for client in (balcony, chamber):
        push = await client.expect(is_push("unblock"))
        assert push_items(push, "unblock") == {"tybalt@localhost"}
    await unblock(balcony)
    for client in (balcony, chamber):
        push = await client.expect(is_push("unblock"))
        assert push_items(push, "unblock") == set()  # the "unblock all" push
    await garden.expect_nothing(lambda s: is_push("block")(s) or is_push("unblock")(s))
    for client in (balcony, chamber, garden):
        await client.disconnect()


async def test_block_without_items_is_a_bad_request(server: RunningServer) -> None:
    client, _ = await raw_session(server)
    await client.send(f"<iq type='set' id='b1'><block xmlns='{NS_BLOCKING}'/></iq>")
    reply = await client.next()
    assert reply.get("type") == "error" and stanza_error_condition(reply) == "bad-request"
    await client.close()


@pytest.mark.parametrize("item", ["<item jid='@localhost'/>", "<item/>", "<item jid=''/>"])
async def test_an_invalid_jid_is_jid_malformed_and_nothing_is_blocked(
    server: RunningServer, item: str
) -> None:
    jid = await server.add_user()
    client, _ = await raw_session(server, jid)
    await client.send(
        f"<iq type='set' id='b1'><block xmlns='{NS_BLOCKING}'>"
        f"<item jid='romeo@localhost'/>{item}</block></iq>"
    )
    reply = await client.next()
    assert reply.get("type") == "error" and stanza_error_condition(reply) == "jid-malformed"
    assert await server.server.core.storage.blocklist.get(server.domain, jid.split("@")[0]) == []
    await client.close()


async def test_the_list_is_bounded_by_max_items(server_factory: Factory) -> None:
    srv = await server_factory(modules=MODULES, module_options={"blocking": {"max_items": 2}})
    juliet = await connect(srv, await srv.add_user("juliet"))
    await block(juliet, "a@localhost", "b@localhost")
    with pytest.raises(IqError) as caught:
        await block(juliet, "c@localhost")
    assert caught.value.condition == "resource-constraint"
    await block(juliet, "a@localhost")  # nothing new: still fits
    assert await blocklist(juliet) == {"a@localhost", "b@localhost"}
    await juliet.disconnect()


async def test_blocklist_of_another_account_is_not_served(server: RunningServer) -> None:
    juliet, _romeo, _, romeo_jid = await pair(server)
    iq = juliet.xmpp.make_iq_get(ito=romeo_jid)
    iq.xml.append(ET.Element(q(NS_BLOCKING, "blocklist")))
    with pytest.raises(IqError) as caught:
        await iq.send(timeout=5)
    assert caught.value.condition == "service-unavailable"
    await juliet.disconnect()
    await _romeo.disconnect()


async def test_the_list_persists_across_reconnects(server: RunningServer) -> None:
    juliet_jid, romeo_jid = await server.add_user("juliet"), await server.add_user("romeo")
    juliet = await connect(server, juliet_jid)
    await block(juliet, romeo_jid)
    await juliet.disconnect()

    romeo = await connect(server, romeo_jid)
    send_message(romeo, juliet_jid, "while you were away")  # she is offline: still refused
    await romeo.expect(is_error("message", "service-unavailable"))

    juliet = await connect(server, f"{juliet_jid}/again")
    assert await blocklist(juliet) == {romeo_jid}
    send_message(romeo, juliet.jid, "and now?")
    await romeo.expect(is_error("message", "service-unavailable"))
    await juliet.expect_nothing(lambda s: s.name == "message")
    await juliet.disconnect()
    await romeo.disconnect()


# --------------------------------------------------------------------------- messages
async def test_message_from_a_blocked_jid_bounces_and_is_not_delivered(
    server: RunningServer,
) -> None:
    juliet, romeo, juliet_jid, romeo_jid = await pair(server)
    await available(juliet)
    await block(juliet, romeo_jid)
    for to in (juliet_jid, juliet.jid):
        send_message(romeo, to, "Wherefore art thou?")
        error = await romeo.expect(is_error("message", "service-unavailable"))
        assert str(error["from"]) == to
    await juliet.expect_nothing(lambda s: s.name == "message")

    await unblock(juliet, romeo_jid)
    send_message(romeo, juliet.jid, "After the unblock")
    await juliet.expect(is_message("After the unblock"))
    await juliet.disconnect()
    await romeo.disconnect()


async def test_message_to_a_blocked_jid_is_refused_with_the_blocked_condition(
    server: RunningServer,
) -> None:
    juliet, romeo, _, romeo_jid = await pair(server)
    await block(juliet, romeo_jid)
    send_message(juliet, romeo.jid, "I must not")
    error = await juliet.expect(is_error("message", "not-acceptable"))
    assert has_blocked_condition(error)
    assert error["error"]["type"] == "cancel"
    assert str(error["from"]) == romeo.jid and error["body"] == "I must not"
    await romeo.expect_nothing(lambda s: s.name == "message")
    await juliet.disconnect()
    await romeo.disconnect()


async def test_own_resources_are_never_blocked_from_each_other(server: RunningServer) -> None:
    juliet_jid = await server.add_user("juliet")
    balcony = await connect(server, f"{juliet_jid}/balcony")
    chamber = await connect(server, f"{juliet_jid}/chamber")
    await block(balcony, juliet_jid, "localhost")
    send_message(balcony, chamber.jid, "note to self")
    await chamber.expect(is_message("note to self"))
    await balcony.expect_nothing(lambda s: s["type"] == "error")
    await ping(balcony, server.domain)  # her own server stays reachable
    for client in (balcony, chamber):
        await client.disconnect()


# --------------------------------------------------------------------------- iq
async def test_iq_from_a_blocked_jid_gets_service_unavailable(server: RunningServer) -> None:
    juliet, romeo, juliet_jid, romeo_jid = await pair(server)
    await block(juliet, romeo_jid)
    error = await iq_error(romeo, juliet.jid)  # to her resource
    assert error.condition == "service-unavailable"
    disco = romeo.xmpp.plugin["xep_0030"]
    with pytest.raises(IqError) as caught:  # to her account, answered by the server
        await disco.get_info(jid=juliet_jid, timeout=5)
    assert caught.value.condition == "service-unavailable"
    await juliet.expect_nothing(lambda s: s.name == "iq" and s["type"] == "get")
    await juliet.disconnect()
    await romeo.disconnect()


async def test_iq_result_from_a_blocked_jid_is_dropped(server: RunningServer) -> None:
    juliet_jid = await server.add_user("juliet")
    romeo_jid = await server.add_user("romeo")
    juliet = await connect(server, juliet_jid)
    romeo, _ = await raw_session(server, romeo_jid)
    await block(juliet, romeo_jid)
    await romeo.send(f"<iq type='result' id='r1' to='{juliet.jid}'/>")
    await romeo.send(f"<iq type='error' id='r2' to='{juliet.jid}'/>")
    await romeo.expect_nothing()  # no error comes back
    await juliet.expect_nothing(lambda s: s.name == "iq" and s["id"] in ("r1", "r2"))
    await juliet.disconnect()
    await romeo.close()


async def test_iq_to_a_blocked_jid_is_refused_with_the_blocked_condition(
    server: RunningServer,
) -> None:
    juliet, romeo, _, romeo_jid = await pair(server)
    await block(juliet, romeo_jid)
    error = await iq_error(juliet, romeo.jid)
    assert error.condition == "not-acceptable"
    assert has_blocked_condition(error.iq)
    await romeo.expect_nothing(lambda s: s.name == "iq" and s["type"] == "get")
    await juliet.disconnect()
    await romeo.disconnect()


# --------------------------------------------------------------------------- presence
async def test_presence_from_a_blocked_jid_vanishes_without_an_error(
    server: RunningServer,
) -> None:
    juliet, romeo, juliet_jid, romeo_jid = await pair(server)
    await available(juliet)
    await block(juliet, romeo_jid)
    romeo.xmpp.send_presence(pto=juliet.jid, pstatus="directed")
    romeo.xmpp.send_presence(pto=juliet_jid, ptype="subscribe")
    await sync(romeo)
    await juliet.expect_nothing(lambda s: s.name == "presence" and s["from"].bare == romeo_jid)
    await romeo.expect_nothing(lambda s: s["type"] == "error")
    await juliet.disconnect()
    await romeo.disconnect()


async def test_presence_to_a_blocked_jid_is_refused_with_the_blocked_condition(
    server: RunningServer,
) -> None:
    juliet, romeo, _, romeo_jid = await pair(server)
    await available(romeo)
    await block(juliet, romeo_jid)
    juliet.xmpp.send_presence(pto=romeo.jid, pstatus="hello?")
    error = await juliet.expect(is_error("presence", "not-acceptable"))
    assert has_blocked_condition(error)
    await romeo.expect_nothing(lambda s: s.name == "presence" and s["from"].bare != romeo_jid)
    await juliet.disconnect()
    await romeo.disconnect()


async def test_block_sends_unavailable_to_a_directed_presence_recipient(
    server: RunningServer,
) -> None:
    juliet, romeo, _, romeo_jid = await pair(server)
    await available(juliet)
    juliet.xmpp.send_presence(pto=romeo.jid, pstatus="for you")
    await romeo.expect(is_presence(juliet.jid, "available"))
    await block(juliet, romeo_jid)
    await romeo.expect(is_presence(juliet.jid, "unavailable"))
    # Directed presence was forgotten: logging out sends romeo nothing more.
    await juliet.disconnect()
    await romeo.expect_nothing(is_presence(juliet.jid))
    await romeo.disconnect()


async def test_block_and_unblock_update_presence_for_subscribers(server: RunningServer) -> None:
    """§3.3/§3.4: a subscriber ("from") gets unavailable on block and the current presence on
    unblock; the user, subscribed to the contact ("to"), gets the contact's presence the same
    way."""
    juliet_jid, romeo_jid = await server.add_user("juliet"), await server.add_user("romeo")
    storage = server.server.core.storage.roster
    await storage.put_item("localhost", "juliet", RosterItem(romeo_jid, subscription="both"))
    await storage.put_item("localhost", "romeo", RosterItem(juliet_jid, subscription="both"))
    juliet = await connect(server, f"{juliet_jid}/balcony")
    romeo = await connect(server, f"{romeo_jid}/orchard")
    juliet.xmpp.send_presence(pstatus="on the balcony")
    romeo.xmpp.send_presence(pstatus="in the orchard")
    await sync(juliet)
    await sync(romeo)

    await block(juliet, romeo_jid)
    await romeo.expect(is_presence(juliet.jid, "unavailable"))
    await juliet.expect(is_presence(romeo.jid, "unavailable"))
    juliet.xmpp.send_presence(pstatus="hidden")  # broadcasts stop at the block, both ways
    romeo.xmpp.send_presence(pstatus="unseen")
    await sync(juliet)
    await sync(romeo)
    await romeo.expect_nothing(is_presence(juliet.jid))
    await juliet.expect_nothing(is_presence(romeo.jid))
    juliet.xmpp.send_presence(pstatus="on the balcony")

    await unblock(juliet, romeo_jid)
    back = await romeo.expect(is_presence(juliet.jid, "available"))
    assert back["status"] == "on the balcony"
    seen = await juliet.expect(is_presence(romeo.jid, "available"))
    assert seen["status"] == "unseen"  # his current presence, which she did not see
    await juliet.disconnect()
    await romeo.disconnect()


async def test_block_sends_nothing_to_a_contact_without_subscription(
    server: RunningServer,
) -> None:
    juliet, romeo, _, romeo_jid = await pair(server)
    await available(juliet)
    await available(romeo)
    await block(juliet, romeo_jid)
    await unblock(juliet, romeo_jid)
    await romeo.expect_nothing(is_presence(juliet.jid))
    await juliet.expect_nothing(is_presence(romeo.jid))
    await juliet.disconnect()
    await romeo.disconnect()


# --------------------------------------------------------------------------- matching
async def test_a_blocked_domain_covers_every_address_there(server: RunningServer) -> None:
    juliet_jid = await server.add_user("juliet")
    paris_jid = await server.add_user("paris", domain="example.test")
    nurse_jid = await server.add_user("nurse")
    juliet = await connect(server, f"{juliet_jid}/balcony")
    paris = await connect(server, paris_jid)
    nurse = await connect(server, nurse_jid)
    await block(juliet, "example.test")

    send_message(paris, juliet.jid, "from the blocked domain")
    await paris.expect(is_error("message", "service-unavailable"))
    send_message(juliet, paris.jid, "to the blocked domain")
    assert has_blocked_condition(await juliet.expect(is_error("message", "not-acceptable")))
    error = await iq_error(juliet, "example.test")  # the domain itself
    assert error.condition == "not-acceptable"

    await juliet.expect_nothing(is_message("from the blocked domain"))
    await paris.expect_nothing(is_message("to the blocked domain"))
    send_message(nurse, juliet.jid, "from elsewhere")
    await juliet.expect(is_message("from elsewhere"))
    for client in (juliet, paris, nurse):
        await client.disconnect()


async def test_a_blocked_full_jid_covers_that_resource_only(server: RunningServer) -> None:
    juliet_jid, romeo_jid = await server.add_user("juliet"), await server.add_user("romeo")
    juliet = await connect(server, f"{juliet_jid}/balcony")
    orchard = await connect(server, f"{romeo_jid}/orchard")
    street = await connect(server, f"{romeo_jid}/street")
    await block(juliet, orchard.jid)

    send_message(orchard, juliet.jid, "from the orchard")
    await orchard.expect(is_error("message", "service-unavailable"))
    await juliet.expect_nothing(is_message("from the orchard"))
    send_message(street, juliet.jid, "from the street")
    await juliet.expect(is_message("from the street"))
    send_message(juliet, street.jid, "to the street")
    await street.expect(is_message("to the street"))
    for client in (juliet, orchard, street):
        await client.disconnect()


async def test_enforcement_stays_right_when_the_cache_is_full(server_factory: Factory) -> None:
    """With room for one cached list, two users' lists are both enforced, in turns, and the
    cache never grows past its bound."""
    srv = await server_factory(modules=MODULES, module_options={"blocking": {"cache_size": 1}})
    juliet_jid, nurse_jid = await srv.add_user("juliet"), await srv.add_user("nurse")
    romeo_jid = await srv.add_user("romeo")
    juliet, nurse = await connect(srv, juliet_jid), await connect(srv, nurse_jid)
    romeo = await connect(srv, romeo_jid)
    await block(juliet, romeo_jid)
    await block(nurse, romeo_jid)
    module = srv.server.core.hosts["localhost"].modules["blocking"]
    assert isinstance(module, Blocking)
    for turn in range(3):
        for blocker in (juliet, nurse):
            send_message(romeo, blocker.jid, f"turn {turn}")
            error = await romeo.expect(lambda s: s.name == "message")
            assert is_error("message", "service-unavailable")(error)
            send_message(blocker, romeo.jid, f"answer {turn}")
            error = await blocker.expect(lambda s: s.name == "message")
            assert is_error("message", "not-acceptable")(error) and has_blocked_condition(error)
            assert len(module.cache) <= 1
    for client in (juliet, nurse, romeo):
        await client.expect_nothing(lambda s: s.name == "message" and s["type"] != "error")
    for client in (juliet, nurse, romeo):
        await client.disconnect()


# --------------------------------------------------------------------------- federation
async def test_a_blocked_remote_contact_gets_no_presence_and_no_messages(
    federation: fed.Federation,
) -> None:
    """The same rules across servers: the block-time unavailable leaves, later broadcasts do
    not, messages fail both ways, and unblocking sends the current presence."""
    pair = await federation()
    juliet_bare, romeo_bare = f"juliet@{fed.CAPULET}", f"romeo@{fed.MONTAGUE}"
    romeo = await fed.login(pair.montague, "romeo")
    juliet = await fed.login(pair.capulet, "juliet")
    await pair.capulet.server.core.storage.roster.put_item(
        fed.CAPULET, "juliet", RosterItem(romeo_bare, subscription="both")
    )
    await pair.montague.server.core.storage.roster.put_item(
        fed.MONTAGUE, "romeo", RosterItem(juliet_bare, subscription="both")
    )
    await fed.available(romeo)
    await juliet.send("<presence><status>here</status></presence>")
    await fed.expect(romeo, "presence", lambda e: e.get("from") == juliet.full)

    await juliet.send(
        f"<iq type='set' id='b1'><block xmlns='{NS_BLOCKING}'><item jid='{romeo_bare}'/>"
        "</block></iq>"
    )
    gone = await fed.expect(romeo, "presence", lambda e: e.get("from") == juliet.full)
    assert gone.get("type") == "unavailable"

    await juliet.send("<presence><status>still here</status></presence>")
    await juliet.send(fed.chat(romeo_bare, "to a blocked contact", "m1"))
    refused = await fed.expect(juliet, "message", lambda e: e.get("type") == "error")
    assert stanza_error_condition(refused) == "not-acceptable"
    assert refused.find(f"{q(NS_CLIENT, 'error')}/{q(NS_BLOCKING_ERRORS, 'blocked')}") is not None
    await romeo.expect_nothing(0.5)  # neither the new presence nor the message arrived
    await romeo.send(fed.chat(juliet.full, "from a blocked contact", "m2"))
    bounced = await fed.expect(romeo, "message", lambda e: e.get("type") == "error")
    assert stanza_error_condition(bounced) == "service-unavailable"
    await juliet.expect_nothing(0.3)

    await juliet.send(
        f"<iq type='set' id='u1'><unblock xmlns='{NS_BLOCKING}'><item jid='{romeo_bare}'/>"
        "</unblock></iq>"
    )
    back = await fed.expect(romeo, "presence", lambda e: e.get("from") == juliet.full)
    assert back.get("type") is None
    assert back.findtext(q(NS_CLIENT, "status")) == "still here"
    await juliet.close()
    await romeo.close()
