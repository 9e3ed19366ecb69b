"""Writes left behind (salon.core.write_behind): inside ``handled`` a write starts and the
handling goes on without it; ``handled`` returns only once every such write has ended, and
a failed write fails the handling. Outside ``handled`` the write is made in line."""

from __future__ import annotations

import asyncio

import pytest

from salon.core.write_behind import handled, write_behind


async def _write(log: list[str], gate: asyncio.Event, name: str, fail: bool = False) -> None:
    log.append(f"{name} started")
    await gate.wait()
    if fail:
        raise OSError(f"{name} failed")
    log.append(f"{name} committed")


def test_delivery_goes_on_while_the_write_runs_and_handled_waits_for_it() -> None:
    async def main() -> list[str]:
        log: list[str] = []
        gate = asyncio.Event()

        async def handle() -> None:
            await write_behind(_write(log, gate, "copy"))
            log.append("delivered")

        done = asyncio.ensure_future(handled(handle()))
        for _ in range(5):
            await asyncio.sleep(0)
        assert not done.done()  # the write is not committed yet: not handled
        gate.set()
        await done
        log.append("handled")
        return log

    assert asyncio.run(main()) == ["delivered", "copy started", "copy committed", "handled"]


def test_outside_handled_the_write_is_made_in_line() -> None:
    async def main() -> list[str]:
        log: list[str] = []
        gate = asyncio.Event()
        gate.set()
        await write_behind(_write(log, gate, "copy"))
        log.append("after")
        return log

    assert asyncio.run(main()) == ["copy started", "copy committed", "after"]


def test_a_failed_write_fails_the_handling_after_all_writes_ended() -> None:
    async def main() -> list[str]:
        log: list[str] = []
        gate = asyncio.Event()
        gate.set()

        async def handle() -> None:
            await write_behind(_write(log, gate, "bad", fail=True))
            await write_behind(_write(log, gate, "good"))

        with pytest.raises(OSError, match="bad failed"):
            await handled(handle())
        return log

    assert asyncio.run(main()) == ["bad started", "good started", "good committed"]
