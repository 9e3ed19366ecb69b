"""The discussion history a room replays to a new occupant (XEP-0045 §7.2.13).

A bounded buffer of the latest groupchat messages, each with the time it was sent. What a
joining occupant gets honours its ``<history/>`` request: ``maxchars`` (the characters of
the XML stanzas), ``maxstanzas``, ``seconds`` and ``since``; every limit given applies.
Time comes in as a parameter, so the rules are tested without a clock.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from salon.namespaces import NS_DELAY, NS_SID
from salon.xml.element import Element
from salon.xml.serializer import serialize_str

__all__ = [
    "History",
    "HistoryEntry",
    "HistoryRequest",
    "parse_stamp",
    "stamp",
    "stanza_id_of",
]


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    stanza: Element  # as the room broadcast it, without ``to``
    sent: float  # seconds since the epoch
    chars: int  # length of the serialized stanza as replayed
    stanza_id: str | None = None  # the room's XEP-0359 stanza-id, if it gave one


@dataclass(frozen=True, slots=True)
class HistoryRequest:
    """The limits of ``<history/>`` in a join (None: not given)."""

    maxchars: int | None = None
    maxstanzas: int | None = None
    seconds: int | None = None
    since: float | None = None

    @classmethod
    def parse(cls, history: Element | None) -> HistoryRequest:
        if history is None:
            return cls()
        return cls(
            _non_negative(history.get("maxchars")),
            _non_negative(history.get("maxstanzas")),
            _non_negative(history.get("seconds")),
            parse_stamp(history.get("since") or ""),
        )


def _non_negative(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        value = int(text)
    except ValueError:
        return None
    return max(value, 0)


def stamp(when: float) -> str:
    """An XEP-0082 DateTime in UTC."""
    moment = datetime.fromtimestamp(when, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_stamp(text: str) -> float | None:
    """An XEP-0082 DateTime as seconds since the epoch; None if it is not one."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


class History:
    """The last ``length`` messages of a room."""

    __slots__ = ("_entries", "room")

    def __init__(self, room: str, length: int) -> None:
        self.room = room
        self._entries: deque[HistoryEntry] = deque(maxlen=max(length, 0))

    @property
    def length(self) -> int:
        return self._entries.maxlen or 0

    def resize(self, length: int) -> None:
        """Keep at most ``length`` messages from now on (the newest ones)."""
        self._entries = deque(self._entries, maxlen=max(length, 0))

    def add(self, stanza: Element, sent: float) -> None:
        if self.length == 0:
            return
        self._entries.append(self._entry(stanza, sent))

    def _entry(self, stanza: Element, sent: float) -> HistoryEntry:
        replay = delayed(stanza, self.room, sent)
        sid = stanza_id_of(stanza, self.room)
        return HistoryEntry(replay, sent, len(serialize_str(replay)), sid)

    def find(self, stanza_id: str) -> Element | None:
        """The message the room stamped with ``stanza_id``, as history replays it."""
        for entry in self._entries:
            if entry.stanza_id == stanza_id:
                return entry.stanza
        return None

    def replace(self, stanza_id: str, stanza: Element) -> bool:
        """Put ``stanza`` (a tombstone) in the place of the message with ``stanza_id``."""
        for i, entry in enumerate(self._entries):
            if entry.stanza_id == stanza_id:
                self._entries[i] = self._entry(stanza, entry.sent)
                return True
        return False

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[HistoryEntry]:
        return iter(self._entries)

    def select(self, request: HistoryRequest, now: float) -> list[Element]:
        """The messages to replay, oldest first, within every limit of ``request``."""
        chosen: list[Element] = []
        chars = 0
        for entry in reversed(self._entries):
            if request.maxstanzas is not None and len(chosen) >= request.maxstanzas:
                break
            if request.seconds is not None and entry.sent < now - request.seconds:
                break
            if request.since is not None and entry.sent <= request.since:
                break
            if request.maxchars is not None and chars + entry.chars > request.maxchars:
                break
            chars += entry.chars
            chosen.append(entry.stanza)
        chosen.reverse()
        return chosen


def stanza_id_of(stanza: Element, room: str) -> str | None:
    """The XEP-0359 stanza-id ``room`` gave ``stanza``, if any."""
    for sid in stanza.find_all("stanza-id", NS_SID):
        if sid.get("by") == room:
            return sid.get("id")
    return None


def delayed(stanza: Element, room: str, sent: float) -> Element:
    """``stanza`` with an XEP-0203 delay from the room, as history carries it."""
    copy = stanza.copy()
    copy.set("to", None)
    for old in copy.find_all("delay", NS_DELAY):
        copy.remove(old)
    copy.add("delay", NS_DELAY, {"from": room, "stamp": stamp(sent)})
    return copy
