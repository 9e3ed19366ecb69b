"""The IO shells of Salon's connections: one implementation of what a stream asks for.

* :class:`ClientShell` carries out a ``C2SStream``'s actions for every client transport
  (TCP in ``salon/net/c2s.py``, WebSocket, BOSH): account lookups, pre-auth iqs, binding
  through ``server.core.bind``, the auth-failure delay, the ordered hand-over of stanzas to
  ``server.core.router.from_client`` through a bounded inbox (nonzas such as XEP-0198's
  ``<r/>`` travel in the same inbox, so they are answered in order with the stanzas), and
  telling the core when the transport is lost (it unbinds the session, or a module keeps it
  hibernated for an XEP-0198 resume on another connection). A transport supplies only how
  bytes are written, how it closes, and how it stops and resumes taking input, so every
  session is an ordinary session with no feature code of its own.
* :class:`StreamShell` is that shell for WebSocket and BOSH, whose readers wait for room in
  the inbox (:meth:`StreamShell.wait_for_room`).
* :class:`TcpShell` is what a TCP connection adds, for clients and servers
  (``salon/net/s2s.py``) alike: the asyncio transport, writes batched into one per loop
  iteration, STARTTLS with the bytes that arrive meanwhile held, ``TCP_NODELAY``, pausing
  the socket for backpressure and dropping a peer that does not read.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections import deque
from collections.abc import Coroutine, Iterable
from typing import TYPE_CHECKING, Any, cast

from salon.core.clock import Clock, Timer
from salon.core.session import C2SSession
from salon.core.write_behind import handled
from salon.errors import StanzaError, StanzaErrorCondition, StreamErrorCondition
from salon.jid import JID
from salon.logs import CONNECTION, new_connection_id
from salon.namespaces import NS_CLIENT
from salon.net.limits import ReadShaper, address_of
from salon.net.login_pacing import LoginPacer
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
    StanzaAnswered,
    StanzaReceived,
    StartTls,
    StreamAction,
    VerifyPassword,
)
from salon.xml.element import Element
from salon.xml.parser import ParserEvent
from salon.xml.stanza import error_reply

if TYPE_CHECKING:
    from salon.app import App

log = logging.getLogger(__name__)

MAX_INBOX = 256  # stanzas waiting for the router before a connection stops taking input


class ClientShell:
    """Drives one ``C2SStream``; a transport implements :meth:`_write`, :meth:`_close`,
    :meth:`_pause_input` and :meth:`_resume_input`."""

    __slots__ = (
        "_admitted",
        "_clock",
        "_closing",
        "_deferred",
        "_deferred_handle",
        "_ended",
        "_inbox",
        "_input_paused",
        "_loop",
        "_metrics",
        "_stanza_bucket",
        "_worker",
        "conn_id",
        "connected_at",
        "last_activity",
        "peer",
        "server",
        "session",
        "stream",
    )

    def __init__(self, server: App, stream: C2SStream, peer: str, kind: str = "c2s") -> None:
        self.server = server
        self.stream = stream
        self.peer = peer
        # the id on every log line about this connection (salon.logs); a transport sets
        # salon.logs.CONNECTION to it while it handles the connection
        self.conn_id = new_connection_id(kind)
        self.session: C2SSession | None = None
        # stanzas waiting for the router; allocated per burst (a deque costs ~600 bytes and
        # most sessions are idle most of the time)
        self._inbox: deque[Element] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._deferred: list[StreamAction] = []
        self._deferred_handle: Timer | None = None
        self._closing = False
        self._ended = False  # the transport is gone and the core has ended (or kept) the session
        self._input_paused = False  # the inbox filled up: the transport takes no more input
        # asyncio.get_running_loop() costs a getpid() system call; the loop is kept instead.
        self._loop = asyncio.get_running_loop()
        self._clock = clock = server.clock  # idle and handshake timeouts, the auth delay
        self._metrics = server.core.metrics  # stanzas and authentications counted here
        limits = server.limits
        self._stanza_bucket = None if limits is None else limits.stanza_bucket()
        self.connected_at = self.last_activity = clock.monotonic()
        self._admitted = False  # counted in the per-IP limits (released when it ends)

    # ------------------------------------------------------------------ transport side
    def _write(self, data: bytes) -> None:
        """Write one framed unit (bytes for TCP, a WebSocket message, a piece of a BOSH body)."""
        raise NotImplementedError

    def _close(self, error: StreamErrorCondition | None) -> None:
        """The stream ended (``error`` is the stream error sent, if any): close the transport
        once what was written is out."""
        raise NotImplementedError

    def _pause_input(self) -> None:
        """The inbox is full: take no more input until :meth:`_resume_input`."""
        raise NotImplementedError

    def _resume_input(self) -> None:
        raise NotImplementedError

    def _start_tls_requested(self) -> None:
        """The stream asked for STARTTLS: only a transport that offers it upgrades."""
        self.close_stream(StreamErrorCondition.INTERNAL_SERVER_ERROR)

    def admit(self) -> str | None:
        """Count this connection in the per-IP limits (concurrent connections, the block
        after failed logins; ``salon.net.limits``); the reason to refuse it, if any. Every
        client transport asks before its stream starts."""
        limits = self.server.limits
        if limits is None:
            return None
        refused = limits.admit(address_of(self.peer))
        if refused is None:
            self._admitted = True
        else:
            log.info("refused %s: %s", self.peer, refused)
        return refused

    def _release_address(self) -> None:
        limits = self.server.limits
        if self._admitted and limits is not None:
            self._admitted = False
            limits.closed(address_of(self.peer))

    def transport_lost(self, reason: str | None = None) -> None:
        """The transport is gone: forget the connection and tell the core, which ends its
        session or lets a module keep it (XEP-0198 hibernation)."""
        self._release_address()
        connections = self._connections()
        if self._closing and self not in connections:
            return
        self._closing = True
        connections.discard(self)
        if self._deferred_handle is not None:
            self._deferred_handle.cancel()
        self._unpause()
        session = self.session  # kept: stanzas already received are still routed
        if session is not None and session.connection is self:
            # (After an XEP-0198 resume the session lives on another connection: not ours.)
            session.is_closed = True
            ended = self.stream.peer_closed  # the client closed the stream: no hibernation
            lost = self.server.core.connection_lost(session, self, reason, stream_ended=ended)
            self.server.spawn(self._after_loss(lost))
        else:
            self._ended = True
            self._let_go()

    async def _after_loss(self, lost: Coroutine[Any, Any, None]) -> None:
        try:
            await lost
        finally:
            self._ended = True
            self._let_go()

    def _let_go(self) -> None:
        """Once the session is ended (or hibernated) and its stanzas routed, drop the
        reference to it. The session refers to this connection and this connection to the
        session: left in place, every ended connection waits for a full run of the cyclic
        garbage collector (under steady churn at 10,000 sessions, memory grew ~45 MB a
        minute); without it, both are freed at once."""
        if self._ended and self._worker is None:
            self.session = None

    def _connections(self) -> set[object]:
        """The server's live client connections, whatever their transport."""
        return cast("set[object]", self.server.connections)

    def register(self) -> None:
        """Join the server's connections: shutdown and the idle sweep reach this one too."""
        self._connections().add(self)

    # ------------------------------------------------------------------ Connection API
    def send_stanza(self, stanza: Element) -> None:
        if not self._closing:
            self._metrics.stanza_out(stanza.tag)
            self._write(self.stream.framing.element(stanza))

    def close_stream(
        self,
        condition: StreamErrorCondition | None = None,
        text: str | None = None,
        extra: Element | None = None,
    ) -> None:
        if condition is not None and self._inbox is not None:
            # The core ended the stream with an error (invalid-from, conflict, ...): stanzas
            # still queued arrived after the fault and are not processed (RFC 6120 §4.9.1.1).
            self._inbox.clear()
        self._execute(self.stream.close(condition, text, extra))

    def idle_seconds(self) -> float:
        return self._clock.monotonic() - self.last_activity

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
                if action.attempt > 0:  # a counted SASL failure
                    self._auth_failed()
            elif isinstance(action, CloseConnection):
                if not self._closing:
                    self._closing = True
                    self._close(action.error)
            elif isinstance(action, StartTls):
                self._start_tls_requested()
            elif isinstance(action, LookupAccount):
                assert self.stream.host is not None
                accounts = self.server.core.storage.accounts
                known = accounts.cached(self.stream.host, action.username)
                if known is not None:  # a returning user: no task, no round trip
                    self._execute(self.stream.account_loaded(known))
                else:
                    self.server.spawn(self._lookup(action.username))
            elif isinstance(action, VerifyPassword):
                self.server.spawn(self._verify_password(action))
            elif isinstance(action, Authenticated):
                self._metrics.auth(action.mechanism, success=True)
                log.info("%s authenticated as %s@%s", self.peer, action.username, self.stream.host)
            elif isinstance(action, BindRequested):
                self.server.spawn(self._bind(action))
            elif isinstance(action, NonzaReceived):
                if self.session is not None:
                    self._enqueue(action.element)  # in order with the stanzas around it
                else:
                    self.server.spawn(self._prebind_nonza(action.element))
            elif isinstance(action, StanzaAnswered):
                if self.session is not None:
                    self.session.stanzas_in += 1
            elif isinstance(action, PreAuthIq):
                self.server.spawn(self._preauth_iq(action.stanza))

    def _auth_failed(self) -> None:
        self._metrics.auth(self.stream.sasl_mechanism, success=False)
        log.info("%s failed to authenticate (%s)", self.peer, self.stream.sasl_mechanism)
        limits = self.server.limits
        if limits is not None and limits.auth_failed(address_of(self.peer)):
            log.info("too many failed logins from %s", self.peer)
            text = "too many failed logins from your address"
            self.close_stream(StreamErrorCondition.POLICY_VIOLATION, text)

    def _delay(self, action: DelayedSend) -> None:
        """Hold this and every later action back (slows password guessing for this
        connection only: the event loop keeps serving everyone else)."""
        self._deferred.append(Send(action.data))
        if self._deferred_handle is None:
            base = self.server.settings.c2s.auth_failure_delay
            delay = base * (2 ** max(action.attempt - 1, 0))
            self._deferred_handle = self._clock.call_later(delay, self._release_deferred)

    def _release_deferred(self) -> None:
        self._deferred_handle = None
        actions, self._deferred = self._deferred, []
        self._execute(actions)

    # ------------------------------------------------------------------ async steps
    async def _lookup(self, username: str) -> None:
        assert self.stream.host is not None
        try:
            storage = self.server.core.storage
            account = await storage.accounts.get(self.stream.host, username)
            if account is not None and await storage.keyvalue("disabled").get(
                self.stream.host, username
            ):
                # Disabled by an admin (XEP-0133): it cannot log in, and it must not stay in
                # the account cache, whose hits skip this lookup.
                storage.accounts.forget(self.stream.host, username)
                account = None
        except Exception:
            log.exception("account lookup failed")
            account = None
        self._execute(self.stream.account_loaded(account))

    async def _verify_password(self, action: VerifyPassword) -> None:
        try:
            matches = await self.server.core.passwords.verify(action.password, action.credential)
        except Exception:
            log.exception("password check failed")
            matches = False
        self._execute(self.stream.password_checked(matches))

    async def _preauth_iq(self, stanza: Element) -> None:
        assert self.stream.host is not None
        address = self.peer.rpartition(":")[0]  # "ip:port", IPv6 included
        try:
            reply = await self.server.core.preauth_iq(self.stream.host, stanza, address, self)
        except Exception:
            log.exception("pre-auth iq failed")
            reply = error_reply(stanza, StanzaErrorCondition.INTERNAL_SERVER_ERROR)
        self._execute(self.stream.preauth_result(reply))

    async def _bind(self, request: BindRequested) -> None:
        assert self.stream.host is not None and self.stream.username is not None
        try:
            session = await self.server.core.bind(
                self,
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
            await self.server.core.unbind(session, "gone while binding")
            return
        self.session = session
        log.info("%s bound %s", self.peer, session.jid)
        self._execute(self.stream.bind_result(request.iq_id, session.jid))

    async def _prebind_nonza(self, element: Element) -> None:
        """A nonza between authentication and bind: an XEP-0198 ``<resume/>`` may hand this
        connection a hibernated session, which the stream then treats as bound."""
        assert self.stream.host is not None and self.stream.username is not None
        user = JID.make(self.stream.username, self.stream.host)
        try:
            resumed = await self.server.core.client_nonza(self, user, None, element)
        except Exception:
            log.exception("<%s/> before bind failed", element.tag)
            resumed = None
        if resumed is not None:
            self.session = resumed
            if self._closing:
                # The transport went away while resuming: the session is interrupted again.
                resumed.is_closed = True
                await self.server.core.connection_lost(
                    resumed,
                    self,
                    "gone while resuming",
                    stream_ended=self.stream.peer_closed,
                )
                return
        self._execute(self.stream.prebind_nonza_done(resumed is not None))

    # ------------------------------------------------------------------ inbound stanzas
    def _enqueue(self, stanza: Element) -> None:
        inbox = self._inbox
        if inbox is None:
            inbox = self._inbox = deque()
        inbox.append(stanza)
        if len(inbox) >= MAX_INBOX and not self._input_paused:
            self._input_paused = True
            self._pause_input()
        if self._worker is None:
            # spawned by the core, so a graceful stop waits for it before storage closes
            self._worker = self.server.spawn(self._drain())

    async def _drain(self) -> None:
        inbox = self._inbox
        assert inbox is not None
        try:
            while inbox:
                stanza = inbox.popleft()
                session = self.session
                if session is None:
                    inbox.clear()
                    break
                try:
                    if stanza.ns == NS_CLIENT:
                        try:
                            bucket = self._stanza_bucket
                            if bucket is not None and not bucket.allows():
                                self._over_stanza_rate(stanza)
                                continue
                            self._metrics.stanza_in(stanza.tag)
                            # delivered at once; counted only once its archive copies
                            # are committed (salon.core.write_behind)
                            await handled(self.server.core.router.from_client(session, stanza))
                        finally:
                            # Counted once handled: routed, and stored when it was (XEP-0198's
                            # h). An <r/> is answered in turn after it; a <resume/> on another
                            # connection meanwhile reports only stanzas that are safe, and the
                            # client sends the one in hand again.
                            session.stanzas_in += 1
                    else:  # a nonza (XEP-0198 <r/>, XEP-0352 <inactive/>, ...)
                        core = self.server.core
                        await core.client_nonza(self, session.jid.bare, session, stanza)
                except Exception:
                    log.exception("routing a stanza from %s failed", session.jid)
                if self._input_paused and len(inbox) < MAX_INBOX // 2:
                    self._unpause()
        finally:
            self._unpause()
            self._worker = None
            if not inbox:
                self._inbox = None
            self._let_go()

    def _over_stanza_rate(self, stanza: Element) -> None:
        """Over the session's stanza rate: a wait-type resource-constraint (RFC 6120
        §8.3.3.18) tells the client to retry later; an error stanza is not answered."""
        self._metrics.limit_hit("stanza_rate")
        if stanza.get("type") != "error":
            err = StanzaError(StanzaErrorCondition.RESOURCE_CONSTRAINT, "slow down", "wait")
            self.send_stanza(error_reply(stanza, err))

    def _unpause(self) -> None:
        if self._input_paused:
            self._input_paused = False
            self._resume_input()


class StreamShell(ClientShell):
    """A client shell for message-framed transports (WebSocket, BOSH): the reader hands
    over input with :meth:`receive_data` or :meth:`receive_events` and, before reading
    more, awaits :meth:`wait_for_room`. Subclasses implement :meth:`_write` and
    :meth:`_close`."""

    __slots__ = ("_room",)

    def __init__(self, server: App, stream: C2SStream, peer: str, kind: str) -> None:
        super().__init__(server, stream, peer, kind)
        self._room = asyncio.Event()  # set while the inbox has room for more input
        self._room.set()

    def receive_data(self, data: bytes) -> None:
        self.last_activity = self._clock.monotonic()
        self._execute(self.stream.receive_data(data))

    def receive_events(self, events: Iterable[ParserEvent]) -> None:
        self.last_activity = self._clock.monotonic()
        self._execute(self.stream.receive_events(events))

    async def wait_for_room(self) -> None:
        """Backpressure: wait while the router is behind on this connection's stanzas."""
        await self._room.wait()

    def _pause_input(self) -> None:
        self._room.clear()

    def _resume_input(self) -> None:
        self._room.set()


class TcpShell(asyncio.Protocol):
    """What a TCP connection adds to a shell, as an asyncio ``Protocol`` mixin.

    It keeps no state of its own (``__slots__`` is empty): the class that mixes it in
    declares ``transport``, ``peer``, ``last_activity``, ``stream``, ``_out``, ``_closing``
    and ``_held_data``, and carries out the stream's actions in ``_execute``.
    """

    if TYPE_CHECKING:
        # Provided by the class that mixes this in (in its __slots__ or its __dict__).
        transport: asyncio.Transport | None
        peer: str
        conn_id: str  # the connection's id in log lines (salon.logs)
        last_activity: float
        stream: Any  # the stream state machine: ``receive_data`` returns its actions
        _out: list[bytes]
        _closing: bool
        _held_data: list[bytes] | None  # bytes that arrive while TLS is starting
        _loop: asyncio.AbstractEventLoop
        _clock: Clock
        _shaper: ReadShaper | None  # the read-rate limit (salon.net.limits), if any

        def _execute(self, actions: Any) -> None: ...

    else:
        __slots__ = ()  # hidden from type checkers, which expect the slots to be listed here

    _overflow_message = "closing %s: send queue over its limit"

    def _attach(self, transport: asyncio.BaseTransport, send_buffer: int) -> None:
        """``connection_made``'s part for any TCP peer: more than ``send_buffer`` bytes
        unread by it and the connection is dropped (:meth:`pause_writing`)."""
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self.transport.set_write_buffer_limits(high=send_buffer)
        log.info("connection from %s", self.peer, extra={"conn": self.conn_id})
        # Small writes (handshake records, short stanzas) must not wait for delayed ACKs:
        # asyncio (3.7+) and uvloop set TCP_NODELAY on every TCP transport themselves, so
        # there is no system call to make here.

    def data_received(self, data: bytes) -> None:
        self.last_activity = self._clock.monotonic()
        shaper = self._shaper
        if shaper is not None:
            shaper.consumed(len(data))
        if self._held_data is not None:
            # The TLS handshake finished but start_tls() has not returned to us yet.
            self._held_data.append(data)
            return
        pacer = self._login_pacer()
        if pacer is not None:
            pacer.handle(self, data)
            return
        self._handle_input(data)

    def _login_pacer(self) -> LoginPacer | None:
        """The pacer of login input (salon.net.login_pacing) while this connection logs in;
        None for a connection whose input is never held."""
        return None

    @property
    def is_closed_for_input(self) -> bool:
        return self.transport is None or self._closing

    def _handle_input(self, data: bytes) -> None:
        # Whatever this input makes happen (log lines, tasks, timers) is this connection's.
        token = CONNECTION.set(self.conn_id)
        try:
            self._execute(self.stream.receive_data(data))
        finally:
            CONNECTION.reset(token)

    def eof_received(self) -> bool | None:
        return None  # close our side too

    def pause_writing(self) -> None:
        # The peer reads slower than we write and the buffer passed its limit.
        log.info(self._overflow_message, self.peer, extra={"conn": self.conn_id})
        if self.transport is not None:
            self.transport.abort()

    def resume_writing(self) -> None:
        pass

    # ------------------------------------------------------------------ writing
    def _write(self, data: bytes) -> None:
        if self.transport is None or self._closing:
            return
        if not self._out:
            self._loop.call_soon(self._flush)
        self._out.append(data)

    def _flush(self) -> None:
        transport = self.transport
        if (
            self._held_data is not None
            and transport is not None
            and transport.get_protocol() is not self
        ):
            return  # TLS is being negotiated on this transport: sent once it is up
        if self._out and transport is not None and not transport.is_closing():
            transport.write(b"".join(self._out))
        self._out.clear()

    def _close(self, error: StreamErrorCondition | None = None) -> None:
        self._flush()
        self._closing = True
        if self.transport is not None:
            self.transport.close()

    # ------------------------------------------------------------------ reading
    def _pause_input(self) -> None:
        if self.transport is not None:
            self.transport.pause_reading()

    def _resume_input(self) -> None:
        if self.transport is not None and not self._closing:
            self.transport.resume_reading()

    # ------------------------------------------------------------------ STARTTLS
    async def _handshake(
        self,
        ctx: ssl.SSLContext,
        *,
        server_side: bool,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> bool:
        """Upgrade the transport to TLS; bytes that arrive meanwhile wait for
        :meth:`_release_held`. False when the handshake failed (the transport is aborted)
        or the connection went away during it.

        From here on no byte may be read as plaintext: the next ones are the peer's TLS
        handshake. So reading stops at once, and ``start_tls`` is awaited directly, never
        wrapped in a task (``asyncio.wait_for`` does that on Python 3.11), which would leave
        the old protocol reading for one more loop iteration: a ClientHello read then went
        into ``_held_data`` instead of to TLS, and the handshake stalled until the timeout.
        """
        assert self.transport is not None
        self._flush()
        self.transport.pause_reading()  # start_tls resumes it once TLS reads the socket
        self._held_data = []  # bytes TLS decrypts before start_tls returns to us
        loop = asyncio.get_running_loop()
        try:
            transport = await loop.start_tls(
                self.transport,
                self,
                ctx,
                server_side=server_side,
                server_hostname=server_hostname,
                ssl_handshake_timeout=timeout,
            )
        except (TimeoutError, OSError, ConnectionError) as exc:
            log.info("TLS handshake with %s failed: %r", self.peer, exc)
            if self.transport is not None:
                self.transport.abort()
            return False
        if transport is None:
            return False
        self.transport = transport
        self._flush()  # whatever was written during the handshake, now encrypted
        return True

    def _release_held(self) -> None:
        """After ``tls_established``: feed the stream what arrived during the handshake."""
        held, self._held_data = self._held_data or [], None
        for data in held:
            self.data_received(data)
