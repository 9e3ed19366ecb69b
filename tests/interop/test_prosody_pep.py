"""PEP across federation with Prosody: a contact's +notify interest (XEP-0115 caps, verified
by a disco#info to the remote resource) brings it the other server's PEP notifications, in
both directions (XEP-0163 §4.3). Setup as in test_prosody_federation (Prosody with mod_pep)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import xml.etree.ElementTree as ET
from collections.abc import Callable

from tests.integration.harness import NS_CLIENT, RawClient, q
from tests.interop.exchange import (
    CAPULET,
    MONTAGUE,
    TIMEOUT,
    available_with_roster,
    expect,
)
from tests.interop.test_prosody_federation import (
    Setup,
    SetupFactory,
    interop,
    prosody_login,
    salon_login,
)

__all__ = ["interop"]  # the fixture, used by name

NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
NS_CAPS = "http://jabber.org/protocol/caps"
NS_PUBSUB = "http://jabber.org/protocol/pubsub"
NS_EVENT = "http://jabber.org/protocol/pubsub#event"
NS_NICK = "http://jabber.org/protocol/nick"
NS_METADATA = "urn:xmpp:avatar:metadata"
CAPS_NODE = "https://salon.example/interop"
IDENTITY = ("client", "pc", "Interop")
FEATURES = sorted((NS_DISCO_INFO, NS_CAPS, f"{NS_NICK}+notify", f"{NS_METADATA}+notify"))


def caps_ver() -> str:
    """XEP-0115 §5.1 verification string of IDENTITY and FEATURES, SHA-1."""
    category, ctype, name = IDENTITY
    text = f"{category}/{ctype}//{name}<" + "".join(f"{f}<" for f in FEATURES)
    return base64.b64encode(hashlib.sha1(text.encode()).digest()).decode()


def caps_presence(to: str = "") -> str:
    target = f" to='{to}'" if to else ""
    return (
        f"<presence{target}><c xmlns='{NS_CAPS}' hash='sha-1' node='{CAPS_NODE}' "
        f"ver='{caps_ver()}'/></presence>"
    )


def disco_answer(iq: ET.Element) -> str:
    category, ctype, name = IDENTITY
    node = iq.find(q(NS_DISCO_INFO, "query"))
    node_attr = f" node='{node.get('node')}'" if node is not None and node.get("node") else ""
    features = "".join(f"<feature var='{f}'/>" for f in FEATURES)
    return (
        f"<iq type='result' id='{iq.get('id')}' to='{iq.get('from')}'>"
        f"<query xmlns='{NS_DISCO_INFO}'{node_attr}>"
        f"<identity category='{category}' type='{ctype}' name='{name}'/>{features}</query></iq>"
    )


async def serve_until(
    setup: Setup, client: RawClient, predicate: Callable[[ET.Element], bool]
) -> ET.Element:
    """Read until an element matches, answering the servers' disco#info (caps) meanwhile."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TIMEOUT
    seen: list[str] = []
    while True:
        remaining = deadline - loop.time()
        try:
            element = await client.next(max(remaining, 0.01))
        except AssertionError as exc:
            raise AssertionError(
                f"{exc}; received instead: {seen}\n--- Prosody log ---\n{setup.prosody.log_tail()}"
            ) from None
        if (
            element.tag == q(NS_CLIENT, "iq")
            and element.get("type") == "get"
            and element.find(q(NS_DISCO_INFO, "query")) is not None
        ):
            await client.send(disco_answer(element))
            continue
        if predicate(element):
            return element
        seen.append(ET.tostring(element).decode()[:200])


def pep_event(sender: str, node: str) -> Callable[[ET.Element], bool]:
    def match(element: ET.Element) -> bool:
        items = element.find(f"{q(NS_EVENT, 'event')}/{q(NS_EVENT, 'items')}")
        return (
            element.tag == q(NS_CLIENT, "message")
            and element.get("from") == sender
            and items is not None
            and items.get("node") == node
        )

    return match


def nick_of(message: ET.Element) -> str | None:
    return message.findtext(
        f"{q(NS_EVENT, 'event')}/{q(NS_EVENT, 'items')}/{q(NS_EVENT, 'item')}/{q(NS_NICK, 'nick')}"
    )


async def befriend(setup: Setup, juliet: RawClient, romeo: RawClient) -> None:
    """Mutual subscription between juliet (Salon) and romeo (Prosody)."""
    juliet_bare, romeo_bare = f"juliet@{CAPULET}", f"romeo@{MONTAGUE}"
    await juliet.send(f"<presence to='{romeo_bare}' type='subscribe'/>")
    await expect(setup, romeo, "presence", lambda e: e.get("type") == "subscribe")
    await romeo.send(f"<presence to='{juliet_bare}' type='subscribed'/>")
    await expect(setup, juliet, "presence", lambda e: e.get("type") == "subscribed")
    await romeo.send(f"<presence to='{juliet_bare}' type='subscribe'/>")
    await expect(setup, juliet, "presence", lambda e: e.get("type") == "subscribe")
    await juliet.send(f"<presence to='{romeo_bare}' type='subscribed'/>")
    await expect(setup, romeo, "presence", lambda e: e.get("type") == "subscribed")


async def publish_nick(client: RawClient, nick: str, iq_id: str) -> str:
    return (
        f"<iq type='set' id='{iq_id}'><pubsub xmlns='{NS_PUBSUB}'><publish node='{NS_NICK}'>"
        f"<item id='current'><nick xmlns='{NS_NICK}'>{nick}</nick></item></publish></pubsub></iq>"
    )


async def test_pep_notifications_cross_both_ways(interop: SetupFactory) -> None:
    setup = await interop("external", prosody_modules=("pep",))
    juliet = await salon_login(setup, "juliet")
    romeo = await prosody_login(setup, "romeo")
    await available_with_roster(juliet)
    await available_with_roster(romeo)
    await befriend(setup, juliet, romeo)
    juliet_bare, romeo_bare = f"juliet@{CAPULET}", f"romeo@{MONTAGUE}"
    juliet_full: str = juliet.full  # type: ignore[attr-defined]
    romeo_full: str = romeo.full  # type: ignore[attr-defined]

    # Both announce +notify through caps; each server asks the other's resource what the
    # ver means (a disco#info across federation) and answers are served below.
    await romeo.send(caps_presence())
    await juliet.send(caps_presence())
    await serve_until(
        setup, juliet, lambda e: e.get("from") == romeo_full and e.tag.endswith("presence")
    )
    await serve_until(
        setup, romeo, lambda e: e.get("from") == juliet_full and e.tag.endswith("presence")
    )

    # Salon → Prosody: juliet's nickname reaches romeo. The interest may still be on its
    # way (caps lookup over s2s), so publish until one arrives, bounded.
    for attempt in range(20):
        await juliet.send(await publish_nick(juliet, f"Jules {attempt}", f"pj{attempt}"))
        try:
            got = await asyncio.wait_for(
                serve_until(setup, romeo, pep_event(juliet_bare, NS_NICK)), 1.0
            )
            break
        except (TimeoutError, AssertionError):
            continue
    else:
        raise AssertionError(f"no PEP event reached Prosody\n{setup.prosody.log_tail()}")
    assert (nick_of(got) or "").startswith("Jules")

    # Prosody → Salon: romeo's nickname reaches juliet.
    for attempt in range(20):
        await romeo.send(await publish_nick(romeo, f"Romeo {attempt}", f"pr{attempt}"))
        try:
            got = await asyncio.wait_for(
                serve_until(setup, juliet, pep_event(romeo_bare, NS_NICK)), 1.0
            )
            break
        except (TimeoutError, AssertionError):
            continue
    else:
        raise AssertionError(f"no PEP event reached Salon\n{setup.prosody.log_tail()}")
    assert (nick_of(got) or "").startswith("Romeo")
