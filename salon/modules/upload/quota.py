"""The daily upload quota: bytes each user may be granted per UTC day.

Pure bookkeeping on times given by the caller (the host's clock), so the day window turns
over when the clock says so and the rules are unit-tested without sleeping. A slot is
charged to the day it was given; an unused slot that lapses is refunded to that day. Only
today's counters are kept, so memory is bounded by the users who uploaded today.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

DAY = 86400


def day_of(when: float) -> int:
    """The UTC day number (days since the epoch) of a clock time."""
    return int(when // DAY)


def next_day(when: float) -> float:
    """The midnight (UTC) after ``when``: when a new day's quota opens."""
    return float((day_of(when) + 1) * DAY)


def xep0082_stamp(when: float) -> str:
    """A XEP-0082 date-time in UTC, rounded up to the whole second (never too early)."""
    return datetime.fromtimestamp(math.ceil(when), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class DailyQuota:
    """Bytes granted to each owner today, against a limit (0: no limit)."""

    __slots__ = ("_day", "_used", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._day = 0
        self._used: dict[str, int] = {}

    def _turn(self, now: float) -> None:
        today = day_of(now)
        if today != self._day:
            self._day = today
            self._used.clear()

    def used(self, owner: str, now: float) -> int:
        self._turn(now)
        return self._used.get(owner, 0)

    def allows(self, owner: str, size: int, now: float) -> bool:
        return self.limit == 0 or self.used(owner, now) + size <= self.limit

    def charge(self, owner: str, size: int, now: float) -> None:
        self._turn(now)
        self._used[owner] = self._used.get(owner, 0) + size

    def refund(self, owner: str, size: int, charged_at: float, now: float) -> None:
        """Give back bytes charged at ``charged_at`` (a lapsed slot), if that is still today."""
        self._turn(now)
        if day_of(charged_at) != self._day:
            return
        left = self._used.get(owner, 0) - size
        if left > 0:
            self._used[owner] = left
        else:
            self._used.pop(owner, None)
