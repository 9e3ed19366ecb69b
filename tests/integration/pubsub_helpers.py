"""Shared steps of the PEP and PubSub tests: raw <pubsub/> requests through slixmpp and
predicates over event notifications."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from slixmpp.xmlstream import ET
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatcherId

from tests.integration.harness import DEFAULT_TIMEOUT, SlixClient

NS_PUBSUB = "http://jabber.org/protocol/pubsub"
NS_OWNER = "http://jabber.org/protocol/pubsub#owner"
NS_EVENT = "http://jabber.org/protocol/pubsub#event"
NS_ERRORS = "http://jabber.org/protocol/pubsub#errors"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"


async def iq_xml(client: SlixClient, xml: str, iq_type: str = "set", to: str = "") -> Any:
    """Send an iq with ``xml`` as payload; return the reply, result or error. Sent past
    slixmpp's iq machinery, whose error parsing does not know every RFC 6120 condition."""
    iq = client.xmpp.Iq()
    iq["type"] = iq_type
    iq["id"] = iq_id = client.xmpp.new_id()
    if to:
        iq["to"] = to
    iq.xml.append(ET.fromstring(xml))
    reply: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    def answered(stanza: Any) -> None:
        if not reply.done():
            reply.set_result(stanza)

    client.xmpp.register_handler(Callback(f"reply-{iq_id}", MatcherId(iq_id), answered, once=True))
    client.xmpp.send(iq)
    return await asyncio.wait_for(reply, DEFAULT_TIMEOUT)


def options(form_type: str, **fields: str) -> str:
    body = "".join(
        f"<field var='pubsub#{var}'><value>{value}</value></field>" for var, value in fields.items()
    )
    return (
        "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'>"
        f"<value>{form_type}</value></field>{body}</x>"
    )


def publish_xml(node: str, item_id: str, payload: str, **publish_options: str) -> str:
    extra = ""
    if publish_options:
        form = options("http://jabber.org/protocol/pubsub#publish-options", **publish_options)
        extra = f"<publish-options>{form}</publish-options>"
    return (
        f"<pubsub xmlns='{NS_PUBSUB}'><publish node='{node}'><item id='{item_id}'>{payload}"
        f"</item></publish>{extra}</pubsub>"
    )


async def publish(client: SlixClient, node: str, item_id: str, payload: str, **opts: str) -> Any:
    return await iq_xml(client, publish_xml(node, item_id, payload, **opts))


async def get_items(
    client: SlixClient, to: str, node: str, extra: str = "", inner: str = ""
) -> Any:
    xml = f"<pubsub xmlns='{NS_PUBSUB}'><items node='{node}' {extra}>{inner}</items></pubsub>"
    return await iq_xml(client, xml, "get", to)


def error_of(stanza: Any) -> tuple[str | None, str | None, str | None]:
    """(type, defined condition, pubsub#errors condition) of an error reply."""
    error = stanza.xml.find("{jabber:client}error")
    if error is None:
        return (None, None, None)
    condition = app = None
    for child in error:
        ns, _, tag = child.tag[1:].partition("}")
        if ns == NS_STANZAS and tag != "text":
            condition = tag
        elif ns == NS_ERRORS:
            app = tag
    return (error.get("type"), condition, app)


def item_ids(stanza: Any, ns: str = NS_PUBSUB) -> list[str]:
    items = stanza.xml.find(f"{{{ns}}}pubsub/{{{ns}}}items")
    assert items is not None, stanza
    return [i.get("id") for i in items.findall(f"{{{ns}}}item")]


def event(node: str, kind: str = "items", sender: str | None = None) -> Callable[[Any], bool]:
    """A pubsub#event message about ``node``: kind items (published), retract, purge, delete."""

    def match(stanza: Any) -> bool:
        if stanza.name != "message":
            return False
        if sender is not None and str(stanza["from"]) != sender:
            return False
        ev = stanza.xml.find(f"{{{NS_EVENT}}}event")
        if ev is None:
            return False
        if kind in ("items", "retract"):
            items = ev.find(f"{{{NS_EVENT}}}items")
            if items is None or items.get("node") != node:
                return False
            return (
                items.find(f"{{{NS_EVENT}}}{'item' if kind == 'items' else 'retract'}") is not None
            )
        found = ev.find(f"{{{NS_EVENT}}}{kind}")
        return found is not None and found.get("node") == node

    return match


def event_item_ids(stanza: Any) -> list[str]:
    items = stanza.xml.find(f"{{{NS_EVENT}}}event/{{{NS_EVENT}}}items")
    return [i.get("id") for i in items.findall(f"{{{NS_EVENT}}}item")]
