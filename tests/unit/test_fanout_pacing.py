"""Fan-out in turns (salon.core.pacing): at most ``slots`` fan-outs at once, and one that has
routed ``batch`` stanzas while others wait lets them go first, so other work runs between."""

from __future__ import annotations

import asyncio

from salon.core.pacing import FanOut


async def _fan(fanout: FanOut, name: str, n: int, log: list[str]) -> None:
    async with fanout.turn() as turn:
        for i in range(n):
            await turn.step()
            log.append(f"{name}{i}")


def test_fan_outs_take_turns_of_one_batch_when_others_wait() -> None:
    async def main() -> list[str]:
        log: list[str] = []
        fanout = FanOut(slots=1, batch=2)
        await asyncio.gather(_fan(fanout, "a", 5, log), _fan(fanout, "b", 3, log))
        return log

    log = asyncio.run(main())
    # a yields after its first batch; b then waits for the slot, which a hands over after
    # its second batch; and so on, one batch each
    assert log == ["a0", "a1", "a2", "a3", "b0", "b1", "a4", "b2"]


def test_a_lone_fan_out_lets_the_loop_turn_after_each_batch() -> None:
    async def main() -> list[str]:
        fanout = FanOut(slots=1, batch=3)
        log: list[str] = []

        async def other() -> None:
            log.append("other")

        task = asyncio.get_running_loop().create_task(other())
        await _fan(fanout, "a", 7, log)
        await task
        return log

    assert asyncio.run(main()) == ["a0", "a1", "a2", "other", "a3", "a4", "a5", "a6"]


def test_a_chat_message_runs_between_batches_of_many_fan_outs() -> None:
    async def main() -> list[str]:
        log: list[str] = []
        fanout = FanOut(slots=2, batch=4)
        fans = [_fan(fanout, f"f{k}.", 8, log) for k in range(20)]

        async def chat() -> None:
            await asyncio.sleep(0)
            log.append("chat")

        await asyncio.gather(*fans, chat())
        return log

    log = asyncio.run(main())
    # the message is ready from the loop's second turn; each turn, at most two fan-outs
    # route one batch each before it: at most 2 turns x 2 slots x 4 routes
    assert log.index("chat") <= 2 * 2 * 4
    assert len(log) == 20 * 8 + 1


def test_a_nested_fan_out_runs_in_its_parents_slot() -> None:
    async def main() -> list[str]:
        log: list[str] = []
        fanout = FanOut(slots=1, batch=1)
        async with fanout.turn() as turn:
            await turn.step()
            await _fan(fanout, "inner", 2, log)  # would wait on itself for a second slot
        await _fan(fanout, "after", 1, log)  # the slot was given back once
        return log

    assert asyncio.run(asyncio.wait_for(main(), 5)) == ["inner0", "inner1", "after0"]
