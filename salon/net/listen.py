"""Opening listening sockets. ``salon serve --workers N`` runs N processes that share each
port: the kernel spreads new connections over them (SO_REUSEPORT). A worker process sets
``share_ports`` before it starts; one process alone binds as usual."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

share_ports = False  # set once by a worker process of ``salon serve --workers``


async def listen(
    loop: asyncio.AbstractEventLoop,
    factory: Callable[[], asyncio.BaseProtocol],
    host: str,
    port: int,
    **options: Any,
) -> asyncio.Server:
    if share_ports:
        options["reuse_port"] = True
    return await loop.create_server(factory, host, port, **options)
