"""The abuse-control rules on a manual clock: no sleeping."""

from __future__ import annotations

from salon.config import LimitsSettings
from salon.core.clock import ManualClock
from salon.core.metrics import CoreMetrics
from salon.net.limits import Limits, TokenBucket, address_of


async def test_token_bucket_rate_and_burst() -> None:
    clock = ManualClock()
    bucket = TokenBucket(rate=100, burst=200, clock=clock)
    assert bucket.take(200) == 0.0
    assert bucket.take(50) == 0.5  # 50 bytes of debt at 100/s
    await clock.advance(1.0)
    assert bucket.take(50) == 0.0
    assert not TokenBucket(1, 1, clock).allows(2)


async def test_per_ip_connections_and_failure_block() -> None:
    clock = ManualClock()
    metrics = CoreMetrics()
    limits = Limits(
        LimitsSettings(
            max_connections_per_ip=2, max_auth_failures_per_ip=3, block_seconds=60, exempt=[]
        ),
        clock,
        metrics,
    )
    assert limits.admit("192.0.2.1") is None and limits.admit("192.0.2.1") is None
    assert limits.admit("192.0.2.1") is not None
    assert limits.admit("192.0.2.2") is None  # another address
    limits.closed("192.0.2.1")
    assert limits.admit("192.0.2.1") is None
    assert [limits.auth_failed("192.0.2.9") for _ in range(3)] == [False, False, True]
    assert limits.admit("192.0.2.9") is not None
    await clock.advance(61)
    assert limits.admit("192.0.2.9") is None
    assert metrics.limits["auth_failures_block"] == 1
    assert metrics.limits["connections_per_ip"] == 1
    assert metrics.limits["ip_blocked"] == 1


def test_loopback_exempt_by_default_and_address_parsing() -> None:
    limits = Limits(LimitsSettings(max_connections_per_ip=1), ManualClock(), CoreMetrics())
    assert all(limits.admit("127.0.0.1") is None for _ in range(5))
    assert address_of("[::1]:5222") == "::1" and address_of("10.0.0.1:1") == "10.0.0.1"
