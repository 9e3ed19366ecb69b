"""Presence for local sessions: availability, priorities, directed presence (RFC 6121 §4).

This module keeps the per-session state the router needs (available or not, priority, the
last broadcast presence) and delivers broadcast presence to the user's own resources and
directed presence to its addressee. Roster-based broadcast to contacts and subscriptions
plug in through the same events.
"""

from __future__ import annotations

from salon.core.events import (
    AvailablePresence,
    PresenceBroadcast,
    PresenceToBare,
    PresenceToFull,
    ResourceUnbound,
    RoutedStanza,
)
from salon.core.hooks import HANDLED, Priority
from salon.core.module import Module, Spec
from salon.core.session import C2SSession
from salon.errors import StanzaError, StanzaErrorCondition
from salon.namespaces import NS_CLIENT
from salon.xml.element import Element


def parse_priority(stanza: Element) -> int:
    """RFC 6121 §4.7.2.3: an integer in -128..127; absent means 0."""
    text = stanza.find_text("priority", NS_CLIENT)
    if text is None:
        return 0
    try:
        value = int(text.strip())
    except ValueError:
        raise StanzaError(StanzaErrorCondition.BAD_REQUEST, "priority is not a number") from None
    if not -128 <= value <= 127:
        raise StanzaError(StanzaErrorCondition.BAD_REQUEST, "priority out of range")
    return value


class Presence(Module):
    name = "presence"
    specs = (Spec("RFC 6121 §4", "", "availability, priority, directed presence"),)

    def setup(self) -> None:
        self.hook(PresenceBroadcast, self.broadcast, Priority.DELIVER)
        self.hook(PresenceToFull, self.to_full, Priority.DELIVER)
        self.hook(PresenceToBare, self.to_bare, Priority.DELIVER)
        self.hook(ResourceUnbound, self.session_ended)

    # ------------------------------------------------------------------ broadcast
    async def broadcast(self, event: PresenceBroadcast) -> bool:
        session, stanza = event.origin, event.stanza
        stype = stanza.get("type")
        if stype is None:
            session.priority = parse_priority(stanza)
            was_available = session.is_available
            session.is_available = True
            session.presence = stanza
            self._send_to_own_resources(session, stanza)
            if not was_available:
                await self.host.hooks.fire(AvailablePresence(session))
            return HANDLED
        elif stype == "unavailable":
            session.is_available = False
            session.presence = None
            self._send_to_directed(session, stanza)
        else:
            return HANDLED  # subscription states need a roster: handled elsewhere when enabled
        self._send_to_own_resources(session, stanza)
        return HANDLED

    def _send_to_own_resources(self, session: C2SSession, stanza: Element) -> None:
        for other in self.server.sessions.resources(session.jid.bare):
            if other.is_available or other is session:
                other.send(stanza)

    def _send_to_directed(self, session: C2SSession, stanza: Element) -> None:
        directed, session.directed = session.directed, None
        for jid in directed or ():
            copy = stanza.shallow_copy()
            copy.set("to", str(jid))
            self.server.spawn(self.server.router.route(copy, session, session.jid, jid))

    # ------------------------------------------------------------------ directed
    def _remember_directed(self, event: RoutedStanza) -> None:
        origin = event.origin
        if origin is None:
            return
        stype = event.stanza.get("type")
        if stype is None:
            if origin.directed is None:
                origin.directed = set()
            origin.directed.add(event.to)
        elif stype == "unavailable" and origin.directed:
            origin.directed.discard(event.to)

    def to_full(self, event: RoutedStanza) -> bool:
        self._remember_directed(event)
        session = self.server.sessions.get(event.to)
        if session is not None and event.stanza.get("type") in (None, "unavailable", "error"):
            session.send(event.stanza)
        return HANDLED  # presence is never bounced for an offline resource (RFC 6121 §8.5.3.2.2)

    def to_bare(self, event: RoutedStanza) -> bool:
        self._remember_directed(event)
        if event.stanza.get("type") in (None, "unavailable"):
            for session in self.server.sessions.available(event.to):
                session.send(event.stanza)
        return HANDLED

    # ------------------------------------------------------------------ logout
    def session_ended(self, event: ResourceUnbound) -> None:
        session = event.session
        if not session.is_available and not session.directed:
            return
        session.is_available = False
        unavailable = Element(
            "presence", NS_CLIENT, {"type": "unavailable", "from": str(session.jid)}
        )
        self._send_to_directed(session, unavailable)
        for other in self.server.sessions.available(session.jid.bare):
            other.send(unavailable)
