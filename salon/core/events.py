"""The catalogue of hook events: one place to read them all.

Routing events carry the origin session (None when the stanza came from elsewhere, e.g. the
server itself or, later, a remote server), the stanza with ``from`` already stamped, and the
parsed addresses.
"""

from __future__ import annotations

from dataclasses import dataclass

from salon.core.hooks import Dispatch, Guard, Notification
from salon.core.session import C2SSession, Connection
from salon.jid import JID
from salon.storage.interfaces import RosterItem
from salon.xml.element import Element


@dataclass(slots=True)
class RoutedStanza(Dispatch):
    origin: C2SSession | None
    stanza: Element
    sender: JID
    to: JID

    @property
    def stanza_type(self) -> str:
        return self.stanza.get("type") or ("normal" if self.stanza.tag == "message" else "")


@dataclass(slots=True)
class PreStanza(Guard):
    """A stanza from a local client, stamped and about to be routed. GUARD-priority modules
    (privacy, blocking, rate limits) may answer it and return HANDLED to stop it."""

    origin: C2SSession
    stanza: Element
    to: JID | None


@dataclass(slots=True)
class InboundStanza(RoutedStanza, Guard):
    """Any stanza addressed to a local account (bare or full JID), fired before the
    kind-specific event. GUARD modules (blocking, privacy) return HANDLED to stop it; they
    answer the sender themselves or raise StanzaError."""


@dataclass(slots=True)
class OutboundRemoteStanza(RoutedStanza, Guard):
    """A stanza from a local account leaving for another server, fired on the sender's host
    before federation takes it. GUARD modules (blocking) return HANDLED to stop it."""


@dataclass(slots=True)
class MessageToFull(RoutedStanza):
    pass


@dataclass(slots=True)
class MessageToBare(RoutedStanza):
    pass


@dataclass(slots=True)
class MessageToHost(RoutedStanza):
    pass


@dataclass(slots=True)
class MessageUndeliverable(RoutedStanza):
    """No resource can take this message now (RFC 6121 §8.5.2.2): offline storage may take it
    (return HANDLED); otherwise the router answers service-unavailable."""


@dataclass(slots=True)
class PresenceToFull(RoutedStanza):
    pass


@dataclass(slots=True)
class PresenceToBare(RoutedStanza):
    pass


@dataclass(slots=True)
class PresenceToHost(RoutedStanza):
    pass


@dataclass(slots=True)
class PresenceBroadcast(Dispatch):
    """Presence without ``to`` from a local client (RFC 6121 §4.2, §4.4, §4.5)."""

    origin: C2SSession
    stanza: Element


@dataclass(slots=True)
class IqToFull(RoutedStanza):
    pass


@dataclass(slots=True)
class AvailablePresence(Notification):
    """A session sent available presence while it was unavailable (initial presence, or
    available again after unavailable). Offline delivery and the like hook here."""

    session: C2SSession


@dataclass(slots=True)
class RosterRequested(Notification):
    """A session fetched its roster: it is now an "interested resource" (RFC 6121 §2.1.6)."""

    session: C2SSession


@dataclass(slots=True)
class RosterChanged(Notification):
    """An item of a local user's roster was stored (``item``) or removed (``item`` None);
    ``version`` is the roster's new version. The roster module pushes it to the user's
    interested resources (RFC 6121 §2.1.6)."""

    user: JID
    jid: str
    item: RosterItem | None
    version: int


@dataclass(slots=True)
class ResourceBound(Notification):
    session: C2SSession


@dataclass(slots=True)
class ResourceUnbound(Notification):
    """A session ended (logout, dropped connection, conflict); ``error`` says why, if known."""

    session: C2SSession
    error: str | None = None


@dataclass(slots=True)
class AccountDeleted(Notification):
    jid: JID


@dataclass(slots=True)
class PreAuthIqRequest(Dispatch):
    """An iq get/set a client sent before authenticating, in a namespace a module opened with
    the ``preauth_iq_namespace`` host item (XEP-0077 registration). The module answering it
    sets ``reply`` and returns HANDLED, or raises StanzaError; unanswered ones get
    service-unavailable."""

    domain: str
    stanza: Element
    address: str  # the client's IP address
    reply: Element | None = None
    connection: object | None = None  # the client's connection, for per-connection state


@dataclass(slots=True)
class ClientNonza(Dispatch):
    """A stream-level element (not a stanza) from a client, in a namespace a module opened
    with the ``nonza_namespace`` host item. Once bound (``session`` set) it comes in order
    with the client's stanzas; between authentication and bind ``session`` is None (an
    XEP-0198 ``<resume/>``). The module taking it returns HANDLED; when it resumed a session
    on ``connection`` it sets ``resumed``. Unhandled, the stream is closed."""

    connection: Connection
    user: JID  # the authenticated account
    session: C2SSession | None
    element: Element
    resumed: C2SSession | None = None


@dataclass(slots=True)
class ConnectionLost(Dispatch):
    """The connection of a bound session went away; ``stream_ended`` when the client closed
    the stream itself. A module that keeps the session (XEP-0198 hibernation) returns
    HANDLED and ends it later with ``host.unbind``; otherwise the session is unbound now."""

    session: C2SSession
    connection: Connection
    reason: str | None
    stream_ended: bool


@dataclass(slots=True)
class SessionResumed(Notification):
    """A hibernated session continues on a new connection (XEP-0198 resumption)."""

    session: C2SSession


@dataclass(slots=True)
class PrivateXmlStored(Notification):
    """Private XML (XEP-0049) of ``user`` was stored: ``fragments`` replaced what was kept
    in their namespaces. ``source`` is the module that wrote on the server's behalf, None
    when the user did (salon.core.personal)."""

    user: JID
    fragments: tuple[Element, ...]
    source: str | None = None


@dataclass(slots=True)
class PepItemPublished(Notification):
    """An item was published to ``node`` of ``owner``'s PEP service (XEP-0163)."""

    owner: JID
    node: str
    item_id: str
    payload: Element | None
    publisher: JID
    source: str | None = None


@dataclass(slots=True)
class PepItemsRemoved(Notification):
    """Items left ``node`` of ``owner``'s PEP service: ``item_ids`` were retracted, or, when
    ``every_item``, the node was purged or deleted."""

    owner: JID
    node: str
    item_ids: tuple[str, ...] = ()
    every_item: bool = False
    source: str | None = None


@dataclass(slots=True)
class VCardStored(Notification):
    """``user``'s vCard (XEP-0054) was stored; ``vcard`` is None when it was emptied."""

    user: JID
    vcard: Element | None
    source: str | None = None


@dataclass(slots=True)
class PeerDataChanged(Notification):
    """Another node of the cluster changed ``user``'s data of ``kind`` ("roster",
    "offline", "mam_prefs", "account"): a module that caches it drops its copy."""

    kind: str
    user: JID
