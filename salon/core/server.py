"""Wiring and lifecycle: storage, hosts and their modules, listeners, sessions, timers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from salon.config import Settings
from salon.core.events import PreAuthIqRequest, ResourceBound, ResourceUnbound
from salon.core.hosts import VirtualHost
from salon.core.iq import PendingIqs
from salon.core.passwords import PasswordPool
from salon.core.router import Router
from salon.core.session import C2SSession
from salon.core.sessions import SessionRegistry
from salon.errors import StanzaError, StanzaErrorCondition, StreamErrorCondition
from salon.jid import JID
from salon.net.c2s import C2SConnection
from salon.net.http import HttpService
from salon.net.s2s import S2SManager
from salon.net.tls import TlsContexts
from salon.storage import Storage, open_storage
from salon.stream.c2s import C2SPolicy
from salon.xml.element import Element
from salon.xml.stanza import error_reply

log = logging.getLogger(__name__)

SWEEP_INTERVAL = 1.0  # seconds between idle/handshake timeout checks
HIBERNATE_AFTER = 10.0  # seconds of silence before an idle stream's parser is released


class Server:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.storage: Storage = None  # type: ignore[assignment]  # set by start()
        self.hosts: dict[str, VirtualHost] = {}
        self.sessions = SessionRegistry()
        self.router = Router(self)
        self.pending_iqs = PendingIqs()
        self.passwords = PasswordPool()  # PBKDF2 off the event loop
        self.tls = TlsContexts()
        self.connections: set[C2SConnection] = set()
        self.listeners: dict[str, list[asyncio.AbstractServer]] = {}
        self.http: HttpService | None = None  # BOSH, WebSocket, host-meta, /chat
        self.s2s = S2SManager(self)  # federation: listeners, outgoing connections, bounces
        self._tasks: set[asyncio.Task[Any]] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self._stopped = asyncio.Event()
        c2s = settings.c2s
        self.c2s_policy = C2SPolicy(
            is_local_host=self.hosts.__contains__,
            default_host=next(iter(settings.hosts)),
            can_starttls=lambda host: c2s.starttls_enabled and self.tls.has(host),
            require_encryption=c2s.require_encryption,
            max_stanza_size=c2s.max_stanza_size,
            max_depth=c2s.max_depth,
            max_auth_attempts=c2s.max_auth_attempts,
            preauth_iq_namespaces=lambda host: self._host_items(host, "preauth_iq_namespace"),
            preauth_features=lambda host: self._host_items(host, "preauth_feature"),
            postauth_features=lambda host: self._host_items(host, "stream_feature"),
        )

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        settings = self.settings
        self.storage = await open_storage(settings.storage_url(), base_dir=settings.data_path())
        for domain in settings.hosts:
            cert, key = settings.host_cert_paths(domain)
            self.tls.add_host(domain, cert, key)
            self.hosts[domain] = VirtualHost(self, domain)
        for host in self.hosts.values():
            host.load_modules(list(settings.modules.enabled), settings.modules.options)
        await self._listen()
        await self.s2s.start()
        for host in self.hosts.values():
            for module in host.modules.values():
                await module.start()
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep())
        log.info("Salon serving %s on %s", ", ".join(self.hosts), self.addresses())

    async def _listen(self) -> None:
        loop = asyncio.get_running_loop()
        c2s = self.settings.c2s
        if c2s.starttls_enabled or not c2s.require_encryption:
            self.listeners["c2s"] = [
                await loop.create_server(lambda: C2SConnection(self), host, c2s.port)
                for host in c2s.interfaces
            ]
        direct_ctx = self.tls.direct_tls_context()
        if c2s.direct_tls_enabled and direct_ctx is not None:
            self.listeners["c2s_direct_tls"] = [
                await loop.create_server(
                    lambda: C2SConnection(self, direct_tls=True),
                    host,
                    c2s.direct_tls_port,
                    ssl=direct_ctx,
                    ssl_handshake_timeout=c2s.handshake_timeout,
                )
                for host in c2s.interfaces
            ]
        if self.settings.http.enabled:
            self.http = HttpService(self)
            self.listeners.update(await self.http.start())

    def addresses(self) -> dict[str, list[tuple[str, int]]]:
        """The bound (address, port) pairs of each listener kind."""
        return {
            kind: [sock.getsockname()[:2] for srv in servers for sock in srv.sockets]
            for kind, servers in self.listeners.items()
        }

    def port(self, kind: str = "c2s") -> int:
        return int(self.addresses()[kind][0][1])

    async def stop(self) -> None:
        """Graceful stop: no new connections, every stream closed with system-shutdown,
        modules unloaded, storage closed."""
        for servers in self.listeners.values():
            for srv in servers:
                srv.close()
        for conn in list(self.connections):
            conn.close_stream(StreamErrorCondition.SYSTEM_SHUTDOWN)
        await self.s2s.stop()
        if self._sweeper is not None:
            self._sweeper.cancel()
        await asyncio.sleep(0)
        for _ in range(50):
            if not self.connections and not self._tasks:
                break
            await asyncio.sleep(0.02)
        if self.http is not None:
            await self.http.stop()
        for host in self.hosts.values():
            for module in host.modules.values():
                try:
                    await module.stop()
                except Exception:
                    log.exception("stopping module %s failed", module.name)
            host.unload_modules()
        if self.storage is not None:
            await self.storage.close()
        self.passwords.close()
        self._stopped.set()

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

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

    async def _sweep(self) -> None:
        """Close connections that stay silent or never finish negotiating (RFC 6120 §4.6)."""
        c2s = self.settings.c2s
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            now = loop.time()
            for conn in list(self.connections):
                if conn.session is None and now - conn.connected_at > c2s.handshake_timeout:
                    conn.close_stream(StreamErrorCondition.CONNECTION_TIMEOUT, "too slow")
                elif now - conn.last_activity > c2s.idle_timeout:
                    conn.close_stream(StreamErrorCondition.CONNECTION_TIMEOUT, "idle")
                elif now - conn.last_activity > HIBERNATE_AFTER:
                    conn.stream.hibernate()  # frees the idle stream's XML parser

    # ------------------------------------------------------------------ sessions
    async def bind(
        self, conn: C2SConnection, username: str, domain: str, resource: str | None
    ) -> C2SSession:
        bare = JID.make(username, domain)
        resource, replaced = self.sessions.pick_resource(bare, resource)
        if replaced is not None:
            # RFC 6120 §7.7.2.2: the newer session wins; the older gets <conflict/>.
            self.sessions.remove(replaced)
            replaced.close(StreamErrorCondition.CONFLICT, "replaced by a new connection")
            await self.unbind(replaced, "conflict")
        session = C2SSession(bare.with_resource(resource), conn)
        self.sessions.add(session)
        await self.hosts[domain].hooks.fire(ResourceBound(session))
        return session

    async def unbind(self, session: C2SSession, error: str | None) -> None:
        """A session ended: forget it and let modules react (unavailable presence, ...)."""
        if session.extras.get("_unbound"):
            return
        session.extras["_unbound"] = True
        session.is_closed = True
        self.sessions.remove(session)
        host = self.hosts.get(session.host)
        if host is not None:
            await host.hooks.fire(ResourceUnbound(session, error))

    def _host_items(self, domain: str, kind: str) -> list[Any]:
        host = self.hosts.get(domain)
        return host.items(kind) if host is not None else []

    async def preauth_iq(self, domain: str, stanza: Element, address: str) -> Element:
        """The reply to an iq a client sent before authenticating (XEP-0077 registration),
        from the module that opened its namespace on ``domain``."""
        host = self.hosts.get(domain)
        event = PreAuthIqRequest(domain, stanza, address)
        try:
            if host is not None and await host.hooks.fire(event) and event.reply is not None:
                return event.reply
        except StanzaError as err:
            return error_reply(stanza, err)
        return error_reply(stanza, StanzaErrorCondition.SERVICE_UNAVAILABLE)

    async def nonza(self, conn: C2SConnection, element: Element) -> None:
        conn.close_stream(StreamErrorCondition.UNSUPPORTED_STANZA_TYPE)
