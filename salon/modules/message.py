"""Message delivery to local accounts (RFC 6121 §8.5.2, §8.5.3).

Bare JID: chat/normal go to the available resources with the highest non-negative priority;
headline to every such resource; groupchat is refused; errors are dropped. Full JID: the
resource if it is connected, otherwise chat falls back to the bare-JID rules, headline
and error are dropped, normal and groupchat are refused (§8.5.3.2.1). When no resource
can take a chat/normal message, ``MessageUndeliverable`` lets offline storage take it;
otherwise the sender gets <service-unavailable/>.
"""

from __future__ import annotations

from salon.core.events import MessageToBare, MessageToFull, MessageUndeliverable, RoutedStanza
from salon.core.hooks import HANDLED, Priority
from salon.core.module import Module, ModuleOptions, Spec
from salon.core.sessions import delivery_targets
from salon.errors import StanzaError, StanzaErrorCondition


class MessageDelivery(Module[ModuleOptions]):
    name = "message"
    specs = (Spec("RFC 6121 §8.5", "", "message delivery rules for local accounts"),)

    def setup(self) -> None:
        self.hook(MessageToBare, self.to_bare, Priority.DELIVER)
        self.hook(MessageToFull, self.to_full, Priority.DELIVER)

    async def to_bare(self, event: RoutedStanza) -> bool:
        stype = event.stanza_type
        if stype == "error":
            return HANDLED
        if stype == "groupchat":
            raise StanzaError(StanzaErrorCondition.SERVICE_UNAVAILABLE)
        targets = delivery_targets(self.sessions.resources(event.to), stype)
        if targets:
            for session in targets:
                session.send(event.stanza)
            return HANDLED
        if stype == "headline":
            return HANDLED  # RFC 6121 §8.5.2.2.1: silently ignored
        if not await self._exists(event):
            raise StanzaError(StanzaErrorCondition.SERVICE_UNAVAILABLE)
        undeliverable = MessageUndeliverable(event.origin, event.stanza, event.sender, event.to)
        if await self.host.hooks.fire(undeliverable):
            return HANDLED
        raise StanzaError(StanzaErrorCondition.SERVICE_UNAVAILABLE)

    async def to_full(self, event: RoutedStanza) -> bool:
        session = self.sessions.get(event.to)
        if session is not None:
            session.send(event.stanza)
            return HANDLED
        stype = event.stanza_type
        if stype in ("error", "headline"):
            return HANDLED
        if stype != "chat":
            # RFC 6121 §8.5.3.2.1: normal (and unknown types, §5.2.2) and groupchat to an
            # absent resource are ignored or bounced, never redirected; we bounce them.
            raise StanzaError(StanzaErrorCondition.SERVICE_UNAVAILABLE)
        bare = MessageToBare(event.origin, event.stanza, event.sender, event.to.bare)
        return await self.to_bare(bare)

    async def _exists(self, event: RoutedStanza) -> bool:
        if self.sessions.is_online(event.to.bare):
            return True
        return await self.storage.accounts.get(self.domain, event.to.local or "") is not None
