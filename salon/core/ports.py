"""What the core needs from the network side, as Protocols. ``salon.app`` plugs the
implementations from ``salon.net`` in; the core never imports ``salon.net``. A cluster
transport can stand behind the same interfaces later.
"""

from __future__ import annotations

from typing import Protocol

from salon.jid import JID
from salon.xml.element import Element


class FederationSender(Protocol):
    """Stanzas for other servers (RFC 6120 §10.4): queued, sent over s2s, or bounced."""

    @property
    def is_enabled(self) -> bool: ...

    def send(self, stanza: Element, sender: JID, to: JID) -> None: ...


class NoFederation:
    """A server that talks to no other server: remote domains are not found."""

    is_enabled = False

    def send(self, stanza: Element, sender: JID, to: JID) -> None:
        raise RuntimeError("federation is disabled")


class PeerNotifier(Protocol):
    """Tells the other nodes of a cluster that a user's data changed here, so that their
    caches drop it (each of them then fires ``PeerDataChanged``)."""

    @property
    def is_clustered(self) -> bool:
        """Whether other nodes write the same storage (a cache of what is *absent* from it,
        such as "nobody else holds offline messages", cannot be trusted then)."""
        ...

    def changed(self, kind: str, user: JID) -> None: ...

    async def settled(self) -> None:
        """Return once every stanza this node has routed so far to another node is in
        the hands of the shared transport (XEP-0198 acknowledges after it)."""
        ...


class NoPeers:
    """A single process: nobody else caches anything, nothing is in flight."""

    @property
    def is_clustered(self) -> bool:
        return False

    def changed(self, kind: str, user: JID) -> None:
        return None

    async def settled(self) -> None:
        return None
