"""The TCP shell of a client connection: an asyncio Protocol driving a ``C2SStream``.

The stream's actions (lookups, binding, the auth-failure delay, the ordered hand-over of
stanzas to the router) are carried out by the :class:`~salon.net.shell.ClientShell` every
client transport shares; the TCP side (the transport, write batching, STARTTLS, backpressure
by pausing the socket) is :class:`~salon.net.shell.TcpShell`'s. What is left here is what
only a client's TCP connection does. Every protocol decision is the stream state machine's
or the core's.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from salon.errors import StreamErrorCondition
from salon.logs import CONNECTION
from salon.namespaces import NS_CLIENT
from salon.net.limits import ReadShaper
from salon.net.login_pacing import LoginPacer
from salon.net.shell import ClientShell, TcpShell
from salon.stream.c2s import C2SStream
from salon.xml.element import Element
from salon.xml.serializer import serialize

if TYPE_CHECKING:
    from salon.app import App

log = logging.getLogger(__name__)


class C2SConnection(TcpShell, ClientShell):
    __slots__ = ("_held_data", "_out", "_shaper", "direct_tls", "transport")

    stream: C2SStream

    def __init__(self, server: App, *, direct_tls: bool = False) -> None:
        ClientShell.__init__(self, server, C2SStream(server.c2s_policy, is_secure=direct_tls), "")
        self.direct_tls = direct_tls
        self.transport: asyncio.Transport | None = None
        self._out: list[bytes] = []
        self._held_data: list[bytes] | None = None  # bytes that arrive while TLS is starting
        self._shaper: ReadShaper | None = None

    # ------------------------------------------------------------------ asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        token = CONNECTION.set(self.conn_id)
        try:
            self._made(transport)
        finally:
            CONNECTION.reset(token)

    def _made(self, transport: asyncio.BaseTransport) -> None:
        self._attach(transport, self.server.settings.c2s.max_send_queue)
        refused = self.admit()
        if refused is not None:
            self.register()
            self.close_stream(StreamErrorCondition.POLICY_VIOLATION, refused)
            return
        limits = self.server.limits
        if limits is not None:
            self._shaper = limits.read_shaper("c2s", self._pause_input, self._resume_input)
        if self.direct_tls:
            sslobj = transport.get_extra_info("ssl_object")
            self.stream.channel_bindings = self.server.tls.channel_bindings(sslobj)
        self.register()

    def connection_lost(self, exc: Exception | None) -> None:
        token = CONNECTION.set(self.conn_id)
        try:
            if self._shaper is not None:
                self._shaper.cancel()
            self._release_address()  # (transport_lost may return early for a closed stream)
            self.transport_lost(None if exc is None else str(exc))
        finally:
            CONNECTION.reset(token)

    def _login_pacer(self) -> LoginPacer | None:
        """While it logs in, and while bytes it sent then still wait, its input is paced."""
        pacer = self.server.login_pacer
        if pacer is None or (self.session is not None and not pacer.holds(self)):
            return None
        return pacer

    # ------------------------------------------------------------------ Connection API
    def send_stanza(self, stanza: Element) -> None:
        self._metrics.stanza_out(stanza.tag)
        self._write(serialize(stanza, NS_CLIENT))  # the hot path: _write checks _closing

    # ------------------------------------------------------------------ STARTTLS
    def _start_tls_requested(self) -> None:
        self.server.spawn(self._start_tls())

    async def _start_tls(self) -> None:
        assert self.stream.host is not None
        ctx = self.server.tls.context_for(self.stream.host)
        if ctx is None:
            self.close_stream(StreamErrorCondition.INTERNAL_SERVER_ERROR)
            return
        if not await self._handshake(ctx, server_side=True):
            return
        assert self.transport is not None
        sslobj = self.transport.get_extra_info("ssl_object")
        self._execute(self.stream.tls_established(self.server.tls.channel_bindings(sslobj)))
        self._release_held()
