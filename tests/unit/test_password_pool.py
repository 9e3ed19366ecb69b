"""The password pool: PBKDF2 in a few named threads, never more jobs at once than threads,
and a job whose caller went away before its turn never runs."""

from __future__ import annotations

import asyncio
import threading

import pytest

from salon.auth.credentials import verify_password
from salon.core.passwords import THREAD_PREFIX, PasswordPool


async def test_at_most_workers_jobs_run_at_once_and_cancelled_ones_never_run() -> None:
    pool = PasswordPool(workers=2)
    release = threading.Event()
    started = threading.Semaphore(0)
    lock = threading.Lock()
    running = peak = 0
    ran: list[int] = []

    def job(n: int) -> int:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
            ran.append(n)
        started.release()
        release.wait(10)
        with lock:
            running -= 1
        return n

    try:
        tasks = [asyncio.create_task(pool.run(job, n)) for n in range(6)]
        for _ in range(2):
            assert await asyncio.to_thread(started.acquire, True, 5)
        # Both threads are busy: a third job must not start (bounded wait for a negative).
        assert not await asyncio.to_thread(started.acquire, True, 0.2)
        tasks[5].cancel()  # its client went away while it waited for a thread
        release.set()
        results = await asyncio.gather(*tasks[:5])
        assert results == [0, 1, 2, 3, 4]
        assert tasks[5].cancelled()
        assert peak == 2
        assert sorted(ran) == [0, 1, 2, 3, 4]
    finally:
        release.set()
        pool.close()


async def test_verify_and_make_credentials_run_in_named_pool_threads() -> None:
    pool = PasswordPool(workers=1)
    try:
        credentials = await pool.make_credentials("pencil")
        assert {c.hash_name for c in credentials} == {"SHA-1", "SHA-256", "SHA-512"}
        credential = credentials[0]
        assert await pool.verify("pencil", credential)
        assert not await pool.verify("wrong", credential)
        assert verify_password("pencil", credential)  # the same answer as in-thread
        name = await pool.run(lambda: threading.current_thread().name)
        assert name.startswith(THREAD_PREFIX)
        assert threading.current_thread().name != name
    finally:
        pool.close()


async def test_unusable_password_error_comes_through() -> None:
    pool = PasswordPool(workers=1)
    try:
        with pytest.raises(ValueError, match="empty"):
            await pool.make_credentials("")
    finally:
        pool.close()
