"""Shared steps of the RFC 6121 tests: logged-in slixmpp clients, roster requests, and
predicates over what a client receives."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from slixmpp.exceptions import IqError
from slixmpp.xmlstream import ET

from salon.core.roster_cache import RosterCache
from salon.jid import JID
from salon.storage.interfaces import RosterItem
from tests.integration.harness import RunningServer, SlixClient, connect_slixmpp

NS_ROSTER = "jabber:iq:roster"


async def login(
    srv: RunningServer,
    jid: str,
    resource: str | None = None,
    *,
    roster: bool = False,
    available: bool = False,
) -> SlixClient:
    """A slixmpp client that never answers subscription requests on its own; it fetches the
    roster (an interested resource) and sends initial presence when asked to."""
    client = await connect_slixmpp(srv, f"{jid}/{resource}" if resource else jid)
    client.xmpp.auto_authorize = None
    client.xmpp.auto_subscribe = False
    if roster:
        await client.xmpp.get_roster(timeout=5)
    if available:
        client.xmpp.send_presence()
        await client.expect(presence(sender=client.jid))
    return client


async def put_item(srv: RunningServer, owner: str, contact: str, subscription: str) -> None:
    """Set up a roster item (test fixtures, not the behaviour under test). Through the host's
    roster cache, as every roster write in the server: a copy it keeps (for an online user, or
    one read to answer a probe) must see the change."""
    domain = owner.split("@", 1)[1]
    cache = srv.server.core.hosts[domain].services.get(RosterCache)
    await cache.put_item(JID.parse(owner), RosterItem(jid=contact, subscription=subscription))


async def befriend(srv: RunningServer, a: str, b: str) -> None:
    """A mutual subscription between two accounts, as if both had approved."""
    await put_item(srv, a, b, "both")
    await put_item(srv, b, a, "both")


async def send_iq(client: SlixClient, iq: Any) -> Any:
    """Send ``iq`` and return its reply, result or error."""
    try:
        return await iq.send(timeout=5)
    except IqError as err:
        return err.iq


async def roster_get(client: SlixClient, ver: str | None = None) -> Any:
    iq = client.xmpp.Iq()
    iq["type"] = "get"
    iq.enable("roster")
    if ver is not None:
        iq["roster"]["ver"] = ver
    return await send_iq(client, iq)


async def roster_set(client: SlixClient, jid: str, **item: Any) -> Any:
    iq = client.xmpp.Iq()
    iq["type"] = "set"
    iq["roster"]["items"] = {jid: item}
    return await send_iq(client, iq)


async def roster_xml(client: SlixClient, query: str, iq_type: str = "set", to: str = "") -> Any:
    """A roster request whose <query/> is given as XML, for the malformed ones."""
    iq = client.xmpp.Iq()
    iq["type"] = iq_type
    if to:
        iq["to"] = to
    iq.xml.append(ET.fromstring(query))
    return await send_iq(client, iq)


async def expect_all(client: SlixClient, *predicates: Predicate) -> list[Any]:
    """One stanza for each predicate, in whatever order they arrive (others are skipped)."""
    found: list[Any] = [None] * len(predicates)

    def wanted(stanza: Any) -> bool:
        return any(found[i] is None and p(stanza) for i, p in enumerate(predicates))

    while any(f is None for f in found):
        stanza = await client.expect(wanted)
        index = next(i for i, p in enumerate(predicates) if found[i] is None and p(stanza))
        found[index] = stanza
    return found


async def settle(client: SlixClient) -> None:
    """Return once the server has processed everything ``client`` sent so far: it handles a
    connection's stanzas in order, so the answer to a ping sent now comes after them."""
    iq = client.xmpp.Iq()
    iq["type"] = "get"
    iq["to"] = client.xmpp.boundjid.domain
    iq.xml.append(ET.fromstring("<ping xmlns='urn:xmpp:ping'/>"))
    assert (await send_iq(client, iq))["type"] == "result"


def error_condition(stanza: Any) -> str | None:
    return stanza["error"]["condition"] if stanza["type"] == "error" else None


# ---------------------------------------------------------------------- predicates
Predicate = Callable[[Any], bool]


def presence(ptype: str | None = None, sender: str | None = None) -> Predicate:
    """Presence of type ``ptype`` (None: available, whatever its show) from ``sender`` (a full
    JID matches exactly, a bare JID any of its resources)."""

    def match(stanza: Any) -> bool:
        if stanza.name != "presence":
            return False
        stype = stanza["type"]
        if ptype is None:
            if stype not in ("available", "away", "chat", "dnd", "xa"):
                return False
        elif stype != ptype:
            return False
        if sender is None:
            return True
        return str(stanza["from"]) == sender or (
            "/" not in sender and stanza["from"].bare == sender
        )

    return match


def push(jid: str | None = None, subscription: str | None = None) -> Predicate:
    """A roster push (§2.1.6), optionally of the item ``jid`` in state ``subscription``."""

    def match(stanza: Any) -> bool:
        if stanza.name != "iq" or stanza["type"] != "set":
            return False
        query = stanza.xml.find(f"{{{NS_ROSTER}}}query")
        if query is None:
            return False
        items = stanza["roster"]["items"]
        if jid is not None and jid not in {str(j) for j in items}:
            return False
        if subscription is None:
            return True
        return any(v["subscription"] == subscription for v in items.values())

    return match


def item_of(stanza: Any, jid: str) -> dict[str, Any]:
    for key, value in stanza["roster"]["items"].items():
        if str(key) == jid:
            return dict(value)
    raise AssertionError(f"no item for {jid} in {stanza}")


def any_presence(stanza: Any) -> bool:
    return bool(stanza.name == "presence")
