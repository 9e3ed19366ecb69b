"""Fan-out in turns: one stanza that becomes hundreds (a presence to every contact) must not
hold the event loop while others wait.

Routing a stanza to a local user usually finishes without waiting on anything, so a loop
that routes a presence to each of a user's 50 contacts and probes each of them runs as one
uninterrupted step of about 4 ms. That is fine once. In a reconnect storm a thousand such
steps become ready together (the logins' initial presences, the logouts' unavailable
presences before them), and asyncio runs every ready step in one turn of its loop: a turn
of seconds, during which a chat message between two users already online waits.

:class:`FanOut` bounds that work: at most ``slots`` fan-outs run at once, the others wait
their turn in order, and a fan-out that has routed ``batch`` stanzas while others wait goes
to the back of the line. A turn of the loop then holds at most ``slots * batch`` routes of
fan-out, and whatever else is ready (a chat message, a login step) runs between them: a
fan-out yields to the loop after each batch even when it runs alone, since the fan-outs
that would wait for it may not have reached the line yet. The total work and its order per
sender are unchanged.

A fan-out started inside another (a hook of one of its stanzas fans out in turn) runs inside
its parent's slot: waiting for a second slot there could wait on itself.
"""

from __future__ import annotations

import asyncio
from contextvars import ContextVar, Token
from types import TracebackType

__all__ = ["FanOut", "FanOutTurn"]

_INSIDE: ContextVar[bool] = ContextVar("salon_fanout_inside", default=False)


class FanOut:
    """The server's fan-out turns: ``async with fanout.turn() as turn`` around a loop that
    routes many stanzas, ``await turn.step()`` before each."""

    def __init__(self, slots: int = 2, batch: int = 16) -> None:
        self.batch = batch
        self.waiting = 0  # fan-outs waiting for a slot
        self._slots = asyncio.Semaphore(slots)

    def turn(self) -> FanOutTurn:
        return FanOutTurn(self)

    async def _acquire(self) -> None:
        self.waiting += 1
        try:
            await self._slots.acquire()  # fair: in the order they came
        finally:
            self.waiting -= 1

    def _release(self) -> None:
        self._slots.release()


class FanOutTurn:
    """One fan-out's hold on a slot (an async context manager)."""

    __slots__ = ("_count", "_fanout", "_holding", "_token")

    def __init__(self, fanout: FanOut) -> None:
        self._fanout = fanout
        self._count = 0
        self._holding = False
        self._token: Token[bool] | None = None  # None: nested in another fan-out's slot

    async def __aenter__(self) -> FanOutTurn:
        if not _INSIDE.get():
            await self._fanout._acquire()
            self._holding = True
            self._token = _INSIDE.set(True)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._token is not None:
            _INSIDE.reset(self._token)
        if self._holding:
            self._holding = False
            self._fanout._release()

    async def step(self) -> None:
        """Before each stanza routed. After every ``batch`` of them the fan-out lets the
        loop turn: if other fan-outs wait, the slot goes to the first of them and this one
        waits at the back; else it only yields, so that what else is ready runs first."""
        count = self._count
        self._count = count + 1
        fanout = self._fanout
        if self._token is None or count == 0 or count % fanout.batch:
            return
        if fanout.waiting:
            self._holding = False
            fanout._release()
            await fanout._acquire()
            self._holding = True
        else:
            await asyncio.sleep(0)
