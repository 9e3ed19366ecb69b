"""The SOCKS5 relay behind the XEP-0065 proxy module: a listener that pairs connections.

Each client connects, completes the SOCKS5 handshake (``salon.stream.socks5``) naming a
destination hash, and then waits, not read from, until the proxy module activates the hash
(``BytestreamRelay.activate``). Two connections with the same hash form one transfer; a third
is refused. After activation every byte read from one side is written to the other.

Bounds:
- back-pressure: when one side's write buffer passes ``buffer_size`` the relay stops reading
  from the other side until it drains, so a slow reader costs at most about ``buffer_size``
  per direction;
- ``max_bytes`` per transfer (both directions together): past it both sides are closed;
- ``max_pending`` connections not yet activated; past it new ones are refused;
- time, on the injected clock: a connection that is not activated within
  ``activation_timeout`` seconds is closed, and an active transfer silent for
  ``idle_timeout`` seconds is closed.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from salon.core.bytestreams import Activation, StreamHost
from salon.core.clock import Clock, Timer
from salon.net.listen import listen
from salon.stream.socks5 import Reply, Socks5Error, Socks5Handshake, reply

if TYPE_CHECKING:
    from salon.config import Socks5Settings

log = logging.getLogger(__name__)


class Transfer:
    """Two paired connections and the bytes relayed between them."""

    __slots__ = ("active", "dst_addr", "last_activity", "relayed", "sides", "timer")

    def __init__(self, dst_addr: str) -> None:
        self.dst_addr = dst_addr
        self.sides: list[RelayConnection] = []
        self.active = False
        self.relayed = 0
        self.last_activity = 0.0
        self.timer: Timer | None = None

    def other(self, conn: RelayConnection) -> RelayConnection | None:
        for side in self.sides:
            if side is not conn:
                return side
        return None


class Socks5Relay:
    """The listener and the table of transfers (implements ``BytestreamRelay``)."""

    def __init__(self, settings: Socks5Settings, clock: Clock) -> None:
        self.settings = settings
        self.clock = clock
        self.transfers: dict[str, Transfer] = {}
        self.connections: set[RelayConnection] = set()
        self.servers: list[asyncio.Server] = []

    async def start(self) -> list[asyncio.Server]:
        loop = asyncio.get_running_loop()
        self.servers = [
            await listen(loop, lambda: RelayConnection(self), host, self.settings.port)
            for host in self.settings.interfaces
        ]
        return self.servers

    def stop(self) -> None:
        for conn in list(self.connections):
            conn.close()
        for transfer in self.transfers.values():
            if transfer.timer is not None:
                transfer.timer.cancel()
        self.transfers.clear()

    # ------------------------------------------------------------------ BytestreamRelay
    def streamhosts(self) -> list[StreamHost]:
        if not self.servers or not self.servers[0].sockets:
            return []
        host, port = self.servers[0].sockets[0].getsockname()[:2]
        return [StreamHost(self.settings.public_host or host, self.settings.public_port or port)]

    def activate(self, dst_addr: str) -> Activation:
        transfer = self.transfers.get(dst_addr)
        if transfer is None:
            return Activation.UNKNOWN
        if transfer.active:
            return Activation.ALREADY_ACTIVE
        if len(transfer.sides) < 2:
            return Activation.ONE_SIDE
        transfer.active = True
        transfer.last_activity = self.clock.monotonic()
        self._arm_idle(transfer, self.settings.idle_timeout)
        for side in transfer.sides:
            side.start_relaying()
        return Activation.ACTIVATED

    # ------------------------------------------------------------------ connections
    def requested(self, conn: RelayConnection, dst_addr: str) -> Reply:
        """A connection finished its handshake naming ``dst_addr``: pair it."""
        transfer = self.transfers.get(dst_addr)
        if transfer is None:
            pending = sum(1 for t in self.transfers.values() if not t.active)
            if pending >= self.settings.max_pending:
                return Reply.CONNECTION_REFUSED
            transfer = Transfer(dst_addr)
            self.transfers[dst_addr] = transfer
            transfer.timer = self.clock.call_later(
                self.settings.activation_timeout, lambda: self._not_activated(transfer)
            )
        elif transfer.active or len(transfer.sides) >= 2:
            return Reply.NOT_ALLOWED
        transfer.sides.append(conn)
        conn.transfer = transfer
        return Reply.SUCCEEDED

    def gone(self, conn: RelayConnection) -> None:
        self.connections.discard(conn)
        transfer = conn.transfer
        if transfer is None:
            return
        conn.transfer = None
        if conn in transfer.sides:
            transfer.sides.remove(conn)
        other = transfer.other(conn)
        if transfer.active and other is not None:
            other.close_after_flush()  # the stream ends when either side closes
        if not transfer.sides and self.transfers.get(transfer.dst_addr) is transfer:
            del self.transfers[transfer.dst_addr]
            if transfer.timer is not None:
                transfer.timer.cancel()

    def _not_activated(self, transfer: Transfer) -> None:
        if transfer.active:
            return
        log.info("SOCKS5 transfer %s not activated in time", transfer.dst_addr[:8])
        self._end(transfer)

    def _arm_idle(self, transfer: Transfer, after: float) -> None:
        transfer.timer = self.clock.call_later(after, lambda: self._idle_check(transfer))

    def _idle_check(self, transfer: Transfer) -> None:
        if not transfer.sides:
            return
        silent = self.clock.monotonic() - transfer.last_activity
        if silent >= self.settings.idle_timeout:
            log.info("SOCKS5 transfer %s idle, closed", transfer.dst_addr[:8])
            self._end(transfer)
        else:
            self._arm_idle(transfer, self.settings.idle_timeout - silent)

    def _end(self, transfer: Transfer) -> None:
        for side in list(transfer.sides):
            side.close()
        self.transfers.pop(transfer.dst_addr, None)

    def count(self, transfer: Transfer, size: int) -> bool:
        """Count relayed bytes; False once the transfer passes its byte cap."""
        transfer.relayed += size
        transfer.last_activity = self.clock.monotonic()
        return transfer.relayed <= self.settings.max_bytes


class RelayConnection(asyncio.Protocol):
    """One client of the relay: handshake first, then (once active) a pipe to its peer."""

    def __init__(self, relay: Socks5Relay) -> None:
        self.relay = relay
        self.handshake: Socks5Handshake | None = Socks5Handshake()
        self.transport: asyncio.Transport | None = None
        self.transfer: Transfer | None = None
        self.relaying = False
        self.peer_paused = False  # the peer's write buffer is full: we stopped reading
        self._handshake_timer: Timer | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.relay.connections.add(self)
        size = self.relay.settings.buffer_size
        transport.set_write_buffer_limits(high=size, low=size // 4)
        # Not activated yet: the handshake must finish within the activation timeout too.
        self._handshake_timer = self.relay.clock.call_later(
            self.relay.settings.activation_timeout, self._handshake_expired
        )

    def _handshake_expired(self) -> None:
        if self.transfer is None:
            self.close()

    def data_received(self, data: bytes) -> None:
        if self.handshake is not None:
            self._handshake_data(data)
            return
        transfer = self.transfer
        other = transfer.other(self) if transfer is not None else None
        if transfer is None or not self.relaying or other is None or other.transport is None:
            self.close()  # data before activation, or after the peer left
            return
        if not self.relay.count(transfer, len(data)):
            log.info("SOCKS5 transfer %s passed its byte cap", transfer.dst_addr[:8])
            self.relay._end(transfer)
            return
        other.transport.write(data)

    def _handshake_data(self, data: bytes) -> None:
        assert self.handshake is not None and self.transport is not None
        try:
            out, request = self.handshake.feed(data)
        except Socks5Error as exc:
            log.debug("SOCKS5 handshake failed: %s", exc)
            if exc.reply:
                self.transport.write(exc.reply)
            self.close()
            return
        if out:
            self.transport.write(out)
        if request is None:
            return
        self.handshake = None
        if self._handshake_timer is not None:
            self._handshake_timer.cancel()
            self._handshake_timer = None
        code = self.relay.requested(self, request.address)
        self.transport.write(reply(code, request.address, request.port))
        if code is not Reply.SUCCEEDED:
            self.close()
            return
        self.transport.pause_reading()  # nothing is read before activation (XEP-0065 §6.3.5)

    def start_relaying(self) -> None:
        self.relaying = True
        if self.transport is not None and not self.peer_paused:
            self.transport.resume_reading()

    # flow control: our write buffer is full → stop reading from the peer, and back
    def pause_writing(self) -> None:
        other = self.transfer.other(self) if self.transfer is not None else None
        if other is not None and other.transport is not None:
            other.peer_paused = True
            other.transport.pause_reading()

    def resume_writing(self) -> None:
        other = self.transfer.other(self) if self.transfer is not None else None
        if other is not None and other.transport is not None:
            other.peer_paused = False
            if other.relaying:
                other.transport.resume_reading()

    def close_after_flush(self) -> None:
        if self.transport is not None:
            self.transport.close()  # asyncio flushes the write buffer before closing

    def close(self) -> None:
        if self.transport is None:
            return
        if self.relaying:
            self.transport.abort()  # a relay cut short: drop what is still buffered
        else:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._handshake_timer is not None:
            self._handshake_timer.cancel()
        self.relay.gone(self)
        self.transport = None
