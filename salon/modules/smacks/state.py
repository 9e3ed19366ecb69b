"""XEP-0198 bookkeeping for one session, pure: counters, the unacknowledged queue, acks.

No sockets, no clock. The module (``salon/modules/smacks/__init__.py``) feeds it what the
session sends and what the client acknowledges, and asks it what to answer.

Counting, as XEP-0198 §4 defines it:

* ``h`` the server reports (in ``<a/>`` and ``<resumed/>``) is the number of stanzas it
  handled from the client since it answered ``<enable/>``; the core counts every stanza a
  session's client hands in (``C2SSession.stanzas_in``), so ``h`` is that count minus its
  value at enable time.
* Every stanza sent to the client after ``<enabled/>`` gets the next sequence number and
  waits in the unacknowledged queue until the client's ``h`` covers it.
* Both counters are unsigned 32-bit integers and wrap to 0 after 2^32 - 1.
"""

from __future__ import annotations

from collections import deque

from salon.xml.element import Element

MODULUS = 2**32  # h and the sequence numbers wrap around here (XEP-0198 §4)


class AckTooHigh(Exception):
    """The peer acknowledged more stanzas than were sent (XEP-0198 §4: the stream is closed
    with ``<undefined-condition/>`` and ``<handled-count-too-high/>``)."""

    def __init__(self, h: int, send_count: int) -> None:
        super().__init__(f"h={h} acknowledges more than the {send_count} stanzas sent")
        self.h = h
        self.send_count = send_count


def parse_h(value: str | None) -> int | None:
    """An ``h`` attribute: an unsigned 32-bit integer (xs:unsignedInt), or None."""
    if value is None or not value.isascii() or not value.strip().isdigit():
        return None
    h = int(value)
    return h if h < MODULUS else None


class SmState:
    """One session's stream management counters and its unacknowledged stanzas."""

    __slots__ = ("acked", "inbound_base", "request_after", "requested", "sent", "unacked")

    def __init__(self, inbound_base: int = 0, *, request_after: int = 5) -> None:
        self.inbound_base = inbound_base  # the session's stanzas_in when SM was enabled
        self.sent = 0  # sequence number of the last stanza sent (mod 2^32)
        self.acked = 0  # the last h the client acknowledged (mod 2^32)
        self.unacked: deque[Element] = deque()  # sent, oldest first, not yet acknowledged
        self.request_after = request_after  # unacked stanzas that warrant an <r/>
        self.requested = False  # an <r/> is out and no <a/> came back yet

    # ------------------------------------------------------------------ inbound
    def handled(self, stanzas_in: int) -> int:
        """The ``h`` to report, given the session's count of stanzas taken from the client."""
        return (stanzas_in - self.inbound_base) % MODULUS

    # ------------------------------------------------------------------ outbound
    def record(self, stanza: Element) -> None:
        """``stanza`` is being sent: number it and keep it until it is acknowledged."""
        self.sent = (self.sent + 1) % MODULUS
        self.unacked.append(stanza)

    def wants_ack(self) -> bool:
        """Whether to send ``<r/>`` now: enough stanzas wait and no request is out."""
        return not self.requested and len(self.unacked) >= self.request_after

    def ack(self, h: int) -> list[Element]:
        """The client handled stanzas up to sequence number ``h``: drop them from the queue
        and return them. Raises :class:`AckTooHigh` when ``h`` is beyond what was sent (or
        goes back before an earlier acknowledgement)."""
        count = (h - self.acked) % MODULUS
        if count > len(self.unacked):
            raise AckTooHigh(h, self.sent)
        self.acked = h
        self.requested = False
        return [self.unacked.popleft() for _ in range(count)]

    def take_unacked(self) -> list[Element]:
        """Everything not acknowledged, oldest first; the queue is left empty."""
        stanzas = list(self.unacked)
        self.unacked.clear()
        return stanzas
