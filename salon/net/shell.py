"""The transport-independent half of a client connection's IO shell, for WebSocket and BOSH.

It carries out a ``C2SStream``'s actions exactly as the TCP shell (``salon/net/c2s.py``) does:
account lookups, pre-auth iqs, binding through ``server.bind``, the auth-failure delay, and
the ordered hand-over of stanzas to ``server.router.from_client``. A subclass supplies only
how framed bytes are written and how the transport is closed, so a web session is an
ordinary session with no feature code of its own.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING, cast

from salon.core.session import C2SSession
from salon.errors import StanzaError, StanzaErrorCondition, StreamErrorCondition
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
from salon.xml.parser import ParserEvent
from salon.xml.stanza import error_reply

if TYPE_CHECKING:
    from salon.core.server import Server

log = logging.getLogger(__name__)

MAX_INBOX = 256  # stanzas waiting for the router before the shell stops taking input


class StreamShell:
    """Drives one ``C2SStream``; subclasses implement :meth:`_write` and :meth:`_close`."""

    __slots__ = (
        "_closing",
        "_deferred",
        "_deferred_handle",
        "_inbox",
        "_room",
        "_worker",
        "connected_at",
        "last_activity",
        "peer",
        "server",
        "session",
        "stream",
    )

    def __init__(self, server: Server, stream: C2SStream, peer: str) -> None:
        self.server = server
        self.stream = stream
        self.peer = peer
        self.session: C2SSession | None = None
        self._inbox: deque[Element] = deque()
        self._worker: asyncio.Task[None] | None = None
        self._deferred: list[StreamAction] = []
        self._deferred_handle: asyncio.TimerHandle | None = None
        self._closing = False
        self._room = asyncio.Event()  # set while the inbox has room for more input
        self._room.set()
        loop = asyncio.get_running_loop()
        self.connected_at = self.last_activity = loop.time()

    # ------------------------------------------------------------------ transport side
    def _write(self, data: bytes) -> None:
        """Write one framed unit (a WebSocket message, a piece of the next BOSH body)."""
        raise NotImplementedError

    def _close(self, error: StreamErrorCondition | None) -> None:
        """The stream ended (``error`` is the stream error sent, if any): close the transport
        once what was written is out."""
        raise NotImplementedError

    def receive_data(self, data: bytes) -> None:
        self.last_activity = asyncio.get_running_loop().time()
        self._execute(self.stream.receive_data(data))

    def receive_events(self, events: Iterable[ParserEvent]) -> None:
        self.last_activity = asyncio.get_running_loop().time()
        self._execute(self.stream.receive_events(events))

    async def wait_for_room(self) -> None:
        """Backpressure: wait while the router is behind on this connection's stanzas."""
        await self._room.wait()

    def transport_lost(self, reason: str | None = None) -> None:
        """The transport is gone: forget the connection and end its session."""
        connections = self._connections()
        if self._closing and self not in connections:
            return
        self._closing = True
        connections.discard(self)
        if self._deferred_handle is not None:
            self._deferred_handle.cancel()
        self._room.set()
        session = self.session  # kept: stanzas already received are still routed
        if session is not None:
            session.is_closed = True
            self.server.spawn(self.server.unbind(session, reason))

    def _connections(self) -> set[object]:
        """The server's live connections (typed for TCP ones; web ones join them)."""
        return cast("set[object]", self.server.connections)

    def register(self) -> None:
        """Join the server's connections: shutdown and the idle sweep reach this one too."""
        self._connections().add(self)

    # ------------------------------------------------------------------ Connection API
    def send_stanza(self, stanza: Element) -> None:
        if not self._closing:
            self._write(self.stream.framing.element(stanza))

    def close_stream(
        self, condition: StreamErrorCondition | None = None, text: str | None = None
    ) -> None:
        if condition is not None:
            # Stanzas still queued arrived after the fault (RFC 6120 §4.9.1.1).
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
                if not self._closing:
                    self._write(action.data)
            elif isinstance(action, StanzaReceived):
                self._enqueue(action.stanza)
            elif isinstance(action, DelayedSend):
                self._delay(action)
            elif isinstance(action, CloseConnection):
                if not self._closing:
                    self._closing = True
                    self._close(action.error)
            elif isinstance(action, LookupAccount):
                self.server.spawn(self._lookup(action.username))
            elif isinstance(action, Authenticated):
                log.info("%s authenticated as %s@%s", self.peer, action.username, self.stream.host)
            elif isinstance(action, BindRequested):
                self.server.spawn(self._bind(action))
            elif isinstance(action, NonzaReceived):
                self.server.spawn(self.server.nonza(self, action.element))  # type: ignore[arg-type]
            elif isinstance(action, PreAuthIq):
                self.server.spawn(self._preauth_iq(action.stanza))
            elif isinstance(action, StartTls):  # never offered: the framing cannot upgrade
                self.close_stream(StreamErrorCondition.INTERNAL_SERVER_ERROR)

    def _delay(self, action: DelayedSend) -> None:
        """Hold this and every later action back (slows password guessing)."""
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
        address = self.peer.rpartition(":")[0]
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
                self,  # type: ignore[arg-type]
                self.stream.username,
                self.stream.host,
                request.resource,
            )
        except StanzaError as err:
            self._execute(self.stream.bind_result(request.iq_id, None, err))
            return
        except Exception:
            log.exception("bind failed")
            failure = StanzaError(StanzaErrorCondition.INTERNAL_SERVER_ERROR)
            self._execute(self.stream.bind_result(request.iq_id, None, failure))
            return
        if self._closing:
            # The transport went away while binding: the session must not outlive it.
            session.is_closed = True
            self.session = session
            await self.server.unbind(session, "gone while binding")
            return
        self.session = session
        self._execute(self.stream.bind_result(request.iq_id, session.jid))

    # ------------------------------------------------------------------ inbound stanzas
    def _enqueue(self, stanza: Element) -> None:
        self._inbox.append(stanza)
        if len(self._inbox) >= MAX_INBOX:
            self._room.clear()
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
                if len(self._inbox) < MAX_INBOX // 2:
                    self._room.set()
        finally:
            self._room.set()
            self._worker = None
