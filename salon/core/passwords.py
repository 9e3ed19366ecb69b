"""Password work off the event loop, in a small bounded thread pool.

PBKDF2 (SASL PLAIN verification, new SCRAM keys for XEP-0077 registration and password
changes) takes milliseconds of CPU per call. Run on the event loop, every other client would
wait that long. ``hashlib.pbkdf2_hmac`` releases the GIL, so a few threads take the work off
the loop and use the machine's cores.

The pool is bounded twice: a fixed number of threads, and as many jobs in the executor as
threads. Further jobs wait on the loop, where a client that goes away stops waiting, and
no thread spends CPU on an answer nobody will read.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from salon.auth.credentials import make_credentials, verify_password
from salon.storage.interfaces import ScramCredential

T = TypeVar("T")

#: Threads are named after this prefix (the tests check where PBKDF2 ran).
THREAD_PREFIX = "salon-passwords"


def default_workers() -> int:
    """One thread per core, at most four: hashing must not starve the loop's own core."""
    return max(1, min(4, os.cpu_count() or 1))


class PasswordPool:
    """Runs password hashing in ``workers`` threads, at most ``workers`` jobs at a time."""

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers or default_workers()
        self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix=THREAD_PREFIX)
        self._slots: asyncio.Semaphore | None = None

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """``fn(*args)`` in a pool thread, once a thread is free."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.workers)
        async with self._slots:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def verify(self, password: str, credential: ScramCredential) -> bool:
        """:func:`~salon.auth.credentials.verify_password`, off the loop."""
        return await self.run(verify_password, password, credential)

    async def make_credentials(self, password: str) -> list[ScramCredential]:
        """:func:`~salon.auth.credentials.make_credentials`, off the loop (raises its
        ``ValueError`` for an unusable password)."""
        return await self.run(make_credentials, password)

    def close(self) -> None:
        """Stop the threads; queued jobs are dropped, running ones finish on their own."""
        self._executor.shutdown(wait=False, cancel_futures=True)
