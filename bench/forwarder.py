"""The ceiling for any Python server here: a uvloop TCP server that parses nothing.

A client opens with a 16-byte header, its own id and its partner's id as two 8-digit numbers;
from then on every byte it sends is written, unchanged, to its partner's connection. That is a
read and a write per chunk: whatever an XMPP server in Python does on top of that (parsing,
routing, serialising) can only make it slower.

    python -m bench.forwarder --port 45222
"""

from __future__ import annotations

import argparse
import asyncio
import signal

HEADER = 16


class Hub:
    def __init__(self) -> None:
        self.by_id: dict[int, Link] = {}


class Link(asyncio.Protocol):
    __slots__ = ("head", "hub", "partner", "partner_id", "transport")

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.transport: asyncio.Transport | None = None
        self.partner_id = -1
        self.partner: asyncio.Transport | None = None
        self.head = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        partner = self.partner
        if partner is not None:
            partner.write(data)
            return
        if self.partner_id < 0:
            self.head += data
            if len(self.head) < HEADER:
                return
            own, self.partner_id = int(self.head[:8]), int(self.head[8:16])
            self.hub.by_id[own] = self
            data, self.head = self.head[HEADER:], b""
        link = self.hub.by_id.get(self.partner_id)
        if link is None or link.transport is None:
            return  # partner not connected yet: dropped (the generator connects everyone first)
        self.partner = link.transport
        if data:
            self.partner.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        for key, link in list(self.hub.by_id.items()):
            if link is self:
                del self.hub.by_id[key]
            elif link.partner is self.transport:
                link.partner = None


async def serve(host: str, port: int) -> None:
    hub = Hub()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Link(hub), host, port, backlog=4096)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"forwarding on {host}:{port}", flush=True)
    await stop.wait()
    server.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=45222)
    args = parser.parse_args()
    import uvloop

    uvloop.install()
    asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
