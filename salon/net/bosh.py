"""BOSH (XEP-0124) carrying XMPP (XEP-0206): sessions, request ids, held requests, timers.

A :class:`BoshSession` is the ``Connection`` of one client session. Its ``C2SStream`` uses
``BoshFraming``; what the stream writes collects in ``_out`` and leaves in the response to
the oldest request the session holds. The manager maps ``sid`` to session and turns each HTTP
request into an in-order ``<body/>`` for it:

* rids run in order; one ahead of a missing rid waits for it (within the ``requests``
  window); a repeated rid gets its cached response again; anything else is
  ``item-not-found``.
* More open requests than ``requests`` (one more for pause or terminate), or a polling
  client asking faster than ``polling``, is ``policy-violation``.
* A held request is answered empty after ``wait`` seconds; more than ``hold`` held requests
  answer the oldest at once; no held request for ``inactivity`` seconds ends the session.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections import deque
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING

from aiohttp import web

from salon.core.clock import Timer
from salon.errors import StreamErrorCondition
from salon.logs import CONNECTION
from salon.namespaces import NS_XBOSH
from salon.net.shell import StreamShell
from salon.stream.c2s import C2SStream
from salon.stream.framing import (
    Body,
    BoshError,
    BoshFraming,
    body_bytes,
    body_events,
    parse_body,
)

if TYPE_CHECKING:
    from salon.app import App

log = logging.getLogger(__name__)

BOSH_VERSION = "1.11"
XMPP_VERSION = f"{{{NS_XBOSH}}}version"
RESTART_LOGIC = f"{{{NS_XBOSH}}}restartlogic"
CONTENT_TYPE = "text/xml"
LEGACY_STATUS = {"bad-request": 400, "item-not-found": 404, "policy-violation": 403}


def terminal_body(condition: str | None = None, payload: bytes = b"") -> bytes:
    attrs = {"type": "terminate"}
    if condition:
        attrs["condition"] = condition
    return body_bytes(attrs, payload)


def xml_response(data: bytes, status: int = 200) -> web.Response:
    return web.Response(body=data, status=status, content_type=CONTENT_TYPE, charset="utf-8")


def _is_legacy(ver: str | None) -> bool:
    """Clients before XEP-0124 1.6 expect HTTP error codes instead of terminate bodies."""
    if not ver:
        return True
    major, _, minor = ver.partition(".")
    if not (ver.isascii() and major.isdigit() and minor.isdigit()):  # "²" passes isdigit()
        return True
    return (int(major), int(minor)) < (1, 6)


def error_response(condition: str, *, legacy: bool = False) -> web.Response:
    status = LEGACY_STATUS.get(condition, 200) if legacy else 200
    return xml_response(terminal_body(condition), status)


class BoshManager:
    """All BOSH sessions of the server, by ``sid``."""

    def __init__(self, server: App) -> None:
        self.server = server
        self.sessions: dict[str, BoshSession] = {}

    async def handle(self, request: web.Request, *, peer: str, is_secure: bool) -> web.Response:
        data = await request.read()
        policy = self.server.c2s_policy
        try:
            body = parse_body(
                data, max_stanza_bytes=policy.max_stanza_size, max_depth=policy.max_depth
            )
        except BoshError as err:
            log.debug("bad BOSH request from %s: %s", peer, err)
            return xml_response(terminal_body("bad-request"), 400)
        sid = body.get("sid")
        if sid is None:
            return await self._create(body, peer=peer, is_secure=is_secure)
        session = self.sessions.get(sid)
        if session is None:
            return error_response("item-not-found")
        token = CONNECTION.set(session.conn_id)  # this request acts for that session
        try:
            return await session.handle(body)
        finally:
            CONNECTION.reset(token)

    async def _create(self, body: Body, *, peer: str, is_secure: bool) -> web.Response:
        """Session creation (XEP-0124 §7.1, XEP-0206 §3)."""
        legacy = _is_legacy(body.get("ver"))
        try:
            rid = body.int_attr("rid")
            wait = body.int_attr("wait")
            hold = body.int_attr("hold")
        except BoshError as err:
            return error_response(err.condition, legacy=legacy)
        to = body.get("to")
        if rid is None or not to:
            return error_response("bad-request", legacy=legacy)
        if not self.server.c2s_policy.is_local_host(to.lower().rstrip(".")):
            return error_response("host-unknown", legacy=legacy)
        options = self.server.settings.http
        session = BoshSession(
            self,
            sid=secrets.token_urlsafe(18),
            peer=peer,
            is_secure=is_secure,
            wait=min(options.bosh_max_wait, options.bosh_max_wait if wait is None else wait),
            hold=min(options.bosh_max_hold, 1 if hold is None else hold),
            ver=body.get("ver"),
            wants_acks=body.get("ack") == "1",
            first_rid=rid,
        )
        token = CONNECTION.set(session.conn_id)
        try:
            return await self._start(session, body, legacy)
        finally:
            CONNECTION.reset(token)

    async def _start(self, session: BoshSession, body: Body, legacy: bool) -> web.Response:
        log.info("BOSH session from %s", session.peer)
        refused = session.admit()
        if refused is not None:
            # Over a per-IP limit (sessions from one address, or blocked after failed
            # logins): XEP-0124 §17.2's policy-violation ends it before it starts.
            return error_response("policy-violation", legacy=legacy)
        self.sessions[session.sid] = session
        session.register()
        return await session.start(body)

    def forget(self, session: BoshSession) -> None:
        if self.sessions.get(session.sid) is session:
            del self.sessions[session.sid]


@dataclass(slots=True)
class _Held:
    """A request waiting for its response."""

    rid: int
    future: asyncio.Future[bytes]
    timer: Timer | None = None
    attrs: dict[str, str] = field(default_factory=dict)


class BoshSession(StreamShell):
    """One BOSH session: the ``Connection`` its client session writes to."""

    __slots__ = (
        "_final",
        "_first_body",
        "_flush_pending",
        "_held",
        "_inactivity_timer",
        "_last_empty",
        "_out",
        "_out_bytes",
        "_pending",
        "_responses",
        "hold",
        "inactivity",
        "is_legacy",
        "manager",
        "next_rid",
        "polling",
        "requests",
        "sid",
        "ver",
        "wait",
        "wants_acks",
    )

    def __init__(
        self,
        manager: BoshManager,
        *,
        sid: str,
        peer: str,
        is_secure: bool,
        wait: int,
        hold: int,
        ver: str | None,
        wants_acks: bool,
        first_rid: int,
    ) -> None:
        server = manager.server
        stream = C2SStream(server.c2s_policy, is_secure=is_secure, framing=BoshFraming())
        super().__init__(server, stream, peer, "bosh")
        options = server.settings.http
        self.manager = manager
        self.sid = sid
        self.wait = wait
        self.hold = hold
        self.requests = hold + 1  # XEP-0124 §7.2: one more than hold
        self.inactivity = options.bosh_inactivity
        self.polling = options.bosh_polling
        self.ver = ver
        self.is_legacy = _is_legacy(ver)
        self.wants_acks = wants_acks
        self.next_rid = first_rid
        self._pending: dict[int, tuple[Body, asyncio.Future[bytes]]] = {}
        self._held: deque[_Held] = deque()
        self._responses: dict[int, bytes] = {}  # recent responses, for repeated rids
        self._out: list[bytes] = []
        self._out_bytes = 0
        self._flush_pending = False
        self._inactivity_timer: Timer | None = None
        self._last_empty = float("-inf")
        self._final: bytes | None = None  # the terminate body when no request was held
        self._first_body: dict[str, str] = {}  # what restarts do not repeat (to, version)

    # ------------------------------------------------------------------ requests
    async def start(self, body: Body) -> web.Response:
        """Answer the session-creation request: its attributes and the stream features."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bytes] = loop.create_future()
        rid = self.next_rid
        self.next_rid += 1
        stream = self.stream
        attrs = {
            "sid": self.sid,
            "wait": str(self.wait),
            "hold": str(self.hold),
            "requests": str(self.requests),
            "inactivity": str(self.inactivity),
            "polling": str(self.polling),
            "ver": BOSH_VERSION,
            XMPP_VERSION: "1.0",
            RESTART_LOGIC: "true",
        }
        max_pause = self.server.settings.http.bosh_max_pause
        if max_pause:
            attrs["maxpause"] = str(max_pause)
        if self.wants_acks:
            attrs["ack"] = str(rid)
        held = _Held(rid, future, attrs=attrs)
        held.timer = self._clock.call_later(self.wait, partial(self._expire, held))
        self._held.append(held)
        self._first_body = body.attrs
        self.receive_events(body_events(body, opens_stream=True))
        if stream.host is not None:
            attrs["from"] = stream.host
        if stream.stream_id:
            attrs["authid"] = stream.stream_id
        self._flush()
        return xml_response(await future)

    async def handle(self, body: Body) -> web.Response:
        """One request of an existing session."""
        self.last_activity = self._clock.monotonic()
        if self._final is not None:
            final, self._final = self._final, None
            self.manager.forget(self)
            return xml_response(final)
        try:
            rid = body.int_attr("rid")
            pause = body.int_attr("pause")
        except BoshError as err:
            return self._fail(err.condition)
        if rid is None:
            return self._fail("bad-request")
        if rid < self.next_rid or rid in self._pending:
            return await self._repeated(rid)
        if rid >= self.next_rid + self.requests:
            return self._fail("item-not-found")  # outside the window (XEP-0124 §14.2)
        condition = self._overactive(body, pause)
        if condition is not None:
            return self._fail(condition)
        await self.wait_for_room()
        if self._closing:
            return error_response("item-not-found", legacy=self.is_legacy)
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._pending[rid] = (body, future)
        self._cancel_inactivity()
        while self.next_rid in self._pending and not self._closing:
            in_order_rid = self.next_rid
            in_order, waiting = self._pending.pop(in_order_rid)
            self.next_rid += 1
            self._process(in_order_rid, in_order, waiting)
        return xml_response(await future)

    def _overactive(self, body: Body, pause: int | None) -> str | None:
        """XEP-0124 §11: more open requests than allowed, or a polling client too eager."""
        allowed = self.requests + (1 if body.is_terminate or pause is not None else 0)
        if len(self._held) + len(self._pending) + 1 > allowed:
            return "policy-violation"
        is_empty = not body.children and not body.is_restart and not body.is_terminate
        if is_empty and pause is None and self.hold == 0:
            now = self._clock.monotonic()
            too_soon = now - self._last_empty < self.polling
            self._last_empty = now
            if too_soon:
                return "policy-violation"
        return None

    async def _repeated(self, rid: int) -> web.Response:
        """XEP-0124 §14.3: a request sent again gets its response again; one still open is
        answered on the new HTTP request (the old one's connection has likely broken)."""
        cached = self._responses.get(rid)
        if cached is not None:
            return xml_response(cached)
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        for held in self._held:
            if held.rid == rid:
                held.future, old = future, held.future
                break
        else:
            if rid not in self._pending:
                return self._fail("item-not-found")
            body, old = self._pending[rid]
            self._pending[rid] = (body, future)
        if not old.done():
            old.set_result(body_bytes({}))
        return xml_response(await future)

    def _process(self, rid: int, body: Body, future: asyncio.Future[bytes]) -> None:
        """One request, in rid order: hold it, then hand its content to the stream."""
        held = _Held(rid, future)
        self._held.append(held)
        pause = body.int_attr("pause")
        if pause is not None and not body.is_terminate:
            self._pause(pause)
            return
        held.timer = self._clock.call_later(self.wait, partial(self._expire, held))
        if body.children or body.is_restart or body.is_terminate:
            events = body_events(body, opens_stream=body.is_restart, defaults=self._first_body)
            self.receive_events(events)
        if body.is_terminate and not self._closing:
            self.close_stream()
        self._flush()

    def _pause(self, seconds: int) -> None:
        """XEP-0124 §10: answer everything now; the session may idle up to ``seconds``."""
        max_pause = self.server.settings.http.bosh_max_pause
        if max_pause == 0:
            self._flush()
            return
        while self._held:
            self._respond(self._held.popleft(), self._take_out())
        self._start_inactivity(min(seconds, max_pause))

    def _fail(self, condition: str) -> web.Response:
        """A terminal binding error: the session ends (XEP-0124 §17.2)."""
        log.info("BOSH session %s of %s ends: %s", self.sid, self.peer, condition)
        self._end(terminal_body(condition), f"BOSH {condition}", is_answered=True)
        return error_response(condition, legacy=self.is_legacy)

    # ------------------------------------------------------------------ responses
    def _take_out(self) -> bytes:
        out, self._out = self._out, []
        self._out_bytes = 0
        return b"".join(out)

    def _flush(self) -> None:
        """Answer held requests: the oldest with what is waiting, then any beyond ``hold``."""
        self._flush_pending = False
        if self._out and self._held:
            self._respond(self._held.popleft(), self._take_out())
        while len(self._held) > self.hold:
            self._respond(self._held.popleft(), b"")
        if not self._held and not self._closing:
            self._start_inactivity(self.inactivity)

    def _respond(self, held: _Held, payload: bytes) -> None:
        attrs = held.attrs
        highest = self.next_rid - 1
        if self.wants_acks and "ack" not in attrs and highest > held.rid:
            attrs = {**attrs, "ack": str(highest)}  # XEP-0124 §9.1: later requests arrived
        self._answer(held, body_bytes(attrs, payload))

    def _answer(self, held: _Held, data: bytes) -> None:
        if held.timer is not None:
            held.timer.cancel()
        self._responses[held.rid] = data
        for old in [r for r in self._responses if r < held.rid - self.requests]:
            del self._responses[old]
        if not held.future.done():
            held.future.set_result(data)

    def _expire(self, held: _Held) -> None:
        """``wait`` passed: answer the request empty (XEP-0124 §8)."""
        held.timer = None
        if held in self._held:
            self._held.remove(held)
            self._respond(held, self._take_out())
            if not self._held and not self._closing:
                self._start_inactivity(self.inactivity)

    # ------------------------------------------------------------------ timers
    def _start_inactivity(self, seconds: float) -> None:
        self._cancel_inactivity()
        self._inactivity_timer = self._clock.call_later(seconds, self._inactive)

    def _cancel_inactivity(self) -> None:
        if self._inactivity_timer is not None:
            self._inactivity_timer.cancel()
            self._inactivity_timer = None

    def _inactive(self) -> None:
        """XEP-0124 §12: no request for ``inactivity`` seconds ends the session."""
        self._inactivity_timer = None
        if self._held or self._pending:
            return
        log.info("BOSH session %s of %s ends: inactive", self.sid, self.peer)
        self.manager.forget(self)
        self.transport_lost("BOSH inactivity")

    def _end(self, final: bytes, reason: str, *, is_answered: bool = False) -> None:
        """End the session: ``final`` answers the oldest open request (or else the next
        one, unless ``is_answered``); every other open request gets an empty terminate."""
        self._cancel_inactivity()
        self._closing = True
        waiting = [*self._held, *(_Held(rid, f) for rid, (_, f) in self._pending.items())]
        self._held.clear()
        self._pending.clear()
        for index, held in enumerate(waiting):
            self._answer(held, final if index == 0 else terminal_body())
        if waiting or is_answered:
            self.manager.forget(self)
        else:
            self._final = final
            self._clock.call_later(self.inactivity, partial(self.manager.forget, self))
        self.transport_lost(reason)

    # ------------------------------------------------------------------ StreamShell
    def _write(self, data: bytes) -> None:
        self._out.append(data)
        self._out_bytes += len(data)
        if self._out_bytes > self.server.settings.c2s.max_send_queue:
            log.info("closing BOSH session of %s: send queue over its limit", self.peer)
            self._out.clear()
            self._out_bytes = 0
            self._end(terminal_body("policy-violation"), "send queue over its limit")
            return
        if not self._flush_pending:
            self._flush_pending = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _close(self, error: StreamErrorCondition | None) -> None:
        """The stream ended: a terminate body carries what is left (and the stream error,
        as ``remote-stream-error``, XEP-0206 §6)."""
        condition = None if error is None else "remote-stream-error"
        self._end(terminal_body(condition, self._take_out()), str(error or "terminated"))
