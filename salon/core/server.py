"""The application core: hosts and their modules, service domains, sessions, the router,
pending IQs, background tasks. It knows nothing of sockets: ``salon.app`` builds it with
storage, a clock and a federation sender, and the network side calls ``bind``/``unbind``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from salon.config import Settings
from salon.core.clock import Clock, SystemClock
from salon.core.domains import DomainService
from salon.core.events import (
    ClientNonza,
    ConnectionLost,
    PreAuthIqRequest,
    ResourceBound,
    ResourceUnbound,
)
from salon.core.hosts import VirtualHost
from salon.core.iq import PendingIqs
from salon.core.memory import ChurnRelease
from salon.core.metrics import CoreMetrics
from salon.core.pacing import FanOut
from salon.core.passwords import PasswordPool
from salon.core.ports import FederationSender, NoFederation, NoPeers, PeerNotifier
from salon.core.router import Router
from salon.core.session import C2SSession, Connection
from salon.core.sessions import SessionDirectory, SessionRegistry
from salon.errors import StanzaError, StanzaErrorCondition, StreamErrorCondition
from salon.jid import JID
from salon.storage.interfaces import Storage
from salon.xml.element import Element
from salon.xml.stanza import error_reply

log = logging.getLogger(__name__)

STOP_GRACE = 5.0  # seconds a graceful stop waits for background work at each step


class Server:
    def __init__(
        self,
        settings: Settings,
        storage: Storage,
        *,
        clock: Clock | None = None,
        sessions: SessionDirectory | None = None,
    ) -> None:
        self.settings = settings
        self.storage = storage
        self.clock: Clock = clock or SystemClock()
        self.hosts: dict[str, VirtualHost] = {}
        self.domains: dict[str, DomainService] = {}  # MUC, PubSub, upload, components
        self.sessions: SessionDirectory = sessions if sessions is not None else SessionRegistry()
        self.router = Router(self)
        self.pending_iqs = PendingIqs()
        self.federation: FederationSender = NoFederation()
        self.peers: PeerNotifier = NoPeers()  # the other nodes of a cluster, told of changes
        # a cluster wraps the service domains whose entities keep state in memory (MUC
        # rooms: ``cluster_owned``) so that each entity lives on one node
        self.owned_domain: Callable[[str, DomainService], DomainService] | None = None
        self.passwords = PasswordPool()  # PBKDF2 off the event loop
        self.metrics = CoreMetrics()  # counters /metrics exports (salon.core.metrics)
        self.fanout = FanOut()  # presence to every contact in turns (salon.core.pacing)
        # after a mass disconnect: collect and give the freed heap back (salon/core/memory.py)
        self.bound = 0  # sessions bound and not yet unbound
        self.churn = ChurnRelease(self.clock, lambda: self.bound)
        self._tasks: set[asyncio.Task[Any]] = set()

    # ------------------------------------------------------------------ lifecycle
    def load_hosts(self) -> None:
        for domain in self.settings.hosts:
            self.hosts[domain] = VirtualHost(self, domain)
        for host in self.hosts.values():
            host.load_modules(list(self.settings.modules.enabled), self.settings.modules.options)

    async def start_modules(self) -> None:
        for host in self.hosts.values():
            for module in host.modules.values():
                await module.start()

    async def stop_modules(self) -> None:
        for host in self.hosts.values():
            for module in host.modules.values():
                try:
                    await module.stop()
                except Exception:
                    log.exception("stopping module %s failed", module.name)
            cancelled = host.unload_modules()
            if cancelled:  # a timer cut short mid-query finishes before storage closes
                await asyncio.wait(cancelled, timeout=STOP_GRACE)
        self.passwords.close()
        self.churn.cancel()

    async def drain_tasks(self) -> None:
        """Let background work finish (bounded), then cancel what is left and wait for it,
        so nothing still talks to storage when it closes."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=STOP_GRACE)
        leftover = set(self._tasks)
        for task in leftover:
            task.cancel()
        if leftover:
            _, stuck = await asyncio.wait(leftover, timeout=STOP_GRACE)
            for task in stuck:
                log.error("a background task ignored cancellation: %r", task)

    @property
    def is_busy(self) -> bool:
        return bool(self._tasks)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run ``coro`` in the background, keeping a reference and logging failures."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task failed", exc_info=task.exception())

    # ------------------------------------------------------------------ service domains
    def serve_domain(self, domain: str, service: DomainService) -> Callable[[], None]:
        if domain in self.hosts or domain in self.domains:
            raise ValueError(f"{domain} is already served")
        if self.owned_domain is not None and getattr(service, "cluster_owned", False):
            service = self.owned_domain(domain, service)
        self.domains[domain] = service

        def remove() -> None:
            if self.domains.get(domain) is service:
                del self.domains[domain]

        return remove

    def is_served(self, domain: str) -> bool:
        """Whether stanzas for ``domain`` stay on this server."""
        return domain in self.hosts or domain in self.domains

    # ------------------------------------------------------------------ sessions
    async def bind(
        self, conn: Connection, username: str, domain: str, resource: str | None
    ) -> C2SSession:
        bare = JID.make(username, domain)
        resource, replaced = self.sessions.pick_resource(bare, resource)
        if replaced is not None:
            # RFC 6120 §7.7.2.2: the newer session wins; the older gets <conflict/>.
            self.sessions.remove(replaced)
            replaced.close(StreamErrorCondition.CONFLICT, "replaced by a new connection")
            if not replaced.is_remote:  # a session on another node: that node unbinds it
                await self.unbind(replaced, "conflict")
        session = C2SSession(bare.with_resource(resource), conn)
        self.sessions.add(session)
        self.bound += 1
        await self.hosts[domain].hooks.fire(ResourceBound(session))
        return session

    async def unbind(self, session: C2SSession, error: str | None) -> None:
        """A session ended: forget it and let modules react (unavailable presence, ...)."""
        if session.is_unbound:
            return
        session.is_unbound = True
        session.is_closed = True
        log.info("%s ended: %s", session.jid, error or "closed")
        self.sessions.remove(session)
        self.bound -= 1
        host = self.hosts.get(session.host)
        if host is not None:
            await host.hooks.fire(ResourceUnbound(session, error))
        self.churn.session_ended()

    async def connection_lost(
        self, session: C2SSession, conn: Connection, reason: str | None, *, stream_ended: bool
    ) -> None:
        """The connection of ``session`` is gone: unbind it, unless a module keeps it for a
        while (XEP-0198 hibernation; that module unbinds it later)."""
        if session.is_unbound:
            return
        host = self.hosts.get(session.host)
        event = ConnectionLost(session, conn, reason, stream_ended)
        if host is not None and await host.hooks.fire(event):
            return
        await self.unbind(session, reason)

    async def client_nonza(
        self, conn: Connection, user: JID, session: C2SSession | None, element: Element
    ) -> C2SSession | None:
        """Hand a client's nonza to the module that takes it; returns the session it resumed
        on ``conn``, if any. When nobody takes it the stream ends."""
        host = self.hosts.get(user.domain)
        event = ClientNonza(conn, user, session, element)
        if host is not None and await host.hooks.fire(event):
            return event.resumed
        if session is None:
            conn.close_stream(StreamErrorCondition.NOT_AUTHORIZED, "bind a resource first")
        else:
            text = f"<{element.tag}/> in {element.ns or 'no namespace'}"
            conn.close_stream(StreamErrorCondition.UNSUPPORTED_STANZA_TYPE, text)
        return None

    def host_items(self, domain: str) -> VirtualHost | None:
        return self.hosts.get(domain)

    async def preauth_iq(
        self, domain: str, stanza: Element, address: str, connection: object | None = None
    ) -> Element:
        """The reply to an iq a client sent before authenticating (XEP-0077 registration),
        from the module that opened its namespace on ``domain``."""
        host = self.hosts.get(domain)
        event = PreAuthIqRequest(domain, stanza, address, connection=connection)
        try:
            if host is not None and await host.hooks.fire(event) and event.reply is not None:
                return event.reply
        except StanzaError as err:
            return error_reply(stanza, err)
        return error_reply(stanza, StanzaErrorCondition.SERVICE_UNAVAILABLE)
