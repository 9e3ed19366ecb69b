"""Where a stanza goes (RFC 6120 §8.1, §10; RFC 6121 §8).

Stanzas from clients are checked and stamped here, then classified by their ``to``: the
server's domain, a local bare JID, a local full JID, or elsewhere. Each class fires one
Dispatch event on the target host's bus; feature modules (message, presence, offline, ...)
answer them. Whatever nobody handles gets the error the RFCs name.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import TYPE_CHECKING, cast

from salon.core.events import (
    InboundStanza,
    IqToFull,
    MessageToBare,
    MessageToFull,
    MessageToHost,
    OutboundRemoteStanza,
    PresenceBroadcast,
    PresenceToBare,
    PresenceToFull,
    PresenceToHost,
    PreStanza,
    RoutedStanza,
)
from salon.core.iq import IqRequest, Target
from salon.core.session import C2SSession
from salon.errors import StanzaError, StanzaErrorCondition, StreamErrorCondition
from salon.jid import JID, parse_jid
from salon.xml.element import Element
from salon.xml.stanza import error_reply

if TYPE_CHECKING:
    from salon.core.hosts import VirtualHost
    from salon.core.server import Server

log = logging.getLogger(__name__)

IQ_TYPES = frozenset(("get", "set", "result", "error"))
PRESENCE_TYPES = frozenset(
    ("unavailable", "subscribe", "subscribed", "unsubscribe", "unsubscribed", "probe", "error")
)
_EVENTS: dict[tuple[str, str], type[RoutedStanza]] = {
    ("message", "full"): MessageToFull,
    ("message", "bare"): MessageToBare,
    ("message", "host"): MessageToHost,
    ("presence", "full"): PresenceToFull,
    ("presence", "bare"): PresenceToBare,
    ("presence", "host"): PresenceToHost,
    ("iq", "full"): IqToFull,
}


class Router:
    def __init__(self, server: Server) -> None:
        self.server = server

    # ------------------------------------------------------------------ from clients
    async def from_client(self, session: C2SSession, stanza: Element) -> None:
        """A stanza a bound client sent: check, stamp ``from`` (RFC 6120 §8.1.2.1), route."""
        claimed = stanza.get("from")
        if claimed is not None:
            claimed_jid = parse_jid(claimed)
            if claimed_jid is None or (
                claimed_jid != session.jid and claimed_jid != session.jid.bare
            ):
                session.close(StreamErrorCondition.INVALID_FROM, "from does not match the session")
                return
        stanza.set("from", str(session.jid))
        to: JID | None = None
        to_text = stanza.get("to")
        if to_text is not None:
            to = parse_jid(to_text)
            if to is None:
                self.reply_error(session, stanza, StanzaErrorCondition.JID_MALFORMED)
                return
        condition = _check_type(stanza)
        if condition is not None:
            self.reply_error(session, stanza, condition)
            return
        host = self.server.hosts[session.host]
        try:
            if await host.hooks.fire(PreStanza(session, stanza, to)):
                return
            if to is None:
                if stanza.tag == "presence":
                    await host.hooks.fire(PresenceBroadcast(session, stanza))
                    return
                to = session.jid.bare  # RFC 6120 §10.3: as if sent to the account itself
        except StanzaError as err:
            self.reply_error(session, stanza, err)
            return
        await self.route(stanza, session, session.jid, to)

    # ------------------------------------------------------------------ from servers
    async def from_remote(self, stanza: Element, sender: JID, to: JID) -> None:
        """A stanza a remote server delivered; its stream already checked that ``sender``'s
        domain is authenticated and ``to``'s domain is ours (RFC 6120 §13.9.2)."""
        condition = _check_type(stanza)
        if condition is not None:
            self.reply_error(None, stanza, condition)
            return
        await self.route(stanza, None, sender, to)

    # ------------------------------------------------------------------ routing
    async def route(self, stanza: Element, origin: C2SSession | None, sender: JID, to: JID) -> None:
        host = self.server.hosts.get(to.domain)
        if host is None:
            service = self.server.domains.get(to.domain)
            if service is not None:
                # A service domain of this server (MUC, PubSub, upload, a component).
                try:
                    await service.receive(stanza, origin, sender, to)
                except StanzaError as err:
                    self.reply_error(origin, stanza, err)
                except Exception:
                    log.exception("service %s failed on a stanza", to.domain)
                    self.reply_error(origin, stanza, StanzaErrorCondition.INTERNAL_SERVER_ERROR)
                return
            # Another domain (RFC 6120 §10.4): federation takes it, or bounces it to the sender
            # when the remote server cannot be reached; without federation, say so here.
            if not self.server.federation.is_enabled:
                self.reply_error(origin, stanza, StanzaErrorCondition.REMOTE_SERVER_NOT_FOUND)
                return
            if await self._outbound_remote_stopped(stanza, origin, sender, to):
                return
            self.server.federation.send(stanza, sender, to)
            return
        if to.local is None:
            kind = "host"
        elif to.resource is None:
            kind = "bare"
        else:
            kind = "full"
        try:
            if kind != "host" and await host.hooks.fire(InboundStanza(origin, stanza, sender, to)):
                return
            if stanza.tag == "iq" and kind != "full":
                await self._iq_to_server(host, stanza, origin, sender, to)
                return
            event_type = _EVENTS[(stanza.tag, kind)]
            handled = await host.hooks.fire(event_type(origin, stanza, sender, to))
        except StanzaError as err:
            self.reply_error(origin, stanza, err)
            return
        if not handled:
            self._unhandled(host, stanza, origin, to)

    async def _outbound_remote_stopped(
        self, stanza: Element, origin: C2SSession | None, sender: JID, to: JID
    ) -> bool:
        sender_host = self.server.hosts.get(sender.domain)
        if sender_host is None or sender.local is None:
            return False
        event = OutboundRemoteStanza(origin, stanza, sender, to)
        try:
            return await sender_host.hooks.fire(event)
        except StanzaError as err:
            self.reply_error(origin, stanza, err)
            return True

    def _unhandled(
        self, host: VirtualHost, stanza: Element, origin: C2SSession | None, to: JID
    ) -> None:
        stype = stanza.get("type")
        if stanza.tag == "iq" and to.resource is not None:
            session = self.server.sessions.get(to)
            if session is not None:
                session.send(stanza)
            elif stype in ("get", "set"):
                self.reply_error(origin, stanza, StanzaErrorCondition.SERVICE_UNAVAILABLE)
            return
        if stanza.tag == "message" and stype not in ("error", "headline"):
            self.reply_error(origin, stanza, StanzaErrorCondition.SERVICE_UNAVAILABLE)

    async def _iq_to_server(
        self,
        host: VirtualHost,
        stanza: Element,
        origin: C2SSession | None,
        sender: JID,
        to: JID,
    ) -> None:
        iq_type = stanza.get("type") or ""
        if to.local is None:
            target = Target.HOST
        elif to == sender.bare:
            target = Target.SELF
        else:
            target = Target.BARE
        if iq_type in ("result", "error"):
            self.server.pending_iqs.answer(stanza)
            return
        if target is Target.BARE and not await self.account_exists(to):
            # RFC 6121 §8.5.1: no handler answers for an account that does not exist.
            self.reply_error(origin, stanza, StanzaErrorCondition.SERVICE_UNAVAILABLE)
            return
        children = list(stanza.elements())
        if len(children) != 1:
            # RFC 6120 §8.2.3: a get or set contains exactly one payload element.
            self.reply_error(origin, stanza, StanzaErrorCondition.BAD_REQUEST)
            return
        payload = children[0]
        route = host.iq_handlers.find(iq_type, payload.ns, payload.tag, target)
        if route is None:
            self.reply_error(origin, stanza, StanzaErrorCondition.SERVICE_UNAVAILABLE)
            return
        request = IqRequest(stanza, origin, sender, to, target)
        try:
            outcome = route.handler(request)
            if route.is_async:
                outcome = await cast("Awaitable[Element | None]", outcome)
            result = cast("Element | None", outcome)
        except StanzaError as err:
            self.reply_error(origin, stanza, err)
            return
        except Exception:
            log.exception("iq handler of %s failed", route.owner)
            self.reply_error(origin, stanza, StanzaErrorCondition.INTERNAL_SERVER_ERROR)
            return
        if result is None:
            result = request.result()
        self.deliver_reply(origin, result)

    async def account_exists(self, jid: JID) -> bool:
        """Whether the local account of ``jid`` exists: an online one without asking
        storage (the hot path), an offline one with one lookup."""
        if self.server.sessions.is_online(jid.bare):
            return True
        account = await self.server.storage.accounts.get(jid.domain, jid.local or "")
        return account is not None

    # ------------------------------------------------------------------ replies
    def deliver_reply(self, origin: C2SSession | None, reply: Element) -> None:
        """Send a reply the server generated back to whoever asked."""
        if origin is not None:
            origin.send(reply)
            return
        to = parse_jid(reply.get("to") or "")
        if to is None:
            return
        if not self.server.is_served(to.domain):
            # The request came from a remote server: the reply goes back over federation.
            sender = parse_jid(reply.get("from") or "")
            if sender is not None and self.server.federation.is_enabled:
                self.server.federation.send(reply, sender, to)
            return
        service = None if to.domain in self.server.hosts else self.server.domains.get(to.domain)
        if service is not None:
            # A reply to a service domain's stanza (an external component's iq to the server).
            sender = parse_jid(reply.get("from") or "")
            if sender is not None:
                self.server.spawn(self.route(reply, None, sender, to))
            return
        session = self.server.sessions.get(to)
        if session is not None:
            session.send(reply)

    def reply_error(
        self,
        origin: C2SSession | None,
        stanza: Element,
        err: StanzaError | StanzaErrorCondition,
    ) -> None:
        """Answer ``stanza`` with an error, unless it is an error itself (RFC 6120 §8.3.1)."""
        if stanza.get("type") == "error":
            return
        if stanza.tag == "iq" and stanza.get("type") == "result":
            return
        self.deliver_reply(origin, error_reply(stanza, err))


def _check_type(stanza: Element) -> StanzaErrorCondition | None:
    """RFC 6120 §8.2.3 / §8.1.3: iq needs an id and a known type; others a known type."""
    stype = stanza.get("type")
    if stanza.tag == "iq":
        if not stanza.get("id") or stype not in IQ_TYPES:
            return StanzaErrorCondition.BAD_REQUEST
        return None
    if stype is None or stanza.tag == "message":
        return None  # RFC 6121 §5.2.2: an unknown message type is treated as "normal"
    return None if stype in PRESENCE_TYPES else StanzaErrorCondition.BAD_REQUEST
