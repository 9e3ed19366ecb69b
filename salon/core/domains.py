"""Domains served inside Salon that are not hosted accounts' domains: a MUC service
(``conference.example.org``), a PubSub service, an upload service, later an external
component. The router hands every stanza addressed to such a domain (or a JID on it) to its
``DomainService``; replies go back out through the router like any other stanza.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from salon.jid import JID
from salon.xml.element import Element

if TYPE_CHECKING:
    from salon.core.session import C2SSession


class DomainService(Protocol):
    async def receive(
        self, stanza: Element, origin: C2SSession | None, sender: JID, to: JID
    ) -> None:
        """A stanza for ``to`` (on the service's domain) from ``sender``; ``origin`` is the
        local session it came from, None for remote or server-made stanzas. ``from`` is
        already stamped. Errors go back with ``router.reply_error``."""
        ...
