"""salon.core.memory: one release shortly after a burst of ended sessions, none otherwise."""

from __future__ import annotations

from salon.core.clock import ManualClock
from salon.core.memory import ChurnRelease, release_memory


async def test_a_burst_of_ended_sessions_releases_memory_once_after_the_delay() -> None:
    clock = ManualClock()
    calls: list[float] = []
    churn = ChurnRelease(clock, threshold=3, delay=2.0, release=lambda: calls.append(0.0))
    for _ in range(2):
        churn.session_ended()
    await clock.advance(10.0)
    assert calls == []  # below the threshold: nothing
    for _ in range(5):
        churn.session_ended()  # the threshold is passed during the burst: one timer
    await clock.advance(1.9)
    assert calls == []
    await clock.advance(0.2)
    assert len(calls) == 1
    assert churn.ended == 0
    await clock.advance(60.0)
    assert len(calls) == 1


async def test_cancel_stops_a_pending_release_and_failures_are_contained() -> None:
    clock = ManualClock()

    def boom() -> None:
        raise RuntimeError("no")

    churn = ChurnRelease(clock, threshold=1, delay=1.0, release=boom)
    churn.session_ended()
    churn.cancel()
    await clock.advance(5.0)
    assert churn.runs == 0
    churn.session_ended()
    await clock.advance(5.0)
    assert churn.runs == 1  # it ran, failed, was logged; the next burst may run it again


def test_release_memory_runs_here() -> None:
    release_memory()  # gc.collect() and, on glibc, malloc_trim(0): must not raise
