"""Federation's IO shell: listeners, outgoing connections, queues and bounces.

* :class:`S2SInConnection` drives an ``S2SInStream`` for a server that connected to us.
* :class:`S2SOutConnection` drives an ``S2SOutStream`` to a remote domain.
* :class:`S2SManager` (one per server) owns the outgoing side: one route per (local domain,
  remote domain) with a bounded queue of stanzas waiting for the connection; several local
  domains share one connection when the peer allows piggy-backing. It bounces every queued
  stanza to its sender when the peer cannot be reached (``remote-server-not-found``) or the
  connection fails after it was made (``remote-server-timeout``); nothing is dropped silently.
  It also carries dialback verifications for the inbound side, closes idle connections and
  reconnects on demand.

Every protocol decision is the stream state machines'; routing is the router's.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import ssl
from collections import deque
from collections.abc import Iterable
from functools import partial
from typing import TYPE_CHECKING

from salon.core.clock import Timer, wait_for
from salon.errors import StanzaError, StanzaErrorCondition, StreamErrorCondition
from salon.jid import JID
from salon.logs import CONNECTION, new_connection_id
from salon.net.dns import NoService, S2SResolver, S2STarget
from salon.net.listen import listen
from salon.net.pkix import S2STls
from salon.net.shell import MAX_INBOX, TcpShell
from salon.stream.events import CloseConnection, Send, StartTls
from salon.stream.s2s import (
    DomainAuthorized,
    DomainRefused,
    KeyVerified,
    PeerAuthenticated,
    RemoteStanzaReceived,
    S2SAction,
    S2SInPolicy,
    S2SInStream,
    S2SLimits,
    S2SOutPolicy,
    S2SOutStream,
    VerifyKey,
)
from salon.xml.element import Element

if TYPE_CHECKING:
    from salon.app import App

log = logging.getLogger(__name__)

MAX_SEND_BUFFER = 8 * 1024 * 1024  # bytes unread by a peer before the connection is dropped
SWEEP_INTERVAL = 1.0


class _Connection(TcpShell):
    """What both directions share on top of ``TcpShell`` (transport, batched writes, held
    bytes during STARTTLS): the manager, the actions of every s2s stream, certificate checks
    after STARTTLS, idle time."""

    _overflow_message = "closing s2s connection %s: send buffer over its limit"
    _kind = "s2s"  # the prefix of the connection's id in log lines

    def __init__(self, manager: S2SManager) -> None:
        self.manager = manager
        self.conn_id = new_connection_id(self._kind)
        self.transport: asyncio.Transport | None = None
        self.peer = ""
        self._out: list[bytes] = []
        self._closing = False
        self._held_data: list[bytes] | None = None
        self._loop = asyncio.get_running_loop()
        self._clock = manager.clock
        self.connected_at = self.last_activity = self._clock.monotonic()
        limits = manager.server.limits
        self._shaper = None
        if limits is not None:
            self._shaper = limits.read_shaper("s2s", self._pause_input, self._resume_input)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._attach(transport, MAX_SEND_BUFFER)

    @property
    def is_closing(self) -> bool:
        return self._closing

    async def _start_tls(self) -> None:
        ctx, server_hostname = self._tls_context()
        if ctx is None or self.transport is None:
            self.close_stream(StreamErrorCondition.INTERNAL_SERVER_ERROR, "no certificate")
            return
        is_upgraded = await self._handshake(
            ctx,
            server_side=server_hostname is None,
            server_hostname=server_hostname,
            timeout=self.manager.settings.connect_timeout,
        )
        if not is_upgraded:
            return
        assert self.transport is not None
        sslobj = self.transport.get_extra_info("ssl_object")
        self._execute(self.stream.tls_established(self.manager.tls.validator.check(sslobj)))
        self._release_held()

    def _execute(self, actions: Iterable[S2SAction]) -> None:
        for action in actions:
            if isinstance(action, Send):
                # Traffic either way keeps a connection from the idle sweep.
                self.last_activity = self._clock.monotonic()
                self._write(action.data)
            elif isinstance(action, CloseConnection):
                self._close()
            elif isinstance(action, StartTls):
                # Every byte after <starttls/>/<proceed/> belongs to TLS: read no more
                # plaintext from this moment, not only once the handshake task runs.
                self._pause_input()
                self.manager.spawn(self._start_tls())
            else:
                self._on_action(action)

    # direction-specific
    def _tls_context(self) -> tuple[ssl.SSLContext | None, str | None]:
        """Our TLS context and, when we are the client, the name the peer must prove."""
        raise NotImplementedError

    def _on_action(self, action: S2SAction) -> None:
        raise NotImplementedError

    def close_stream(
        self, condition: StreamErrorCondition | None = None, text: str | None = None
    ) -> None:
        raise NotImplementedError


# ---------------------------------------------------------------------- inbound
class S2SInConnection(_Connection):
    _kind = "s2sin"

    def __init__(self, manager: S2SManager, *, direct_tls: bool = False) -> None:
        super().__init__(manager)
        self.direct_tls = direct_tls
        self.stream = S2SInStream(manager.in_policy, is_secure=direct_tls)
        self._inbox: deque[RemoteStanzaReceived] = deque()
        self._worker: asyncio.Task[None] | None = None
        self._reading_paused = False
        self.authenticated: dict[tuple[str, str], str] = {}  # (remote, local) → mechanism

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        token = CONNECTION.set(self.conn_id)
        try:
            super().connection_made(transport)
            self.manager.incoming.add(self)
            if self.direct_tls:
                sslobj = transport.get_extra_info("ssl_object")
                checked = self.manager.tls.validator.check(sslobj)
                self._execute(self.stream.tls_established(checked))
        finally:
            CONNECTION.reset(token)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        self.manager.incoming.discard(self)

    def close_stream(
        self, condition: StreamErrorCondition | None = None, text: str | None = None
    ) -> None:
        if condition is not None:
            self._inbox.clear()
        self._execute(self.stream.close(condition, text))

    def _tls_context(self) -> tuple[ssl.SSLContext | None, str | None]:
        tls = self.manager.tls
        return tls.server_context(self.manager.tls_domain(self.stream.host or "")), None

    def _on_action(self, action: S2SAction) -> None:
        if isinstance(action, RemoteStanzaReceived):
            self._enqueue(action)
        elif isinstance(action, VerifyKey):
            self.manager.spawn(self._verify(action))
        elif isinstance(action, PeerAuthenticated):
            self.authenticated[(action.remote, action.local)] = action.mechanism
            log.info(
                "%s authenticated as %s for %s (%s)",
                self.peer,
                action.remote,
                action.local,
                action.mechanism,
            )

    async def _verify(self, request: VerifyKey) -> None:
        is_valid, error = await self.manager.verify_key(request)
        self._execute(
            self.stream.key_verified(request.originating, request.receiving, is_valid, error)
        )

    def _enqueue(self, item: RemoteStanzaReceived) -> None:
        self._inbox.append(item)
        if len(self._inbox) >= MAX_INBOX and not self._reading_paused:
            self._reading_paused = True
            self._pause_input()
        if self._worker is None:
            self._worker = self.manager.server.spawn(self._drain())

    async def _drain(self) -> None:
        router = self.manager.server.core.router
        metrics = self.manager.server.core.metrics
        try:
            while self._inbox:
                item = self._inbox.popleft()
                try:
                    metrics.stanza_in(item.stanza.tag)
                    await router.from_remote(item.stanza, item.sender, item.to)
                except Exception:
                    log.exception("routing a stanza from %s failed", item.sender)
                if self._reading_paused and len(self._inbox) < MAX_INBOX // 2:
                    self._reading_paused = False
                    self._resume_input()
        finally:
            self._worker = None


# ---------------------------------------------------------------------- outbound
class S2SOutConnection(_Connection):
    """One connection to ``remote``, opened for ``local`` (more local domains may join)."""

    _kind = "s2sout"

    def __init__(self, manager: S2SManager, local: str, remote: str) -> None:
        super().__init__(manager)
        self.local = local
        self.remote = remote
        self.stream = S2SOutStream(local, remote, manager.out_policy)
        self.target: S2STarget | None = None
        self.is_connected = False  # TCP is up (then failures are timeouts, not "not found")
        self.verifies: dict[tuple[str, str, str], asyncio.Future[bool]] = {}
        self._lost = False

    @property
    def is_usable(self) -> bool:
        return not self._closing and not self._lost and not self.stream.closed

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        token = CONNECTION.set(self.conn_id)
        try:
            super().connection_made(transport)
            self.is_connected = True
            if self.target is not None and self.target.is_direct_tls:
                sslobj = transport.get_extra_info("ssl_object")
                checked = self.manager.tls.validator.check(sslobj)
                self._execute(self.stream.tls_established(checked))
            self._execute(self.stream.start())
        finally:
            CONNECTION.reset(token)

    def connection_lost(self, exc: Exception | None) -> None:
        token = CONNECTION.set(self.conn_id)
        try:
            self._closing = True
            self._lost = True
            self.manager.connection_ended(self, None)
        finally:
            CONNECTION.reset(token)

    def close_stream(
        self, condition: StreamErrorCondition | None = None, text: str | None = None
    ) -> None:
        self._execute(self.stream.close(condition, text))

    def send_stanza(self, stanza: Element) -> None:
        self.manager.server.core.metrics.stanza_out(stanza.tag)
        self._execute(self.stream.send_stanza(stanza))

    def authorize(self, local: str) -> None:
        self._execute(self.stream.authorize(local))

    def verify_key(self, receiving: str, stream_id: str, key: str) -> asyncio.Future[bool]:
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.verifies[(self.remote, receiving, stream_id)] = future
        self._execute(self.stream.verify_key(receiving, stream_id, key))
        return future

    def _tls_context(self) -> tuple[ssl.SSLContext | None, str | None]:
        return self.manager.tls.client_context(self.manager.tls_domain(self.local)), self.remote

    def _on_action(self, action: S2SAction) -> None:
        if isinstance(action, DomainAuthorized):
            log.info("%s → %s authorized", action.local, self.remote)
            self.manager.domain_authorized(self, action.local)
        elif isinstance(action, DomainRefused):
            log.info("%s → %s refused: %s", action.local, self.remote, action.text)
            self.manager.domain_refused(self, action.local, action.condition, action.text)
        elif isinstance(action, KeyVerified):
            key = (action.originating, action.receiving, action.stream_id)
            future = self.verifies.pop(key, None)
            if future is not None and not future.done():
                future.set_result(action.is_valid)

    async def run(self, resolver: S2SResolver) -> None:
        """Find the remote's servers and connect to the first that answers."""
        CONNECTION.set(self.conn_id)  # this task works for this connection only
        log.info("connecting to %s for %s", self.remote, self.local)
        loop = asyncio.get_running_loop()
        timeout = self.manager.settings.connect_timeout
        try:
            targets = await asyncio.wait_for(resolver.targets(self.remote), timeout)
        except (NoService, TimeoutError, OSError) as exc:
            self.manager.connection_ended(self, f"no server found for {self.remote}: {exc!r}")
            return
        errors: list[str] = []
        for target in targets:
            if self._closing:
                return
            self.target = target
            ctx = None
            if target.is_direct_tls:
                ctx = self.manager.tls.client_context(self.local, direct_tls=True)
                if ctx is None:
                    continue
            try:
                await asyncio.wait_for(
                    loop.create_connection(
                        lambda: self,
                        target.host,
                        target.port,
                        ssl=ctx,
                        server_hostname=self.remote if ctx is not None else None,
                    ),
                    timeout,
                )
                return
            except (TimeoutError, OSError) as exc:
                errors.append(f"{target.host}:{target.port}: {exc}")
        self._lost = True
        self.manager.connection_ended(
            self, f"cannot connect to {self.remote} ({'; '.join(errors) or 'no target'})"
        )


# ---------------------------------------------------------------------- manager
class _Route:
    """Stanzas from one local domain to one remote domain."""

    __slots__ = ("conn", "deadline", "is_authorized", "local", "queue", "remote")

    def __init__(self, local: str, remote: str) -> None:
        self.local = local
        self.remote = remote
        self.queue: deque[Element] = deque()
        self.conn: S2SOutConnection | None = None
        self.is_authorized = False
        self.deadline: Timer | None = None


class S2SManager:
    def __init__(self, server: App, dialback_secret: bytes | None = None) -> None:
        """``dialback_secret``: the XEP-0185 secret shared by a cluster's nodes; without
        one, a secret of this run only. The stream policies keep it from here on."""
        self.server = server
        self.settings = server.settings.s2s
        self.clock = server.clock
        self.secret = dialback_secret or secrets.token_bytes(32)
        ca_file = server.settings.resolve(self.settings.ca_file) if self.settings.ca_file else None
        self.tls = S2STls(ca_file)
        self.resolver = S2SResolver(self.settings.overrides, lifetime=self.settings.connect_timeout)
        self.routes: dict[tuple[str, str], _Route] = {}
        self.outgoing: set[S2SOutConnection] = set()
        self.incoming: set[S2SInConnection] = set()
        self.listeners: list[asyncio.Server] = []
        self._tasks: set[asyncio.Task[object]] = set()
        self._sweeper: asyncio.Task[None] | None = None
        limits = S2SLimits(max_stanza_size=self.settings.max_stanza_size)
        self.in_policy = S2SInPolicy(
            is_local_host=server.core.is_served,
            default_host=next(iter(server.settings.hosts)),
            dialback_secret=self.secret,
            can_starttls=lambda domain: self.tls.has(self.tls_domain(domain)),
            require_encryption=self.settings.require_encryption,
            require_certificate=self.settings.require_certificate,
            is_peer_allowed=self.is_allowed,
            limits=limits,
        )
        self.out_policy = S2SOutPolicy(
            dialback_secret=self.secret,
            require_encryption=self.settings.require_encryption,
            require_certificate=self.settings.require_certificate,
            limits=limits,
        )

    @property
    def is_enabled(self) -> bool:
        return self.settings.enabled

    def tls_domain(self, domain: str) -> str:
        """The hosted domain whose certificate serves ``domain``: its own; for a service
        domain of this server (MUC, PubSub, a component) without one, the host it is a
        subdomain of (else the first host). A peer that finds the name wrong falls back to
        dialback, which authenticates the service domain itself."""
        if self.tls.has(domain) or not self.server.core.is_served(domain):
            return domain
        hosts = list(self.server.settings.hosts)
        for host in hosts:
            if domain.endswith("." + host) and self.tls.has(host):
                return host
        return hosts[0] if hosts else domain

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        if not self.is_enabled:
            return
        for domain in self.server.settings.hosts:
            cert, key = self.server.settings.host_cert_paths(domain)
            self.tls.add_host(domain, cert, key)
        loop = asyncio.get_running_loop()
        plain: list[asyncio.Server] = [
            await listen(loop, lambda: S2SInConnection(self), host, self.settings.port)
            for host in self.settings.interfaces
        ]
        self.listeners.extend(plain)
        self.server.listeners["s2s"] = plain  # Server.addresses() and port("s2s") see them
        direct_ctx = self.tls.direct_tls_context()
        if self.settings.direct_tls_enabled and direct_ctx is not None:
            direct: list[asyncio.Server] = [
                await listen(
                    loop,
                    lambda: S2SInConnection(self, direct_tls=True),
                    host,
                    self.settings.direct_tls_port,
                    ssl=direct_ctx,
                    ssl_handshake_timeout=self.settings.connect_timeout,
                )
                for host in self.settings.interfaces
            ]
            self.listeners.extend(direct)
            self.server.listeners["s2s_direct_tls"] = direct
        self._sweeper = loop.create_task(self._sweep())

    async def stop(self) -> None:
        for srv in self.listeners:
            srv.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
        for conn in list(self.incoming) + list(self.outgoing):
            conn.close_stream(StreamErrorCondition.SYSTEM_SHUTDOWN)
        for route in list(self.routes.values()):
            self._fail_route(route, StanzaErrorCondition.REMOTE_SERVER_TIMEOUT, "shutting down")
        await asyncio.sleep(0)
        for _ in range(50):
            if not self.incoming and not self.outgoing:
                break
            await asyncio.sleep(0.02)
        for task in list(self._tasks):
            task.cancel()

    def spawn(self, coro: object) -> asyncio.Task[object]:
        task: asyncio.Task[object] = asyncio.get_running_loop().create_task(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[object]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("s2s task failed", exc_info=task.exception())

    # ------------------------------------------------------------------ policy
    def is_allowed(self, domain: str) -> bool:
        if domain in self.settings.deny:
            return False
        return not self.settings.allow or domain in self.settings.allow

    # ------------------------------------------------------------------ sending
    def send(self, stanza: Element, sender: JID, to: JID) -> None:
        """Deliver ``stanza`` from a local JID to a remote one, or bounce it to ``sender``."""
        local, remote = sender.domain, to.domain
        if not self.is_enabled:
            self._bounce(stanza, StanzaErrorCondition.REMOTE_SERVER_NOT_FOUND, None)
            return
        if not self.server.core.is_served(local):
            self._bounce(stanza, StanzaErrorCondition.REMOTE_SERVER_NOT_FOUND, "not ours to relay")
            return
        if not self.is_allowed(remote):
            text = f"this server does not federate with {remote}"
            self._bounce(stanza, StanzaErrorCondition.REMOTE_SERVER_NOT_FOUND, text)
            return
        if stanza.get("from") is None:
            stanza.set("from", str(sender))  # both addresses are required between servers
        if stanza.get("to") is None:
            stanza.set("to", str(to))
        route = self.routes.get((local, remote))
        if route is None:
            route = self.routes[(local, remote)] = _Route(local, remote)
        conn = route.conn
        if route.is_authorized and conn is not None and conn.is_usable:
            conn.send_stanza(stanza)
            return
        if len(route.queue) >= self.settings.max_queue:
            text = f"too many stanzas are waiting for the connection to {remote}"
            self._bounce(stanza, StanzaErrorCondition.RESOURCE_CONSTRAINT, text)
            return
        route.queue.append(stanza)
        if conn is None or not conn.is_usable:
            self._attach(route)

    def _attach(self, route: _Route) -> None:
        """Give ``route`` a connection: an existing one that allows piggy-backing, or a new
        one opened in its name."""
        route.is_authorized = False
        if route.deadline is not None:
            route.deadline.cancel()
        route.deadline = self.clock.call_later(
            self.settings.connect_timeout, partial(self._route_timed_out, route)
        )
        for conn in self.outgoing:
            if conn.remote == route.remote and conn.is_usable and conn.stream.can_piggyback:
                route.conn = conn
                conn.authorize(route.local)
                return
        conn = S2SOutConnection(self, route.local, route.remote)
        route.conn = conn
        self.outgoing.add(conn)
        self.spawn(conn.run(self.resolver))

    def _connection_for(self, local: str, remote: str) -> S2SOutConnection:
        """The connection of route (local, remote), set up when there is none."""
        route = self.routes.get((local, remote))
        if route is None:
            route = self.routes[(local, remote)] = _Route(local, remote)
        if route.conn is None or not route.conn.is_usable:
            self._attach(route)
        assert route.conn is not None
        return route.conn

    def _route_timed_out(self, route: _Route) -> None:
        route.deadline = None
        if route.is_authorized or self.routes.get((route.local, route.remote)) is not route:
            return
        conn = route.conn
        text = f"{route.remote} did not accept a connection in time"
        self._fail_route(route, StanzaErrorCondition.REMOTE_SERVER_TIMEOUT, text)
        if conn is not None and conn.stream.local == route.local and not conn.stream.authorized:
            conn.close_stream(StreamErrorCondition.CONNECTION_TIMEOUT, text)

    # ------------------------------------------------------------------ connection events
    def domain_authorized(self, conn: S2SOutConnection, local: str) -> None:
        route = self.routes.get((local, conn.remote))
        if route is None or route.conn is not conn:
            return
        route.is_authorized = True
        if route.deadline is not None:
            route.deadline.cancel()
            route.deadline = None
        queued, route.queue = route.queue, deque()
        for stanza in queued:
            conn.send_stanza(stanza)

    def domain_refused(
        self,
        conn: S2SOutConnection,
        local: str,
        condition: StanzaErrorCondition,
        text: str | None,
    ) -> None:
        route = self.routes.get((local, conn.remote))
        if route is not None and route.conn is conn:
            self._fail_route(route, condition, text)

    def connection_ended(self, conn: S2SOutConnection, reason: str | None) -> None:
        """``conn`` is gone (or never came up): its routes end; queued stanzas bounce."""
        self.outgoing.discard(conn)
        for future in conn.verifies.values():
            if not future.done():
                future.set_exception(ConnectionError(reason or "connection lost"))
        conn.verifies.clear()
        if conn.is_connected:
            condition = StanzaErrorCondition.REMOTE_SERVER_TIMEOUT
            text = reason or f"the connection to {conn.remote} was lost"
        else:
            condition = StanzaErrorCondition.REMOTE_SERVER_NOT_FOUND
            text = reason or f"cannot reach {conn.remote}"
        for route in list(self.routes.values()):
            if route.conn is conn:
                self._fail_route(route, condition, text)

    def _fail_route(self, route: _Route, condition: StanzaErrorCondition, text: str | None) -> None:
        if self.routes.get((route.local, route.remote)) is route:
            del self.routes[(route.local, route.remote)]
        if route.deadline is not None:
            route.deadline.cancel()
            route.deadline = None
        route.conn = None
        queued, route.queue = route.queue, deque()
        for stanza in queued:
            self._bounce(stanza, condition, text)

    def _bounce(self, stanza: Element, condition: StanzaErrorCondition, text: str | None) -> None:
        """Answer the sender with an error (never an error to an error, RFC 6120 §8.3.1)."""
        self.server.core.router.reply_error(None, stanza, StanzaError(condition, text))

    # ------------------------------------------------------------------ dialback
    async def verify_key(self, request: VerifyKey) -> tuple[bool, StanzaErrorCondition | None]:
        """Ask the authoritative server of ``request.originating`` (XEP-0220 §2.3)."""
        if not self.is_allowed(request.originating):
            return False, StanzaErrorCondition.FORBIDDEN
        conn = self._connection_for(request.receiving, request.originating)
        future = conn.verify_key(request.receiving, request.stream_id, request.key)
        try:
            return await wait_for(self.clock, future, self.settings.connect_timeout), None
        except TimeoutError:
            return False, StanzaErrorCondition.REMOTE_SERVER_TIMEOUT
        except ConnectionError:
            return False, StanzaErrorCondition.REMOTE_SERVER_NOT_FOUND
        finally:
            conn.verifies.pop((request.originating, request.receiving, request.stream_id), None)

    # ------------------------------------------------------------------ idle connections
    async def _sweep(self) -> None:
        clock = self.clock
        idle = self.settings.idle_timeout
        setup = self.settings.connect_timeout
        while True:
            await clock.sleep(min(SWEEP_INTERVAL, idle / 2))
            now = clock.monotonic()
            for conn in list(self.outgoing):
                if conn.stream.is_ready and now - conn.last_activity > idle:
                    log.info("closing idle connection to %s", conn.remote)
                    self._detach(conn)
                    conn.close_stream()
            for inbound in list(self.incoming):
                if now - inbound.last_activity > idle:
                    inbound.close_stream()
                elif not inbound.authenticated and now - inbound.connected_at > 2 * setup:
                    # A peer that never authenticates does not keep a connection (§4.6).
                    inbound.close_stream(StreamErrorCondition.CONNECTION_TIMEOUT, "too slow")

    def close_connections(self, remote: str | None = None) -> None:
        """Close every server-to-server connection (only those with ``remote`` when given)
        in an orderly way; the next stanza opens a fresh one."""
        for conn in list(self.outgoing):
            if remote is None or conn.remote == remote:
                self._detach(conn)
                conn.close_stream()
        for inbound in list(self.incoming):
            if remote is None or remote in inbound.stream.remote_domains:
                inbound.close_stream()

    def _detach(self, conn: S2SOutConnection) -> None:
        """Forget ``conn``'s routes before an orderly close: the next stanza reconnects."""
        self.outgoing.discard(conn)
        for key, route in list(self.routes.items()):
            if route.conn is conn and not route.queue:
                del self.routes[key]
