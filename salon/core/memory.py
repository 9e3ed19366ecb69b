"""Giving memory back after a mass disconnect.

When thousands of sessions end at once (a network outage, a load balancer failing over), what
they held goes back to Python's and the C library's allocators, which keep it: the cyclic
collector's oldest generation runs rarely, and glibc's malloc returns freed heap to the system
only from the top of the heap. The process then stays as big as it was at its peak, or bigger,
since tearing the sessions down allocates too. :class:`ChurnRelease` watches the number of
sessions and, shortly after it has fallen far below its peak, runs a full collection and
``malloc_trim(0)`` once. Steady churn (as many logins as logouts) never triggers it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
from collections.abc import Callable

from salon.core.clock import Clock, Timer

__all__ = ["ChurnRelease", "release_memory"]

log = logging.getLogger(__name__)


def _load_malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None elsewhere (musl, macOS)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


_malloc_trim = _load_malloc_trim()


def release_memory() -> None:
    """Collect cyclic garbage, then hand free heap pages back to the system."""
    gc.collect()
    if _malloc_trim is not None:
        _malloc_trim(0)


class ChurnRelease:
    """Calls ``release`` ``delay`` seconds after the number of sessions (``online()``) fell
    ``threshold`` below its peak since the last release (the delay lets the rest of a burst
    end first)."""

    def __init__(
        self,
        clock: Clock,
        online: Callable[[], int],
        *,
        threshold: int = 1000,
        delay: float = 2.0,
        release: Callable[[], None] = release_memory,
    ) -> None:
        self.clock = clock
        self.online = online
        self.peak = 0
        self.threshold = threshold
        self.delay = delay
        self.release = release
        self.ended = 0
        self.runs = 0
        self._timer: Timer | None = None

    def session_ended(self) -> None:
        """Call after each session has gone (``online()`` no longer counts it)."""
        self.ended += 1
        now = self.online()
        # the count only falls here, so its highest value came just before some end
        self.peak = max(self.peak, now + 1)
        if self.peak - now >= self.threshold and self._timer is None:
            self._timer = self.clock.call_later(self.delay, self._run)

    def _run(self) -> None:
        self._timer = None
        ended, self.ended = self.ended, 0
        self.peak = self.online()
        self.runs += 1
        try:
            self.release()
        except Exception:
            log.exception("releasing memory after %d sessions ended failed", ended)

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
