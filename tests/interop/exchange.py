"""What the federation interop tests share, whichever server is the peer: reading what a raw
client receives with the peer's log at hand, the stanzas they send, and which s2s
authentication mechanisms Salon's connections to the peer used."""

from __future__ import annotations

import asyncio
import contextlib
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Protocol

from tests.integration.harness import NS_CLIENT, RawClient, RunningServer, q

CAPULET = "capulet.example"  # Salon's domain
MONTAGUE = "montague.example"  # the peer's domain
SALON_ADDRESS = "127.0.0.1"
TIMEOUT = 10.0


class PeerSetup(Protocol):
    """A running Salon and a running peer server, as the tests' fixtures make them."""

    salon: RunningServer
    mode: str

    def peer_log(self) -> str: ...


async def expect(
    setup: PeerSetup,
    client: RawClient,
    tag: str,
    predicate: Callable[[ET.Element], bool] = lambda e: True,
) -> ET.Element:
    """The next ``tag`` stanza matching ``predicate``; on timeout, fail with what arrived
    instead and the tail of the peer's log."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TIMEOUT
    seen: list[str] = []
    while True:
        try:
            element = await client.next(max(deadline - loop.time(), 0.01))
        except AssertionError as exc:
            raise AssertionError(
                f"{exc}; received instead: {seen}\n--- peer log ---\n{setup.peer_log()}"
            ) from None
        if element.tag == q(NS_CLIENT, tag) and predicate(element):
            if element.get("type") == "error" and tag == "message":
                raise AssertionError(f"bounced: {ET.tostring(element)!r}")
            return element
        seen.append(ET.tostring(element).decode()[:200])


def body(element: ET.Element) -> str | None:
    return element.findtext(q(NS_CLIENT, "body"))


async def available_with_roster(client: RawClient) -> None:
    await client.send("<iq type='get' id='roster0'><query xmlns='jabber:iq:roster'/></iq>")
    await client.send("<presence/>")
    with contextlib.suppress(AssertionError):
        while True:
            await client.next(0.3)


def chat(to: str, text: str) -> str:
    return f"<message to='{to}' type='chat' id='{text[:8]}'><body>{text}</body></message>"


def s2s_mechanisms(setup: PeerSetup) -> tuple[set[bool], set[str]]:
    """Whether each of Salon's outgoing connections to the peer used SASL EXTERNAL, and the
    mechanisms the peer's incoming connections authenticated with. Asserts that Salon has
    an outgoing connection and that it is authorized for Salon's domain."""
    s2s = setup.salon.server.s2s
    outgoing = [c for c in s2s.outgoing if c.remote == MONTAGUE]
    assert outgoing, "Salon has no connection to the peer"
    assert all(CAPULET in c.stream.authorized for c in outgoing)
    incoming = {
        mechanism
        for conn in s2s.incoming
        for (remote, _local), mechanism in conn.authenticated.items()
        if remote == MONTAGUE
    }
    return {c.stream._external_done for c in outgoing}, incoming
