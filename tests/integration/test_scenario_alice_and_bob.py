"""Alice and Bob, end to end, with real slixmpp clients over real sockets.

They register in-band (XEP-0077), subscribe to each other (RFC 6121 §3) and see each other's
presence on two resources each (§4). Bob logs out; Alice writes to him; Bob comes back on a
new resource and gets her message from offline storage with a delay stamp (XEP-0160,
XEP-0203). Alice blocks Bob (XEP-0191); from then on nothing of Bob's reaches her, and his
message bounces with ``<service-unavailable/>``, so she looks offline to him (§3.3).

Every step checks what must arrive and, within a short bounded wait, what must not.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import slixmpp
from slixmpp import JID
from slixmpp.exceptions import IqError

from tests.integration.harness import PASSWORD, RunningServer, SlixClient, connect_slixmpp
from tests.integration.im_helpers import expect_all, login, presence, push
from tests.integration.message_helpers import delay_of, send_message, sync

ALICE, BOB = "alice@localhost", "bob@localhost"
NS_BLOCKING_ERRORS = "urn:xmpp:blocking:errors"
REGISTRATION_OPEN = {"register": {"allow_registration": True}}


# --------------------------------------------------------------------------- the story
async def test_alice_and_bob(server_factory: Callable[..., Any]) -> None:
    srv = await server_factory(module_options=REGISTRATION_OPEN)  # every default module

    # Alice and Bob create their accounts from their clients, then log in with them.
    alice_home = await register(srv, f"{ALICE}/home")
    bob_desk = await register(srv, f"{BOB}/desk")
    alice_work = await login(srv, ALICE, "work")
    bob_phone = await login(srv, BOB, "phone")
    alices = (alice_home, alice_work)
    for client in (alice_home, alice_work, bob_desk, bob_phone):
        await online(client)
    # Strangers so far: neither sees the other come online.
    await nothing_from(BOB, *alices)
    await nothing_from(ALICE, bob_desk, bob_phone)

    # Alice asks to see Bob's presence; both of Bob's resources are asked (RFC 6121 §3.1.3).
    alice_home.xmpp.send_presence(pto=BOB, ptype="subscribe")
    for bob in (bob_desk, bob_phone):
        await bob.expect(presence("subscribe", ALICE))
    # Bob approves: Alice's resources hear it, and each sees Bob on both his resources.
    bob_desk.xmpp.send_presence(pto=ALICE, ptype="subscribed")
    for alice in alices:
        await expect_all(
            alice,
            push(BOB, "to"),
            presence("subscribed", BOB),
            presence(None, bob_desk.jid),
            presence(None, bob_phone.jid),
        )

    # And the other way round: Bob asks from his phone, Alice approves from work.
    bob_phone.xmpp.send_presence(pto=ALICE, ptype="subscribe")
    for alice in alices:
        await alice.expect(presence("subscribe", BOB))
    alice_work.xmpp.send_presence(pto=BOB, ptype="subscribed")
    for bob in (bob_desk, bob_phone):
        await expect_all(
            bob,
            push(ALICE, "both"),
            presence("subscribed", ALICE),
            presence(None, alice_home.jid),
            presence(None, alice_work.jid),
        )
    for alice in alices:
        await alice.expect(push(BOB, "both"))

    # Bob logs out everywhere: Alice's resources see both of his go unavailable.
    bob_desk_jid, bob_phone_jid = bob_desk.jid, bob_phone.jid
    await bob_desk.disconnect()
    await bob_phone.disconnect()
    for alice in alices:
        await expect_all(
            alice, presence("unavailable", bob_desk_jid), presence("unavailable", bob_phone_jid)
        )

    # Alice writes to him anyway. The server keeps it (XEP-0160): no error comes back.
    sent_at = datetime.now(UTC).replace(microsecond=0)
    send_message(alice_home, BOB, "Are you there, Bob?")
    await sync(alice_home)
    await alice_home.expect_nothing(lambda s: s.name == "message")

    # Bob comes back on a new resource: the message waits for him, stamped (XEP-0203),
    # and he sees Alice on both her resources again.
    bob_laptop = await login(srv, BOB, "laptop", roster=True)
    bob_laptop.xmpp.send_presence()
    stored, _, _ = await expect_all(
        bob_laptop,
        message_saying("Are you there, Bob?"),
        presence(None, alice_home.jid),
        presence(None, alice_work.jid),
    )
    assert str(stored["from"]) == alice_home.jid and stored["type"] == "chat"
    delay = delay_of(stored)
    assert delay is not None and delay.get("from") == "localhost"
    stamp = delay.get("stamp") or ""
    assert stamp.endswith("Z"), stamp  # UTC, as XEP-0082 wants it
    assert sent_at <= datetime.fromisoformat(stamp) <= datetime.now(UTC)
    for alice in alices:
        await alice.expect(presence(None, bob_laptop.jid))
    await bob_laptop.expect_nothing(message_saying("Are you there, Bob?"))  # just once

    # Alice blocks Bob (XEP-0191 §3.3). Bob, who could see her, gets unavailable from both
    # her resources; her resources see him go unavailable.
    alice_home.xmpp.register_plugin("xep_0191")
    await alice_home.xmpp.plugin["xep_0191"].block([JID(BOB)], timeout=5)
    await expect_all(
        bob_laptop,
        presence("unavailable", alice_home.jid),
        presence("unavailable", alice_work.jid),
    )
    for alice in alices:
        await alice.expect(presence("unavailable", bob_laptop.jid))

    # Bob writes to her: the message bounces with <service-unavailable/>, exactly as if she
    # were offline with no storage, and nothing tells him he is blocked (§3.3).
    send_message(bob_laptop, ALICE, "Alice?")
    bounce = await bob_laptop.expect(lambda s: s.name == "message" and s["type"] == "error")
    assert str(bounce["from"]) == ALICE
    assert bounce["error"]["condition"] == "service-unavailable"
    assert bounce["error"]["type"] == "cancel"
    assert bounce.xml.find(f".//{{{NS_BLOCKING_ERRORS}}}blocked") is None
    # His presence changes do not reach her either, and are dropped without an error.
    bob_laptop.xmpp.send_presence(pshow="away")
    await sync(bob_laptop)
    await asyncio.gather(
        nothing_from(BOB, *alices),
        bob_laptop.expect_nothing(lambda s: s["type"] == "error"),
    )

    for client in (alice_home, alice_work, bob_laptop):
        await client.disconnect()


# --------------------------------------------------------------------------- steps
async def register(srv: RunningServer, jid: str) -> SlixClient:
    """A client creates its account in-band (XEP-0077 §3.1) on its first connection, then
    authenticates with it and binds the resource of ``jid``. slixmpp asks for the form only
    when the server offers registration in its stream features (§4)."""
    answers: list[Any] = []

    def with_registration(xmpp: slixmpp.ClientXMPP) -> None:
        xmpp.register_plugin("xep_0077")

        async def fill_in(form: Any) -> None:
            assert set(form["register"]["fields"]) == {"username", "password"}
            iq = xmpp.Iq()
            iq["type"] = "set"
            iq["register"]["username"] = xmpp.boundjid.user
            iq["register"]["password"] = PASSWORD
            try:
                answers.append(await iq.send(timeout=5))
            except IqError as err:
                answers.append(err.iq)

        xmpp.add_event_handler("register", fill_in)

    client = await connect_slixmpp(srv, jid, configure=with_registration)
    assert [answer["type"] for answer in answers] == ["result"]
    client.xmpp.auto_authorize = None  # the story answers subscription requests itself
    client.xmpp.auto_subscribe = False
    return client


async def online(client: SlixClient) -> None:
    """Fetch the roster, send initial presence, wait for the server to reflect it."""
    await client.xmpp.get_roster(timeout=5)
    client.xmpp.send_presence()
    await client.expect(presence(None, client.jid))


async def nothing_from(sender: str, *clients: SlixClient) -> None:
    """Bounded: none of ``clients`` receives anything from ``sender``'s bare JID."""

    def from_sender(stanza: Any) -> bool:
        return bool(stanza["from"].bare == sender)

    await asyncio.gather(*(client.expect_nothing(from_sender) for client in clients))


def message_saying(body: str) -> Callable[[Any], bool]:
    def match(stanza: Any) -> bool:
        return bool(stanza.name == "message" and stanza["body"] == body)

    return match
