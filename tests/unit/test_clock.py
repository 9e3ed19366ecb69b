"""salon.core.clock: time as a parameter; the manual clock tests timing rules without sleeping."""

from __future__ import annotations

import asyncio

import pytest

from salon.core.clock import ManualClock, SystemClock, wait_for


async def test_manual_clock_wakes_sleepers_in_order_and_only_when_due() -> None:
    clock = ManualClock()
    woke: list[str] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append(f"{name}@{clock.monotonic():g}")

    tasks = [asyncio.create_task(sleeper(n, s)) for n, s in (("b", 20), ("a", 10), ("c", 30))]
    await asyncio.sleep(0)
    await clock.advance(9.5)
    assert woke == []
    await clock.advance(11)
    assert woke == ["a@10", "b@20"]  # each woke at its own time, not at the end of the step
    assert clock.monotonic() == 20.5
    await clock.advance(100)
    assert woke == ["a@10", "b@20", "c@30"]
    await asyncio.gather(*tasks)


async def test_wall_time_moves_with_monotonic_time() -> None:
    clock = ManualClock(start=1000.0)
    await clock.advance(5)
    assert (clock.time(), clock.monotonic()) == (1005.0, 5.0)


async def test_call_later_runs_once_when_due_and_not_after_cancel() -> None:
    clock = ManualClock()
    calls: list[float] = []
    clock.call_later(3, lambda: calls.append(clock.monotonic()))
    cancelled = clock.call_later(2, lambda: calls.append(-1))
    cancelled.cancel()
    await clock.advance(2.9)
    assert calls == []
    await clock.advance(10)
    assert calls == [3.0]
    assert clock.sleepers == 0


async def test_wait_for_times_out_on_the_clock_not_on_the_wall() -> None:
    clock = ManualClock()
    never: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    waiting = asyncio.create_task(wait_for(clock, never, 30))
    await asyncio.sleep(0)
    await clock.advance(29)
    assert not waiting.done()
    await clock.advance(1)
    with pytest.raises(TimeoutError):
        await waiting


async def test_wait_for_returns_the_result_and_drops_its_timer() -> None:
    clock = ManualClock()
    answer: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    waiting = asyncio.create_task(wait_for(clock, answer, 30))
    await asyncio.sleep(0)
    answer.set_result("pong")
    assert await waiting == "pong"
    assert clock.sleepers == 0


async def test_system_clock_timer_fires() -> None:
    fired = asyncio.Event()
    SystemClock().call_later(0.001, fired.set)
    await asyncio.wait_for(fired.wait(), 5)
