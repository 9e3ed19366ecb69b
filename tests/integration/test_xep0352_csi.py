"""XEP-0352 Client State Indication on a real server, in raw XML: what an inactive client
is spared, what still reaches it at once, and that <active/> delivers what waited, in order."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from tests.integration.harness import (
    NS_CLIENT,
    NS_STANZAS,
    RawClient,
    RunningServer,
    q,
    raw_session,
)
from tests.integration.im_helpers import befriend
from tests.integration.test_xep0198_sm import (
    NS_SM,
    authenticated,
    drain,
    enable,
    hibernating,
    kill,
    managed,
    resume,
    sync,
    until,
)

NS_CSI = "urn:xmpp:csi:0"
NS_CHATSTATES = "http://jabber.org/protocol/chatstates"


async def friends(srv: RunningServer) -> tuple[RawClient, str, RawClient, str]:
    """Alice and Bob, subscribed both ways, both available, their inboxes drained."""
    alice_jid, bob_jid = await srv.add_user(), await srv.add_user()
    await befriend(srv, alice_jid, bob_jid)
    alice, alice_full = await raw_session(srv, alice_jid, resource="phone")
    bob, bob_full = await raw_session(srv, bob_jid, resource="desk")
    for client in (alice, bob):
        await client.send("<presence/>")
        await sync(client)
    await drain(alice)
    await drain(bob)
    return alice, alice_full, bob, bob_full


async def inactive(client: RawClient) -> None:
    await client.send(f"<inactive xmlns='{NS_CSI}'/>")
    await sync(client)  # processed in order: from here on the client is inactive


def show(stanza: ET.Element) -> str | None:
    return stanza.findtext(q(NS_CLIENT, "show"))


async def test_csi_is_offered_once_authenticated(server: RunningServer) -> None:
    client, features = await authenticated(server, await server.add_user())
    assert features.find(q(NS_CSI, "csi")) is not None
    await client.close()


async def test_presence_waits_and_only_the_latest_arrives_on_active(
    server: RunningServer,
) -> None:
    alice, _, bob, bob_full = await friends(server)
    await inactive(alice)
    for state in ("away", "xa", "dnd"):
        await bob.send(f"<presence><show>{state}</show></presence>")
    await sync(bob)
    await alice.expect_nothing(0.3)
    await alice.send(f"<active xmlns='{NS_CSI}'/>")
    latest = await alice.next()
    assert latest.tag == q(NS_CLIENT, "presence") and latest.get("from") == bob_full
    assert show(latest) == "dnd"
    await alice.expect_nothing(0.3)  # the superseded ones are never sent
    await bob.send("<presence/>")  # active again: presence flows at once
    assert show(await alice.next()) is None
    await alice.close()
    await bob.close()


async def test_chat_states_wait_and_a_message_brings_them_along_in_order(
    server: RunningServer,
) -> None:
    alice, alice_full, bob, bob_full = await friends(server)
    await inactive(alice)
    await bob.send("<presence><show>away</show></presence>")
    composing = f"<composing xmlns='{NS_CHATSTATES}'/>"
    await bob.send(f"<message to='{alice_full}' type='chat'>{composing}</message>")
    await sync(bob)
    await alice.expect_nothing(0.3)
    await bob.send(
        f"<message to='{alice_full}' type='chat'><body>hi</body>"
        f"<active xmlns='{NS_CHATSTATES}'/></message>"
    )
    got = [await alice.next() for _ in range(3)]
    assert [el.tag for el in got] == [q(NS_CLIENT, "presence"), *[q(NS_CLIENT, "message")] * 2]
    assert got[1].find(q(NS_CHATSTATES, "composing")) is not None
    assert got[2].findtext(q(NS_CLIENT, "body")) == "hi"
    assert all(el.get("from") == bob_full for el in got)
    await alice.close()
    await bob.close()


async def test_urgent_stanzas_arrive_at_once(server: RunningServer) -> None:
    alice, alice_full, bob, _ = await friends(server)
    await inactive(alice)
    carol, _ = await raw_session(server)
    alice_bare = alice_full.split("/")[0]
    await carol.send(f"<presence to='{alice_bare}' type='subscribe'/>")
    request = await alice.next()
    assert request.tag == q(NS_CLIENT, "presence") and request.get("type") == "subscribe"
    await bob.send(
        f"<iq type='get' id='v1' to='{alice_full}'><query xmlns='jabber:iq:version'/></iq>"
    )
    assert (await alice.next()).get("id") == "v1"
    await alice.send(
        f"<iq type='get' id='own' to='{alice_full}'><ping xmlns='urn:xmpp:ping'/></iq>"
    )
    assert (await alice.next()).get("id") == "own"  # an iq to herself, answered by nobody
    await alice.close()
    await bob.close()
    await carol.close()


async def test_unknown_csi_element_ends_the_stream(server: RunningServer) -> None:
    client, _ = await raw_session(server)
    await client.send(f"<sleepy xmlns='{NS_CSI}'/>")
    await client.expect_stream_error("unsupported-stanza-type")


async def test_held_stanzas_are_not_counted_by_stream_management_until_sent(
    server: RunningServer,
) -> None:
    alice, alice_full, bob, _ = await friends(server)
    await enable(alice)
    await inactive(alice)  # the sync ping's answer is the one stanza sent since <enabled/>
    state = managed(server, alice_full)
    assert state is not None and state.state.sent == 1
    for state_name in ("away", "xa"):
        await bob.send(f"<presence><show>{state_name}</show></presence>")
    await sync(bob)
    assert state.state.sent == 1
    await alice.send(f"<active xmlns='{NS_CSI}'/><r xmlns='{NS_SM}'/>")
    assert show(await alice.next()) == "xa"
    ack = await alice.next()
    assert ack.tag == q(NS_SM, "a")
    assert state.state.sent == 2
    await alice.close()
    await bob.close()


async def test_a_resumed_session_is_active_again(server: RunningServer) -> None:
    alice, alice_full, bob, bob_full = await friends(server)
    alice_bare = alice_full.split("/")[0]
    enabled = await enable(alice)
    await inactive(alice)
    kill(alice)
    await until(hibernating(server, alice_full))
    await bob.send("<presence><show>away</show></presence>")
    await sync(bob)
    alice2, resumed = await resume(server, alice_bare, enabled.get("id") or "", 1)
    assert resumed.tag == q(NS_SM, "resumed"), ET.tostring(resumed)
    flushed = await alice2.next()  # XEP-0352 §5.2: the state is not kept over a resume
    assert flushed.get("from") == bob_full and show(flushed) == "away"
    await bob.send("<presence><show>dnd</show></presence>")
    assert show(await alice2.next()) == "dnd"
    await alice2.close()
    await bob.close()


async def test_csi_before_bind_is_refused(server: RunningServer) -> None:
    client, _ = await authenticated(server, await server.add_user())
    await client.send(f"<inactive xmlns='{NS_CSI}'/>")
    error = await client.next()
    assert error.tag.endswith("}error")
    assert error[0].tag.endswith("}not-authorized")
    assert not error[0].tag.startswith(f"{{{NS_STANZAS}}}")
