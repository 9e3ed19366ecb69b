"""A bound client session: what the router and modules know about one connected resource."""

from __future__ import annotations

from typing import Any, Protocol

from salon.errors import StreamErrorCondition
from salon.jid import JID
from salon.xml.element import Element


class Connection(Protocol):
    """What a session needs from its transport (implemented in ``salon.net``)."""

    def send_stanza(self, stanza: Element) -> None: ...
    def close_stream(
        self, condition: StreamErrorCondition | None = None, text: str | None = None
    ) -> None: ...
    def idle_seconds(self) -> float:
        """Seconds since the peer last sent anything (whitespace included)."""
        ...

    @property
    def peer(self) -> str: ...


class C2SSession:
    """One bound resource. Fields beyond the basics live in ``extras``, created lazily."""

    __slots__ = (
        "_extras",
        "connection",
        "directed",
        "host",
        "is_available",
        "is_closed",
        "jid",
        "presence",
        "priority",
    )

    def __init__(self, jid: JID, connection: Connection) -> None:
        self.jid = jid
        self.host = jid.domain
        self.connection = connection
        self.priority = 0
        self.is_available = False  # sent initial presence and not yet unavailable
        self.is_closed = False
        self.presence: Element | None = None  # last available broadcast presence
        self.directed: set[JID] | None = None  # directed-presence recipients (RFC 6121 §4.6)
        self._extras: dict[str, Any] | None = None

    @property
    def extras(self) -> dict[str, Any]:
        """Per-session data of modules (lazily allocated: most sessions never need it)."""
        if self._extras is None:
            self._extras = {}
        return self._extras

    def send(self, stanza: Element) -> None:
        if not self.is_closed:
            self.connection.send_stanza(stanza)

    def close(self, condition: StreamErrorCondition | None = None, text: str | None = None) -> None:
        self.connection.close_stream(condition, text)

    def __repr__(self) -> str:
        return f"<C2SSession {self.jid}>"
