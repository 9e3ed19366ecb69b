"""The IO shell of a client connection: an asyncio Protocol driving a ``C2SStream``.

It owns the transport, TLS upgrades, write batching and backpressure, the auth-failure
delay, and the ordered hand-over of stanzas to the router. Every protocol decision is the
stream state machine's or the core's.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections import deque
from typing import TYPE_CHECKING, cast

from salon.core.session import C2SSession
from salon.errors import StanzaError, StanzaErrorCondition, StreamErrorCondition
from salon.namespaces import NS_CLIENT
from salon.stream.c2s import C2SStream
from salon.stream.events import (
    Authenticated,
    BindRequested,
    CloseConnection,
    DelayedSend,
    LookupAccount,
    NonzaReceived,
    PreAuthIq,
    Send,
    StanzaReceived,
    StartTls,
    StreamAction,
)
from salon.xml.element import Element
from salon.xml.serializer import serialize
from salon.xml.stanza import error_reply

if TYPE_CHECKING:
    from salon.core.server import Server

log = logging.getLogger(__name__)

MAX_INBOX = 256  # stanzas waiting for the router before we stop reading this socket


class C2SConnection(asyncio.Protocol):
    __slots__ = (
        "_closing",
        "_deferred",
        "_deferred_handle",
        "_held_data",
        "_inbox",
        "_out",
        "_reading_paused",
        "_worker",
        "connected_at",
        "direct_tls",
        "last_activity",
        "peer",
        "server",
        "session",
        "stream",
        "transport",
    )

    def __init__(self, server: Server, *, direct_tls: bool = False) -> None:
        self.server = server
        self.direct_tls = direct_tls
        self.transport: asyncio.Transport | None = None
        self.stream = C2SStream(server.c2s_policy, is_secure=direct_tls)
        self.session: C2SSession | None = None
        self.peer = ""
        self._out: list[bytes] = []
        self._inbox: deque[Element] = deque()
        self._worker: asyncio.Task[None] | None = None
        self._deferred: list[StreamAction] = []
        self._deferred_handle: asyncio.TimerHandle | None = None
        self._closing = False
        self._reading_paused = False
        self._held_data: list[bytes] | None = None  # bytes that arrive while TLS is starting
        loop = asyncio.get_running_loop()
        self.connected_at = self.last_activity = loop.time()

    # ------------------------------------------------------------------ asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self.transport.set_write_buffer_limits(high=self.server.settings.c2s.max_send_queue)
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            # Small writes (handshake records, short stanzas) must not wait for delayed ACKs.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.direct_tls:
            sslobj = transport.get_extra_info("ssl_object")
            self.stream.channel_bindings = self.server.tls.channel_bindings(sslobj)
        self.server.connections.add(self)

    def data_received(self, data: bytes) -> None:
        self.last_activity = asyncio.get_running_loop().time()
        if self._held_data is not None:
            # The TLS handshake finished but start_tls() has not returned to us yet.
            self._held_data.append(data)
            return
        self._execute(self.stream.receive_data(data))

    def eof_received(self) -> bool | None:
        return None  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        self.server.connections.discard(self)
        if self._deferred_handle is not None:
            self._deferred_handle.cancel()
        session = self.session  # kept: stanzas already received are still routed
        if session is not None:
            session.is_closed = True
            self.server.spawn(self.server.unbind(session, None if exc is None else str(exc)))

    def pause_writing(self) -> None:
        # The peer reads slower than we write and the buffer passed max_send_queue.
        log.info("closing %s: send queue over its limit", self.peer)
        if self.transport is not None:
            self.transport.abort()

    def resume_writing(self) -> None:
        pass

    # ------------------------------------------------------------------ Connection API
    def send_stanza(self, stanza: Element) -> None:
        self._write(serialize(stanza, NS_CLIENT))

    def close_stream(
        self, condition: StreamErrorCondition | None = None, text: str | None = None
    ) -> None:
        if condition is not None:
            # The core ended the stream with an error (invalid-from, conflict, ...): stanzas
            # still queued arrived after the fault and are not processed (RFC 6120 §4.9.1.1).
            self._inbox.clear()
        self._execute(self.stream.close(condition, text))

    def idle_seconds(self) -> float:
        return asyncio.get_running_loop().time() - self.last_activity

    # ------------------------------------------------------------------ actions
    def _execute(self, actions: list[StreamAction]) -> None:
        for action in actions:
            if self._deferred and not isinstance(action, DelayedSend):
                self._deferred.append(action)
                continue
            if isinstance(action, Send):
                self._write(action.data)
            elif isinstance(action, StanzaReceived):
                self._enqueue(action.stanza)
            elif isinstance(action, DelayedSend):
                self._delay(action)
            elif isinstance(action, CloseConnection):
                self._close()
            elif isinstance(action, StartTls):
                self.server.spawn(self._start_tls())
            elif isinstance(action, LookupAccount):
                self.server.spawn(self._lookup(action.username))
            elif isinstance(action, Authenticated):
                log.info("%s authenticated as %s@%s", self.peer, action.username, self.stream.host)
            elif isinstance(action, BindRequested):
                self.server.spawn(self._bind(action))
            elif isinstance(action, NonzaReceived):
                self.server.spawn(self.server.nonza(self, action.element))
            elif isinstance(action, PreAuthIq):
                self.server.spawn(self._preauth_iq(action.stanza))

    def _write(self, data: bytes) -> None:
        if self.transport is None or self._closing:
            return
        if not self._out:
            asyncio.get_running_loop().call_soon(self._flush)
        self._out.append(data)

    def _flush(self) -> None:
        if self._out and self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"".join(self._out))
        self._out.clear()

    def _close(self) -> None:
        self._flush()
        self._closing = True
        if self.transport is not None:
            self.transport.close()

    def _delay(self, action: DelayedSend) -> None:
        """Hold this and every later action back (slows password guessing for this
        connection only: the event loop keeps serving everyone else)."""
        self._deferred.append(Send(action.data))
        if self._deferred_handle is None:
            base = self.server.settings.c2s.auth_failure_delay
            delay = base * (2 ** max(action.attempt - 1, 0))
            loop = asyncio.get_running_loop()
            self._deferred_handle = loop.call_later(delay, self._release_deferred)

    def _release_deferred(self) -> None:
        self._deferred_handle = None
        actions, self._deferred = self._deferred, []
        self._execute(actions)

    # ------------------------------------------------------------------ async steps
    async def _start_tls(self) -> None:
        assert self.transport is not None and self.stream.host is not None
        ctx = self.server.tls.context_for(self.stream.host)
        if ctx is None:
            self.close_stream(StreamErrorCondition.INTERNAL_SERVER_ERROR)
            return
        self._flush()
        loop = asyncio.get_running_loop()
        self._held_data = []
        try:
            transport = await loop.start_tls(self.transport, self, ctx, server_side=True)
        except (TimeoutError, OSError, ConnectionError) as exc:
            log.info("TLS handshake with %s failed: %s", self.peer, exc)
            if self.transport is not None:
                self.transport.abort()
            return
        if transport is None:
            return
        self.transport = transport
        sslobj = transport.get_extra_info("ssl_object")
        self._execute(self.stream.tls_established(self.server.tls.channel_bindings(sslobj)))
        held, self._held_data = self._held_data or [], None
        for data in held:
            self.data_received(data)

    async def _lookup(self, username: str) -> None:
        assert self.stream.host is not None
        try:
            account = await self.server.storage.accounts.get(self.stream.host, username)
        except Exception:
            log.exception("account lookup failed")
            account = None
        self._execute(self.stream.account_loaded(account))

    async def _preauth_iq(self, stanza: Element) -> None:
        assert self.stream.host is not None
        address = self.peer.rpartition(":")[0]  # "ip:port", IPv6 included
        try:
            reply = await self.server.preauth_iq(self.stream.host, stanza, address)
        except Exception:
            log.exception("pre-auth iq failed")
            reply = error_reply(stanza, StanzaErrorCondition.INTERNAL_SERVER_ERROR)
        self._execute(self.stream.preauth_result(reply))

    async def _bind(self, request: BindRequested) -> None:
        assert self.stream.host is not None and self.stream.username is not None
        try:
            session = await self.server.bind(
                self, self.stream.username, self.stream.host, request.resource
            )
        except StanzaError as err:
            self._execute(self.stream.bind_result(request.iq_id, None, err))
            return
        except Exception:
            log.exception("bind failed")
            err = StanzaError(StanzaErrorCondition.INTERNAL_SERVER_ERROR)
            self._execute(self.stream.bind_result(request.iq_id, None, err))
            return
        self.session = session
        self._execute(self.stream.bind_result(request.iq_id, session.jid))

    # ------------------------------------------------------------------ inbound stanzas
    def _enqueue(self, stanza: Element) -> None:
        self._inbox.append(stanza)
        if len(self._inbox) >= MAX_INBOX and not self._reading_paused and self.transport:
            self._reading_paused = True
            self.transport.pause_reading()
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        try:
            while self._inbox:
                stanza = self._inbox.popleft()
                session = self.session
                if session is None:
                    self._inbox.clear()
                    break
                try:
                    await self.server.router.from_client(session, stanza)
                except Exception:
                    log.exception("routing a stanza from %s failed", session.jid)
                if self._reading_paused and len(self._inbox) < MAX_INBOX // 2:
                    self._reading_paused = False
                    if self.transport is not None and not self._closing:
                        self.transport.resume_reading()
        finally:
            self._worker = None
