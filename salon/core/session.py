"""A bound client session: what the router and modules know about one connected resource."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Generic, Protocol, TypeVar, cast

from salon.errors import StreamErrorCondition
from salon.jid import JID
from salon.xml.element import Element


class Connection(Protocol):
    """What a session needs from its transport (implemented in ``salon.net``)."""

    def send_stanza(self, stanza: Element) -> None: ...
    def close_stream(
        self,
        condition: StreamErrorCondition | None = None,
        text: str | None = None,
        extra: Element | None = None,
    ) -> None: ...
    def idle_seconds(self) -> float:
        """Seconds since the peer last sent anything (whitespace included)."""
        ...

    @property
    def peer(self) -> str: ...


T = TypeVar("T")


class SessionSlot(Generic[T]):
    """A typed place for one module's per-session state, e.g.
    ``CARBONS_ENABLED = SessionSlot[bool]("carbons.enabled", default=lambda: False)``.
    Declared once at module level; ``session.get(slot)`` is then typed.

    A ``shared`` slot holds a small JSON value (a flag) that other nodes of a cluster need
    to see on their copy of the session (carbons enabled, roster pushes wanted): its
    changes are reported to the session's ``observer``."""

    __slots__ = ("default", "name", "shared")

    registry: ClassVar[dict[str, SessionSlot[Any]]] = {}  # shared slots by name

    def __init__(
        self, name: str, default: Callable[[], T] | None = None, *, shared: bool = False
    ) -> None:
        self.name = name
        self.default = default
        self.shared = shared
        if shared:
            SessionSlot.registry[name] = self

    def __repr__(self) -> str:
        return f"SessionSlot({self.name!r})"


class C2SSession:
    """One bound resource. Module state lives in typed ``SessionSlot``s, allocated lazily:
    most sessions never need any.

    Two optional per-session stages sit between ``send`` and the connection, each a None
    check on the hot path when unused:

    * ``outbound_hold`` may keep a stanza back and return True (XEP-0352 client state
      indication); what it releases later goes out with ``write``.
    * ``outbound_sink`` takes every stanza that is written (XEP-0198 stream management
      counts and queues it, and writes it while a connection is attached).

    The session may outlive its connection (a hibernated XEP-0198 session): ``connection``
    is then the last one, ``is_closed`` is True, and the sink keeps what is sent.

    ``observer`` (set by a cluster directory) hears of changes to shared slots.
    """

    is_remote: ClassVar[bool] = False  # a copy of a session bound on another cluster node

    __slots__ = (
        "_slots",
        "connection",
        "directed",
        "host",
        "is_available",
        "is_closed",
        "is_unbound",
        "jid",
        "observer",
        "outbound_hold",
        "outbound_sink",
        "presence",
        "priority",
        "stanzas_in",
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
        self.is_unbound = False  # the server has forgotten it (ResourceUnbound fired)
        self.outbound_hold: Callable[[Element], bool] | None = None
        self.outbound_sink: Callable[[Element], None] | None = None
        self.stanzas_in = 0  # stanzas of the client taken for handling (XEP-0198 counts them)
        self.observer: Callable[[C2SSession], None] | None = None
        self._slots: dict[SessionSlot[Any], Any] | None = None

    # ------------------------------------------------------------------ module state
    def get(self, slot: SessionSlot[T]) -> T | None:
        """The slot's value; its default (stored on first use) or None when it has none."""
        slots = self._slots
        if slots is not None and slot in slots:
            return cast("T", slots[slot])
        if slot.default is None:
            return None
        value = slot.default()
        self.set(slot, value)
        return value

    def has(self, slot: SessionSlot[Any]) -> bool:
        return self._slots is not None and slot in self._slots

    def set(self, slot: SessionSlot[T], value: T) -> None:
        if self._slots is None:
            self._slots = {}
        self._slots[slot] = value
        if slot.shared and self.observer is not None:
            self.observer(self)

    def pop(self, slot: SessionSlot[T]) -> T | None:
        if self._slots is None:
            return None
        value = cast("T | None", self._slots.pop(slot, None))
        if slot.shared and self.observer is not None:
            self.observer(self)
        return value

    def changed(self) -> None:
        """Availability, priority or presence changed: tell the observer (the presence
        module calls it; a cluster publishes the new state to the other nodes)."""
        if self.observer is not None:
            self.observer(self)

    def shared_slots(self) -> dict[str, Any]:
        """The values of the shared slots this session holds, by slot name."""
        if not self._slots:
            return {}
        return {slot.name: value for slot, value in self._slots.items() if slot.shared}

    def send(self, stanza: Element) -> None:
        hold = self.outbound_hold
        if hold is not None and hold(stanza):
            return
        sink = self.outbound_sink
        if sink is not None:
            sink(stanza)
        elif not self.is_closed:
            self.connection.send_stanza(stanza)

    def write(self, stanza: Element) -> None:
        """Send ``stanza`` past ``outbound_hold`` (what a hold releases)."""
        sink = self.outbound_sink
        if sink is not None:
            sink(stanza)
        elif not self.is_closed:
            self.connection.send_stanza(stanza)

    def close(self, condition: StreamErrorCondition | None = None, text: str | None = None) -> None:
        self.connection.close_stream(condition, text)

    def __repr__(self) -> str:
        return f"<C2SSession {self.jid}>"
