"""salon.core.memory: one release shortly after the sessions fell far below their peak; none
for steady churn."""

from __future__ import annotations

from salon.core.clock import ManualClock
from salon.core.memory import ChurnRelease, release_memory


class Online:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> int:
        return self.count


def end(churn: ChurnRelease, online: Online, n: int = 1) -> None:
    for _ in range(n):
        online.count -= 1
        churn.session_ended()


async def test_a_mass_disconnect_releases_memory_once_after_the_delay() -> None:
    clock, online = ManualClock(), Online()
    calls: list[int] = []
    churn = ChurnRelease(clock, online, threshold=3, delay=2.0, release=lambda: calls.append(1))
    online.count = 10
    end(churn, online, 2)
    await clock.advance(10.0)
    assert calls == []  # 2 below the peak: nothing
    end(churn, online, 5)  # the threshold is passed during the burst: one timer
    await clock.advance(1.9)
    assert calls == []
    await clock.advance(0.2)
    assert calls == [1]
    assert churn.peak == 3
    await clock.advance(60.0)
    assert calls == [1]


async def test_steady_churn_never_releases() -> None:
    clock, online = ManualClock(), Online()
    calls: list[int] = []
    churn = ChurnRelease(clock, online, threshold=3, delay=1.0, release=lambda: calls.append(1))
    online.count = 5
    for _ in range(100):  # one login, one logout, a hundred times
        online.count += 1
        end(churn, online)
    await clock.advance(10.0)
    assert calls == [] and churn.ended == 100


async def test_cancel_stops_a_pending_release_and_failures_are_contained() -> None:
    clock, online = ManualClock(), Online()

    def boom() -> None:
        raise RuntimeError("no")

    churn = ChurnRelease(clock, online, threshold=1, delay=1.0, release=boom)
    online.count = 3
    end(churn, online)
    churn.cancel()
    await clock.advance(5.0)
    assert churn.runs == 0
    end(churn, online)
    await clock.advance(5.0)
    assert churn.runs == 1  # it ran, failed, was logged; a later drop may run it again


def test_release_memory_runs_here() -> None:
    release_memory()  # gc.collect() and, on glibc, malloc_trim(0): must not raise
