"""XEP-0114 external components: the listener and the IO shell of each connection.

* :class:`ComponentManager` (one per server) listens on ``components.port``, keeps which
  configured domain is connected, and serves every configured domain with the core for the
  server's whole life (:class:`ComponentDomain`): while the component is connected, stanzas
  to the domain and to JIDs on it are written to its stream; while it is not, they are
  answered with ``service-unavailable`` (type ``wait``): the server knows the service, it
  just does not provide it right now (RFC 6120 §8.3.3.19). ``remote-server-not-found``
  would be wrong: it says the domain does not exist or cannot be resolved.
* :class:`ComponentConnection` drives one ``ComponentStream`` over TCP with ``TcpShell``
  (batched writes, backpressure): the handshake deadline, the ``conflict`` check, and the
  ordered hand-over of the component's stanzas to the router through a bounded inbox.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING

from salon.core.session import C2SSession
from salon.errors import StanzaError, StanzaErrorCondition, StreamErrorCondition
from salon.jid import JID
from salon.logs import CONNECTION, new_connection_id
from salon.net.listen import listen
from salon.net.shell import MAX_INBOX, TcpShell
from salon.stream.component import (
    ComponentAction,
    ComponentAuthenticated,
    ComponentPolicy,
    ComponentStanzaReceived,
    ComponentStream,
)
from salon.stream.events import CloseConnection, Send
from salon.xml.element import Element

if TYPE_CHECKING:
    from salon.app import App

log = logging.getLogger(__name__)


class ComponentDomain:
    """The core's ``DomainService`` for one configured component domain."""

    def __init__(self, domain: str) -> None:
        self.domain = domain
        self.connection: ComponentConnection | None = None

    async def receive(
        self, stanza: Element, origin: C2SSession | None, sender: JID, to: JID
    ) -> None:
        conn = self.connection
        if conn is None:
            raise StanzaError(
                StanzaErrorCondition.SERVICE_UNAVAILABLE, "the component is not connected", "wait"
            )
        conn.send_stanza(stanza)


class ComponentManager:
    """The component listener and the configured domains' routes."""

    def __init__(self, server: App) -> None:
        self.server = server
        self.settings = server.settings.components
        self.domains: dict[str, ComponentDomain] = {}
        self.connections: set[ComponentConnection] = set()
        self._undo: list[object] = []
        self.policy = ComponentPolicy(
            secret_for=self._secret_for,
            is_connected=self._is_connected,
            max_stanza_size=self.settings.max_stanza_size,
        )

    @property
    def is_enabled(self) -> bool:
        return bool(self.settings.domains)

    def _secret_for(self, domain: str) -> str | None:
        if domain not in self.domains:
            return None  # configured but not served (its name is taken): host-unknown
        component = self.settings.domains.get(domain)
        return component.secret if component is not None else None

    def _is_connected(self, domain: str) -> bool:
        service = self.domains.get(domain)
        return service is not None and service.connection is not None

    async def start(self) -> list[asyncio.Server]:
        """Serve every configured domain with the core, then listen."""
        core = self.server.core
        for domain in self.settings.domains:
            service = ComponentDomain(domain)
            try:
                self._undo.append(core.serve_domain(domain, service))
            except ValueError:
                log.error("component %s: the domain is already served; not accepted", domain)
                continue
            self.domains[domain] = service
        loop = asyncio.get_running_loop()
        return [
            await listen(loop, lambda: ComponentConnection(self), host, self.settings.port)
            for host in self.settings.interfaces
        ]

    def stop(self) -> None:
        for conn in list(self.connections):
            conn.close_stream(StreamErrorCondition.SYSTEM_SHUTDOWN)

    def attach(self, conn: ComponentConnection, domain: str) -> bool:
        """Route ``domain`` to ``conn``; False when another connection has it already."""
        service = self.domains[domain]
        if service.connection is not None and service.connection is not conn:
            return False
        service.connection = conn
        log.info("component %s connected from %s", domain, conn.peer)
        return True

    def detach(self, conn: ComponentConnection) -> None:
        self.connections.discard(conn)
        domain = conn.stream.domain
        service = self.domains.get(domain) if domain else None
        if service is not None and service.connection is conn:
            service.connection = None
            log.info("component %s disconnected", domain)


class ComponentConnection(TcpShell):
    """One component's TCP connection."""

    _overflow_message = "closing component connection %s: send buffer over its limit"

    def __init__(self, manager: ComponentManager) -> None:
        self.manager = manager
        self.conn_id = new_connection_id("comp")  # its id in log lines (salon.logs)
        self.stream = ComponentStream(manager.policy)
        self.transport: asyncio.Transport | None = None
        self.peer = ""
        self._out: list[bytes] = []
        self._closing = False
        self._held_data: list[bytes] | None = None
        self._loop = asyncio.get_running_loop()
        self._clock = manager.server.clock
        self._shaper = None  # components are trusted local services: no read-rate limit
        self.last_activity = self._clock.monotonic()
        self._inbox: deque[ComponentStanzaReceived] = deque()
        self._worker: asyncio.Task[None] | None = None
        self._reading_paused = False
        self._deadline: asyncio.TimerHandle | None = None

    # ------------------------------------------------------------------ transport
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        token = CONNECTION.set(self.conn_id)
        try:
            settings = self.manager.settings
            self._attach(transport, settings.max_send_queue)
            self.manager.connections.add(self)
            self._deadline = self._loop.call_later(settings.handshake_timeout, self._too_slow)
        finally:
            CONNECTION.reset(token)

    def connection_lost(self, exc: Exception | None) -> None:
        token = CONNECTION.set(self.conn_id)
        try:
            self._closing = True
            if self._deadline is not None:
                self._deadline.cancel()
            self.manager.detach(self)
        finally:
            CONNECTION.reset(token)

    def _too_slow(self) -> None:
        if not self.stream.is_ready:
            self.close_stream(StreamErrorCondition.CONNECTION_TIMEOUT, "handshake too slow")

    # ------------------------------------------------------------------ Connection API
    def send_stanza(self, stanza: Element) -> None:
        if not self._closing and self.stream.is_ready:
            self._write(self.stream.stanza(stanza))

    def close_stream(
        self, condition: StreamErrorCondition | None = None, text: str | None = None
    ) -> None:
        if condition is not None:
            self._inbox.clear()  # stanzas after the fault are not processed
        self._execute(self.stream.close(condition, text))

    # ------------------------------------------------------------------ actions
    def _execute(self, actions: Iterable[ComponentAction]) -> None:
        for action in actions:
            if isinstance(action, Send):
                self._write(action.data)
            elif isinstance(action, CloseConnection):
                self._close()
                self.manager.detach(self)
            elif isinstance(action, ComponentStanzaReceived):
                self._enqueue(action)
            elif isinstance(action, ComponentAuthenticated):
                if self._deadline is not None:
                    self._deadline.cancel()
                if not self.manager.attach(self, action.domain):
                    self.close_stream(StreamErrorCondition.CONFLICT, "already connected")

    # ------------------------------------------------------------------ inbound stanzas
    def _enqueue(self, item: ComponentStanzaReceived) -> None:
        self._inbox.append(item)
        if len(self._inbox) >= MAX_INBOX and not self._reading_paused:
            self._reading_paused = True
            self._pause_input()
        if self._worker is None:
            self._worker = self.manager.server.spawn(self._drain())

    async def _drain(self) -> None:
        router = self.manager.server.core.router
        try:
            while self._inbox:
                item = self._inbox.popleft()
                try:
                    await router.from_remote(item.stanza, item.sender, item.to)
                except Exception:
                    log.exception("routing a stanza from component %s failed", item.sender)
                if self._reading_paused and len(self._inbox) < MAX_INBOX // 2:
                    self._reading_paused = False
                    self._resume_input()
        finally:
            self._worker = None
