"""A room's archive on a real server: XEP-0359 stanza-ids on groupchat messages, XEP-0313
queries to the room JID, history on join served from the archive after a restart, and
XEP-0425 moderation with its XEP-0424 tombstones. Raw XML for the exact elements and errors."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from tests.integration.harness import (
    RawClient,
    q,
    raw_session,
    stanza_error_condition,
)
from tests.integration.test_xep0045_muc import (
    MUC,
    NS_CLIENT,
    NS_DELAY,
    NS_DISCO_INFO,
    NS_MUC,
    NS_OID,
    Factory,
    configure,
    enter,
    expect,
    instant_room,
    iq,
    users,
)

NS_MAM = "urn:xmpp:mam:2"
NS_SID = "urn:xmpp:sid:0"
NS_RSM = "http://jabber.org/protocol/rsm"
NS_FORWARD = "urn:xmpp:forward:0"
NS_RETRACT = "urn:xmpp:message-retract:1"
NS_MODERATE = "urn:xmpp:message-moderate:1"
NS_DATA = "jabber:x:data"


# --------------------------------------------------------------------------- helpers
async def archived_room(client: RawClient, room: str, nick: str, **fields: str) -> None:
    """Create a persistent (hence archived) room."""
    await enter(client, room, nick)
    answer = await configure(client, room, persistentroom="1", **fields)
    assert answer.get("type") == "result", ET.tostring(answer)


async def say(client: RawClient, room: str, body: str, extra: str = "") -> ET.Element:
    """Send a groupchat message; return the room's echo of it."""
    await client.send(
        f"<message to='{room}@{MUC}' type='groupchat'><body>{body}</body>{extra}</message>"
    )
    return await expect(client, lambda s: body_of(s) == body)


def body_of(stanza: ET.Element) -> str | None:
    return stanza.findtext(q(NS_CLIENT, "body"))


def stanza_id(stanza: ET.Element, by: str) -> str | None:
    for sid in stanza.iter(q(NS_SID, "stanza-id")):
        if sid.get("by") == by:
            return sid.get("id")
    return None


async def mam_query(
    client: RawClient, room: str, inner: str = "", queryid: str = "qid"
) -> tuple[list[ET.Element], ET.Element]:
    """Query the room's archive; the result messages and the iq answer."""
    answer = await iq(
        client,
        "set",
        f"{room}@{MUC}",
        f"<query xmlns='{NS_MAM}' queryid='{queryid}'>{inner}</query>",
    )
    results: list[ET.Element] = []
    while client._ready:
        results.append(client._ready.pop(0))
    results = [r for r in results if r.find(q(NS_MAM, "result")) is not None]
    return results, answer


def forwarded(result: ET.Element) -> ET.Element:
    message = result.find(
        f"{q(NS_MAM, 'result')}/{q(NS_FORWARD, 'forwarded')}/{q(NS_CLIENT, 'message')}"
    )
    assert message is not None, ET.tostring(result)
    return message


def moderate(stanza_id: str, reason: str = "", action: str | None = None) -> str:
    action = f"<retract xmlns='{NS_RETRACT}'/>" if action is None else action
    why = f"<reason>{reason}</reason>" if reason else ""
    return f"<moderate xmlns='{NS_MODERATE}' id='{stanza_id}'>{action}{why}</moderate>"


def features(info: ET.Element) -> set[str]:
    return {f.get("var", "") for f in info.iter(q(NS_DISCO_INFO, "feature"))}


# --------------------------------------------------------------------------- stanza-ids
async def test_groupchat_carries_the_rooms_stanza_id_and_a_forged_one_is_dropped(
    server_factory: Factory,
) -> None:
    srv = await server_factory()
    (a, _), (b, _) = await users(srv, 2)
    await archived_room(a, "sids", "alice")
    await enter(b, "sids", "bob")
    room = f"sids@{MUC}"
    forged = f"<stanza-id xmlns='{NS_SID}' by='{room}' id='forged'/>"
    echo_a = await say(a, "sids", "hello", forged)
    echo_b = await expect(b, lambda s: body_of(s) == "hello")
    sid = stanza_id(echo_a, room)
    assert sid and sid != "forged"
    assert stanza_id(echo_b, room) == sid
    assert len(list(echo_b.iter(q(NS_SID, "stanza-id")))) == 1


# --------------------------------------------------------------------------- discovery
async def test_room_disco_advertises_mam_only_when_archived(server_factory: Factory) -> None:
    srv = await server_factory()
    ((a, _),) = await users(srv, 1)
    await archived_room(a, "kept", "alice")
    await instant_room(a, "fleeting", "alice")
    kept = features(await iq(a, "get", f"kept@{MUC}", f"<query xmlns='{NS_DISCO_INFO}'/>"))
    assert {NS_MAM, NS_MODERATE, NS_SID} <= kept
    fleeting = features(await iq(a, "get", f"fleeting@{MUC}", f"<query xmlns='{NS_DISCO_INFO}'/>"))
    assert NS_MODERATE in fleeting and NS_MAM not in fleeting
    answer = await configure(a, "kept", enablearchiving="0")
    assert answer.get("type") == "result"
    kept = features(await iq(a, "get", f"kept@{MUC}", f"<query xmlns='{NS_DISCO_INFO}'/>"))
    assert NS_MAM not in kept
    answer = await iq(a, "set", f"kept@{MUC}", f"<query xmlns='{NS_MAM}'/>")
    assert stanza_error_condition(answer) == "service-unavailable"


# --------------------------------------------------------------------------- queries
async def test_query_the_room_archive_with_paging(server_factory: Factory) -> None:
    srv = await server_factory()
    (a, a_full), (b, b_full) = await users(srv, 2)
    await archived_room(a, "log", "alice")
    await enter(b, "log", "bob")
    sids = []
    for n in range(5):
        echo = await say(a if n % 2 == 0 else b, "log", f"m{n}")
        sids.append(stanza_id(echo, f"log@{MUC}"))
    await a.send(
        f"<message to='log@{MUC}' type='groupchat'><subject>Not archived</subject></message>"
    )
    await a.send(
        f"<message to='log@{MUC}' type='groupchat'><body>secret</body>"
        "<no-store xmlns='urn:xmpp:hints'/></message>"
    )
    await expect(a, lambda s: body_of(s) == "secret")
    # Drain what bob got, then query as bob (an occupant, not the owner).
    await expect(b, lambda s: body_of(s) == "secret")
    b._ready.clear()
    results, answer = await mam_query(b, "log", f"<set xmlns='{NS_RSM}'><max>3</max></set>")
    assert answer.get("type") == "result"
    assert [body_of(forwarded(r)) for r in results] == ["m0", "m1", "m2"]
    for r, sid in zip(results, sids, strict=False):
        assert r.get("from") == f"log@{MUC}" and r.get("to") == b_full
        result = r.find(q(NS_MAM, "result"))
        assert result is not None and result.get("queryid") == "qid" and result.get("id") == sid
        fwd = r.find(f"{q(NS_MAM, 'result')}/{q(NS_FORWARD, 'forwarded')}")
        assert fwd is not None and fwd.find(q(NS_DELAY, "delay")) is not None
    assert forwarded(results[1]).get("from") == f"log@{MUC}/bob"
    assert forwarded(results[0]).find(q(NS_OID, "occupant-id")) is not None
    fin = answer.find(q(NS_MAM, "fin"))
    assert fin is not None and fin.get("complete") is None
    last = fin.findtext(f"{q(NS_RSM, 'set')}/{q(NS_RSM, 'last')}")
    assert last == sids[2]
    results, answer = await mam_query(
        b, "log", f"<set xmlns='{NS_RSM}'><max>3</max><after>{last}</after></set>"
    )
    assert [body_of(forwarded(r)) for r in results] == ["m3", "m4"]
    fin = answer.find(q(NS_MAM, "fin"))
    assert fin is not None and fin.get("complete") == "true"
    # 'with' an occupant JID filters by sender.
    form = (
        f"<x xmlns='{NS_DATA}' type='submit'><field var='FORM_TYPE' type='hidden'>"
        f"<value>{NS_MAM}</value></field><field var='with'><value>log@{MUC}/bob</value></field></x>"
    )
    results, _ = await mam_query(b, "log", form)
    assert [body_of(forwarded(r)) for r in results] == ["m1", "m3"]
    answer = await iq(
        b,
        "set",
        f"log@{MUC}",
        f"<query xmlns='{NS_MAM}'><set xmlns='{NS_RSM}'><after>nope</after></set></query>",
    )
    assert stanza_error_condition(answer) == "item-not-found"
    assert a_full  # the owner needs no special treatment to query


async def test_members_only_room_archive_forbidden_to_strangers(server_factory: Factory) -> None:
    srv = await server_factory()
    (a, _), (stranger, _) = await users(srv, 2)
    await archived_room(a, "club", "alice", membersonly="1")
    await say(a, "club", "members talk")
    answer = await iq(stranger, "set", f"club@{MUC}", f"<query xmlns='{NS_MAM}'/>")
    assert stanza_error_condition(answer) == "forbidden"
    results, answer = await mam_query(a, "club")
    assert answer.get("type") == "result" and len(results) == 1


async def test_temporary_rooms_keep_no_archive(server_factory: Factory) -> None:
    srv = await server_factory()
    ((a, _),) = await users(srv, 1)
    await instant_room(a, "temp", "alice")
    echo = await say(a, "temp", "gone tomorrow")
    assert stanza_id(echo, f"temp@{MUC}")  # still stamped, for moderation of the history
    answer = await iq(a, "set", f"temp@{MUC}", f"<query xmlns='{NS_MAM}'/>")
    assert stanza_error_condition(answer) == "service-unavailable"
    assert await srv.server.core.storage.archive.count(MUC, "temp") == 0


# --------------------------------------------------------------------------- history after restart
async def test_history_on_join_comes_from_the_archive_after_a_restart(
    server_factory: Factory,
) -> None:
    srv = await server_factory()
    ((a, a_full),) = await users(srv, 1)
    await archived_room(a, "saga", "alice")
    stamps = []
    for n in range(5):
        await say(a, "saga", f"part {n}")
    results, _ = await mam_query(a, "saga")
    for r in results:
        delay = r.find(f"{q(NS_MAM, 'result')}/{q(NS_FORWARD, 'forwarded')}/{q(NS_DELAY, 'delay')}")
        assert delay is not None
        stamps.append(delay.get("stamp"))
    await a.close()
    data_dir = srv.data_dir
    await srv.server.stop()
    again = await server_factory(data_dir)
    b, _ = await raw_session(again)
    got = await enter(b, "saga", "bob", f"<x xmlns='{NS_MUC}'><history maxstanzas='3'/></x>")
    replayed = [s for s in got if body_of(s) is not None]
    assert [body_of(s) for s in replayed] == ["part 2", "part 3", "part 4"]
    for s in replayed:
        delay = s.find(q(NS_DELAY, "delay"))
        assert delay is not None and delay.get("from") == f"saga@{MUC}"
        assert stanza_id(s, f"saga@{MUC}")
    c, _ = await raw_session(again)
    got = await enter(c, "saga", "carol", f"<x xmlns='{NS_MUC}'><history since='{stamps[2]}'/></x>")
    assert [body_of(s) for s in got if body_of(s) is not None] == ["part 3", "part 4"]
    d, _ = await raw_session(again)
    got = await enter(d, "saga", "dave", f"<x xmlns='{NS_MUC}'><history maxchars='0'/></x>")
    assert not [s for s in got if body_of(s) is not None]
    owner, _ = await raw_session(again, a_full.split("/")[0])
    got = await enter(owner, "saga", "alice", f"<x xmlns='{NS_MUC}'><history seconds='3600'/></x>")
    assert len([s for s in got if body_of(s) is not None]) == 5


# --------------------------------------------------------------------------- XEP-0425
async def test_moderator_retracts_a_message_everyone_hears_archive_keeps_tombstone(
    server_factory: Factory,
) -> None:
    srv = await server_factory()
    (a, _), (b, _), (c, _) = await users(srv, 3)
    room = f"mod@{MUC}"
    await archived_room(a, "mod", "alice")
    await enter(b, "mod", "bob")
    echo = await say(b, "mod", "buy potions")
    sid = stanza_id(echo, room)
    assert sid
    await expect(a, lambda s: body_of(s) == "buy potions")
    answer = await iq(a, "set", room, moderate(sid, "spam"))
    assert answer.get("type") == "result", ET.tostring(answer)
    own_oid = None
    for client in (a, b):
        msg = await expect(client, lambda s: s.find(q(NS_RETRACT, "retract")) is not None)
        assert msg.get("from") == room and msg.get("type") == "groupchat"
        retract = msg.find(q(NS_RETRACT, "retract"))
        assert retract is not None and retract.get("id") == sid
        moderated = retract.find(q(NS_MODERATE, "moderated"))
        assert moderated is not None and moderated.get("by") == f"{room}/alice"
        oid = moderated.find(q(NS_OID, "occupant-id"))
        assert oid is not None
        own_oid = own_oid or oid.get("id")
        assert retract.findtext(q(NS_RETRACT, "reason")) == "spam"
    results, _ = await mam_query(a, "mod")
    (stone,) = [forwarded(r) for r in results]
    assert body_of(stone) is None
    assert stone.get("from") == f"{room}/bob"
    assert stone.find(q(NS_OID, "occupant-id")) is not None
    retracted = stone.find(q(NS_RETRACT, "retracted"))
    assert retracted is not None and retracted.get("stamp")
    moderated = retracted.find(q(NS_MODERATE, "moderated"))
    assert moderated is not None and moderated.get("by") == f"{room}/alice"
    assert retracted.findtext(q(NS_RETRACT, "reason")) == "spam"
    # A newcomer's history has the tombstone, not the message.
    got = await enter(c, "mod", "carol")
    assert not [s for s in got if body_of(s) is not None]
    assert [s for s in got if s.find(q(NS_RETRACT, "retracted")) is not None]
    # Retracting it again: it is no longer there.
    answer = await iq(a, "set", room, moderate(sid))
    assert stanza_error_condition(answer) == "item-not-found"


async def test_moderation_errors(server_factory: Factory) -> None:
    srv = await server_factory()
    (a, _), (b, _), (outsider, _) = await users(srv, 3)
    room = f"strict@{MUC}"
    await archived_room(a, "strict", "alice")
    await enter(b, "strict", "bob")
    echo = await say(a, "strict", "owner speaks")
    sid = stanza_id(echo, room)
    assert sid
    answer = await iq(b, "set", room, moderate(sid))
    assert stanza_error_condition(answer) == "forbidden"
    answer = await iq(outsider, "set", room, moderate(sid))
    assert stanza_error_condition(answer) == "forbidden"
    answer = await iq(a, "set", room, moderate("no-such-id"))
    assert stanza_error_condition(answer) == "item-not-found"
    answer = await iq(a, "set", room, moderate(sid, action=""))
    assert stanza_error_condition(answer) == "bad-request"
    # Nothing was retracted: the archive still has the message.
    results, _ = await mam_query(a, "strict")
    assert [body_of(forwarded(r)) for r in results] == ["owner speaks"]


async def test_moderation_in_a_temporary_room_uses_the_history(server_factory: Factory) -> None:
    srv = await server_factory()
    (a, _), (b, _), (c, _) = await users(srv, 3)
    room = f"brief@{MUC}"
    await instant_room(a, "brief", "alice")
    await enter(b, "brief", "bob")
    echo = await say(b, "brief", "oops")
    sid = stanza_id(echo, room)
    assert sid
    answer = await iq(a, "set", room, moderate(sid))
    assert answer.get("type") == "result"
    await expect(b, lambda s: s.find(q(NS_RETRACT, "retract")) is not None)
    got = await enter(c, "brief", "carol")
    assert not [s for s in got if body_of(s) == "oops"]
    assert [s for s in got if s.find(q(NS_RETRACT, "retracted")) is not None]
