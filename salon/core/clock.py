"""Time as a parameter: whatever expires (sweepers, pings, BOSH waits, auth delays, last
activity, SM windows, MUC history, upload slots) asks a ``Clock``, so its rules get unit
tests that do not sleep.

``SystemClock`` is the real one. ``ManualClock`` is for tests: time stands still until the
test calls ``advance()``, which wakes the sleepers whose time has come, in order.
"""

from __future__ import annotations

import asyncio
import contextvars
import heapq
import itertools
import time
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

__all__ = ["Clock", "ManualClock", "SystemClock", "Timer", "wait_for"]

T = TypeVar("T")


class Timer(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    def time(self) -> float:
        """Wall-clock time, seconds since the epoch (for timestamps that are stored or shown)."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (for timeouts and intervals)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of this clock's time."""
        ...

    def call_later(self, seconds: float, callback: Callable[[], object]) -> Timer:
        """Call ``callback`` once ``seconds`` of this clock's time have passed."""
        ...


async def wait_for(clock: Clock, awaitable: Awaitable[T], seconds: float) -> T:
    """``asyncio.wait_for`` on ``clock``'s time: TimeoutError when ``seconds`` pass first."""
    task = asyncio.ensure_future(awaitable)
    timed_out = False

    def expire() -> None:
        nonlocal timed_out
        if not task.done():
            timed_out = True
            task.cancel()

    timer = clock.call_later(seconds, expire)
    try:
        return await task
    except asyncio.CancelledError:
        if timed_out:
            raise TimeoutError from None
        raise
    finally:
        timer.cancel()


class SystemClock:
    __slots__ = ()

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    def call_later(self, seconds: float, callback: Callable[[], object]) -> Timer:
        return asyncio.get_running_loop().call_later(seconds, callback)


class _ManualTimer:
    __slots__ = ("callback", "cancelled", "context")

    def __init__(self, callback: Callable[[], object]) -> None:
        self.callback = callback
        self.cancelled = False
        # like the event loop's timers: the callback runs in the context it was set in
        # (the connection id of log lines is a context variable, salon.logs)
        self.context = contextvars.copy_context()

    def cancel(self) -> None:
        self.cancelled = True


class ManualClock:
    """A clock that moves only when told to. ``sleep()`` waits until ``advance()`` passes its
    deadline; ``advance()`` lets every woken coroutine run before it returns."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._mono = 0.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None] | _ManualTimer]] = []
        self._order = itertools.count()

    def time(self) -> float:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    async def sleep(self, seconds: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._mono + max(seconds, 0.0), next(self._order), future))
        await future

    def call_later(self, seconds: float, callback: Callable[[], object]) -> Timer:
        timer = _ManualTimer(callback)
        heapq.heappush(self._sleepers, (self._mono + max(seconds, 0.0), next(self._order), timer))
        return timer

    @property
    def sleepers(self) -> int:
        """Sleeps and timers still waiting."""
        return sum(1 for _, _, w in self._sleepers if not _is_done(w))

    async def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``, waking sleepers due on the way, in order."""
        target = self._mono + seconds
        while self._sleepers and self._sleepers[0][0] <= target:
            due, _, waiter = heapq.heappop(self._sleepers)
            self._now += due - self._mono
            self._mono = due
            if isinstance(waiter, _ManualTimer):
                if not waiter.cancelled:
                    waiter.cancelled = True
                    waiter.context.run(waiter.callback)
            elif not waiter.done():
                waiter.set_result(None)
            await _settle()
        self._now += target - self._mono
        self._mono = target
        await _settle()


def _is_done(waiter: asyncio.Future[None] | _ManualTimer) -> bool:
    return waiter.cancelled if isinstance(waiter, _ManualTimer) else waiter.done()


async def _settle(rounds: int = 20) -> None:
    """Let woken coroutines (and what they wake in turn) run."""
    for _ in range(rounds):
        await asyncio.sleep(0)
