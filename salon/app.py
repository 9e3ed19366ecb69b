"""The composition root: builds storage, the core and the network side, and wires them.

The core (``salon.core``) states what it needs from the network as Protocols (a federation
sender; client connections binding sessions); this is the one place that plugs the
implementations from ``salon.net`` in. It also owns the lifecycle: start, graceful stop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

from salon.cluster.node import ClusterNode
from salon.config import Settings
from salon.core.bytestreams import BYTESTREAM_RELAY
from salon.core.clock import Clock, SystemClock
from salon.core.hosts import ModuleChanges, plan_modules
from salon.core.items import (
    NONZA_NAMESPACE,
    PREAUTH_FEATURE,
    PREAUTH_IQ_NAMESPACE,
    STREAM_FEATURE,
)
from salon.core.registry import ItemKind
from salon.core.server import Server
from salon.errors import StreamErrorCondition
from salon.logs import CONNECTION
from salon.net.c2s import C2SConnection
from salon.net.component import ComponentManager
from salon.net.http import HttpService
from salon.net.limits import Limits
from salon.net.listen import listen
from salon.net.login_pacing import LoginPacer
from salon.net.metrics import TransportCollector
from salon.net.s2s import S2SManager
from salon.net.socks5 import Socks5Relay
from salon.net.tls import TlsContexts
from salon.storage import open_storage
from salon.storage.sql.pubsub import SqlPubSubStore
from salon.storage.sql.storage import SqlStorage
from salon.stream.c2s import C2SPolicy

log = logging.getLogger(__name__)

SWEEP_INTERVAL = 1.0  # seconds between idle/handshake timeout checks
HIBERNATE_AFTER = 10.0  # seconds of silence before an idle stream's parser is released

T = TypeVar("T")


C2S_BACKLOG = 1024
"""Client connections the kernel queues before Salon accepts them (capped by the system's
``net.core.somaxconn``). asyncio's default, 100, is too few when a network blip brings every
user back at once: the kernel drops the SYNs beyond it and those clients retry after 1, 3, 7,
15 s, so a login storm ends a minute late though the server sat idle.
"""


class App:
    """One running Salon: ``await App(settings).start()``, later ``await app.stop()``."""

    core: Server
    s2s: S2SManager

    def __init__(
        self, settings: Settings, *, clock: Clock | None = None, node_name: str | None = None
    ) -> None:
        self.settings = settings
        self.node_name = node_name  # a cluster node's name, when not the configured one
        self.clock: Clock = clock or SystemClock()
        self.tls = TlsContexts()
        self.connections: set[C2SConnection] = set()  # every client transport registers here
        self.listeners: dict[str, list[asyncio.Server]] = {}
        self.http: HttpService | None = None  # BOSH, WebSocket, host-meta, /chat
        self.components: ComponentManager | None = None  # XEP-0114, when any is configured
        self.socks5: Socks5Relay | None = None  # XEP-0065 relay, when a host runs proxy65
        self._sweeper: asyncio.Task[None] | None = None
        self._lag_probe: asyncio.Task[None] | None = None
        self.limits: Limits | None = None
        self.login_pacer: LoginPacer | None = None
        self._stopped = asyncio.Event()
        c2s = settings.c2s
        hosted = set(settings.hosts)
        self.c2s_policy = C2SPolicy(
            is_local_host=hosted.__contains__,
            default_host=next(iter(settings.hosts)),
            can_starttls=lambda host: c2s.starttls_enabled and self.tls.has(host),
            require_encryption=c2s.require_encryption,
            max_stanza_size=c2s.max_stanza_size,
            max_depth=c2s.max_depth,
            max_auth_attempts=c2s.max_auth_attempts,
            preauth_iq_namespaces=lambda host: self._host_items(host, PREAUTH_IQ_NAMESPACE),
            preauth_features=lambda host: self._host_items(host, PREAUTH_FEATURE),
            postauth_features=lambda host: self._host_items(host, STREAM_FEATURE),
            nonza_namespaces=lambda host: self._host_items(host, NONZA_NAMESPACE),
        )

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        settings = self.settings
        storage = await open_storage(settings.storage_url(), base_dir=settings.data_path())
        self.cluster: ClusterNode | None = None
        if settings.cluster.enabled:
            if isinstance(storage, SqlStorage) and isinstance(storage.pubsub, SqlPubSubStore):
                storage.pubsub.disable_cache()  # other nodes write the same nodes
            # sessions in a directory shared over Redis, stanzas between nodes over Redis
            self.cluster = ClusterNode(settings.cluster, self.node_name)
            self.core = Server(settings, storage, clock=self.clock, sessions=self.cluster.directory)
            self.cluster.server = self.core
            self.core.pending_iqs.node = self.cluster.name
            self.core.pending_iqs.forward = self.cluster.forward_answer
            self.core.peers = self.cluster
            self.core.owned_domain = self.cluster.owned_service
        else:
            self.core = Server(settings, storage, clock=self.clock)
        metrics = self.core.metrics
        metrics.registry.register(TransportCollector(self))
        engine = getattr(storage, "engine", None)
        if engine is not None:
            metrics.observe_sql(engine)
        self._lag_probe = asyncio.get_running_loop().create_task(metrics.probe_loop_lag())
        self.limits = Limits(settings.limits, self.clock, metrics)  # abuse controls
        # login input within a time budget per loop turn (salon.net.login_pacing)
        self.login_pacer = LoginPacer(asyncio.get_running_loop())
        secret = None
        if self.cluster is not None and settings.s2s.enabled:
            # XEP-0185 keys made on one node must verify on any other: one secret for all
            secret = await self.cluster.dialback_secret()
        # federation: listeners, outgoing connections, bounces
        self.s2s = S2SManager(self, dialback_secret=secret)
        if self.s2s.is_enabled:
            self.core.federation = self.s2s
        for domain in settings.hosts:
            cert, key = settings.host_cert_paths(domain)
            self.tls.add_host(domain, cert, key)
        self.core.load_hosts()
        if self.cluster is not None:
            await self.cluster.start()
        await self._listen()
        await self.s2s.start()
        await self.core.start_modules()
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep())
        log.info("Salon serving %s on %s", ", ".join(self.core.hosts), self.addresses())

    async def _listen(self) -> None:
        loop = asyncio.get_running_loop()
        c2s = self.settings.c2s
        if c2s.starttls_enabled or not c2s.require_encryption:
            self.listeners["c2s"] = [
                await listen(loop, lambda: C2SConnection(self), host, c2s.port, backlog=C2S_BACKLOG)
                for host in c2s.interfaces
            ]
        direct_ctx = self.tls.direct_tls_context()
        if c2s.direct_tls_enabled and direct_ctx is not None:
            self.listeners["c2s_direct_tls"] = [
                await listen(
                    loop,
                    lambda: C2SConnection(self, direct_tls=True),
                    host,
                    c2s.direct_tls_port,
                    ssl=direct_ctx,
                    ssl_handshake_timeout=c2s.handshake_timeout,
                    backlog=C2S_BACKLOG,
                )
                for host in c2s.interfaces
            ]
        if self.settings.http.enabled:
            self.http = HttpService(self)
            self.listeners.update(await self.http.start())
        if self.settings.components.domains:
            self.components = ComponentManager(self)
            self.listeners["component"] = await self.components.start()
        await self._start_socks5()

    async def _start_socks5(self) -> None:
        """The XEP-0065 relay, once a host runs proxy65 (at start or after a reload)."""
        proxied = [h for h in self.core.hosts.values() if "proxy65" in h.modules]
        if proxied and self.socks5 is None:
            self.socks5 = Socks5Relay(self.settings.socks5, self.clock)
            self.listeners["socks5"] = await self.socks5.start()
        if self.socks5 is not None:
            for host in proxied:
                if self.socks5 not in host.items.get(BYTESTREAM_RELAY):
                    host.items.add(BYTESTREAM_RELAY, self.socks5)

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
        modules stopped and unloaded, storage closed."""
        for servers in self.listeners.values():
            for srv in servers:
                srv.close()
        for conn in list(self.connections):
            conn.close_stream(StreamErrorCondition.SYSTEM_SHUTDOWN)
        await self.s2s.stop()
        if self.components is not None:
            self.components.stop()
        if self.socks5 is not None:
            self.socks5.stop()
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._lag_probe is not None:
            self._lag_probe.cancel()
        await asyncio.sleep(0)
        for _ in range(50):
            if not self.connections and not self.core.is_busy:
                break
            await asyncio.sleep(0.02)
        log.debug("stop: connections closed")
        await self.core.drain_tasks()
        log.debug("stop: background tasks done")
        if self.cluster is not None:
            await self.cluster.stop()
            log.debug("stop: left the cluster")
        if self.http is not None:
            await self.http.stop()
        await self.core.stop_modules()
        log.debug("stop: modules stopped")
        await self.core.storage.close()
        self._stopped.set()

    async def reload(self, settings: Settings) -> dict[str, ModuleChanges]:
        """SIGHUP: take the hosts' certificates again (new TLS handshakes use them; open
        connections keep theirs), the options read per use (limits, admins, log levels,
        timeouts) and the modules: a module newly enabled starts, one no longer enabled
        stops, one whose options changed starts again with them (per host; sessions stay
        connected). Listeners and the set of hosted domains stay as they are: a change
        there needs a restart, and the log says so.

        A wrong module list or module options raise :class:`ModuleError` before anything
        changed: the running configuration stays."""
        modules_plan = plan_modules(list(settings.modules.enabled), settings.modules.options)
        old = self.settings
        for section in ("c2s", "s2s", "http", "components"):
            if getattr(old, section) != getattr(settings, section):
                log.warning("[%s] changed: it takes effect at the next restart", section)
        if set(old.hosts) != set(settings.hosts):
            log.warning("the hosted domains changed: they take effect at the next restart")
        kept = {name: getattr(settings, name) for name in ("server", "limits")}
        for name, value in kept.items():
            setattr(self.settings, name, value)
        for domain in self.core.hosts:
            if domain in settings.hosts:
                self.settings.hosts[domain] = settings.hosts[domain]
            cert, key = self.settings.host_cert_paths(domain)
            if self.tls.add_host(domain, cert, key):
                log.info("reloaded the certificate of %s from %s", domain, cert)
            if self.s2s.is_enabled:
                self.s2s.tls.add_host(domain, cert, key)
        if self.limits is not None:
            self.limits.configure(self.settings.limits)
        changes: dict[str, ModuleChanges] = {}
        for domain, host in self.core.hosts.items():
            changes[domain] = await host.reconfigure(modules_plan)
            if changes[domain]:
                log.info(
                    "modules of %s: started %s, stopped %s, restarted %s",
                    domain,
                    changes[domain].started or "none",
                    changes[domain].stopped or "none",
                    changes[domain].restarted or "none",
                )
        self.settings.modules = settings.modules
        await self._start_socks5()
        log.info("reloaded %s", settings.config_path or "the configuration")
        return changes

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        return self.core.spawn(coro)

    async def _sweep(self) -> None:
        """Close connections that stay silent or never finish negotiating (RFC 6120 §4.6)."""
        c2s = self.settings.c2s
        clock = self.clock
        while True:
            await clock.sleep(SWEEP_INTERVAL)
            now = clock.monotonic()
            for conn in list(self.connections):
                if conn.session is None and now - conn.connected_at > c2s.handshake_timeout:
                    CONNECTION.set(conn.conn_id)  # what closing it logs is about it
                    conn.close_stream(StreamErrorCondition.CONNECTION_TIMEOUT, "too slow")
                elif now - conn.last_activity > c2s.idle_timeout:
                    CONNECTION.set(conn.conn_id)
                    conn.close_stream(StreamErrorCondition.CONNECTION_TIMEOUT, "idle")
                elif now - conn.last_activity > HIBERNATE_AFTER:
                    conn.stream.hibernate()  # frees the idle stream's XML parser
            CONNECTION.set(None)

    def _host_items(self, domain: str, kind: ItemKind[T]) -> list[T]:
        host = self.core.hosts.get(domain)
        return host.items.get(kind) if host is not None else []
