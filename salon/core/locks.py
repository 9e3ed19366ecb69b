"""Per-user locks for modules that must serialise one account's work (offline delivery,
roster and subscription writes) without keeping a lock for every account ever seen."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from salon.jid import JID

__all__ = ["UserLocks"]


@dataclass(slots=True)
class _Held:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0


class UserLocks:
    """One lock per bare JID, existing only while someone holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[JID, _Held] = {}

    def __len__(self) -> int:
        return len(self._locks)

    @contextlib.asynccontextmanager
    async def hold(self, user: JID) -> AsyncIterator[None]:
        held = self._locks.get(user)
        if held is None:
            held = self._locks[user] = _Held()
        held.users += 1
        try:
            async with held.lock:
                yield
        finally:
            held.users -= 1
            if held.users == 0:
                del self._locks[user]
