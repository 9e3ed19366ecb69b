"""salon.core.locks: one lock per user, gone once nobody holds or waits for it."""

from __future__ import annotations

import asyncio

from salon.core.locks import UserLocks
from salon.jid import JID


async def test_user_locks_serialise_one_user_and_clean_up() -> None:
    locks = UserLocks()
    juliet, romeo = JID.make("juliet", "localhost"), JID.make("romeo", "localhost")
    order: list[str] = []

    async def hold(user: JID, name: str) -> None:
        async with locks.hold(user):
            order.append(f"{name}+")
            await asyncio.sleep(0)  # let the others run while the lock is held
            order.append(f"{name}-")

    await asyncio.gather(hold(juliet, "j1"), hold(juliet, "j2"), hold(romeo, "r"))
    assert order.index("j1-") < order.index("j2+")  # one user: one at a time
    assert order.index("r+") < order.index("j1-")  # another user: not held up
    assert len(locks) == 0


async def test_a_lock_released_by_an_exception_is_forgotten() -> None:
    locks = UserLocks()
    juliet = JID.make("juliet", "localhost")
    try:
        async with locks.hold(juliet):
            assert len(locks) == 1
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert len(locks) == 0
    async with locks.hold(juliet):  # and can be taken again
        pass
