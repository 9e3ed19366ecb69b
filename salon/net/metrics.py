"""``/metrics``: the Prometheus endpoint, and the gauges only the network side can read.

:class:`TransportCollector` reads the live connections when scraped (sessions per
transport, s2s connections per remote domain, queue lengths), so nothing on the hot path
keeps these numbers. The core's counters (``salon.core.metrics``) sit in the same registry.
The endpoint answers only clients whose address is in ``http.metrics_allow`` (loopback by
default); the address is the socket's peer, never a proxy header.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from salon.app import App

log = logging.getLogger(__name__)

OFFLINE_COUNT_TIMEOUT = 2.0  # seconds a scrape waits for the offline-message count


def transport_of(conn: object) -> str:
    """The transport name of a client connection, for labels."""
    name = type(conn).__name__
    if name == "WebSocketConnection":
        return "websocket"
    if name == "BoshSession":
        return "bosh"
    return "c2s"


class TransportCollector(Collector):
    def __init__(self, server: App) -> None:
        self.server = server

    def collect(self) -> Iterator[Any]:
        server = self.server
        sessions: Counter[str] = Counter({"c2s": 0, "websocket": 0, "bosh": 0, "s2s": 0})
        connections: Counter[str] = Counter({"c2s": 0, "websocket": 0, "bosh": 0})
        inbox = 0
        send_buffer = 0
        for conn in list(server.connections):
            transport = transport_of(conn)
            connections[transport] += 1
            if conn.session is not None:
                sessions[transport] += 1
            inbox += len(conn._inbox or ())
            tcp = getattr(conn, "transport", None)
            if tcp is not None:
                send_buffer += tcp.get_write_buffer_size()
        s2s_in: Counter[str] = Counter()
        s2s_out: Counter[str] = Counter()
        route_queue = 0
        s2s = getattr(server, "s2s", None)
        if s2s is not None:
            for incoming in list(s2s.incoming):
                for remote in incoming.stream.remote_domains or {"(unauthenticated)"}:
                    s2s_in[remote] += 1
                inbox += len(incoming._inbox)
            for outgoing in list(s2s.outgoing):
                s2s_out[outgoing.remote] += 1
            for route in list(s2s.routes.values()):
                route_queue += len(route.queue)
            sessions["s2s"] = len(s2s.incoming) + len(s2s.outgoing)
        family = GaugeMetricFamily(
            "salon_sessions",
            "Bound sessions by transport (s2s: connections).",
            labels=["transport"],
        )
        for transport, count in sessions.items():
            family.add_metric([transport], count)
        yield family
        family = GaugeMetricFamily(
            "salon_client_connections",
            "Open client connections by transport, bound or not.",
            labels=["transport"],
        )
        for transport, count in connections.items():
            family.add_metric([transport], count)
        yield family
        family = GaugeMetricFamily(
            "salon_s2s_connections",
            "Server-to-server connections by direction and remote domain.",
            labels=["direction", "remote"],
        )
        for direction, counts in (("in", s2s_in), ("out", s2s_out)):
            for remote, count in sorted(counts.items()):
                family.add_metric([direction, remote], count)
        yield family
        family = GaugeMetricFamily(
            "salon_queue_length", "Items waiting in Salon's queues.", labels=["queue"]
        )
        family.add_metric(["inbound_stanzas"], inbox)
        family.add_metric(["s2s_pending"], route_queue)
        family.add_metric(["background_tasks"], len(server.core._tasks))
        yield family
        family = GaugeMetricFamily(
            "salon_send_buffer_bytes", "Bytes written to client sockets and not yet sent."
        )
        family.add_metric([], send_buffer)
        yield family


class MetricsEndpoint:
    """The ``/metrics`` handler of the web server."""

    def __init__(self, server: App) -> None:
        self.server = server
        self.networks = [
            ipaddress.ip_network(net, strict=False) for net in server.settings.http.metrics_allow
        ]

    def is_allowed(self, request: web.Request) -> bool:
        peername = request.transport.get_extra_info("peername") if request.transport else None
        if not peername:
            return False
        try:
            address = ipaddress.ip_address(str(peername[0]).split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in net for net in self.networks)

    async def handle(self, request: web.Request) -> web.Response:
        if not self.is_allowed(request):
            return web.Response(status=403, text="Metrics are not served to this address.\n")
        metrics = self.server.core.metrics
        engine = getattr(self.server.core.storage, "engine", None)
        if engine is not None:
            try:
                await asyncio.wait_for(metrics.count_offline(engine), OFFLINE_COUNT_TIMEOUT)
            except Exception as exc:  # the scrape still answers, without a fresh count
                log.warning("counting offline messages for /metrics failed: %r", exc)
        body = generate_latest(metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
