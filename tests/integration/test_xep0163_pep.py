"""XEP-0163 Personal Eventing Protocol and XEP-0223 private storage over PEP, with slixmpp
clients advertising +notify through entity capabilities (XEP-0115)."""

from __future__ import annotations

from typing import Any

import pytest
import slixmpp

from tests.integration.harness import RunningServer, SlixClient, connect_slixmpp
from tests.integration.im_helpers import befriend, presence
from tests.integration.pubsub_helpers import (
    NS_OWNER,
    NS_PUBSUB,
    error_of,
    event,
    event_item_ids,
    get_items,
    iq_xml,
    item_ids,
    publish,
)

TUNE = "http://jabber.org/protocol/tune"
NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"


def tune(title: str) -> str:
    return f"<tune xmlns='{TUNE}'><title>{title}</title></tune>"


async def pep_client(
    srv: RunningServer, jid: str, interests: tuple[str, ...] = (), *, available: bool = True
) -> SlixClient:
    """A client with caps; ``interests`` become +notify features before presence is sent."""

    def configure(xmpp: slixmpp.ClientXMPP) -> None:
        for plugin in ("xep_0030", "xep_0115", "xep_0060", "xep_0163"):
            xmpp.register_plugin(plugin)

    client = await connect_slixmpp(srv, jid, configure=configure)
    client.xmpp.auto_authorize = None
    client.xmpp.auto_subscribe = False
    for namespace in interests:
        client.xmpp.plugin["xep_0163"].add_interest(namespace)
    if interests:
        await client.xmpp.plugin["xep_0115"].update_caps()
    if available:
        client.xmpp.send_presence()
        await client.expect(presence(sender=client.jid))
    return client


async def test_account_advertises_pep_features(server: RunningServer) -> None:
    jid = await server.add_user()
    client = await pep_client(server, jid, available=False)
    reply = await iq_xml(client, f"<query xmlns='{NS_DISCO_INFO}'/>", "get", jid)
    features = {f.get("var") for f in reply.xml.iter(f"{{{NS_DISCO_INFO}}}feature")}
    assert "http://jabber.org/protocol/pubsub#publish-options" in features
    assert "http://jabber.org/protocol/pubsub#auto-create" in features
    server_info = await iq_xml(client, f"<query xmlns='{NS_DISCO_INFO}'/>", "get", "localhost")
    identities = {
        (i.get("category"), i.get("type"))
        for i in server_info.xml.iter(f"{{{NS_DISCO_INFO}}}identity")
    }
    assert ("pubsub", "pep") in identities
    await client.disconnect()


async def test_publish_creates_node_and_items_are_retrieved(server: RunningServer) -> None:
    jid = await server.add_user()
    client = await pep_client(server, jid, available=False)
    result = await publish(client, TUNE, "t1", tune("one"), max_items="10")
    assert result["type"] == "result"
    published = result.xml.find(f"{{{NS_PUBSUB}}}pubsub/{{{NS_PUBSUB}}}publish/{{{NS_PUBSUB}}}item")
    assert published is not None and published.get("id") == "t1"
    for n in (2, 3):
        assert (await publish(client, TUNE, f"t{n}", tune(str(n))))["type"] == "result"
    assert item_ids(await get_items(client, jid, TUNE)) == ["t1", "t2", "t3"]
    assert item_ids(await get_items(client, jid, TUNE, "max_items='2'")) == ["t2", "t3"]
    by_id = await get_items(client, jid, TUNE, inner=f"<item xmlns='{NS_PUBSUB}' id='t1'/>")
    assert item_ids(by_id) == ["t1"]
    # publishing without an id gets one from the server
    generated = await publish(client, TUNE, "", tune("anon"))
    item = generated.xml.find(f"{{{NS_PUBSUB}}}pubsub/{{{NS_PUBSUB}}}publish/{{{NS_PUBSUB}}}item")
    assert item is not None and item.get("id")
    await client.disconnect()


async def test_retract_purge_delete_with_notifications(server: RunningServer) -> None:
    jid = await server.add_user()
    client = await pep_client(server, jid, (TUNE,))
    await publish(client, TUNE, "a", tune("a"), max_items="5")
    await client.expect(event(TUNE, "items", sender=jid))
    await publish(client, TUNE, "b", tune("b"), max_items="5")
    await client.expect(event(TUNE, "items", sender=jid))
    retract = (
        f"<pubsub xmlns='{NS_PUBSUB}'><retract node='{TUNE}' notify='true'>"
        "<item id='a'/></retract></pubsub>"
    )
    assert (await iq_xml(client, retract))["type"] == "result"
    await client.expect(event(TUNE, "retract", sender=jid))
    assert item_ids(await get_items(client, jid, TUNE)) == ["b"]
    again = await iq_xml(client, retract)
    assert error_of(again) == ("cancel", "item-not-found", None)
    purge = f"<pubsub xmlns='{NS_OWNER}'><purge node='{TUNE}'/></pubsub>"
    assert (await iq_xml(client, purge))["type"] == "result"
    await client.expect(event(TUNE, "purge", sender=jid))
    assert item_ids(await get_items(client, jid, TUNE)) == []
    delete = f"<pubsub xmlns='{NS_OWNER}'><delete node='{TUNE}'/></pubsub>"
    assert (await iq_xml(client, delete))["type"] == "result"
    await client.expect(event(TUNE, "delete", sender=jid))
    missing = await get_items(client, jid, TUNE)
    assert error_of(missing) == ("cancel", "item-not-found", None)
    await client.disconnect()


async def test_contact_with_notify_gets_events_and_others_do_not(server: RunningServer) -> None:
    juliet, romeo, nurse = [await server.add_user() for _ in range(3)]
    await befriend(server, juliet, romeo)
    await befriend(server, juliet, nurse)
    j = await pep_client(server, juliet)
    r = await pep_client(server, romeo, (TUNE,))
    n = await pep_client(server, nurse)  # no +notify: not interested
    # romeo's presence (with caps) reached juliet's account; wait until it counts
    await _until_interested(server, juliet, r.jid, TUNE)
    await publish(j, TUNE, "song", tune("song"))
    got = await r.expect(event(TUNE, sender=juliet))
    assert event_item_ids(got) == ["song"]
    assert got["type"] == "headline"
    await n.expect_nothing(event(TUNE))
    for c in (j, r, n):
        await c.disconnect()


async def test_last_item_is_sent_when_contact_comes_online(server: RunningServer) -> None:
    juliet, romeo = await server.add_user(), await server.add_user()
    await befriend(server, juliet, romeo)
    j = await pep_client(server, juliet)
    await publish(j, TUNE, "old", tune("old"))
    r = await pep_client(server, romeo, (TUNE,))
    got = await r.expect(event(TUNE, sender=juliet))
    assert event_item_ids(got) == ["old"]
    await j.disconnect()
    await r.disconnect()


async def test_presence_access_model_refuses_strangers(server: RunningServer) -> None:
    juliet, romeo, stranger = [await server.add_user() for _ in range(3)]
    await befriend(server, juliet, romeo)
    j = await pep_client(server, juliet, available=False)
    await publish(j, TUNE, "x", tune("x"))
    r = await pep_client(server, romeo, available=False)
    assert item_ids(await get_items(r, juliet, TUNE)) == ["x"]
    s = await pep_client(server, stranger, available=False)
    refused = await get_items(s, juliet, TUNE)
    assert error_of(refused) == ("auth", "not-authorized", "presence-subscription-required")
    # and publishing to someone else's PEP is forbidden
    forbidden = await iq_xml(s, _publish_to(TUNE), "set", juliet)
    assert error_of(forbidden) == ("auth", "forbidden", None)
    for c in (j, r, s):
        await c.disconnect()


async def test_publish_options_precondition_not_met(server: RunningServer) -> None:
    jid = await server.add_user()
    client = await pep_client(server, jid, available=False)
    assert (await publish(client, TUNE, "a", tune("a")))["type"] == "result"
    refused = await publish(client, TUNE, "a", tune("b"), access_model="open")
    assert error_of(refused) == ("cancel", "conflict", "precondition-not-met")
    assert (await publish(client, TUNE, "a", tune("c"), access_model="presence"))[
        "type"
    ] == "result"
    await client.disconnect()


async def test_private_storage_xep0223(server: RunningServer) -> None:
    juliet, romeo = await server.add_user(), await server.add_user()
    await befriend(server, juliet, romeo)
    j = await pep_client(server, juliet, available=False)
    secret = "<storage xmlns='storage:bookmarks'><conference jid='a@b' autojoin='true'/></storage>"
    opts = {"persist_items": "true", "access_model": "whitelist"}
    assert (await publish(j, "storage:bookmarks", "current", secret, **opts))["type"] == "result"
    assert item_ids(await get_items(j, juliet, "storage:bookmarks")) == ["current"]
    r = await pep_client(server, romeo, available=False)
    refused = await get_items(r, juliet, "storage:bookmarks")
    assert error_of(refused) == ("cancel", "not-allowed", "closed-node")
    await j.disconnect()
    await r.disconnect()


async def test_limits_give_clear_errors(server_factory: Any) -> None:
    srv = await server_factory(module_options={"pep": {"max_item_bytes": 1024, "max_nodes": 1}})
    jid = await srv.add_user()
    client = await pep_client(srv, jid, available=False)
    too_big = await publish(client, TUNE, "a", tune("x" * 2000))
    assert error_of(too_big) == ("modify", "not-acceptable", "payload-too-big")
    assert (await publish(client, TUNE, "a", tune("ok")))["type"] == "result"
    too_many = await publish(client, "urn:other", "a", tune("ok"))
    assert error_of(too_many) == ("modify", "policy-violation", None)
    await client.disconnect()


async def test_configure_node(server: RunningServer) -> None:
    jid = await server.add_user()
    client = await pep_client(server, jid, available=False)
    await publish(client, TUNE, "a", tune("a"))
    get = f"<pubsub xmlns='{NS_OWNER}'><configure node='{TUNE}'/></pubsub>"
    form = await iq_xml(client, get, "get")
    values = {
        f.get("var"): [v.text for v in f.findall("{jabber:x:data}value")]
        for f in form.xml.iter("{jabber:x:data}field")
    }
    assert values["pubsub#access_model"] == ["presence"]
    assert values["pubsub#max_items"] == ["1"]
    from tests.integration.pubsub_helpers import options

    form_xml = options("http://jabber.org/protocol/pubsub#node_config", access_model="open")
    set_ = f"<pubsub xmlns='{NS_OWNER}'><configure node='{TUNE}'>{form_xml}</configure></pubsub>"
    assert (await iq_xml(client, set_))["type"] == "result"
    assert (await publish(client, TUNE, "b", tune("b"), access_model="open"))["type"] == "result"
    await client.disconnect()


def _publish_to(node: str) -> str:
    return (
        f"<pubsub xmlns='{NS_PUBSUB}'><publish node='{node}'><item id='x'>{tune('x')}</item>"
        "</publish></pubsub>"
    )


async def _until_interested(srv: RunningServer, owner: str, resource: str, node: str) -> None:
    """Wait (bounded) until the server knows ``resource`` wants ``node`` of ``owner``."""
    import asyncio

    from salon.jid import parse_jid

    host = srv.server.core.hosts[owner.split("@")[1]]
    pep = host.modules["pep"]
    owner_jid, resource_jid = parse_jid(owner), parse_jid(resource)
    assert owner_jid is not None and resource_jid is not None
    for _ in range(200):
        if resource_jid in pep.interests.interested(owner_jid, node):
            return
        await asyncio.sleep(0.025)
    raise AssertionError("the server never learned the resource's +notify")


@pytest.mark.parametrize("answered", ["retry", "first, late"])
async def test_interest_survives_a_caps_lookup_that_timed_out(
    server_factory: Any, answered: str
) -> None:
    """A busy client that misses the first disco#info (the lookup times out) is asked once
    more; whether it answers that or, late, the first, its +notify counts. (The second
    request is the sign that the first timed out: nothing here waits on a sleep.)"""
    import base64
    import hashlib
    import xml.etree.ElementTree as ET

    from tests.integration.harness import NS_CLIENT, q, raw_session

    srv = await server_factory(module_options={"pep": {"caps_timeout": 3.0}})
    juliet, romeo = await srv.add_user(), await srv.add_user()
    await befriend(srv, juliet, romeo)
    j = await pep_client(srv, juliet)
    r, romeo_full = await raw_session(srv, romeo)
    features = sorted((NS_DISCO_INFO, "http://jabber.org/protocol/caps", f"{TUNE}+notify"))
    text = "client/pc//late<" + "".join(f"{f}<" for f in features)
    ver = base64.b64encode(hashlib.sha1(text.encode()).digest()).decode()
    await r.send(
        "<presence><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' "
        f"node='https://example.org/late' ver='{ver}'/></presence>"
    )

    async def disco_request() -> ET.Element:
        """The server's next caps lookup (juliet's client asks too: not that one)."""
        while True:
            element = await r.next()
            if (
                element.tag == q(NS_CLIENT, "iq")
                and element.get("from") == "localhost"
                and element.find(q(NS_DISCO_INFO, "query")) is not None
            ):
                return element

    first = await disco_request()  # not answered in time: the server's lookup times out
    second = await disco_request()  # asked once more
    chosen = second if answered == "retry" else first
    answer = "".join(f"<feature var='{f}'/>" for f in features)
    await r.send(
        f"<iq type='result' id='{chosen.get('id')}' to='{chosen.get('from')}'>"
        f"<query xmlns='{NS_DISCO_INFO}' node='https://example.org/late#{ver}'>"
        f"<identity category='client' type='pc' name='late'/>{answer}</query></iq>"
    )
    await _until_interested(srv, juliet, romeo_full, TUNE)
    await publish(j, TUNE, "song", tune("late but heard"))
    while True:
        element = await r.next()
        if element.tag == q(NS_CLIENT, "message") and b"late but heard" in ET.tostring(element):
            break
    await r.close()
    await j.disconnect()
