"""XEP-0313 Message Archive Management and XEP-0359 stanza ids on a real server: slixmpp's
xep_0313 plugin for the flows, raw XML for the exact <fin/>, <set/> and errors."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import insert

from salon.core.clock import ManualClock
from salon.storage.interfaces import ArchiveQuery
from salon.storage.sql import SqlStorage
from salon.storage.sql.archive import to_micros
from salon.storage.sql.schema import archive
from tests.integration.harness import (
    RawClient,
    RunningServer,
    SlixClient,
    connect_slixmpp,
    q,
    raw_session,
    stanza_error_condition,
)
from tests.integration.im_helpers import put_item, send_iq
from tests.integration.message_helpers import (
    NS_CARBONS,
    NS_CHATSTATES,
    NS_DISCO_INFO,
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

NS_MAM = "urn:xmpp:mam:2"
NS_SID = "urn:xmpp:sid:0"
NS_RSM = "http://jabber.org/protocol/rsm"
NS_XDATA = "jabber:x:data"
NS_DELAY = "urn:xmpp:delay"
MODULES = ["disco", "ping", "roster", "presence", "message", "offline", "carbons", "mam"]


@pytest.fixture
async def srv(server_factory: Factory) -> RunningServer:
    return await server_factory(modules=MODULES)


def with_mam(xmpp: Any) -> None:
    xmpp.register_plugin("xep_0313")


async def login(srv: RunningServer, jid: str, *, carbons: bool = False) -> SlixClient:
    client = await connect_slixmpp(srv, jid, configure=with_mam)
    if carbons:
        iq = client.xmpp.make_iq_set()
        iq.xml.append(el(NS_CARBONS, "enable"))
        await iq.send(timeout=5)
    await available(client)
    return client


def stanza_ids(message: ET.Element) -> list[tuple[str | None, str | None]]:
    return [(s.get("by"), s.get("id")) for s in message.findall(q(NS_SID, "stanza-id"))]


async def archive_of(srv: RunningServer, user: str, **query: Any) -> list[Any]:
    """The user's archive as the store has it (oldest first)."""
    local, domain = user.split("@", 1)
    page = await srv.server.core.storage.archive.query(
        domain, local, ArchiveQuery(max=1000, **query)
    )
    return page.items


async def mam_results(client: SlixClient, **kwargs: Any) -> tuple[list[Any], Any]:
    """One query through slixmpp's xep_0313: (result messages, the final iq)."""
    fin = await client.xmpp.plugin["xep_0313"].retrieve(timeout=10, **kwargs)
    return list(fin["mam"]["results"]), fin


def result_id_and_body(message: Any) -> tuple[str, str]:
    result = message.xml.find(q(NS_MAM, "result"))
    inner = result.find(f"{q(NS_FORWARD, 'forwarded')}/{q('jabber:client', 'message')}")
    return result.get("id"), inner.findtext(q("jabber:client", "body"))


# ---------------------------------------------------------------------- raw XML helpers
def form(*fields: tuple[str, str | list[str]]) -> str:
    parts = [f"<field var='FORM_TYPE' type='hidden'><value>{NS_MAM}</value></field>"]
    for var, value in fields:
        values = value if isinstance(value, list) else [value]
        inner = "".join(f"<value>{v}</value>" for v in values)
        parts.append(f"<field var='{var}'>{inner}</field>")
    return f"<x xmlns='{NS_XDATA}' type='submit'>{''.join(parts)}</x>"


def rsm(**items: str | int | None) -> str:
    inner = ""
    for name, value in items.items():
        inner += f"<{name}/>" if value is None else f"<{name}>{value}</{name}>"
    return f"<set xmlns='{NS_RSM}'>{inner}</set>"


async def raw_query(
    client: RawClient, body: str = "", iq_id: str = "q1", queryid: str = "f27"
) -> tuple[list[ET.Element], ET.Element]:
    """Send a MAM query; return the result messages and the final iq."""
    await client.send(
        f"<iq type='set' id='{iq_id}'><query xmlns='{NS_MAM}' queryid='{queryid}'>"
        f"{body}</query></iq>"
    )
    results = []
    while True:
        stanza = await client.next()
        if stanza.tag == q("jabber:client", "iq") and stanza.get("id") == iq_id:
            return results, stanza
        if stanza.find(q(NS_MAM, "result")) is not None:
            results.append(stanza)


def result_ids(results: list[ET.Element]) -> list[str]:
    return [r.find(q(NS_MAM, "result")).get("id") for r in results]  # type: ignore[union-attr]


def fin_of(iq: ET.Element) -> ET.Element:
    assert iq.get("type") == "result", ET.tostring(iq)
    fin = iq.find(q(NS_MAM, "fin"))
    assert fin is not None, ET.tostring(iq)
    return fin


def rsm_set(fin: ET.Element) -> dict[str, Any]:
    rset = fin.find(q(NS_RSM, "set"))
    assert rset is not None
    first = rset.find(q(NS_RSM, "first"))
    return {
        "first": None if first is None else first.text,
        "index": None if first is None else first.get("index"),
        "last": rset.findtext(q(NS_RSM, "last")),
        "count": rset.findtext(q(NS_RSM, "count")),
        "children": [c.tag.split("}")[1] for c in rset],
    }


async def fill_archive(srv: RunningServer, user: str, n: int, start: datetime) -> list[str]:
    """Bulk-load n chat messages into the user's archive (one second apart); their UIDs."""
    local, domain = user.split("@", 1)
    storage = srv.server.core.storage
    assert isinstance(storage, SqlStorage)
    rows = [
        {
            "host": domain,
            "username": local,
            "item_id": f"uid-{i:06d}",
            "ts": to_micros(start + timedelta(seconds=i)),
            "with_bare": "romeo@example.net",
            "with_resource": "orchard",
            "direction": "in",
            "stanza": (
                f"<message xmlns='jabber:client' type='chat' from='romeo@example.net/orchard' "
                f"to='{user}'><body>m{i}</body></message>"
            ),
        }
        for i in range(n)
    ]
    async with storage.engine.begin() as conn:
        for chunk in range(0, n, 5000):
            await conn.execute(insert(archive), rows[chunk : chunk + 5000])
    return [row["item_id"] for row in rows]


# ---------------------------------------------------------------------- discovery
async def test_account_advertises_mam_and_stanza_ids(srv: RunningServer) -> None:
    user = await srv.add_user()
    client = await connect_slixmpp(srv, user)
    features = await disco_features(client, user)
    assert {NS_MAM, f"{NS_MAM}#extended", NS_SID} <= features


async def test_form_discovery_lists_the_fields(srv: RunningServer) -> None:
    raw, _ = await raw_session(srv)
    await raw.send(f"<iq type='get' id='form1'><query xmlns='{NS_MAM}'/></iq>")
    reply = await raw.next()
    assert reply.get("type") == "result", ET.tostring(reply)
    x = reply.find(f"{q(NS_MAM, 'query')}/{q(NS_XDATA, 'x')}")
    assert x is not None and x.get("type") == "form"
    fields = {f.get("var"): f.get("type") for f in x.findall(q(NS_XDATA, "field"))}
    assert fields == {
        "FORM_TYPE": "hidden",
        "with": "jid-single",
        "start": "text-single",
        "end": "text-single",
        "before-id": "text-single",
        "after-id": "text-single",
        "ids": "list-multi",
    }
    ids = next(f for f in x.findall(q(NS_XDATA, "field")) if f.get("var") == "ids")
    validate = ids.find("{http://jabber.org/protocol/xdata-validate}validate")
    assert validate is not None
    assert validate.find("{http://jabber.org/protocol/xdata-validate}open") is not None
    assert all(f.find(q(NS_XDATA, "required")) is None for f in x.findall(q(NS_XDATA, "field")))


# ---------------------------------------------------------------------- archiving
async def test_chat_is_archived_both_ways_with_stanza_ids(srv: RunningServer) -> None:
    juliet_jid, romeo_jid = await srv.add_user("juliet"), await srv.add_user("romeo")
    juliet = await login(srv, f"{juliet_jid}/balcony")
    romeo = await login(srv, f"{romeo_jid}/orchard")

    send_message(juliet, romeo_jid, "wherefore art thou")
    got = await romeo.expect(lambda s: is_message(s, "wherefore art thou"))

    [(by, sid)] = stanza_ids(got.xml)
    assert by == romeo_jid
    [romeo_item] = await archive_of(srv, romeo_jid)
    [juliet_item] = await archive_of(srv, juliet_jid)
    assert romeo_item.id == sid and romeo_item.direction == "in"
    assert romeo_item.with_jid == f"{juliet_jid}/balcony"
    assert juliet_item.direction == "out" and juliet_item.with_jid == romeo_jid
    assert juliet_item.id != sid

    # Both find it over the protocol, under the ids their archives gave it.
    results, _ = await mam_results(romeo)
    assert [result_id_and_body(m) for m in results] == [(sid, "wherefore art thou")]
    assert str(results[0]["from"]) == romeo_jid
    results, _ = await mam_results(juliet)
    assert [result_id_and_body(m) for m in results] == [(juliet_item.id, "wherefore art thou")]
    delay = results[0].xml.find(
        f"{q(NS_MAM, 'result')}/{q(NS_FORWARD, 'forwarded')}/{q(NS_DELAY, 'delay')}"
    )
    assert delay is not None and delay.get("stamp", "").endswith("Z")


async def test_stored_once_with_carbons_and_several_resources(srv: RunningServer) -> None:
    juliet_jid, romeo_jid = await srv.add_user(), await srv.add_user()
    juliet = await login(srv, f"{juliet_jid}/balcony", carbons=True)
    juliet_phone = await login(srv, f"{juliet_jid}/phone", carbons=True)
    romeo = await login(srv, f"{romeo_jid}/orchard", carbons=True)
    romeo_phone = await login(srv, f"{romeo_jid}/phone", carbons=True)

    send_message(juliet, romeo_jid, "to your bare JID")
    delivered = await romeo.expect(lambda s: is_message(s, "to your bare JID"))
    other = await romeo_phone.expect(lambda s: is_message(s, "to your bare JID"))
    sent_carbon = await juliet_phone.expect(is_carbon("sent"))
    await sync(juliet)

    [romeo_item] = await archive_of(srv, romeo_jid)
    [juliet_item] = await archive_of(srv, juliet_jid)
    # Forked to both of Romeo's resources: the same stanza-id on each, one archive item.
    assert stanza_ids(delivered.xml) == [(romeo_jid, romeo_item.id)]
    assert stanza_ids(other.xml) == [(romeo_jid, romeo_item.id)]
    # Juliet's other resource learns her archive's id from the sent carbon (§3.5) ...
    assert stanza_ids(carbon_original(sent_carbon, "sent")) == [(juliet_jid, juliet_item.id)]
    # ... and Romeo never sees Juliet's.
    assert (juliet_jid, juliet_item.id) not in stanza_ids(delivered.xml)


async def test_received_carbon_carries_the_stanza_id(srv: RunningServer) -> None:
    juliet_jid, romeo_jid = await srv.add_user(), await srv.add_user()
    juliet = await login(srv, f"{juliet_jid}/balcony")
    romeo = await login(srv, f"{romeo_jid}/orchard", carbons=True)
    romeo_phone = await login(srv, f"{romeo_jid}/phone", carbons=True)

    send_message(juliet, f"{romeo_jid}/orchard", "to your full JID")
    await romeo.expect(lambda s: is_message(s, "to your full JID"))
    carbon = await romeo_phone.expect(is_carbon("received"))
    [item] = await archive_of(srv, romeo_jid)
    assert stanza_ids(carbon_original(carbon, "received")) == [(romeo_jid, item.id)]


async def test_forged_stanza_id_claiming_the_recipient_is_removed(srv: RunningServer) -> None:
    juliet_jid, romeo_jid = await srv.add_user(), await srv.add_user()
    juliet = await login(srv, f"{juliet_jid}/balcony")
    romeo = await login(srv, f"{romeo_jid}/orchard")
    forged = ET.Element(q(NS_SID, "stanza-id"), {"by": romeo_jid, "id": "forged"})
    other = ET.Element(q(NS_SID, "stanza-id"), {"by": "elsewhere.example", "id": "keep"})

    send_message(juliet, romeo_jid, "trust me", extra=(forged, other))
    got = await romeo.expect(lambda s: is_message(s, "trust me"))

    [item] = await archive_of(srv, romeo_jid)
    assert sorted(stanza_ids(got.xml)) == sorted(
        [("elsewhere.example", "keep"), (romeo_jid, item.id)]
    )
    # A message that is not archived loses the forged id too.
    send_message(juliet, romeo_jid, None, extra=(forged, el(NS_CHATSTATES, "active")))
    state = await romeo.expect(
        lambda s: s.name == "message" and s.xml.find(q(NS_CHATSTATES, "active")) is not None
    )
    assert stanza_ids(state.xml) == []


async def test_offline_delivery_carries_the_archived_stanza_id(srv: RunningServer) -> None:
    juliet_jid, romeo_jid = await srv.add_user(), await srv.add_user()
    juliet = await login(srv, f"{juliet_jid}/balcony")
    send_message(juliet, romeo_jid, "while you were away")
    await sync(juliet)
    [item] = await archive_of(srv, romeo_jid)

    romeo = await login(srv, f"{romeo_jid}/orchard")
    got = await romeo.expect(lambda s: is_message(s, "while you were away"))
    assert stanza_ids(got.xml) == [(romeo_jid, item.id)]


async def test_what_is_not_archived(srv: RunningServer) -> None:
    juliet_jid, romeo_jid = await srv.add_user(), await srv.add_user()
    juliet = await login(srv, f"{juliet_jid}/balcony")
    romeo = await login(srv, f"{romeo_jid}/orchard")

    send_message(juliet, romeo_jid, None, extra=(el(NS_CHATSTATES, "composing"),))
    send_message(juliet, romeo_jid, "news", mtype="headline")
    send_message(juliet, romeo_jid, "secret", extra=(el(NS_HINTS, "no-store"),))
    send_message(juliet, romeo_jid, "ephemeral", extra=(el(NS_HINTS, "no-permanent-store"),))
    send_message(juliet, romeo_jid, None, mtype=None)  # normal without a body
    send_message(juliet, romeo_jid, "a normal message", mtype=None)
    send_message(juliet, romeo_jid, None, extra=(el(NS_HINTS, "store"),))
    await romeo.expect(lambda s: is_message(s, "a normal message"))
    await sync(juliet)

    items = await archive_of(srv, romeo_jid)
    assert len(items) == 2
    assert "a normal message" in items[0].stanza and "urn:xmpp:hints" in items[1].stanza
    assert len(await archive_of(srv, juliet_jid)) == 2


async def test_message_to_self_is_archived_once(srv: RunningServer) -> None:
    juliet_jid = await srv.add_user()
    balcony = await login(srv, f"{juliet_jid}/balcony")
    await login(srv, f"{juliet_jid}/chamber")
    send_message(balcony, f"{juliet_jid}/chamber", "note to self")
    await sync(balcony)
    items = await archive_of(srv, juliet_jid)
    assert [i.direction for i in items] == ["in"]
    # 'with' the account itself finds it (§4.1.1).
    items = await archive_of(srv, juliet_jid, with_jid=juliet_jid)
    assert len(items) == 1


async def test_message_to_a_nonexistent_account_is_not_archived(srv: RunningServer) -> None:
    juliet_jid = await srv.add_user()
    juliet = await login(srv, f"{juliet_jid}/balcony")
    send_message(juliet, "nobody@localhost", "anyone there?")
    await juliet.expect(lambda s: s.name == "message" and s["type"] == "error")
    assert await archive_of(srv, "nobody@localhost") == []


# ---------------------------------------------------------------------- queries (raw XML)
async def test_fin_and_set_exactly(srv: RunningServer) -> None:
    user = await srv.add_user()
    uids = await fill_archive(srv, user, 5, datetime(2024, 1, 1, tzinfo=UTC))
    raw, _ = await raw_session(srv, user)

    results, iq = await raw_query(raw, rsm(max=2))
    assert result_ids(results) == uids[:2]
    assert all(r.find(q(NS_MAM, "result")).get("queryid") == "f27" for r in results)  # type: ignore[union-attr]
    fin = fin_of(iq)
    assert fin.get("complete") is None
    assert rsm_set(fin) == {
        "first": uids[0], "index": None, "last": uids[1], "count": None,
        "children": ["first", "last"],
    }  # fmt: skip

    results, iq = await raw_query(raw, rsm(max=10, after=uids[1]))
    assert result_ids(results) == uids[2:]
    fin = fin_of(iq)
    assert fin.get("complete") == "true"
    assert rsm_set(fin)["first"] == uids[2] and rsm_set(fin)["last"] == uids[4]

    # The last page (empty <before/>), then backwards to the start: complete there.
    results, iq = await raw_query(raw, rsm(max=3, before=None))
    assert result_ids(results) == uids[2:] and fin_of(iq).get("complete") is None
    results, iq = await raw_query(raw, rsm(max=3, before=uids[2]))
    assert result_ids(results) == uids[:2] and fin_of(iq).get("complete") == "true"

    # max=0: the count alone (XEP-0059 §2.6).
    results, iq = await raw_query(raw, rsm(max=0))
    assert results == []
    assert rsm_set(fin_of(iq)) == {
        "first": None, "index": None, "last": None, "count": "5", "children": ["count"],
    }  # fmt: skip


async def test_empty_archive_answers_an_empty_set(srv: RunningServer) -> None:
    raw, _ = await raw_session(srv)
    results, iq = await raw_query(raw)
    fin = fin_of(iq)
    assert results == [] and fin.get("complete") == "true"
    assert rsm_set(fin)["children"] == []


async def test_count_and_index_when_enabled(server_factory: Factory) -> None:
    srv = await server_factory(modules=MODULES, module_options={"mam": {"count": True}})
    user = await srv.add_user()
    uids = await fill_archive(srv, user, 7, datetime(2024, 1, 1, tzinfo=UTC))
    raw, _ = await raw_session(srv, user)
    _, iq = await raw_query(raw, rsm(max=2, after=uids[2]))
    assert rsm_set(fin_of(iq)) == {
        "first": uids[3], "index": "3", "last": uids[4], "count": "7",
        "children": ["first", "last", "count"],
    }  # fmt: skip


async def test_flip_page_reverses_the_order_only(srv: RunningServer) -> None:
    user = await srv.add_user()
    uids = await fill_archive(srv, user, 6, datetime(2024, 1, 1, tzinfo=UTC))
    raw, _ = await raw_session(srv, user)
    results, iq = await raw_query(raw, rsm(max=3, before=None) + f"<flip-page xmlns='{NS_MAM}'/>")
    assert result_ids(results) == list(reversed(uids[3:]))
    assert rsm_set(fin_of(iq))["first"] == uids[3] and rsm_set(fin_of(iq))["last"] == uids[5]


async def test_filters(srv: RunningServer) -> None:
    user = await srv.add_user()
    start = datetime(2024, 1, 1, tzinfo=UTC)
    uids = await fill_archive(srv, user, 10, start)
    # Two messages with another contact, after the others.
    storage = srv.server.core.storage
    local = user.split("@")[0]
    for n, peer in enumerate(("nurse@example.org/a", "nurse@example.org/b")):
        await storage.archive.append(
            "localhost", local, item_id=f"nurse-{n}", with_jid=peer,
            stanza="<message xmlns='jabber:client' type='chat'><body>n</body></message>",
            timestamp=start + timedelta(seconds=100 + n), direction="out",
        )  # fmt: skip
    raw, _ = await raw_session(srv, user)

    results, _ = await raw_query(raw, form(("with", "nurse@example.org")))
    assert result_ids(results) == ["nurse-0", "nurse-1"]
    results, _ = await raw_query(raw, form(("with", "nurse@example.org/b")))
    assert result_ids(results) == ["nurse-1"]
    results, _ = await raw_query(
        raw, form(("start", "2024-01-01T00:00:03Z"), ("end", "2024-01-01T01:00:05+01:00"))
    )
    assert result_ids(results) == uids[3:6]
    results, _ = await raw_query(raw, form(("after-id", uids[6]), ("before-id", "nurse-1")))
    assert result_ids(results) == [*uids[7:], "nurse-0"]
    results, _ = await raw_query(raw, form(("ids", [uids[8], "nurse-0", uids[1]])))
    assert result_ids(results) == [uids[1], uids[8], "nurse-0"]


@pytest.mark.parametrize(
    ("body", "condition"),
    [
        (rsm(after="no-such-id"), "item-not-found"),
        (rsm(before="no-such-id"), "item-not-found"),
        (form(("after-id", "no-such-id")), "item-not-found"),
        (form(("before-id", "no-such-id")), "item-not-found"),
        (form(("ids", ["uid-000000", "no-such-id"])), "item-not-found"),
        (form(("start", "yesterday")), "bad-request"),
        (form(("start", "2024-01-01T00:00:00")), "bad-request"),  # no time zone
        (form(("with", "@@")), "jid-malformed"),
        (form(("start", ["2024-01-01T00:00:00Z", "2024-01-02T00:00:00Z"])), "bad-request"),
        (form(("{urn:example}full-text", "x")), "feature-not-implemented"),
        (f"<x xmlns='{NS_XDATA}' type='form'/>", "bad-request"),
        (
            f"<x xmlns='{NS_XDATA}' type='submit'><field var='FORM_TYPE'><value>urn:other"
            "</value></field></x>",
            "bad-request",
        ),
        (rsm(max="ten"), "bad-request"),
        (rsm(max=-1), "bad-request"),
    ],
)
async def test_query_errors(srv: RunningServer, body: str, condition: str) -> None:
    user = await srv.add_user()
    await fill_archive(srv, user, 2, datetime(2024, 1, 1, tzinfo=UTC))
    raw, _ = await raw_session(srv, user)
    results, iq = await raw_query(raw, body)
    assert results == []
    assert iq.get("type") == "error", ET.tostring(iq)
    assert stanza_error_condition(iq) == condition


async def test_another_users_archive_is_forbidden(srv: RunningServer) -> None:
    romeo = await srv.add_user()
    await fill_archive(srv, romeo, 2, datetime(2024, 1, 1, tzinfo=UTC))
    raw, _ = await raw_session(srv)
    await raw.send(f"<iq type='set' id='spy' to='{romeo}'><query xmlns='{NS_MAM}'/></iq>")
    reply = await raw.next()
    assert reply.get("type") == "error" and stanza_error_condition(reply) == "forbidden"
    await raw.expect_nothing()


async def test_metadata(srv: RunningServer) -> None:
    user = await srv.add_user()
    uids = await fill_archive(srv, user, 3, datetime(2024, 1, 1, tzinfo=UTC))
    raw, _ = await raw_session(srv, user)
    await raw.send(f"<iq type='get' id='m1'><metadata xmlns='{NS_MAM}'/></iq>")
    reply = await raw.next()
    metadata = reply.find(q(NS_MAM, "metadata"))
    assert metadata is not None, ET.tostring(reply)
    start, end = metadata.find(q(NS_MAM, "start")), metadata.find(q(NS_MAM, "end"))
    assert start is not None and end is not None
    assert start.get("id") == uids[0] and end.get("id") == uids[2]
    assert start.get("timestamp", "").startswith("2024-01-01T00:00:00")


# ---------------------------------------------------------------------- a large archive
async def test_ten_thousand_messages_paged_forwards_and_backwards(srv: RunningServer) -> None:
    user = await srv.add_user()
    uids = await fill_archive(srv, user, 10_000, datetime(2024, 1, 1, tzinfo=UTC))
    client = await connect_slixmpp(srv, user, configure=with_mam)
    mam = client.xmpp.plugin["xep_0313"]

    forwards = [m["mam_result"]["id"] async for m in mam.iterate(rsm={"max": 250})]
    assert forwards == uids

    backwards = [m["mam_result"]["id"] async for m in mam.iterate(reverse=True, rsm={"max": 250})]
    assert backwards == list(reversed(uids))


async def test_page_size_is_bounded_by_the_server(srv: RunningServer) -> None:
    user = await srv.add_user()
    uids = await fill_archive(srv, user, 300, datetime(2024, 1, 1, tzinfo=UTC))
    raw, _ = await raw_session(srv, user)
    results, iq = await raw_query(raw, rsm(max=100_000))
    assert result_ids(results) == uids[:250] and fin_of(iq).get("complete") is None
    results, iq = await raw_query(raw)  # no RSM: the default page
    assert result_ids(results) == uids[:50] and fin_of(iq).get("complete") is None


# ---------------------------------------------------------------------- preferences
async def set_prefs(client: SlixClient, default: str, always=(), never=()) -> Any:  # type: ignore[no-untyped-def]
    iq = client.xmpp.make_iq_set()
    prefs = ET.SubElement(iq.xml, q(NS_MAM, "prefs"), {"default": default})
    for name, jids in (("always", always), ("never", never)):
        holder = ET.SubElement(prefs, q(NS_MAM, name))
        for jid in jids:
            ET.SubElement(holder, q(NS_MAM, "jid")).text = jid
    return await send_iq(client, iq)


def prefs_of(reply: Any) -> tuple[str | None, list[str], list[str]]:
    prefs = reply.xml.find(q(NS_MAM, "prefs"))
    assert prefs is not None, reply
    lists = [
        [j.text for j in prefs.findall(f"{q(NS_MAM, name)}/{q(NS_MAM, 'jid')}")]
        for name in ("always", "never")
    ]
    return prefs.get("default"), lists[0], lists[1]


async def test_prefs_default_and_roundtrip(srv: RunningServer) -> None:
    juliet = await login(srv, f"{await srv.add_user()}/balcony")
    iq = juliet.xmpp.make_iq_get()
    iq.xml.append(el(NS_MAM, "prefs"))
    assert prefs_of(await send_iq(juliet, iq)) == ("always", [], [])

    reply = await set_prefs(juliet, "roster", always=["romeo@example.net"], never=["a@b/c"])
    assert reply["type"] == "result"
    assert prefs_of(reply) == ("roster", ["romeo@example.net"], ["a@b/c"])
    iq = juliet.xmpp.make_iq_get()
    iq.xml.append(el(NS_MAM, "prefs"))
    assert prefs_of(await send_iq(juliet, iq)) == ("roster", ["romeo@example.net"], ["a@b/c"])

    reply = await set_prefs(juliet, "sometimes")
    assert reply["type"] == "error" and reply["error"]["condition"] == "bad-request"


async def test_prefs_are_honoured(srv: RunningServer) -> None:
    juliet_jid = await srv.add_user()
    romeo_jid, nurse_jid, tybalt_jid = [await srv.add_user() for _ in range(3)]
    await put_item(srv, juliet_jid, romeo_jid, "both")  # before the roster is cached
    await put_item(srv, juliet_jid, tybalt_jid, "both")
    juliet = await login(srv, f"{juliet_jid}/balcony")
    romeo = await login(srv, f"{romeo_jid}/r")
    nurse = await login(srv, f"{nurse_jid}/n")
    tybalt = await login(srv, f"{tybalt_jid}/t")

    # roster: Romeo (a contact) yes, Nurse (not one) no, Tybalt (a contact, but never) no.
    reply = await set_prefs(juliet, "roster", never=[tybalt_jid])
    assert reply["type"] == "result"
    for sender, body in ((romeo, "from romeo"), (nurse, "from nurse"), (tybalt, "from tybalt")):
        send_message(sender, juliet_jid, body)
        await juliet.expect(lambda s, b=body: is_message(s, b))
    send_message(juliet, nurse_jid, "to nurse")
    await nurse.expect(lambda s: is_message(s, "to nurse"))
    await sync(juliet)
    assert ["from romeo" in i.stanza for i in await archive_of(srv, juliet_jid)] == [True]

    # never, with the Nurse always.
    await set_prefs(juliet, "never", always=[nurse_jid])
    send_message(romeo, juliet_jid, "romeo again")
    send_message(nurse, juliet_jid, "nurse again")
    # Two senders, so either may arrive first: take both, in whatever order.
    arrived = [
        await juliet.expect(lambda s: is_message(s, "romeo again") or is_message(s, "nurse again"))
        for _ in range(2)
    ]
    (got,) = [s for s in arrived if is_message(s, "nurse again")]
    items = await archive_of(srv, juliet_jid)
    assert len(items) == 2 and "nurse again" in items[1].stanza
    assert stanza_ids(got.xml) == [(juliet_jid, items[1].id)]
    # The preference is Juliet's alone: Romeo and the Nurse archive their side.
    assert len(await archive_of(srv, romeo_jid)) == 2


# ---------------------------------------------------------------------- retention
async def test_expiry_job_applies_global_and_per_user_ages(server_factory: Factory) -> None:
    clock = ManualClock(start=datetime(2024, 3, 1, tzinfo=UTC).timestamp())
    srv = await server_factory(
        modules=MODULES,
        clock=clock,
        module_options={
            "mam": {"max_age_days": 30, "user_max_age_days": {"brief": 7}, "expiry_interval": 60}
        },
    )
    keep, brief = await srv.add_user("keeper"), await srv.add_user("brief")
    now = datetime.fromtimestamp(clock.time(), UTC)
    for user in (keep, brief):
        await fill_archive(srv, user, 1, now - timedelta(days=40))
        local = user.split("@")[0]
        for n, age in enumerate((10, 1)):
            await srv.server.core.storage.archive.append(
                "localhost", local, item_id=f"{local}-{n}", with_jid="a@b",
                stanza="<message xmlns='jabber:client'><body>x</body></message>",
                timestamp=now - timedelta(days=age), direction="in",
            )  # fmt: skip
    assert len(await archive_of(srv, keep)) == 3

    await clock.advance(60)
    for _ in range(100):  # the sweep runs on the loop once the timer fired
        if len(await archive_of(srv, brief)) == 1:
            break
        await clock.advance(0)
    assert [i.id for i in await archive_of(srv, keep)] == ["keeper-0", "keeper-1"]
    assert [i.id for i in await archive_of(srv, brief)] == ["brief-1"]


async def test_account_deletion_removes_the_archive(srv: RunningServer) -> None:
    user = await srv.add_user()
    await fill_archive(srv, user, 3, datetime(2024, 1, 1, tzinfo=UTC))
    await srv.server.core.storage.accounts.delete("localhost", user.split("@")[0])
    assert await archive_of(srv, user) == []


async def test_mam_is_enabled_by_default(server: RunningServer) -> None:
    user = await server.add_user()
    client = await connect_slixmpp(server, user)
    iq = client.xmpp.make_iq_get(queryxmlns=NS_DISCO_INFO, ito=user)
    reply = await iq.send(timeout=5)
    assert NS_MAM in {f.get("var") for f in reply.xml.iter(q(NS_DISCO_INFO, "feature"))}
