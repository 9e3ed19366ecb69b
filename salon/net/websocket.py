"""XMPP over WebSocket (RFC 7395): one ``C2SStream`` per WebSocket, framed by
``WebSocketFraming``, carried out by the shared ``StreamShell``.

Every element travels in a text message of its own; the shell's writer task keeps them in
order and bounded (``c2s.max_send_queue``), as the TCP shell does for a slow reader.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from aiohttp import WSMsgType, web

from salon.errors import StreamErrorCondition
from salon.logs import CONNECTION
from salon.net.shell import StreamShell
from salon.stream.c2s import C2SStream
from salon.stream.framing import WebSocketFraming, websocket_redirect

if TYPE_CHECKING:
    from salon.app import App

log = logging.getLogger(__name__)

SUBPROTOCOL = "xmpp"  # RFC 7395 §3.1, registered with IANA
CLOSE_TIMEOUT = 2.0  # seconds to wait for the client's closing handshake
FRAME_OVERHEAD = 4096  # a message may exceed the stanza limit by this before aiohttp cuts it


def offers_xmpp(request: web.Request) -> bool:
    """Whether the handshake asks for the xmpp subprotocol."""
    offered = request.headers.getall("Sec-WebSocket-Protocol", [])
    return any(SUBPROTOCOL in (p.strip() for p in value.split(",")) for value in offered)


async def serve_websocket(
    server: App, request: web.Request, *, peer: str, is_secure: bool
) -> web.StreamResponse:
    """Handle one WebSocket request from the handshake to the end of its stream."""
    if not offers_xmpp(request):
        return web.Response(
            status=400, text="XMPP over WebSocket needs the 'xmpp' subprotocol (RFC 7395).\n"
        )
    limit = server.settings.c2s.max_stanza_size + FRAME_OVERHEAD
    ws = web.WebSocketResponse(protocols=(SUBPROTOCOL,), max_msg_size=limit, timeout=CLOSE_TIMEOUT)
    await ws.prepare(request)
    redirect = server.settings.http.see_other_uri
    if redirect:
        await _redirect(ws, redirect)
        return ws
    conn = WebSocketConnection(server, ws, peer=peer, is_secure=is_secure)
    refused = conn.admit()
    if refused is not None:
        # Over a per-IP limit: the stream opens only to end with <policy-violation/>, the
        # answer a TCP client gets (RFC 7395 §3.6: a stream error, then <close/>).
        conn.close_stream(StreamErrorCondition.POLICY_VIOLATION, refused)
    await conn.run()
    return ws


async def _redirect(ws: web.WebSocketResponse, uri: str) -> None:
    """RFC 7395 §3.6.1: answer the client's <open/> with <close see-other-uri='…'/>."""
    with contextlib.suppress(TimeoutError):
        await ws.receive(timeout=CLOSE_TIMEOUT * 5)
    if not ws.closed:
        await ws.send_str(websocket_redirect(uri).decode())
        await ws.close()


class WebSocketConnection(StreamShell):
    """The ``Connection`` of a session bound over a WebSocket."""

    __slots__ = ("_queue", "_queued_bytes", "_writer", "ws")

    def __init__(
        self, server: App, ws: web.WebSocketResponse, *, peer: str, is_secure: bool
    ) -> None:
        policy = server.c2s_policy
        framing = WebSocketFraming(
            max_stanza_bytes=policy.max_stanza_size, max_depth=policy.max_depth
        )
        stream = C2SStream(policy, is_secure=is_secure, framing=framing)
        super().__init__(server, stream, peer, "ws")
        # The request's task serves only this WebSocket: what it does (and the writer task
        # started here, which copies the context) is logged with this connection's id.
        CONNECTION.set(self.conn_id)
        log.info("WebSocket connection from %s", peer)
        self.ws = ws
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._queued_bytes = 0
        self._writer = asyncio.get_running_loop().create_task(self._write_loop())

    async def run(self) -> None:
        """Read messages until the client or the stream ends the WebSocket."""
        self.register()
        reason: str | None = None
        try:
            async for msg in self.ws:
                if msg.type is WSMsgType.TEXT:
                    self.receive_data(msg.data.encode())
                elif msg.type is WSMsgType.BINARY:
                    self.receive_data(msg.data)  # COMPAT: text is required; take it anyway
                elif msg.type is WSMsgType.ERROR:
                    reason = str(self.ws.exception())
                    break
                if self._closing:
                    break
                await self.wait_for_room()
        finally:
            if not self._closing:
                # The WebSocket ended without <close/>: the stream is gone all the same.
                reason = reason or "WebSocket closed"
            self.transport_lost(reason)
            self._queue.put_nowait(None)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._writer, CLOSE_TIMEOUT * 2)

    # ------------------------------------------------------------------ StreamShell
    def _write(self, data: bytes) -> None:
        self._queued_bytes += len(data)
        if self._queued_bytes > self.server.settings.c2s.max_send_queue:
            log.info("closing %s: send queue over its limit", self.peer)
            self._closing = True
            self._writer.cancel()
            self.server.spawn(self.ws.close(code=1008, message=b"send queue over its limit"))
            return
        self._queue.put_nowait(data)

    def _close(self, error: StreamErrorCondition | None) -> None:
        self._queue.put_nowait(None)  # the writer closes the WebSocket after what is queued

    async def _write_loop(self) -> None:
        try:
            while (data := await self._queue.get()) is not None:
                self._queued_bytes -= len(data)
                if self.ws.closed:
                    continue
                await self.ws.send_str(data.decode())
        except (ConnectionError, RuntimeError) as exc:
            log.debug("writing to %s failed: %s", self.peer, exc)
        finally:
            if not self.ws.closed:
                with contextlib.suppress(Exception):
                    await self.ws.close()
