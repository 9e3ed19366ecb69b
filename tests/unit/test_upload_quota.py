"""The daily upload quota's day window, on plain numbers (no clock, no sleeping)."""

from __future__ import annotations

from salon.modules.upload.quota import DAY, DailyQuota, day_of, next_day, xep0082_stamp

NOON = 1_700_049_600.0  # 2023-11-15T12:00:00Z


def test_retry_at_the_next_utc_midnight() -> None:
    assert xep0082_stamp(next_day(NOON)) == "2023-11-16T00:00:00Z"
    assert xep0082_stamp(next_day(day_of(NOON) * DAY)) == "2023-11-16T00:00:00Z"  # midnight
    assert xep0082_stamp(next_day(day_of(NOON) * DAY - 0.5)) == "2023-11-15T00:00:00Z"
    assert xep0082_stamp(NOON + 0.25) == "2023-11-15T12:00:01Z"  # rounded up, never early


def test_charges_add_up_per_owner_until_the_limit() -> None:
    quota = DailyQuota(100)
    assert quota.allows("a@x", 100, NOON)
    quota.charge("a@x", 60, NOON)
    assert quota.allows("a@x", 40, NOON)
    assert not quota.allows("a@x", 41, NOON)
    assert quota.allows("b@x", 100, NOON)  # per owner


def test_the_window_turns_over_at_midnight() -> None:
    quota = DailyQuota(100)
    quota.charge("a@x", 100, NOON)
    last_second = (day_of(NOON) + 1) * DAY - 1
    assert not quota.allows("a@x", 1, last_second)
    assert quota.allows("a@x", 100, last_second + 1)
    assert quota.used("a@x", last_second + 1) == 0


def test_refund_only_gives_back_to_the_day_charged() -> None:
    quota = DailyQuota(100)
    quota.charge("a@x", 70, NOON)
    quota.refund("a@x", 30, NOON, NOON + 60)
    assert quota.used("a@x", NOON + 60) == 40
    quota.refund("a@x", 70, NOON, NOON + 60)  # never below zero
    assert quota.used("a@x", NOON + 60) == 0
    quota.charge("a@x", 50, NOON + DAY)
    quota.refund("a@x", 50, NOON, NOON + DAY)  # yesterday's slot: today's count stays
    assert quota.used("a@x", NOON + DAY) == 50


def test_zero_means_no_daily_limit() -> None:
    quota = DailyQuota(0)
    quota.charge("a@x", 10**12, NOON)
    assert quota.allows("a@x", 10**12, NOON)
