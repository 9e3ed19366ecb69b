"""Abuse controls: read-rate shaping, per-IP connection and SASL-failure limits, stanza rate.

* :class:`TokenBucket` is the pure rule (a rate and a burst, on an injected clock), so the
  limits are unit-tested without sleeping.
* :class:`ReadShaper` pauses a connection's reading while it has sent more than its rate
  allows (bytes are never dropped: the kernel's buffer and then TCP's window hold them).
* :class:`Limits` keeps the per-IP state of the server: open connections, recent SASL
  failures and temporary blocks that span connections.

Every limit counts its hits in the core's metrics (``salon_limit_hits_total{limit=…}``).
"""

from __future__ import annotations

import ipaddress
import logging
from collections import deque
from collections.abc import Callable

from salon.config import LimitsSettings
from salon.core.clock import Clock, Timer
from salon.core.metrics import CoreMetrics

log = logging.getLogger(__name__)

MAX_TRACKED_ADDRESSES = 100_000  # per-IP records kept at most (the oldest blocks go first)


class TokenBucket:
    """``rate`` tokens a second up to ``burst``; :meth:`take` says how long to wait."""

    __slots__ = ("_clock", "_last", "burst", "rate", "tokens")

    def __init__(self, rate: float, burst: float, clock: Clock) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self._clock = clock
        self._last = clock.monotonic()

    def take(self, amount: float) -> float:
        """Spend ``amount`` (going into debt if need be); the seconds until the bucket is
        out of debt again (0.0: within the limit)."""
        now = self._clock.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self._last) * self.rate)
        self._last = now
        self.tokens -= amount
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate

    def allows(self, amount: float = 1.0) -> bool:
        """Spend ``amount`` only if that stays within the limit."""
        now = self._clock.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self._last) * self.rate)
        self._last = now
        if self.tokens < amount:
            return False
        self.tokens -= amount
        return True


class ReadShaper:
    """One connection's read rate: past its burst, reading pauses until the debt is paid."""

    __slots__ = ("_bucket", "_clock", "_metrics", "_pause", "_resume", "_timer")

    def __init__(
        self,
        rate: int,
        burst: int,
        clock: Clock,
        metrics: CoreMetrics,
        pause: Callable[[], None],
        resume: Callable[[], None],
    ) -> None:
        self._bucket = TokenBucket(rate, burst, clock)
        self._clock = clock
        self._metrics = metrics
        self._pause = pause
        self._resume = resume
        self._timer: Timer | None = None

    def consumed(self, size: int) -> None:
        delay = self._bucket.take(size)
        if delay > 0 and self._timer is None:
            self._metrics.limit_hit("read_shaped")
            self._pause()
            self._timer = self._clock.call_later(delay, self._release)

    def _release(self) -> None:
        self._timer = None
        self._resume()

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class Limits:
    """The server's per-IP state and its settings (replaced on reload)."""

    def __init__(self, settings: LimitsSettings, clock: Clock, metrics: CoreMetrics) -> None:
        self.clock = clock
        self.metrics = metrics
        self.connections: dict[str, int] = {}
        self.failures: dict[str, deque[float]] = {}
        self.blocked: dict[str, float] = {}  # address → monotonic time the block ends
        self.configure(settings)

    def configure(self, settings: LimitsSettings) -> None:
        self.settings = settings
        self.exempt = [ipaddress.ip_network(n, strict=False) for n in settings.exempt]

    def _is_exempt(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in net for net in self.exempt)

    # ------------------------------------------------------------------ connections
    def is_blocked(self, address: str) -> bool:
        until = self.blocked.get(address)
        if until is None:
            return False
        if until <= self.clock.monotonic():
            del self.blocked[address]
            return False
        return True

    def admit(self, address: str) -> str | None:
        """Count a new connection from ``address``; the reason to refuse it, if any (then
        it is not counted)."""
        if self._is_exempt(address):
            return None
        if self.is_blocked(address):
            self.metrics.limit_hit("ip_blocked")
            return "your address is blocked for a while after failed logins"
        limit = self.settings.max_connections_per_ip
        open_now = self.connections.get(address, 0)
        if limit and open_now >= limit:
            self.metrics.limit_hit("connections_per_ip")
            return "too many connections from your address"
        self.connections[address] = open_now + 1
        return None

    def closed(self, address: str) -> None:
        count = self.connections.get(address)
        if count is None:
            return
        if count <= 1:
            del self.connections[address]
        else:
            self.connections[address] = count - 1

    # ------------------------------------------------------------------ authentication
    def auth_failed(self, address: str) -> bool:
        """Record a SASL failure; True when ``address`` is now blocked."""
        limit = self.settings.max_auth_failures_per_ip
        if not limit or self._is_exempt(address):
            return False
        now = self.clock.monotonic()
        recent = self.failures.setdefault(address, deque())
        recent.append(now)
        while recent and recent[0] <= now - self.settings.auth_failure_window:
            recent.popleft()
        if len(recent) < limit:
            return False
        del self.failures[address]
        self.blocked[address] = now + self.settings.block_seconds
        self.metrics.limit_hit("auth_failures_block")
        log.warning(
            "blocking %s for %.0f s: %d failed logins", address, self.settings.block_seconds, limit
        )
        self._bound()
        return True

    def _bound(self) -> None:
        for table in (self.blocked, self.failures):
            while len(table) > MAX_TRACKED_ADDRESSES:
                del table[next(iter(table))]

    # ------------------------------------------------------------------ per connection
    def read_shaper(
        self, kind: str, pause: Callable[[], None], resume: Callable[[], None]
    ) -> ReadShaper | None:
        """A shaper for a new ``kind`` ("c2s" or "s2s") connection, when one is set."""
        s = self.settings
        rate, burst = (s.c2s_read_rate, s.c2s_read_burst) if kind == "c2s" else (
            s.s2s_read_rate, s.s2s_read_burst)  # fmt: skip
        if not rate:
            return None
        return ReadShaper(rate, burst, self.clock, self.metrics, pause, resume)

    def stanza_bucket(self) -> TokenBucket | None:
        s = self.settings
        return TokenBucket(s.stanza_rate, s.stanza_burst, self.clock) if s.stanza_rate else None


def address_of(peer: str) -> str:
    """The IP address of an ``ip:port`` peer string (IPv6 included)."""
    return peer.rpartition(":")[0].strip("[]") or peer
