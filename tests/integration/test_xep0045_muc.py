"""XEP-0045 Multi-User Chat on a real server: raw XML for the exact status codes and error
conditions the XEP names, slixmpp's xep_0045 plugin for the everyday flows."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable

import pytest

from tests.integration.harness import (
    RawClient,
    RunningServer,
    connect_slixmpp,
    q,
    raw_session,
    stanza_error_condition,
)

NS_MUC = "http://jabber.org/protocol/muc"
NS_USER = "http://jabber.org/protocol/muc#user"
NS_ADMIN = "http://jabber.org/protocol/muc#admin"
NS_OWNER = "http://jabber.org/protocol/muc#owner"
NS_DATA = "jabber:x:data"
NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
NS_DISCO_ITEMS = "http://jabber.org/protocol/disco#items"
NS_DELAY = "urn:xmpp:delay"
NS_OID = "urn:xmpp:occupant-id:0"
NS_CLIENT = "jabber:client"
MUC = "conference.localhost"
Factory = Callable[..., Awaitable[RunningServer]]


# --------------------------------------------------------------------------- helpers
def statuses(stanza: ET.Element) -> set[str]:
    return {s.get("code", "") for s in stanza.iter(q(NS_USER, "status"))}


def item(stanza: ET.Element) -> ET.Element:
    found = stanza.find(f"{q(NS_USER, 'x')}/{q(NS_USER, 'item')}")
    assert found is not None, ET.tostring(stanza)
    return found


def is_subject(stanza: ET.Element) -> bool:
    return (
        stanza.tag == q(NS_CLIENT, "message") and stanza.find(q(NS_CLIENT, "subject")) is not None
    )


async def send_presence(client: RawClient, to: str, x: str = f"<x xmlns='{NS_MUC}'/>") -> None:
    await client.send(f"<presence to='{to}'>{x}</presence>")


async def enter(
    client: RawClient, room: str, nick: str, x: str = f"<x xmlns='{NS_MUC}'/>"
) -> list[ET.Element]:
    """Join and read up to the subject (which ends the join, §7.2.15)."""
    await send_presence(client, f"{room}@{MUC}/{nick}", x)
    got: list[ET.Element] = []
    while True:
        stanza = await client.next()
        got.append(stanza)
        assert stanza.get("type") != "error", ET.tostring(stanza)
        if is_subject(stanza):
            return got


async def instant_room(client: RawClient, room: str, nick: str) -> list[ET.Element]:
    """Create ``room`` and accept the default configuration (§10.1.2)."""
    got = await enter(client, room, nick)
    await iq(
        client,
        "set",
        f"{room}@{MUC}",
        f"<query xmlns='{NS_OWNER}'><x xmlns='{NS_DATA}' type='submit'/></query>",
    )
    return got


_ids = iter(range(1, 1_000_000))


async def iq(client: RawClient, itype: str, to: str, payload: str) -> ET.Element:
    """Send an iq and return its answer (other stanzas before it are kept for next())."""
    iq_id = f"q{next(_ids)}"
    await client.send(f"<iq type='{itype}' id='{iq_id}' to='{to}'>{payload}</iq>")
    return await expect(client, lambda s: s.tag == q(NS_CLIENT, "iq") and s.get("id") == iq_id)


async def expect(
    client: RawClient, predicate: Callable[[ET.Element], bool], within: float = 5.0
) -> ET.Element:
    """The first stanza matching ``predicate``; the others are put back in order."""
    skipped: list[ET.Element] = []
    try:
        while True:
            stanza = await client.next(within)
            if predicate(stanza):
                return stanza
            skipped.append(stanza)
    finally:
        client._ready[0:0] = skipped


async def configure(client: RawClient, room: str, **fields: str) -> ET.Element:
    inner = "".join(
        f"<field var='muc#roomconfig_{var}'><value>{value}</value></field>"
        for var, value in fields.items()
    )
    form = (
        f"<x xmlns='{NS_DATA}' type='submit'><field var='FORM_TYPE'>"
        f"<value>http://jabber.org/protocol/muc#roomconfig</value></field>{inner}</x>"
    )
    return await iq(client, "set", f"{room}@{MUC}", f"<query xmlns='{NS_OWNER}'>{form}</query>")


async def error_of(client: RawClient, tag: str = "presence") -> ET.Element:
    stanza = await expect(client, lambda s: s.tag == q(NS_CLIENT, tag) and s.get("type") == "error")
    return stanza


@pytest.fixture
async def srv(server_factory: Factory) -> RunningServer:
    return await server_factory()


async def users(srv: RunningServer, n: int) -> list[tuple[RawClient, str]]:
    return [await raw_session(srv) for _ in range(n)]


# --------------------------------------------------------------------------- discovery
async def test_service_listed_in_server_items_with_conference_identity(srv: RunningServer) -> None:
    ((client, _full),) = await users(srv, 1)
    items = await iq(client, "get", "localhost", f"<query xmlns='{NS_DISCO_ITEMS}'/>")
    jids = {i.get("jid") for i in items.iter(q(NS_DISCO_ITEMS, "item"))}
    assert MUC in jids
    info = await iq(client, "get", MUC, f"<query xmlns='{NS_DISCO_INFO}'/>")
    identity = info.find(f"{q(NS_DISCO_INFO, 'query')}/{q(NS_DISCO_INFO, 'identity')}")
    assert identity is not None
    assert (identity.get("category"), identity.get("type")) == ("conference", "text")
    features = {f.get("var") for f in info.iter(q(NS_DISCO_INFO, "feature"))}
    assert NS_MUC in features and NS_OID in features


# --------------------------------------------------------------------------- entering
async def test_creating_a_room_201_locked_until_instant_config(srv: RunningServer) -> None:
    (owner, owner_jid), (other, _) = await users(srv, 2)
    got = await enter(owner, "coven", "firstwitch")
    presence = got[0]
    assert presence.get("from") == f"coven@{MUC}/firstwitch"
    assert {"110", "201"} <= statuses(presence)
    assert (item(presence).get("affiliation"), item(presence).get("role")) == ("owner", "moderator")
    # §10.1.1: locked until configured: others get item-not-found
    await send_presence(other, f"coven@{MUC}/second")
    assert stanza_error_condition(await error_of(other)) == "item-not-found"
    # §10.1.2: instant room
    reply = await iq(
        owner,
        "set",
        f"coven@{MUC}",
        f"<query xmlns='{NS_OWNER}'><x xmlns='{NS_DATA}' type='submit'/></query>",
    )
    assert reply.get("type") == "result"
    got = await enter(other, "coven", "second")
    assert got[0].get("from") == f"coven@{MUC}/firstwitch"  # existing occupants first
    own = got[1]
    assert own.get("from") == f"coven@{MUC}/second"
    assert "110" in statuses(own) and "201" not in statuses(own)
    assert item(own).get("role") == "participant"
    # the owner hears of the newcomer, without 110
    seen = await expect(owner, lambda s: s.get("from") == f"coven@{MUC}/second")
    assert "110" not in statuses(seen)
    # semi-anonymous by default: the owner (a moderator) sees the real JID
    assert item(seen).get("jid") is not None
    assert item(got[0]).get("jid") is None  # a participant does not see the owner's
    assert owner_jid


async def test_self_presence_carries_occupant_id_stable_per_user(srv: RunningServer) -> None:
    (a, _), (b, _) = await users(srv, 2)
    got = await instant_room(a, "oid", "alice")
    first = got[-2].find(q(NS_OID, "occupant-id"))
    assert first is not None and first.get("id")
    await send_presence(a, f"oid@{MUC}/alice2")  # a nick change keeps the id
    await expect(a, lambda s: s.get("from") == f"oid@{MUC}/alice2")
    got = await enter(b, "oid", "bob")
    alice = next(s for s in got if s.get("from") == f"oid@{MUC}/alice2")
    assert alice.find(q(NS_OID, "occupant-id")).get("id") == first.get("id")  # type: ignore[union-attr]


async def test_nick_conflict(srv: RunningServer) -> None:
    (a, _), (b, _) = await users(srv, 2)
    await instant_room(a, "room1", "thirdwitch")
    await send_presence(b, f"room1@{MUC}/ThirdWitch")  # PRECIS nicknames compare case-mapped
    error = await error_of(b)
    assert stanza_error_condition(error) == "conflict"
    assert error.get("from") == f"room1@{MUC}/ThirdWitch"


async def test_missing_and_invalid_nicks_are_jid_malformed(srv: RunningServer) -> None:
    ((a, _),) = await users(srv, 1)
    await send_presence(a, f"nonick@{MUC}")
    assert stanza_error_condition(await error_of(a)) == "jid-malformed"
    await send_presence(a, f"badnick@{MUC}/  ")  # a valid resourcepart, an empty nickname
    assert stanza_error_condition(await error_of(a)) == "jid-malformed"


async def test_nick_too_long_is_policy_violation(server_factory: Factory) -> None:
    srv = await server_factory(module_options={"muc": {"max_nick_length": 5}})
    ((a, _),) = await users(srv, 1)
    await send_presence(a, f"shortnick@{MUC}/abcdefgh")
    assert stanza_error_condition(await error_of(a)) == "policy-violation"


async def test_nick_modified_by_service_is_210(srv: RunningServer) -> None:
    ((a, _),) = await users(srv, 1)
    # U+2163 ROMAN NUMERAL FOUR: the Nickname profile maps it to "IV" (NFKC)
    got = await enter(a, "modified", "king\u2163")
    own = next(s for s in got if "110" in statuses(s))
    assert "210" in statuses(own)
    assert own.get("from") == f"modified@{MUC}/kingIV"


async def test_room_creation_limit_per_user_not_allowed(server_factory: Factory) -> None:
    srv = await server_factory(module_options={"muc": {"max_rooms_per_user": 1}})
    ((a, _),) = await users(srv, 1)
    await instant_room(a, "mine", "alice")
    await send_presence(a, f"another@{MUC}/alice")
    assert stanza_error_condition(await error_of(a)) == "not-allowed"


async def test_password_protected_room(srv: RunningServer) -> None:
    (a, _), (b, _) = await users(srv, 2)
    await enter(a, "secret", "owner")
    await configure(a, "secret", passwordprotectedroom="1", roomsecret="cauldronburn")
    await send_presence(b, f"secret@{MUC}/b")
    assert stanza_error_condition(await error_of(b)) == "not-authorized"
    await enter(b, "secret", "b", f"<x xmlns='{NS_MUC}'><password>cauldronburn</password></x>")


async def test_members_only_registration_required(srv: RunningServer) -> None:
    (a, _), (b, b_full) = await users(srv, 2)
    await enter(a, "members", "owner")
    await configure(a, "members", membersonly="1")
    await send_presence(b, f"members@{MUC}/b")
    assert stanza_error_condition(await error_of(b)) == "registration-required"
    bare = b_full.split("/")[0]
    reply = await iq(
        a,
        "set",
        f"members@{MUC}",
        f"<query xmlns='{NS_ADMIN}'><item affiliation='member' jid='{bare}'/></query>",
    )
    assert reply.get("type") == "result"
    got = await enter(b, "members", "b")
    assert item(got[-2]).get("affiliation") == "member"


async def test_full_room_is_service_unavailable(srv: RunningServer) -> None:
    (a, _), (b, _), (c, _) = await users(srv, 3)
    await enter(a, "small", "owner")
    await configure(a, "small", maxusers="2")
    await enter(b, "small", "b")
    await send_presence(c, f"small@{MUC}/c")
    assert stanza_error_condition(await error_of(c)) == "service-unavailable"


async def test_ban_301_with_reason_then_forbidden(srv: RunningServer) -> None:
    (a, _), (b, b_full) = await users(srv, 2)
    await instant_room(a, "banroom", "owner")
    await enter(b, "banroom", "b")
    await expect(a, lambda s: s.get("from") == f"banroom@{MUC}/b")
    bare = b_full.split("/")[0]
    reply = await iq(
        a,
        "set",
        f"banroom@{MUC}",
        f"<query xmlns='{NS_ADMIN}'><item affiliation='outcast' jid='{bare}'>"
        "<reason>Treason</reason></item></query>",
    )
    assert reply.get("type") == "result"
    gone = await expect(b, lambda s: s.get("type") == "unavailable")
    assert {"301", "110"} <= statuses(gone)
    assert item(gone).get("affiliation") == "outcast" and item(gone).get("role") == "none"
    assert item(gone).findtext(q(NS_USER, "reason")) == "Treason"
    seen = await expect(a, lambda s: s.get("type") == "unavailable")
    assert statuses(seen) == {"301"}
    await send_presence(b, f"banroom@{MUC}/b")
    assert stanza_error_condition(await error_of(b)) == "forbidden"
    outcasts = await iq(
        a,
        "get",
        f"banroom@{MUC}",
        f"<query xmlns='{NS_ADMIN}'><item affiliation='outcast'/></query>",
    )
    assert [i.get("jid") for i in outcasts.iter(q(NS_ADMIN, "item"))] == [bare]


# --------------------------------------------------------------------------- occupants
async def test_groupchat_reaches_everyone_from_room_nick(srv: RunningServer) -> None:
    (a, _), (b, _) = await users(srv, 2)
    await instant_room(a, "chat", "alice")
    await enter(b, "chat", "bob")
    await b.send(f"<message to='chat@{MUC}' type='groupchat' id='m1'><body>hello</body></message>")
    for client in (a, b):
        msg = await expect(client, lambda s: s.tag == q(NS_CLIENT, "message"))
        assert msg.get("from") == f"chat@{MUC}/bob"
        assert msg.get("type") == "groupchat" and msg.get("id") == "m1"
        assert msg.findtext(q(NS_CLIENT, "body")) == "hello"
        assert msg.find(q(NS_OID, "occupant-id")) is not None


async def test_non_occupant_groupchat_not_acceptable(srv: RunningServer) -> None:
    (a, _), (b, _) = await users(srv, 2)
    await instant_room(a, "closed", "alice")
    await b.send(f"<message to='closed@{MUC}' type='groupchat'><body>hi</body></message>")
    assert stanza_error_condition(await error_of(b, "message")) == "not-acceptable"


async def test_private_message_marked_with_muc_user_x(srv: RunningServer) -> None:
    (a, _), (b, _) = await users(srv, 2)
    await instant_room(a, "pm", "alice")
    await enter(b, "pm", "bob")
    await b.send(f"<message to='pm@{MUC}/alice' type='chat'><body>psst</body></message>")
    msg = await expect(a, lambda s: s.tag == q(NS_CLIENT, "message"))
    assert msg.get("from") == f"pm@{MUC}/bob"
    assert msg.find(q(NS_USER, "x")) is not None
    await b.send(f"<message to='pm@{MUC}/nobody' type='chat'><body>?</body></message>")
    assert stanza_error_condition(await error_of(b, "message")) == "item-not-found"
    await b.send(f"<message to='pm@{MUC}/alice' type='groupchat'><body>?</body></message>")
    assert stanza_error_condition(await error_of(b, "message")) == "bad-request"


async def test_subject_sent_on_join_and_changesubject_rule(srv: RunningServer) -> None:
    (a, _), (b, _) = await users(srv, 2)
    await instant_room(a, "topic", "alice")
    await a.send(
        f"<message to='topic@{MUC}' type='groupchat'><subject>Cauldron</subject></message>"
    )
    echoed = await expect(a, is_subject)
    assert echoed.findtext(q(NS_CLIENT, "subject")) == "Cauldron"
    got = await enter(b, "topic", "bob")
    assert got[-1].findtext(q(NS_CLIENT, "subject")) == "Cauldron"
    assert got[-1].get("from") == f"topic@{MUC}/alice"
    await b.send(f"<message to='topic@{MUC}' type='groupchat'><subject>Mine</subject></message>")
    assert stanza_error_condition(await error_of(b, "message")) == "forbidden"


async def test_history_on_join_honours_maxstanzas_and_maxchars(srv: RunningServer) -> None:
    (a, _), (b, _), (c, _) = await users(srv, 3)
    await instant_room(a, "hist", "alice")
    for n in range(4):
        await a.send(f"<message to='hist@{MUC}' type='groupchat'><body>m{n}</body></message>")
        await expect(a, lambda s: s.tag == q(NS_CLIENT, "message"))
    got = await enter(b, "hist", "bob", f"<x xmlns='{NS_MUC}'><history maxstanzas='2'/></x>")
    bodies = [
        s.findtext(q(NS_CLIENT, "body")) for s in got if s.find(q(NS_CLIENT, "body")) is not None
    ]
    assert bodies == ["m2", "m3"]
    delayed = next(s for s in got if s.find(q(NS_CLIENT, "body")) is not None)
    assert delayed.find(q(NS_DELAY, "delay")).get("from") == f"hist@{MUC}"  # type: ignore[union-attr]
    got = await enter(c, "hist", "carol", f"<x xmlns='{NS_MUC}'><history maxchars='0'/></x>")
    assert not [s for s in got if s.find(q(NS_CLIENT, "body")) is not None]


async def test_nick_change_303(srv: RunningServer) -> None:
    (a, _), (b, _) = await users(srv, 2)
    await instant_room(a, "nicks", "alice")
    await enter(b, "nicks", "bob")
    await send_presence(b, f"nicks@{MUC}/robert", "")
    for client, own in ((b, True), (a, False)):
        gone = await expect(
            client, lambda s: s.get("type") == "unavailable" and s.get("from") == f"nicks@{MUC}/bob"
        )
        assert "303" in statuses(gone) and ("110" in statuses(gone)) == own
        assert item(gone).get("nick") == "robert"
        back = await expect(client, lambda s: s.get("from") == f"nicks@{MUC}/robert")
        assert ("110" in statuses(back)) == own
    await send_presence(b, f"nicks@{MUC}/alice", "")
    assert stanza_error_condition(await error_of(b)) == "conflict"


async def test_leave_and_temporary_room_vanishes(srv: RunningServer) -> None:
    (a, _), (b, _) = await users(srv, 2)
    await instant_room(a, "temp", "alice")
    await enter(b, "temp", "bob")
    await b.send(
        f"<presence to='temp@{MUC}/bob' type='unavailable'><status>bye</status></presence>"
    )
    own = await expect(b, lambda s: s.get("type") == "unavailable")
    assert "110" in statuses(own) and item(own).get("role") == "none"
    seen = await expect(a, lambda s: s.get("type") == "unavailable")
    assert seen.findtext(q(NS_CLIENT, "status")) == "bye"
    await a.send(f"<presence to='temp@{MUC}/alice' type='unavailable'/>")
    await expect(a, lambda s: s.get("type") == "unavailable")
    info = await iq(b, "get", f"temp@{MUC}", f"<query xmlns='{NS_DISCO_INFO}'/>")
    assert stanza_error_condition(info) == "item-not-found"


async def test_going_offline_leaves_rooms(srv: RunningServer) -> None:
    (a, _), (b, _) = await users(srv, 2)
    await instant_room(a, "offline", "alice")
    await enter(b, "offline", "bob")
    await expect(a, lambda s: s.get("from") == f"offline@{MUC}/bob")
    await b.close()
    gone = await expect(
        a, lambda s: s.get("type") == "unavailable" and s.get("from") == f"offline@{MUC}/bob"
    )
    assert item(gone).get("role") == "none"


async def test_multi_session_same_nick(srv: RunningServer) -> None:
    jid = await srv.add_user()
    a1, _ = await raw_session(srv, jid, "one")
    a2, _ = await raw_session(srv, jid, "two")
    ((b, _),) = await users(srv, 1)
    await instant_room(b, "multi", "bob")
    await enter(a1, "multi", "alice")
    got = await enter(a2, "multi", "alice")
    assert "110" in statuses(next(s for s in got if s.get("from") == f"multi@{MUC}/alice"))
    await b.send(f"<message to='multi@{MUC}/alice' type='chat'><body>both</body></message>")
    for client in (a1, a2):
        msg = await expect(client, lambda s: s.tag == q(NS_CLIENT, "message"))
        assert msg.findtext(q(NS_CLIENT, "body")) == "both"
    # one session leaving does not take the nick out of the room
    await a1.send(f"<presence to='multi@{MUC}/alice' type='unavailable'/>")
    await expect(a1, lambda s: s.get("type") == "unavailable")
    await b.send(f"<message to='multi@{MUC}' type='groupchat'><body>still</body></message>")
    msg = await expect(a2, lambda s: s.findtext(q(NS_CLIENT, "body")) == "still")
    assert msg.get("from") == f"multi@{MUC}/bob"


async def test_self_ping(srv: RunningServer) -> None:
    (a, _), (b, _) = await users(srv, 2)
    await instant_room(a, "ping", "alice")
    reply = await iq(a, "get", f"ping@{MUC}/alice", "<ping xmlns='urn:xmpp:ping'/>")
    assert reply.get("type") == "result"
    reply = await iq(b, "get", f"ping@{MUC}/alice", "<ping xmlns='urn:xmpp:ping'/>")
    assert stanza_error_condition(reply) == "not-acceptable"


async def test_rate_limit_is_resource_constraint_wait(server_factory: Factory) -> None:
    srv = await server_factory(module_options={"muc": {"message_rate": 0.01, "message_burst": 2}})
    ((a, _),) = await users(srv, 1)
    await instant_room(a, "fast", "alice")
    for n in range(3):
        await a.send(f"<message to='fast@{MUC}' type='groupchat'><body>{n}</body></message>")
    error = await error_of(a, "message")
    assert stanza_error_condition(error) == "resource-constraint"
    assert error.find(q(NS_CLIENT, "error")).get("type") == "wait"  # type: ignore[union-attr]


# --------------------------------------------------------------------------- moderation
async def test_kick_307(srv: RunningServer) -> None:
    (a, _), (b, _) = await users(srv, 2)
    await instant_room(a, "kick", "alice")
    await enter(b, "kick", "bob")
    reply = await iq(
        b,
        "set",
        f"kick@{MUC}",
        f"<query xmlns='{NS_ADMIN}'><item nick='alice' role='none'/></query>",
    )
    assert stanza_error_condition(reply) == "forbidden"  # a participant is no moderator
    reply = await iq(
        a,
        "set",
        f"kick@{MUC}",
        f"<query xmlns='{NS_ADMIN}'><item nick='bob' role='none'><reason>Avaunt</reason>"
        "</item></query>",
    )
    assert reply.get("type") == "result"
    gone = await expect(b, lambda s: s.get("type") == "unavailable")
    assert {"307", "110"} <= statuses(gone)
    assert item(gone).findtext(q(NS_USER, "reason")) == "Avaunt"
    assert item(gone).find(q(NS_USER, "actor")).get("nick") == "alice"  # type: ignore[union-attr]


async def test_moderated_room_voice(srv: RunningServer) -> None:
    (a, _), (b, _) = await users(srv, 2)
    await enter(a, "mod", "alice")
    await configure(a, "mod", moderatedroom="1")
    got = await enter(b, "mod", "bob")
    assert item(got[-2]).get("role") == "visitor"
    await b.send(f"<message to='mod@{MUC}' type='groupchat'><body>hi</body></message>")
    assert stanza_error_condition(await error_of(b, "message")) == "forbidden"
    await iq(
        a,
        "set",
        f"mod@{MUC}",
        f"<query xmlns='{NS_ADMIN}'><item nick='bob' role='participant'/></query>",
    )
    voiced = await expect(b, lambda s: s.tag == q(NS_CLIENT, "presence"))
    assert item(voiced).get("role") == "participant"
    await b.send(f"<message to='mod@{MUC}' type='groupchat'><body>hi</body></message>")
    msg = await expect(a, lambda s: s.tag == q(NS_CLIENT, "message"))
    assert msg.get("from") == f"mod@{MUC}/bob"


async def test_admin_cannot_kick_owner_not_allowed(srv: RunningServer) -> None:
    (a, _), (b, b_full) = await users(srv, 2)
    await instant_room(a, "ranks", "alice")
    await iq(
        a,
        "set",
        f"ranks@{MUC}",
        f"<query xmlns='{NS_ADMIN}'><item affiliation='admin' jid='{b_full.split('/')[0]}'/>"
        "</query>",
    )
    await enter(b, "ranks", "bob")
    reply = await iq(
        b,
        "set",
        f"ranks@{MUC}",
        f"<query xmlns='{NS_ADMIN}'><item nick='alice' role='none'/></query>",
    )
    assert stanza_error_condition(reply) == "not-allowed"


async def test_sole_owner_cannot_step_down_conflict(srv: RunningServer) -> None:
    ((a, a_full),) = await users(srv, 1)
    await instant_room(a, "owners", "alice")
    reply = await iq(
        a,
        "set",
        f"owners@{MUC}",
        f"<query xmlns='{NS_ADMIN}'><item affiliation='member' jid='{a_full.split('/')[0]}'/>"
        "</query>",
    )
    assert stanza_error_condition(reply) == "conflict"


async def test_whois_change_172_173_and_100_on_join(srv: RunningServer) -> None:
    (a, _), (b, _) = await users(srv, 2)
    await instant_room(a, "whois", "alice")
    await configure(a, "whois", whois="anyone")
    note = await expect(a, lambda s: s.tag == q(NS_CLIENT, "message"))
    assert "172" in statuses(note)
    got = await enter(b, "whois", "bob")
    own = got[-2]
    assert {"100", "110"} <= statuses(own)
    assert item(got[0]).get("jid") is not None  # non-anonymous: everyone sees real JIDs
    await configure(a, "whois", whois="moderators")
    note = await expect(b, lambda s: s.tag == q(NS_CLIENT, "message"))
    assert "173" in statuses(note)


async def test_config_form_and_room_disco_info(srv: RunningServer) -> None:
    (a, _), (b, _) = await users(srv, 2)
    await enter(a, "info", "alice")
    form = await iq(a, "get", f"info@{MUC}", f"<query xmlns='{NS_OWNER}'/>")
    fields = {f.get("var") for f in form.iter(q(NS_DATA, "field"))}
    for var in (
        "roomname", "roomdesc", "persistentroom", "publicroom", "membersonly", "moderatedroom",
        "passwordprotectedroom", "roomsecret", "whois", "maxusers", "historylength",
        "changesubject", "allowinvites", "allowpm",
    ):  # fmt: skip
        assert f"muc#roomconfig_{var}" in fields
    reply = await iq(b, "get", f"info@{MUC}", f"<query xmlns='{NS_OWNER}'/>")
    assert stanza_error_condition(reply) == "forbidden"
    await configure(a, "info", roomname="The Info", roomdesc="About things", persistentroom="1")
    info = await iq(b, "get", f"info@{MUC}", f"<query xmlns='{NS_DISCO_INFO}'/>")
    features = {f.get("var") for f in info.iter(q(NS_DISCO_INFO, "feature"))}
    assert {NS_MUC, "muc_persistent", "muc_public", "muc_open", "muc_unmoderated",
            "muc_semianonymous", "muc_unsecured", NS_OID} <= features  # fmt: skip
    identity = info.find(f"{q(NS_DISCO_INFO, 'query')}/{q(NS_DISCO_INFO, 'identity')}")
    assert identity.get("name") == "The Info"  # type: ignore[union-attr]
    values = {f.get("var"): f.findtext(q(NS_DATA, "value")) for f in info.iter(q(NS_DATA, "field"))}
    assert values["FORM_TYPE"] == "http://jabber.org/protocol/muc#roominfo"
    assert values["muc#roominfo_description"] == "About things"
    assert values["muc#roominfo_occupants"] == "1"
    items = await iq(b, "get", MUC, f"<query xmlns='{NS_DISCO_ITEMS}'/>")
    assert f"info@{MUC}" in {i.get("jid") for i in items.iter(q(NS_DISCO_ITEMS, "item"))}


async def test_hidden_and_locked_rooms_not_listed(srv: RunningServer) -> None:
    ((a, _),) = await users(srv, 1)
    await enter(a, "locked", "alice")
    await enter(a, "hidden", "alice")
    await configure(a, "hidden", publicroom="0")
    items = await iq(a, "get", MUC, f"<query xmlns='{NS_DISCO_ITEMS}'/>")
    listed = {i.get("jid") for i in items.iter(q(NS_DISCO_ITEMS, "item"))}
    assert f"locked@{MUC}" not in listed and f"hidden@{MUC}" not in listed


async def test_destroy_with_alternate_venue(srv: RunningServer) -> None:
    (a, _), (b, _) = await users(srv, 2)
    await instant_room(a, "doomed", "alice")
    await enter(b, "doomed", "bob")
    reply = await iq(
        a,
        "set",
        f"doomed@{MUC}",
        f"<query xmlns='{NS_OWNER}'><destroy jid='refuge@{MUC}'><reason>Moving</reason>"
        "</destroy></query>",
    )
    assert reply.get("type") == "result"
    gone = await expect(b, lambda s: s.get("type") == "unavailable")
    destroy = gone.find(f"{q(NS_USER, 'x')}/{q(NS_USER, 'destroy')}")
    assert destroy is not None and destroy.get("jid") == f"refuge@{MUC}"
    assert destroy.findtext(q(NS_USER, "reason")) == "Moving"
    info = await iq(b, "get", f"doomed@{MUC}", f"<query xmlns='{NS_DISCO_INFO}'/>")
    assert stanza_error_condition(info) == "item-not-found"


async def test_mediated_invitation_and_decline(srv: RunningServer) -> None:
    (a, a_full), (b, b_full) = await users(srv, 2)
    b_bare = b_full.split("/")[0]
    await b.send("<presence/>")  # available: a message to the bare JID reaches it
    await expect(b, lambda s: s.tag == q(NS_CLIENT, "presence"))
    await enter(a, "invite", "alice")
    await configure(a, "invite", membersonly="1")
    await a.send(
        f"<message to='invite@{MUC}'><x xmlns='{NS_USER}'><invite to='{b_bare}'>"
        "<reason>Join us</reason></invite></x></message>"
    )
    msg = await expect(b, lambda s: s.tag == q(NS_CLIENT, "message"))
    assert msg.get("from") == f"invite@{MUC}"
    invite = msg.find(f"{q(NS_USER, 'x')}/{q(NS_USER, 'invite')}")
    assert invite is not None and invite.get("from") == a_full
    assert invite.findtext(q(NS_USER, "reason")) == "Join us"
    # the invitee of a members-only room becomes a member (§7.8)
    await enter(b, "invite", "bob")
    await b.send(
        f"<message to='invite@{MUC}'><x xmlns='{NS_USER}'><decline to='{a_full}'>"
        "<reason>Sorry</reason></decline></x></message>"
    )
    msg = await expect(
        a, lambda s: s.find(f"{q(NS_USER, 'x')}/{q(NS_USER, 'decline')}") is not None
    )
    decline = msg.find(f"{q(NS_USER, 'x')}/{q(NS_USER, 'decline')}")
    assert decline.get("from") == b_bare  # type: ignore[union-attr]
    assert decline.findtext(q(NS_USER, "reason")) == "Sorry"  # type: ignore[union-attr]


# --------------------------------------------------------------------------- persistence
async def test_persistent_room_survives_restart(server_factory: Factory) -> None:
    srv = await server_factory()
    ((a, a_full),) = await users(srv, 1)
    await enter(a, "lasting", "alice")
    await configure(a, "lasting", persistentroom="1", roomname="Lasting", membersonly="1")
    await a.send(f"<message to='lasting@{MUC}' type='groupchat'><subject>Kept</subject></message>")
    await expect(a, is_subject)
    await a.close()
    data_dir = srv.data_dir
    await srv.server.stop()
    again = await server_factory(data_dir)
    client, _ = await raw_session(again, a_full.split("/")[0])
    got = await enter(client, "lasting", "alice")
    own = got[-2]
    assert item(own).get("affiliation") == "owner"
    assert "201" not in statuses(own)
    assert got[-1].findtext(q(NS_CLIENT, "subject")) == "Kept"
    other, _ = await raw_session(again)
    await send_presence(other, f"lasting@{MUC}/x")
    assert stanza_error_condition(await error_of(other)) == "registration-required"


# --------------------------------------------------------------------------- slixmpp
async def test_slixmpp_create_configure_join_chat_kick(srv: RunningServer) -> None:
    alice = await connect_slixmpp(srv, await srv.add_user())
    bob = await connect_slixmpp(srv, await srv.add_user())
    for c in (alice, bob):
        c.xmpp.register_plugin("xep_0045")
    room = f"slix@{MUC}"
    muc_a = alice.xmpp.plugin["xep_0045"]
    muc_b = bob.xmpp.plugin["xep_0045"]
    try:
        await muc_a.join_muc_wait(room, "alice", timeout=5)
        form = await muc_a.get_room_config(room)
        form.set_values({"muc#roomconfig_roomname": "Slix"})
        await muc_a.set_room_config(room, form, timeout=5)
        await muc_b.join_muc_wait(room, "bob", timeout=5)
        bob.xmpp.send_message(mto=room, mbody="hello all", mtype="groupchat")
        msg = await alice.expect(lambda s: s.name == "message" and s["body"] == "hello all")
        assert str(msg["from"]) == f"{room}/bob"
        await muc_a.set_role(room, "bob", "none", reason="enough", timeout=5)
        gone = await bob.expect(lambda s: s.name == "presence" and s["type"] == "unavailable")
        assert {"110", "307"} <= {str(code) for code in gone["muc"]["status_codes"]}
    finally:
        await asyncio.gather(alice.disconnect(), bob.disconnect())
