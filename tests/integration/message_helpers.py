"""Helpers for the message tests (RFC 6121 §8.5, XEP-0160, XEP-0280) over slixmpp."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

from tests.integration.harness import SlixClient, q

NS_DELAY = "urn:xmpp:delay"
NS_PING = "urn:xmpp:ping"
NS_CARBONS = "urn:xmpp:carbons:2"
NS_FORWARD = "urn:xmpp:forward:0"
NS_HINTS = "urn:xmpp:hints"
NS_CHATSTATES = "http://jabber.org/protocol/chatstates"
NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"

MODULES = ["disco", "ping", "presence", "message", "offline", "carbons"]


async def sync(client: SlixClient) -> None:
    """Ping the server and wait for the answer. One connection's stanzas are handled in
    order, so everything the client sent before has been routed (and stored) by then."""
    iq = client.xmpp.make_iq_get(ito=client.xmpp.boundjid.domain)
    iq.xml.append(ET.Element(q(NS_PING, "ping")))
    await iq.send(timeout=5)


def send_message(
    client: SlixClient,
    to: str,
    body: str | None = None,
    mtype: str | None = "chat",
    extra: tuple[ET.Element, ...] = (),
) -> None:
    """Send a message; ``mtype=None`` leaves the type out (normal)."""
    msg = client.xmpp.make_message(mto=to, mbody=body, mtype=mtype)
    for element in extra:
        msg.xml.append(element)
    msg.send()


def el(ns: str, tag: str) -> ET.Element:
    return ET.Element(q(ns, tag))


def is_message(stanza: Any, body: str | None = None) -> bool:
    return bool(stanza.name == "message" and (body is None or stanza["body"] == body))


def is_error_message(stanza: Any, condition: str) -> bool:
    return bool(
        stanza.name == "message"
        and stanza["type"] == "error"
        and stanza["error"]["condition"] == condition
    )


def is_carbon(kind: str) -> Any:
    """Predicate: a <received/> or <sent/> carbon (XEP-0280 §7, §8)."""

    def check(stanza: Any) -> bool:
        return stanza.name == "message" and stanza.xml.find(q(NS_CARBONS, kind)) is not None

    return check


def carbon_original(stanza: Any, kind: str) -> ET.Element:
    """The message inside a carbon's <forwarded/>."""
    inner = stanza.xml.find(
        f"{q(NS_CARBONS, kind)}/{q(NS_FORWARD, 'forwarded')}/{q('jabber:client', 'message')}"
    )
    assert inner is not None, ET.tostring(stanza.xml)
    return inner


def delay_of(stanza: Any) -> ET.Element | None:
    return stanza.xml.find(q(NS_DELAY, "delay"))


async def available(client: SlixClient, priority: int = 0) -> None:
    """Send initial presence and wait for the server to reflect it back (RFC 6121 §4.2.2)."""
    client.xmpp.send_presence(ppriority=priority)
    await client.expect(lambda s: s.name == "presence" and str(s["from"]) == client.jid)


async def disco_features(client: SlixClient, to: str) -> set[str]:
    iq = client.xmpp.make_iq_get(queryxmlns=NS_DISCO_INFO, ito=to)
    reply = await iq.send(timeout=5)
    return {f.get("var") for f in reply.xml.iter(q(NS_DISCO_INFO, "feature"))}
