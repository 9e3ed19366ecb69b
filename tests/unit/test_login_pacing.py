"""salon.net.login_pacing: login input within a budget per loop turn, in arrival order."""

from __future__ import annotations

import asyncio

from salon.net.login_pacing import LoginPacer


class FakeClock:
    """Each handled chunk costs ``cost`` seconds of this clock."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Conn:
    """A connection as the pacer sees it; what it handled goes into ``log``."""

    def __init__(self, name: str, log: list[str], clock: FakeClock, cost: float) -> None:
        self.name = name
        self.log = log
        self.clock = clock
        self.cost = cost
        self.paused = False
        self.closed = False

    def _pause_input(self) -> None:
        self.paused = True

    def _resume_input(self) -> None:
        self.paused = False

    def _handle_input(self, data: bytes) -> None:
        self.clock.now += self.cost
        self.log.append(f"{self.name}:{data.decode()}")

    @property
    def is_closed_for_input(self) -> bool:
        return self.closed


async def turns(count: int) -> None:
    for _ in range(count):
        await asyncio.sleep(0)


async def test_input_under_the_budget_is_handled_at_once() -> None:
    clock, log = FakeClock(), []
    pacer = LoginPacer(asyncio.get_running_loop(), budget=0.005, timer=clock)
    a = Conn("a", log, clock, cost=0.001)
    pacer.handle(a, b"1")
    pacer.handle(a, b"2")
    assert log == ["a:1", "a:2"] and not a.paused and not pacer.holds(a)


async def test_beyond_the_budget_input_waits_for_later_turns_in_arrival_order() -> None:
    clock, log = FakeClock(), []
    pacer = LoginPacer(asyncio.get_running_loop(), budget=0.005, timer=clock)
    conns = [Conn(name, log, clock, cost=0.003) for name in "abcde"]
    for conn in conns:
        pacer.handle(conn, b"hello")
    # the first two fit this turn's budget (3 ms, then 6 ms spent); the rest wait, unread
    assert log == ["a:hello", "b:hello"]
    assert [c.paused for c in conns] == [False, False, True, True, True]
    assert all(pacer.holds(c) for c in conns[2:])
    await turns(1)  # the next turn: about one budget's worth more
    assert log == ["a:hello", "b:hello", "c:hello", "d:hello"]
    await turns(3)
    assert log == [f"{c}:hello" for c in "abcde"]
    assert not any(c.paused for c in conns) and not any(pacer.holds(c) for c in conns)


async def test_a_connection_with_bytes_waiting_queues_its_next_ones_behind_them() -> None:
    clock, log = FakeClock(), []
    pacer = LoginPacer(asyncio.get_running_loop(), budget=0.005, timer=clock)
    a, b = Conn("a", log, clock, cost=0.006), Conn("b", log, clock, cost=0.001)
    pacer.handle(a, b"1")  # over the budget alone
    pacer.handle(b, b"1")  # waits
    pacer.handle(b, b"2")  # (its reading was paused; a shaper may have resumed it)
    assert log == ["a:1"] and pacer.holds(b)
    await turns(2)
    assert log == ["a:1", "b:1", "b:2"]
    assert not b.paused and not pacer.holds(b)


async def test_the_bytes_of_a_connection_closed_meanwhile_are_dropped() -> None:
    clock, log = FakeClock(), []
    pacer = LoginPacer(asyncio.get_running_loop(), budget=0.001, timer=clock)
    a, b, c = (Conn(n, log, clock, cost=0.002) for n in "abc")
    for conn in (a, b, c):
        pacer.handle(conn, b"x")
    b.closed = True
    await turns(4)
    assert log == ["a:x", "c:x"] and not pacer.holds(b)
