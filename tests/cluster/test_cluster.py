"""Three Salon nodes on one Redis and one PostgreSQL serve as one server: users spread across
the nodes see each other's presence, exchange messages, subscribe, get offline messages, lose
a resource conflict to a newer session on another node, chat in one room, and find their
chats in the archive through any node."""

from __future__ import annotations

import asyncio
from typing import Any

from slixmpp.xmlstream import ET

from tests.cluster.conftest import Cluster, Node
from tests.integration.harness import (
    RawClient,
    RunningServer,
    SlixClient,
    connect_slixmpp,
    until,
)
from tests.integration.im_helpers import presence, push, roster_get, send_iq, settle
from tests.integration.message_helpers import carbon_original, delay_of, is_carbon, is_message
from tests.integration.pubsub_helpers import event, event_item_ids, publish
from tests.integration.test_xep0163_pep import TUNE, pep_client, tune
from tests.integration.test_xep0198_sm import enable, resume
from tests.integration.test_xep0313_mam import mam_results, result_id_and_body, stanza_ids, with_mam

NS_MUC = "http://jabber.org/protocol/muc"
INSTANT_ROOM = f"<query xmlns='{NS_MUC}#owner'><x xmlns='jabber:x:data' type='submit'/></query>"


async def login(
    node: Node | RunningServer, jid: str, *, available: bool = True, **kw: Any
) -> SlixClient:
    client = await connect_slixmpp(node, jid, **kw)  # type: ignore[arg-type]
    client.xmpp.auto_authorize = None
    client.xmpp.auto_subscribe = False
    await client.xmpp.get_roster(timeout=5)
    if available:
        client.xmpp.send_presence()
        await client.expect(presence(sender=client.jid))
    return client


def chat(client: SlixClient, to: str, body: str, mtype: str = "chat") -> None:
    client.xmpp.send_message(mto=to, mbody=body, mtype=mtype)


async def test_users_on_three_nodes(cluster: Cluster) -> None:
    n1, n2, n3 = cluster.nodes
    alice, bob, carol = [await cluster.add_user(n) for n in ("alice", "bob", "carol")]
    for a, b in ((alice, bob), (alice, carol), (bob, carol)):
        await cluster.befriend(a, b)

    ca = await login(n1, f"{alice}/a")
    cb = await login(n2, f"{bob}/b")
    # Presence across nodes: bob's initial presence reaches alice on n1 (broadcast), and
    # bob gets alice's presence in answer to his probe.
    await ca.expect(presence(sender=f"{bob}/b"))
    await cb.expect(presence(sender=f"{alice}/a"))
    cc = await login(n3, f"{carol}/c")
    await ca.expect(presence(sender=f"{carol}/c"))
    await cb.expect(presence(sender=f"{carol}/c"))
    for sender in (f"{alice}/a", f"{bob}/b"):
        await cc.expect(presence(sender=sender))
    # Redis holds each node's sessions.
    assert f"{bob}/b" in await cluster.sessions_in_redis("n2")

    # Messages: to a full JID on another node, and to a bare JID.
    chat(ca, f"{bob}/b", "hi bob")
    got = await cb.expect(lambda s: is_message(s, "hi bob"))
    assert str(got["from"]) == f"{alice}/a"
    chat(cb, carol, "hi carol")
    await cc.expect(lambda s: is_message(s, "hi carol"))
    chat(cc, alice, "hi alice")
    await ca.expect(lambda s: is_message(s, "hi alice"))

    # A message to an account with no session anywhere is stored, and delivered on login.
    dave = await cluster.add_user("dave")
    chat(ca, dave, "while you were out")
    await settle(ca)
    await until(lambda: _has_offline(cluster, "dave"), "the offline message")
    cd = await login(n3, f"{dave}/d")
    stored = await cd.expect(lambda s: is_message(s, "while you were out"))
    assert delay_of(stored) is not None

    # Unavailable presence crosses nodes too.
    cc.xmpp.send_presence(ptype="unavailable")
    await ca.expect(presence("unavailable", f"{carol}/c"))
    await cb.expect(presence("unavailable", f"{carol}/c"))
    for client in (ca, cb, cc, cd):
        await client.disconnect()


async def test_subscription_across_nodes_and_roster_cache(cluster: Cluster) -> None:
    n1, _, n3 = cluster.nodes
    dave = await cluster.add_user("dave")
    erin = await cluster.add_user("erin")
    cd = await login(n1, f"{dave}/d")
    ce = await login(n3, f"{erin}/e")
    # dave on n1 asks erin on n3; erin's node writes dave's roster (inbound "subscribed")
    cd.xmpp.send_presence(pto=erin, ptype="subscribe")
    await ce.expect(presence("subscribe", dave))
    ce.xmpp.send_presence(pto=dave, ptype="subscribed")
    await cd.expect(push(erin, "none"))  # §3.1.2: the pending "ask" push first
    await cd.expect(push(erin, "to"))
    await cd.expect(presence(sender=f"{erin}/e"))  # §3.1.5: erin's current presence
    # n1 cached dave's roster before n3 changed it: the roster it serves must be the new one.
    reply = await roster_get(cd)
    items = {str(i): i for i in reply["roster"]["items"]}
    assert reply["roster"]["items"][erin]["subscription"] == "to", items
    # erin on n3 sees dave's presence changes only if subscribed: she is not.
    cd.xmpp.send_presence(pstatus="busy")
    await ce.expect_nothing(presence(sender=f"{dave}/d"), within=0.5)
    for client in (cd, ce):
        await client.disconnect()


async def test_conflict_across_nodes(cluster: Cluster) -> None:
    n1, n2, n3 = cluster.nodes
    bob = await cluster.add_user("bob")
    alice = await cluster.add_user("alice")
    old = await login(n2, f"{bob}/phone")
    errors: list[str] = []
    old.xmpp.add_event_handler(
        "stream_error",
        lambda err: errors.append(err["condition"]),  # type: ignore[index]
    )
    new = await login(n3, f"{bob}/phone")
    await until(lambda: "conflict" in errors, "<conflict/> on the older session")
    await until(
        lambda: _redis_has(cluster, "n2", f"{bob}/phone", False), "n2 forgetting the old one"
    )
    ca = await login(n1, f"{alice}/a")
    chat(ca, f"{bob}/phone", "to the newest")
    await new.expect(lambda s: is_message(s, "to the newest"))
    for client in (ca, new):
        await client.disconnect()


async def test_group_chat_across_nodes(cluster: Cluster) -> None:
    n1, n2, n3 = cluster.nodes
    users = [await cluster.add_user(n) for n in ("alice", "bob", "carol")]
    clients = [
        await login(node, f"{user}/r") for node, user in zip((n1, n2, n3), users, strict=True)
    ]
    room = "lounge@conference.localhost"
    for client, nick in zip(clients, ("A", "B", "C"), strict=True):
        join = client.xmpp.Presence()
        join["to"] = f"{room}/{nick}"
        join.append(ET.fromstring(f"<x xmlns='{NS_MUC}'/>"))
        join.send()
        await client.expect(presence(sender=f"{room}/{nick}"))  # own presence: joined
        if nick == "A":  # the creator accepts the default configuration (XEP-0045 §10.1.2)
            iq = client.xmpp.Iq()
            iq["type"], iq["to"] = "set", room
            iq.append(ET.fromstring(INSTANT_ROOM))
            assert (await send_iq(client, iq))["type"] == "result"
    # Everyone sees everyone, whichever node they joined through.
    # (a joiner gets the others' presence before its own, so only later joins are checked)
    await clients[0].expect(presence(sender=f"{room}/C"))
    await clients[1].expect(presence(sender=f"{room}/C"))
    clients[1].xmpp.send_message(mto=room, mbody="hello room", mtype="groupchat")
    for client in clients:
        got = await client.expect(lambda s: is_message(s, "hello room"))
        assert str(got["from"]) == f"{room}/B"
    # One node owns the room.
    owner = await cluster.redis.get(f"{cluster.prefix}room:conference.localhost/lounge")
    assert owner in ("n1", "n2", "n3")
    for client in clients:
        await client.disconnect()


async def _has_offline(cluster: Cluster, local: str) -> bool:
    return bool(await cluster.storage.offline.list("localhost", local))


async def _redis_has(cluster: Cluster, node: str, jid: str, present: bool) -> bool:
    return (jid in await cluster.sessions_in_redis(node)) is present


async def test_carbons_and_sm_fallback_across_nodes(cluster: Cluster) -> None:
    """XEP-0280: a resource on another node gets carbons of what its sibling sends and
    receives. XEP-0198: a client that resumes through another node than the one holding its
    session gets <item-not-found/>, binds anew, and what its old session had not
    acknowledged reaches it through offline storage."""
    n1, n2, n3 = cluster.nodes
    alice, bob = [await cluster.add_user(n) for n in ("alice", "bob")]
    phone = await login(n1, f"{alice}/phone")
    laptop = await login(n2, f"{alice}/laptop")
    cb = await login(n3, f"{bob}/b")
    for client in (phone, laptop):
        iq = client.xmpp.Iq()
        iq["type"] = "set"
        iq.append(ET.fromstring("<enable xmlns='urn:xmpp:carbons:2'/>"))
        assert (await send_iq(client, iq))["type"] == "result"
    chat(cb, f"{alice}/phone", "to the phone")
    await phone.expect(lambda s: is_message(s, "to the phone"))
    received = await laptop.expect(is_carbon("received"))
    assert carbon_original(received, "received").findtext("{jabber:client}body") == ("to the phone")
    chat(phone, bob, "from the phone")
    await cb.expect(lambda s: is_message(s, "from the phone"))
    sent = await laptop.expect(is_carbon("sent"))
    assert carbon_original(sent, "sent").findtext("{jabber:client}body") == "from the phone"
    for client in (phone, laptop, cb):
        await client.disconnect()
    desk = await login(n3, f"{alice}/desk")

    # Stream management: a managed session on n1 loses its connection (it hibernates) ...
    raw = await RawClient.connect(n1)  # type: ignore[arg-type]
    await raw.login(n1, bob, resource="sm")  # type: ignore[arg-type]
    previd = (await enable(raw)).get("id")
    await raw.send("<presence/>")
    chat(desk, f"{bob}/sm", "unacked")
    while (await raw.next()).tag != "{jabber:client}message":
        pass  # received, never acknowledged
    raw.writer.transport.abort()
    # ... and the client comes back through n2: item-not-found, then a new session.
    again, failed = await resume(n2, bob, previd or "", 0)  # type: ignore[arg-type]
    assert failed.tag == "{urn:xmpp:sm:3}failed", failed.tag
    assert failed.find("{urn:ietf:params:xml:ns:xmpp-stanzas}item-not-found") is not None
    await again.bind("sm")  # the same resource: the hibernated session is replaced
    await again.send("<presence/>")
    while True:
        got = await again.next()
        if got.findtext("{jabber:client}body") == "unacked":
            break
    assert got.find("{urn:xmpp:delay}delay") is not None  # it came out of offline storage
    await desk.disconnect()


async def test_pep_notifications_across_nodes(cluster: Cluster) -> None:
    """XEP-0163: a contact on another node whose caps say +notify gets the owner's new items
    live (and one without +notify does not)."""
    n1, n2, n3 = cluster.nodes
    juliet, romeo, nurse = [await cluster.add_user(n) for n in ("juliet", "romeo", "nurse")]
    for contact in (romeo, nurse):
        await cluster.befriend(juliet, contact)
    j = await pep_client(n1, juliet)  # type: ignore[arg-type]
    r = await pep_client(n2, romeo, (TUNE,))  # type: ignore[arg-type]
    n = await pep_client(n3, nurse)  # type: ignore[arg-type]
    await j.expect(presence(sender=r.jid))  # romeo's caps are in juliet's node's directory
    await publish(j, TUNE, "song", tune("song"))
    got = await r.expect(event(TUNE, sender=juliet))
    assert event_item_ids(got) == ["song"]
    await publish(j, TUNE, "song2", tune("song two"))
    got = await r.expect(event(TUNE, sender=juliet))
    assert event_item_ids(got) == ["song2"]
    await n.expect_nothing(event(TUNE))
    for client in (j, r, n):
        await client.disconnect()


async def test_blocking_takes_effect_on_every_node(cluster: Cluster) -> None:
    """XEP-0191: a block set through one node stops the blocked user's messages routed by
    another node, whose cached blocklist is dropped (and an unblock lets them through)."""
    n1, n2, _ = cluster.nodes
    alice, bob = [await cluster.add_user(n) for n in ("alice", "bob")]
    ca = await login(n1, f"{alice}/a")
    cb = await login(n2, f"{bob}/b")
    chat(ca, f"{bob}/b", "first")  # n1 reads bob's (empty) blocklist and caches it
    await cb.expect(lambda s: is_message(s, "first"))
    iq = cb.xmpp.Iq()
    iq["type"] = "set"
    iq.append(ET.fromstring(f"<block xmlns='urn:xmpp:blocking'><item jid='{alice}'/></block>"))
    assert (await send_iq(cb, iq))["type"] == "result"
    refused = False
    for attempt in range(20):  # the invalidation crosses Redis: bounded retries
        chat(ca, f"{bob}/b", f"blocked {attempt}")
        bounced = asyncio.ensure_future(
            ca.expect(lambda s: s.name == "message" and s["type"] == "error", timeout=3)
        )
        delivered = asyncio.ensure_future(
            cb.expect(lambda s, n=attempt: is_message(s, f"blocked {n}"), timeout=3)
        )
        done, pending = await asyncio.wait(
            {bounced, delivered}, return_when=asyncio.FIRST_COMPLETED
        )
        for task in pending:
            task.cancel()
        if bounced in done and bounced.exception() is None:
            assert bounced.result()["error"]["condition"] == "service-unavailable"
            refused = True
            break
    assert refused, "n1 kept delivering after bob blocked alice on n2"
    await cb.expect_nothing(lambda s: is_message(s, f"blocked {attempt}"), within=0.5)
    for client in (ca, cb):
        await client.disconnect()


async def test_archive_across_nodes(cluster: Cluster) -> None:
    """XEP-0313 in a cluster: a chat between users on two nodes is archived for both, the
    recipient's copy under the stanza-id it was delivered with, and each finds it through
    any node."""
    n1, n2, n3 = cluster.nodes
    alice, bob = [await cluster.add_user(n) for n in ("alice", "bob")]
    ca = await login(n1, f"{alice}/a", configure=with_mam)
    cb = await login(n2, f"{bob}/b", configure=with_mam)
    chat(ca, f"{bob}/b", "archived across")
    got = await cb.expect(lambda s: is_message(s, "archived across"))
    [(by, sid)] = stanza_ids(got.xml)
    assert by == bob
    # Alice's next stanza is answered only after her message counted as handled, which
    # waits for both archive copies to be committed (salon.core.write_behind).
    await settle(ca)
    results, _ = await mam_results(cb)
    assert [result_id_and_body(m) for m in results] == [(sid, "archived across")]
    other = await login(n3, f"{alice}/c", configure=with_mam)
    results, _ = await mam_results(other)
    assert [result_id_and_body(m)[1] for m in results] == ["archived across"]
    for client in (ca, cb, other):
        await client.disconnect()
