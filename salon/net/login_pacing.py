"""Login steps within a time budget per turn of the event loop.

When a thousand clients log in at once (a restart, a network blip), the bytes of hundreds of
them arrive between two turns of the loop, and asyncio runs every ready callback in one
turn: the stream headers, SASL steps and binds of all of them, a turn of 100 ms and more,
while a chat message between two users already online waits for it to end.

:class:`LoginPacer` bounds that: input for a connection that has not bound a session yet
is handled at once while the login work of the current turn stays under ``budget``
seconds; beyond it, the connection's reading is paused and its bytes wait, in arrival
order, for the next turns, each again within the budget. Sessions already bound are never
held. The total work is the same; what changes is that the loop turns between the logins.

A connection's bytes are always handled in the order they came: once some wait, the next
ones wait behind them, even after the connection has bound its session. While its bytes
wait, a connection is not read, so waiting costs no memory beyond one chunk. (A read-rate
shaper that resumes such a connection early only lets one more chunk join the line.)
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

__all__ = ["LoginPacer", "Paced"]


class Paced(Protocol):
    """A connection whose login input can wait (the c2s connection)."""

    def _pause_input(self) -> None: ...

    def _resume_input(self) -> None: ...

    def _handle_input(self, data: bytes) -> None: ...

    @property
    def is_closed_for_input(self) -> bool: ...


class LoginPacer:
    """The server's one pacer of login input (see the module's text)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        budget: float = 0.005,
        timer: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.budget = budget  # seconds of login work per turn of the loop
        self._timer = timer  # tests pass their own
        self._loop = loop
        self._spent = 0.0
        self._reset_pending = False
        self._waiting: deque[tuple[Paced, bytes]] = deque()
        self._holding: dict[Paced, int] = {}  # connections with bytes waiting: how many chunks

    def holds(self, conn: Paced) -> bool:
        """Whether bytes of ``conn`` wait here (its next ones must wait behind them)."""
        return conn in self._holding

    def handle(self, conn: Paced, data: bytes) -> None:
        """``conn``'s login input: handled now if this turn's budget allows, else later."""
        if self._waiting or self._spent >= self.budget:
            if not self._waiting:  # a drain is scheduled exactly while bytes wait
                self._loop.call_soon(self._drain)
            self._waiting.append((conn, data))
            self._holding[conn] = self._holding.get(conn, 0) + 1
            conn._pause_input()
            return
        started = self._timer()
        conn._handle_input(data)
        self._charge(self._timer() - started)

    def _charge(self, seconds: float) -> None:
        self._spent += seconds
        if not self._reset_pending:
            self._reset_pending = True
            self._loop.call_soon(self._reset)

    def _reset(self) -> None:
        self._reset_pending = False
        self._spent = 0.0

    def _drain(self) -> None:
        """One turn's share of the waiting input, oldest first."""
        started = self._timer()
        waiting = self._waiting
        holding = self._holding
        while waiting:
            conn, data = waiting.popleft()
            left = holding.pop(conn) - 1
            if left:
                holding[conn] = left
            if conn.is_closed_for_input:
                continue
            if not left:
                conn._resume_input()
            conn._handle_input(data)
            if self._timer() - started >= self.budget:
                break
        if waiting:
            self._loop.call_soon(self._drain)
