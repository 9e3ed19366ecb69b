"""RFC 6121 §4: initial presence and probes, updates, unavailable on logout and on a dropped
connection, directed presence, priority, and inbound presence delivery, with two resources
per account."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable

import pytest

from tests.integration.harness import NS_CLIENT, RawClient, RunningServer, q, raw_session
from tests.integration.im_helpers import (
    any_presence,
    befriend,
    expect_all,
    login,
    presence,
    push,
    put_item,
    settle,
)

Factory = Callable[..., Awaitable[RunningServer]]


@pytest.fixture
async def srv(server_factory: Factory) -> RunningServer:
    return await server_factory()  # the default modules, roster and presence among them


async def raw_presence(raw: RawClient, sender: str, ptype: str | None = None) -> ET.Element:
    """The next presence the raw client receives from ``sender`` of type ``ptype``."""
    while True:
        stanza = await raw.next()
        if (
            stanza.tag == q(NS_CLIENT, "presence")
            and stanza.get("type") == ptype
            and (stanza.get("from") or "").startswith(sender)
        ):
            return stanza


# ---------------------------------------------------------------------- initial presence
async def test_initial_presence_and_probes_with_two_resources_each(srv: RunningServer) -> None:
    """§4.2: initial presence goes to the user's resources and to subscribed contacts; the
    probes it triggers (§4.3) bring back every available resource of each contact."""
    romeo_jid, juliet_jid = await srv.add_user(), await srv.add_user()
    await befriend(srv, romeo_jid, juliet_jid)
    orchard = await login(srv, romeo_jid, "orchard", available=True)
    street = await login(srv, romeo_jid, "street", available=True)
    await orchard.expect(presence(sender=street.jid))
    balcony = await login(srv, juliet_jid, "balcony", available=True)
    # Juliet's first resource learns both of Romeo's; both of his learn of her.
    await expect_all(balcony, presence(sender=orchard.jid), presence(sender=street.jid))
    for romeo in (orchard, street):
        await romeo.expect(presence(sender=balcony.jid))
    chamber = await login(srv, juliet_jid, "chamber", available=True)
    # Her second resource sees her first (own presence) and both of Romeo's (probe answers).
    await expect_all(
        chamber,
        presence(sender=balcony.jid),
        presence(sender=orchard.jid),
        presence(sender=street.jid),
    )
    await balcony.expect(presence(sender=chamber.jid))
    for romeo in (orchard, street):
        await romeo.expect(presence(sender=chamber.jid))


async def test_presence_reaches_only_contacts_subscribed_to_it(srv: RunningServer) -> None:
    """§4.2.2: broadcast to "from"/"both" only; a probe only to "to"/"both"."""
    romeo_jid, juliet_jid, nurse_jid = [await srv.add_user() for _ in range(3)]
    await put_item(srv, romeo_jid, juliet_jid, "to")  # he sees her; she does not see him
    await put_item(srv, juliet_jid, romeo_jid, "from")
    juliet = await login(srv, juliet_jid, available=True)
    nurse = await login(srv, nurse_jid, available=True)  # not in anyone's roster
    romeo = await login(srv, romeo_jid, available=True)
    await romeo.expect(presence(sender=juliet.jid))  # the probe's answer
    await juliet.expect_nothing(presence(sender=romeo_jid), within=0.3)
    await nurse.expect_nothing(any_presence, within=0.1)


# ---------------------------------------------------------------------- updates
async def test_presence_update_is_broadcast(srv: RunningServer) -> None:
    """§4.4: subsequent presence goes to the other resources and to subscribed contacts."""
    romeo_jid, juliet_jid = await srv.add_user(), await srv.add_user()
    await befriend(srv, romeo_jid, juliet_jid)
    romeo = await login(srv, romeo_jid, available=True)
    balcony = await login(srv, juliet_jid, "balcony", available=True)
    chamber = await login(srv, juliet_jid, "chamber", available=True)
    await romeo.expect(presence(sender=chamber.jid))
    balcony.xmpp.send_presence(pshow="away", pstatus="sleeping")
    for client in (romeo, chamber):
        update = await client.expect(presence("away", balcony.jid))
        assert update["status"] == "sleeping"


# ---------------------------------------------------------------------- unavailable
async def test_unavailable_on_logout(srv: RunningServer) -> None:
    """§4.5: unavailable goes to the other resources and to subscribed contacts."""
    romeo_jid, juliet_jid = await srv.add_user(), await srv.add_user()
    await befriend(srv, romeo_jid, juliet_jid)
    romeo = await login(srv, romeo_jid, available=True)
    balcony = await login(srv, juliet_jid, "balcony", available=True)
    chamber = await login(srv, juliet_jid, "chamber", available=True)
    await romeo.expect(presence(sender=chamber.jid))
    balcony.xmpp.send_presence(ptype="unavailable", pstatus="gone to bed")
    for client in (romeo, chamber):
        gone = await client.expect(presence("unavailable", balcony.jid))
        assert gone["status"] == "gone to bed"
    await chamber.disconnect()
    await romeo.expect(presence("unavailable", chamber.jid))


async def test_unavailable_when_the_connection_drops(srv: RunningServer) -> None:
    """§4.5.2 (and RFC 6120 §4.4): a lost connection is an unavailable presence."""
    romeo_jid, juliet_jid = await srv.add_user(), await srv.add_user()
    await befriend(srv, romeo_jid, juliet_jid)
    romeo = await login(srv, romeo_jid, available=True)
    juliet, juliet_full = await raw_session(srv, juliet_jid, resource="balcony")
    await juliet.send("<presence/>")
    await raw_presence(juliet, juliet_full)  # her own presence comes back
    await romeo.expect(presence(sender=juliet_full))
    juliet.writer.transport.abort()  # no </stream:stream>, no unavailable: just gone
    await romeo.expect(presence("unavailable", juliet_full))


async def test_a_probe_for_an_offline_contact_gets_her_last_unavailable(
    srv: RunningServer,
) -> None:
    """§4.3.2: with no available resource, the last unavailable presence answers the probe."""
    romeo_jid, juliet_jid = await srv.add_user(), await srv.add_user()
    await befriend(srv, romeo_jid, juliet_jid)
    juliet = await login(srv, juliet_jid, available=True)
    juliet.xmpp.send_presence(ptype="unavailable", pstatus="in the tomb")
    await juliet.expect(presence("unavailable", juliet.jid))  # processed
    await juliet.disconnect()
    romeo = await login(srv, romeo_jid, available=True)
    last = await romeo.expect(presence("unavailable", juliet_jid))
    assert last["status"] == "in the tomb"


async def test_a_probe_from_a_non_subscriber_gets_unsubscribed(srv: RunningServer) -> None:
    """§4.3.2: Tybalt's server wrongly believes he is subscribed to Juliet; his probe is
    answered "unsubscribed", which puts his roster right (A.3.4 "To"), and he learns
    nothing of her presence."""
    tybalt_jid, juliet_jid = await srv.add_user(), await srv.add_user()
    await put_item(srv, tybalt_jid, juliet_jid, "to")
    juliet = await login(srv, juliet_jid, available=True)
    tybalt = await login(srv, tybalt_jid, roster=True, available=True)
    await expect_all(tybalt, presence("unsubscribed", juliet_jid), push(juliet_jid, "none"))
    await tybalt.expect_nothing(presence(sender=juliet_jid), within=0.3)
    await juliet.expect_nothing(any_presence, within=0.1)  # probes are never delivered


async def test_an_offline_contact_still_answers_a_non_subscriber_with_unsubscribed(
    srv: RunningServer,
) -> None:
    """A probe of an offline contact whose roster is in memory (she was connected a moment
    ago, never available, so no last presence is remembered) is spared only when it would
    come back empty: Tybalt, whom Juliet's roster does not have subscribed, still gets
    "unsubscribed"; Romeo, who is subscribed, gets nothing until she comes online, and then
    her presence once."""
    tybalt_jid, romeo_jid, juliet_jid = [await srv.add_user() for _ in range(3)]
    await befriend(srv, romeo_jid, juliet_jid)
    await put_item(srv, tybalt_jid, juliet_jid, "to")
    juliet = await login(srv, juliet_jid, roster=True)
    await juliet.disconnect()  # her roster stays in memory a while (a reconnecting client)
    tybalt = await login(srv, tybalt_jid, roster=True, available=True)
    await expect_all(tybalt, presence("unsubscribed", juliet_jid), push(juliet_jid, "none"))
    romeo = await login(srv, romeo_jid, available=True)
    await romeo.expect_nothing(presence(sender=juliet_jid), within=0.3)
    juliet = await login(srv, juliet_jid, available=True)
    await romeo.expect(presence(None, juliet_jid))
    await romeo.expect_nothing(presence(sender=juliet_jid), within=0.3)


async def test_a_raw_probe_reveals_nothing(srv: RunningServer) -> None:
    """A probe from someone with no subscription gets no presence, only a server-to-server
    "unsubscribed" that his own server, having nothing to cancel, does not deliver."""
    juliet_jid = await srv.add_user()
    juliet = await login(srv, juliet_jid, available=True)
    tybalt, _ = await raw_session(srv)
    await tybalt.send(f"<presence type='probe' to='{juliet_jid}'/>")
    await tybalt.ping()  # answered after the probe was handled
    await tybalt.expect_nothing(within=0.3)
    await juliet.expect_nothing(any_presence, within=0.1)


# ---------------------------------------------------------------------- directed presence
async def test_directed_presence_and_its_unavailable(srv: RunningServer) -> None:
    """§4.6: directed presence reaches its addressee; updates do not; unavailable on logout
    does, once."""
    romeo_jid = await srv.add_user()
    romeo = await login(srv, romeo_jid, available=True)
    tybalt = await login(srv, await srv.add_user(), available=True)
    romeo.xmpp.send_presence(pto=tybalt.jid, pstatus="a word with you")
    directed = await tybalt.expect(presence(sender=romeo.jid))
    assert directed["status"] == "a word with you"
    romeo.xmpp.send_presence(pshow="away")  # broadcast: Tybalt is no contact
    await settle(romeo)
    await tybalt.expect_nothing(presence(sender=romeo_jid), within=0.3)
    await romeo.disconnect()
    await tybalt.expect(presence("unavailable", romeo.jid))
    await tybalt.expect_nothing(presence(sender=romeo_jid), within=0.2)


async def test_directed_unavailable_ends_the_directed_presence(srv: RunningServer) -> None:
    romeo = await login(srv, await srv.add_user(), available=True)
    tybalt = await login(srv, await srv.add_user(), available=True)
    romeo.xmpp.send_presence(pto=tybalt.jid)
    await tybalt.expect(presence(sender=romeo.jid))
    romeo.xmpp.send_presence(pto=tybalt.jid, ptype="unavailable")
    await tybalt.expect(presence("unavailable", romeo.jid))
    await romeo.disconnect()
    await tybalt.expect_nothing(presence(sender=romeo.jid), within=0.3)


# ---------------------------------------------------------------------- inbound delivery
async def test_presence_to_a_bare_jid_reaches_every_available_resource(
    srv: RunningServer,
) -> None:
    """§8.5.2.1.2: all available resources; a connected resource that is not available
    does not get it."""
    juliet_jid = await srv.add_user()
    balcony = await login(srv, juliet_jid, "balcony", available=True)
    chamber = await login(srv, juliet_jid, "chamber", available=True)
    hidden = await login(srv, juliet_jid, "hidden")  # connected, never available
    romeo = await login(srv, await srv.add_user(), available=True)
    romeo.xmpp.send_presence(pto=juliet_jid, pstatus="hello")
    for client in (balcony, chamber):
        await client.expect(presence(sender=romeo.jid))
    await hidden.expect_nothing(presence(sender=romeo.jid), within=0.3)


async def test_presence_to_an_offline_full_jid_is_silently_ignored(srv: RunningServer) -> None:
    """§8.5.3.2.1: no such resource: dropped, no error to the sender."""
    juliet_jid = await srv.add_user()
    juliet = await login(srv, juliet_jid, "balcony", available=True)
    romeo = await login(srv, await srv.add_user(), available=True)
    romeo.xmpp.send_presence(pto=f"{juliet_jid}/tomb")
    await settle(romeo)
    await romeo.expect_nothing(lambda s: s["type"] == "error", within=0.3)
    await juliet.expect_nothing(presence(sender=romeo.jid), within=0.1)


# ---------------------------------------------------------------------- priority
@pytest.mark.parametrize("priority", ["high", "128", "-129"])
async def test_a_bad_priority_is_bad_request(srv: RunningServer, priority: str) -> None:
    """§4.7.2.3: an integer from -128 to 127; anything else is refused, nothing broadcast."""
    romeo_jid, juliet_jid = await srv.add_user(), await srv.add_user()
    await befriend(srv, romeo_jid, juliet_jid)
    juliet = await login(srv, juliet_jid, available=True)
    romeo, romeo_full = await raw_session(srv, romeo_jid)
    await romeo.send(f"<presence><priority>{priority}</priority></presence>")
    error = await romeo.next()
    assert error.get("type") == "error"
    assert (
        error.find(
            f"{q(NS_CLIENT, 'error')}/{q('urn:ietf:params:xml:ns:xmpp-stanzas', 'bad-request')}"
        )
        is not None
    )
    await juliet.expect_nothing(presence(sender=romeo_full), within=0.3)


async def test_priority_decides_which_resource_gets_a_message(srv: RunningServer) -> None:
    """§4.7.2.3 with §8.5.2.1.1: a message to the bare JID goes to the highest priority."""
    juliet_jid = await srv.add_user()
    high = await login(srv, juliet_jid, "high")
    high.xmpp.send_presence(ppriority=5)
    await high.expect(presence(sender=high.jid))
    low = await login(srv, juliet_jid, "low")
    low.xmpp.send_presence(ppriority=1)
    await low.expect(presence(sender=low.jid))
    romeo = await login(srv, await srv.add_user())
    romeo.xmpp.send_message(mto=juliet_jid, mbody="which one?", mtype="chat")
    await high.expect(lambda s: s.name == "message" and s["body"] == "which one?")
    await low.expect_nothing(lambda s: s.name == "message", within=0.3)


async def test_directed_presence_to_too_many_entities_is_refused(server_factory: Factory) -> None:
    """The directed-presence memory is bounded: past it, the stanza is refused rather than
    delivered with an unavailable that could never follow."""
    srv = await server_factory(module_options={"presence": {"max_directed": 1}})
    romeo = await login(srv, await srv.add_user(), available=True)
    tybalt = await login(srv, await srv.add_user(), available=True)
    mercutio = await login(srv, await srv.add_user(), available=True)
    romeo.xmpp.send_presence(pto=tybalt.jid)
    await tybalt.expect(presence(sender=romeo.jid))
    romeo.xmpp.send_presence(pto=mercutio.jid)
    error = await romeo.expect(presence("error"))
    assert error["error"]["condition"] == "resource-constraint"
    await mercutio.expect_nothing(presence(sender=romeo.jid), within=0.2)
