"""XEP-0280: Message Carbons. Keeps every carbons-enabled resource of a user in the
conversation by sending it copies of the messages its sibling resources send and receive.

A resource turns carbons on and off with an IQ-set of ``<enable/>`` or ``<disable/>``; the
flag lives on the session and ends with it. Copies go only to resources that enabled carbons
and are available (they sent initial presence), never to the resource the original went to
or came from.

Which messages are copied (XEP-0280 §6, the suggested rules, which we follow): type
``chat``, and type ``normal`` with a ``<body/>``. Never copied: errors, headlines, groupchat,
messages from or through a MUC (they carry ``<x xmlns='…muc#user'/>``), messages that are
themselves carbons (a ``<sent/>`` or ``<received/>`` a client put in is never re-wrapped),
messages marked ``<private/>`` (XEP-0280 §9) or ``<no-copy/>`` (XEP-0334). The receiving
server removes ``<private/>`` before delivering (§9).

A message to one's own account (another resource, or the bare JID) gets only ``<received/>``
copies, from the inbound side, so no sibling sees the same message twice.
"""

from __future__ import annotations

from collections.abc import Iterable

from salon.core.events import MessageToBare, MessageToFull, PreStanza, RoutedStanza
from salon.core.hooks import Priority
from salon.core.iq import IqRequest, Target
from salon.core.module import Module, ModuleOptions, Spec
from salon.core.session import C2SSession, SessionSlot
from salon.core.sessions import delivery_targets
from salon.errors import StanzaError, StanzaErrorCondition
from salon.jid import JID
from salon.namespaces import NS_CARBONS, NS_CLIENT, NS_FORWARD, NS_HINTS, NS_MUC_USER
from salon.xml.element import Element

ENABLED = SessionSlot[bool]("carbons.enabled", shared=True)


def is_eligible(stanza: Element, stype: str) -> bool:
    """XEP-0280 §6 and §9, XEP-0334 no-copy: may this message be copied at all?"""
    if stype == "normal":
        if stanza.find("body", stanza.ns) is None:
            return False
    elif stype != "chat":
        return False
    for child in stanza.elements():
        if child.ns == NS_CARBONS and child.tag in ("private", "sent", "received"):
            return False
        if child.ns == NS_HINTS and child.tag == "no-copy":
            return False
        if child.ns == NS_MUC_USER and child.tag == "x":
            return False
    return True


def wrap(kind: str, stanza: Element, user: JID, to: JID) -> Element:
    """The carbon copy of ``stanza`` for ``to`` (XEP-0280 §7, §8; XEP-0297)."""
    carbon = Element("message", NS_CLIENT, {"from": str(user), "to": str(to)})
    stype = stanza.get("type")
    if stype is not None:
        carbon.set("type", stype)
    carbon.add(kind, NS_CARBONS).add("forwarded", NS_FORWARD).append(stanza)
    return carbon


def has_carbons(session: C2SSession) -> bool:
    return session.is_available and session.get(ENABLED) is True


class Carbons(Module[ModuleOptions]):
    name = "carbons"
    specs = (Spec("XEP-0280", "1.0.1"),)

    def setup(self) -> None:
        self.add_feature(NS_CARBONS)
        self.on_iq("set", NS_CARBONS, "enable", self.enable, to=Target.ANY)
        self.on_iq("set", NS_CARBONS, "disable", self.disable, to=Target.ANY)
        self.hook(MessageToBare, self.received, Priority.COPY)
        self.hook(MessageToFull, self.received, Priority.COPY)
        self.hook(PreStanza, self.sent, Priority.COPY)

    # ------------------------------------------------------------------ enable / disable
    def enable(self, request: IqRequest) -> None:
        self._own_session(request).set(ENABLED, True)  # again is fine (§10.1)

    def disable(self, request: IqRequest) -> None:
        self._own_session(request).pop(ENABLED)

    @staticmethod
    def _own_session(request: IqRequest) -> C2SSession:
        # XEP-0280 §4.1, §5.1: only a client of this server, for itself.
        if request.origin is None or request.target is Target.BARE:
            raise StanzaError(StanzaErrorCondition.NOT_ALLOWED)
        return request.origin

    # ------------------------------------------------------------------ copies
    def received(self, event: RoutedStanza) -> None:
        """Inbound: copy to the recipient's enabled resources the original does not reach."""
        stanza, stype = event.stanza, event.stanza_type
        private = stanza.find("private", NS_CARBONS)
        if private is not None:
            stanza.remove(private)  # XEP-0280 §9: not copied, and removed before delivery
            return
        user = event.to.bare
        enabled = [s for s in self.sessions.resources(user) if has_carbons(s)]
        if not enabled or not is_eligible(stanza, stype):
            return
        if isinstance(event, MessageToFull):
            target = self.sessions.get(event.to)
            if target is not None:
                reached = [target]
            elif stype == "chat":  # RFC 6121 §8.5.3.2.1: chat falls back to the bare JID
                reached = delivery_targets(self.sessions.resources(user), stype)
            else:
                return  # not delivered at all (the sender gets an error): nothing to copy
        else:
            reached = delivery_targets(self.sessions.resources(user), stype)
        skip = {id(s) for s in reached}
        if event.origin is not None:
            skip.add(id(event.origin))
        self._send("received", stanza, user, (s for s in enabled if id(s) not in skip))

    def sent(self, event: PreStanza) -> None:
        """Outbound: copy to the sender's other enabled resources (§8)."""
        stanza, origin = event.stanza, event.origin
        if stanza.tag != "message":
            return
        user = origin.jid.bare
        if event.to is None or event.to.bare == user:
            return  # to one's own account: the inbound side copies it
        stype = stanza.get("type") or "normal"
        if not is_eligible(stanza, stype):
            return
        others = (s for s in self.sessions.resources(user) if s is not origin)
        self._send("sent", stanza, user, (s for s in others if has_carbons(s)))

    @staticmethod
    def _send(kind: str, stanza: Element, user: JID, sessions: Iterable[C2SSession]) -> None:
        original: Element | None = None
        for session in sessions:
            if original is None:
                original = stanza.copy()  # later changes to the routed stanza stay out
            session.send(wrap(kind, original, user, session.jid))
