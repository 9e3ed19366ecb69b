"""XEP-0198: Stream Management. Acknowledgements, and resumption of a session whose
connection dropped, so a phone that loses its network loses no message.

How it fits together:

* The ``<sm/>`` feature is offered once the client is authenticated. ``<enable/>``,
  ``<r/>`` and ``<a/>`` arrive as nonzas after bind, in order with the client's stanzas
  (``ClientNonza``); ``<resume/>`` arrives between authentication and bind.
* Counting and the unacknowledged queue are pure (:mod:`salon.modules.smacks.state`). The
  session's ``outbound_sink`` is :meth:`Managed.send`: every stanza sent to the client is
  numbered and queued, then written when a connection is attached. The server asks for an
  ack after ``ack_request_after`` unacknowledged stanzas and every ``ack_request_interval``
  seconds while some wait.
* When the connection of a resumable session drops without the client closing the stream
  (``ConnectionLost``), the session hibernates: it stays bound (contacts still see it
  available) and what is sent to it queues, up to ``max_unacked``. A ``<resume/>`` with
  the session's id and ``h`` within ``max`` seconds moves it to the new connection; the
  server answers ``<resumed/>`` and resends exactly the stanzas the client did not handle.
  An old connection still open is closed (``<conflict/>``).
* When a session under stream management ends (the window ran out, a non-resumable
  connection dropped, the queue overflowed, the stream was closed), nothing it was sent and
  did not acknowledge is dropped silently: chat and normal messages go to offline storage
  (XEP-0160, through ``MessageUndeliverable``, which hands them to another available
  resource when there is one), other messages and iq requests are bounced to their sender
  with ``<service-unavailable/>`` as RFC 6121 §8.5.3.2.1 and RFC 6120 §8.3 have it.
  Not re-sent: headlines and errors (RFC 6121 says ignore them), carbon copies (the
  original went to its own recipient) and messages that came out of offline storage (they
  stay stored until a ping after them is answered). Presence is state, not content: the
  next presence supersedes it.

Errors: ``<enable/>`` before bind or twice, and ``<resume/>`` once bound, get
``<failed><unexpected-request/></failed>``; an unknown or expired ``previd`` (or another
account's) gets ``<failed><item-not-found/></failed>`` and the client may bind instead; an
``h`` that acknowledges more than was sent closes the stream with ``<undefined-condition/>``
and ``<handled-count-too-high/>`` (XEP-0198 §4).
"""

from __future__ import annotations

import asyncio
import secrets
from typing import TYPE_CHECKING, Any

from pydantic import Field

from salon.core.events import (
    ClientNonza,
    ConnectionLost,
    MessageUndeliverable,
    ResourceUnbound,
    SessionResumed,
)
from salon.core.hooks import HANDLED, Priority
from salon.core.items import NONZA_NAMESPACE, STREAM_FEATURE
from salon.core.mobile import Hibernation
from salon.core.module import Module, ModuleOptions, Spec
from salon.core.session import C2SSession, Connection, SessionSlot
from salon.errors import StanzaError, StanzaErrorCondition, StreamErrorCondition
from salon.jid import parse_jid
from salon.modules.smacks.state import AckTooHigh, SmState, parse_h
from salon.namespaces import NS_CARBONS, NS_DELAY, NS_SM, NS_STANZAS
from salon.xml.element import Element

if TYPE_CHECKING:
    from collections.abc import Coroutine
    from typing import Any

__all__ = ["Managed", "SmOptions", "StreamManagement"]


class SmOptions(ModuleOptions):
    resume_timeout: int = Field(
        300,
        ge=1,
        description="Longest time, in seconds, a session whose connection dropped waits to be "
        "resumed (the 'max' of <enabled/>; a client may ask for less).",
    )
    max_unacked: int = Field(
        1000,
        ge=1,
        description="Unacknowledged stanzas kept for one session; past it the session ends "
        "and its messages go to offline storage.",
    )
    ack_request_after: int = Field(
        5, ge=1, description="Unacknowledged stanzas after which the server sends <r/>."
    )
    ack_request_interval: float = Field(
        30.0,
        gt=0,
        description="Seconds between <r/> to clients that leave stanzas unacknowledged.",
    )


class Managed:
    """One session under stream management: its counters and queue, the connection it is
    written to (None while hibernated), and what resumption needs."""

    __slots__ = ("connection", "expiry", "id", "max", "module", "resumable", "session", "state")

    def __init__(
        self, module: StreamManagement, session: C2SSession, connection: Connection
    ) -> None:
        self.module = module
        self.session = session
        self.connection: Connection | None = connection
        self.state = SmState(session.stanzas_in, request_after=module.options.ack_request_after)
        self.id: str | None = None  # set when resumable
        self.max = 0  # seconds the session waits for a resume
        self.resumable = False
        self.expiry: asyncio.Task[None] | None = None  # the hibernation timer

    def send(self, stanza: Element) -> None:
        """The session's ``outbound_sink``: number, queue, and write when connected."""
        state = self.state
        state.record(stanza)
        if len(state.unacked) > self.module.options.max_unacked:
            self.module.overflow(self)
            return
        conn = self.connection
        if conn is not None:
            conn.send_stanza(stanza)
            if state.wants_ack():
                self.request_ack()

    def request_ack(self) -> None:
        if self.connection is not None:
            self.connection.send_stanza(Element("r", NS_SM))
            self.state.requested = True


MANAGED = SessionSlot[Managed]("smacks.managed")


class _Hibernation(Hibernation):
    def unacknowledged(self, session: C2SSession, connection: Connection) -> list[Element] | None:
        managed = session.get(MANAGED)
        if managed is None or not managed.resumable or managed.connection is not connection:
            return None
        return list(managed.state.unacked)


def failed(condition: StanzaErrorCondition) -> Element:
    """``<failed/>`` with a stanza error condition (XEP-0198 §6)."""
    el = Element("failed", NS_SM)
    el.add(condition.value, NS_STANZAS)
    return el


class StreamManagement(Module[SmOptions]):
    name = "smacks"
    specs = (Spec("XEP-0198", "1.6.3", "acks and resumption over TCP and WebSocket"),)

    def setup(self) -> None:
        self.resumable: dict[str, Managed] = {}  # by SM-ID: sessions that may be resumed
        self.connected: set[Managed] = set()  # sessions with a connection attached
        self.timers: set[asyncio.Task[None]] = set()
        self.stopping = False
        self.provide(Hibernation, _Hibernation())
        self.add_item(STREAM_FEATURE, Element("sm", NS_SM))
        self.add_item(NONZA_NAMESPACE, NS_SM)
        self.hook(ClientNonza, self.nonza)
        self.hook(ConnectionLost, self.connection_lost)
        # Before presence announces the end: the messages are stored by the time contacts
        # see the resource go unavailable.
        self.hook(ResourceUnbound, self.session_ended, Priority.ARCHIVE)
        self.every(self.options.ack_request_interval, self.request_acks)

    async def stop(self) -> None:
        """Sessions waiting for a resume end now, while storage is open: nothing is lost."""
        self.stopping = True
        for managed in list(self.resumable.values()):
            if managed.connection is None and not managed.session.is_unbound:
                self._cancel_expiry(managed)
                await self.host.unbind(managed.session, "server shutting down")

    def unload(self) -> list[asyncio.Task[Any]]:
        timers = list(self.timers)
        for timer in timers:
            timer.cancel()
        self.timers.clear()
        return [*timers, *super().unload()]

    # ------------------------------------------------------------------ nonzas
    async def nonza(self, event: ClientNonza) -> bool | None:
        el = event.element
        if el.ns != NS_SM:
            return None
        if el.tag == "resume":
            await self.resume(event)
            return HANDLED
        conn, session = event.connection, event.session
        if el.tag not in ("enable", "r", "a"):
            return None  # not a stream management element: unsupported-stanza-type
        managed = session.get(MANAGED) if session is not None else None
        if el.tag == "enable":
            if session is None or managed is not None:
                # XEP-0198 §3: only after bind, and only once.
                conn.send_stanza(failed(StanzaErrorCondition.UNEXPECTED_REQUEST))
            else:
                self.enable(session, conn, el)
            return HANDLED
        if managed is None:
            conn.send_stanza(failed(StanzaErrorCondition.UNEXPECTED_REQUEST))
        elif el.tag == "r":
            assert session is not None
            h = managed.state.handled(session.stanzas_in)
            # In a cluster, what the client sent for other nodes is in Redis before we
            # say it is handled (a no-op in a single process).
            await self.host.peers.settled()
            conn.send_stanza(Element("a", NS_SM, {"h": str(h)}))
        else:
            self.acknowledged(managed, conn, el)
        return HANDLED

    def enable(self, session: C2SSession, conn: Connection, el: Element) -> None:
        managed = Managed(self, session, conn)
        enabled = Element("enabled", NS_SM)
        if el.get("resume") in ("true", "1"):
            managed.resumable = True
            managed.id = secrets.token_urlsafe(24)
            managed.max = self.options.resume_timeout
            asked = parse_h(el.get("max"))  # the client's preferred maximum, in seconds
            if asked is not None and asked > 0:
                managed.max = min(asked, managed.max)
            self.resumable[managed.id] = managed
            enabled.set("id", managed.id)
            enabled.set("resume", "true")
            enabled.set("max", str(managed.max))
        session.set(MANAGED, managed)
        conn.send_stanza(enabled)  # before the sink: <enabled/> is no stanza
        session.outbound_sink = managed.send
        self.connected.add(managed)

    def acknowledged(self, managed: Managed, conn: Connection, el: Element) -> None:
        h = parse_h(el.get("h"))
        if h is None:
            managed.resumable = False
            conn.close_stream(StreamErrorCondition.BAD_FORMAT, "'h' is no unsigned 32-bit integer")
            return
        try:
            managed.state.ack(h)
        except AckTooHigh as exc:
            managed.resumable = False  # the counts cannot be trusted: end the session
            self.too_high(conn, exc)

    @staticmethod
    def too_high(conn: Connection, exc: AckTooHigh) -> None:
        """XEP-0198 §4: an ``h`` above the number of stanzas sent ends the stream."""
        extra = Element(
            "handled-count-too-high", NS_SM, {"h": str(exc.h), "send-count": str(exc.send_count)}
        )
        conn.close_stream(StreamErrorCondition.UNDEFINED_CONDITION, str(exc), extra)

    # ------------------------------------------------------------------ resumption
    async def resume(self, event: ClientNonza) -> None:
        conn, el = event.connection, event.element
        if event.session is not None:
            conn.send_stanza(failed(StanzaErrorCondition.UNEXPECTED_REQUEST))
            return
        managed = self.resumable.get(el.get("previd") or "")
        if (
            managed is None
            or managed.session.is_unbound
            or managed.session.jid.bare != event.user
            or not managed.resumable
        ):
            # Unknown, expired, or another account's: the client may bind a new session.
            conn.send_stanza(failed(StanzaErrorCondition.ITEM_NOT_FOUND))
            return
        h = parse_h(el.get("h"))
        if h is None:
            conn.send_stanza(failed(StanzaErrorCondition.BAD_REQUEST))
            return
        state = managed.state
        try:
            state.ack(h)
        except AckTooHigh as exc:
            self.too_high(conn, exc)  # the hibernated session keeps waiting, then times out
            return
        self._cancel_expiry(managed)
        session, old = managed.session, managed.connection
        managed.connection = conn
        session.connection = conn
        session.is_closed = False
        self.connected.add(managed)
        if old is not None and old is not conn:
            # XEP-0198 §5: the old stream, if still open, is terminated.
            old.close_stream(StreamErrorCondition.CONFLICT, "the session resumed elsewhere")
        handled = state.handled(session.stanzas_in)
        assert managed.id is not None
        conn.send_stanza(Element("resumed", NS_SM, {"previd": managed.id, "h": str(handled)}))
        for stanza in state.unacked:  # exactly what the client did not handle, in order
            conn.send_stanza(stanza)
        if state.unacked:
            managed.request_ack()
        event.resumed = session
        await self.host.hooks.fire(SessionResumed(session))

    def connection_lost(self, event: ConnectionLost) -> bool | None:
        managed = event.session.get(MANAGED)
        if managed is None:
            return None
        if managed.connection is not event.connection:
            return HANDLED  # resumed on another connection meanwhile: it lives on there
        managed.connection = None
        self.connected.discard(managed)
        if event.stream_ended or not managed.resumable or self.stopping:
            return None  # unbound now; its unacknowledged stanzas are rerouted
        self._start_expiry(managed)
        self.log.debug("%s hibernates for %d s", event.session.jid, managed.max)
        return HANDLED

    def _start_expiry(self, managed: Managed) -> None:
        self._cancel_expiry(managed)
        timer = self._task(self._expire(managed))
        managed.expiry = timer

    def _cancel_expiry(self, managed: Managed) -> None:
        if managed.expiry is not None:
            managed.expiry.cancel()
            managed.expiry = None

    async def _expire(self, managed: Managed) -> None:
        await self.clock.sleep(managed.max)
        managed.expiry = None  # from here on a resume finds the session unbound
        if managed.connection is None and not managed.session.is_unbound:
            await self.host.unbind(managed.session, "resumption window ran out")

    def _task(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """A timer of this module (cancelled on unload; not a server task, so a stop does
        not wait for it)."""
        task = asyncio.get_running_loop().create_task(coro)
        self.timers.add(task)
        task.add_done_callback(self._timer_done)
        return task

    def _timer_done(self, task: asyncio.Task[None]) -> None:
        self.timers.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.log.error("stream management timer failed", exc_info=task.exception())

    # ------------------------------------------------------------------ acks, overflow
    def request_acks(self) -> None:
        """Every ``ack_request_interval``: ask clients that leave stanzas unacknowledged."""
        for managed in list(self.connected):
            if managed.state.unacked:
                managed.request_ack()

    def overflow(self, managed: Managed) -> None:
        """Too many unacknowledged stanzas: the session ends (its messages are stored)."""
        if not managed.resumable and managed.connection is None:
            return  # already ending
        managed.resumable = False
        if managed.connection is not None:
            managed.connection.close_stream(
                StreamErrorCondition.RESOURCE_CONSTRAINT, "too many unacknowledged stanzas"
            )
        elif not managed.session.is_unbound:
            self._cancel_expiry(managed)
            self._task(self.host.unbind(managed.session, "too many unacknowledged stanzas"))

    # ------------------------------------------------------------------ the end
    async def session_ended(self, event: ResourceUnbound) -> None:
        session = event.session
        managed = session.pop(MANAGED)
        if managed is None:
            return
        session.outbound_sink = None
        self.connected.discard(managed)
        if managed.id is not None and self.resumable.get(managed.id) is managed:
            del self.resumable[managed.id]
        self._cancel_expiry(managed)
        for stanza in managed.state.take_unacked():
            if stanza.tag == "message":
                await self._reroute_message(session, stanza)
            elif stanza.tag == "iq" and stanza.get("type") in ("get", "set"):
                self.router.reply_error(None, stanza, StanzaErrorCondition.SERVICE_UNAVAILABLE)

    async def _reroute_message(self, session: C2SSession, stanza: Element) -> None:
        stype = stanza.get("type") or "normal"
        if stype in ("error", "headline") or _is_carbon(stanza) or self._was_stored(stanza):
            return
        sender = parse_jid(stanza.get("from") or "")
        if sender is None:
            return
        if stype in ("chat", "normal"):
            undeliverable = MessageUndeliverable(None, stanza, sender, session.jid.bare)
            try:
                if await self.host.hooks.fire(undeliverable):
                    return
            except StanzaError as err:
                self.router.reply_error(None, stanza, err)
                return
        self.router.reply_error(None, stanza, StanzaErrorCondition.SERVICE_UNAVAILABLE)

    def _was_stored(self, stanza: Element) -> bool:
        """Delivered out of offline storage (XEP-0160 stamps it with our delay): it stays
        stored until the client confirms it, so it needs no second copy."""
        delay = stanza.find("delay", NS_DELAY)
        return delay is not None and delay.get("from") == self.domain


def _is_carbon(stanza: Element) -> bool:
    return any(child.ns == NS_CARBONS for child in stanza.elements())
