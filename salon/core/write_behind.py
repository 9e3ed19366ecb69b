"""Writes that must be on disk before a client hears its stanza was handled, but need not
delay the stanza's delivery.

Archiving a chat message (XEP-0313) writes two copies, the sender's and the recipient's,
each a commit. Done in line, delivery waits for both: in a login storm, while the writer
thread shares one core with the event loop, that was hundreds of milliseconds per message.
A module writes such a copy with :func:`write_behind` instead: during the handling of a
client's stanza (:func:`handled`, around the router's ``from_client``) the write starts at
once and the handling goes on to deliver; :func:`handled` then waits for every write left
behind before it returns. The client's stanza counts as handled (XEP-0198's ``h``) only
after that, so what the server acknowledged is still on disk after a crash. Outside a
client's stanza (a stanza from a remote server, a background task) the write is made in
line, as before.

The archive store answers a query only after the appends made before it are committed
(``SqlArchiveStore.drain``), so a client that got a message finds it in its archive.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Coroutine
from contextvars import ContextVar
from typing import Any

__all__ = ["handled", "write_behind"]

_PENDING: ContextVar[list[asyncio.Future[Any]] | None] = ContextVar(
    "salon_write_behind", default=None
)
_RUNNING: set[asyncio.Future[Any]] = set()  # strong references until each write ends


async def write_behind(write: Coroutine[Any, Any, Any]) -> None:
    """Start ``write``; inside :func:`handled` return at once (it waits), else wait here."""
    pending = _PENDING.get()
    if pending is None:
        await write
        return
    task = asyncio.ensure_future(write)
    _RUNNING.add(task)
    task.add_done_callback(_RUNNING.discard)
    pending.append(task)


async def handled(work: Awaitable[None]) -> None:
    """Run ``work``, the handling of one client stanza; then wait for the writes it left
    behind. A failed write raises here (after all of them ended), as it would have in line."""
    pending: list[asyncio.Future[Any]] = []
    token = _PENDING.set(pending)
    try:
        await work
    finally:
        _PENDING.reset(token)
        if pending:
            results = await asyncio.gather(*pending, return_exceptions=True)
            for result in results:
                if isinstance(result, BaseException):
                    raise result
