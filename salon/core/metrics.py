"""The counters the core owns, exported in Prometheus' text format by ``salon.net.metrics``.

The hot path pays as little as possible: a stanza in or out, an authentication and a limit
hit each add one to a plain ``int`` in a dict whose keys are fixed up front (no label
lookups, no locks); the numbers become metric families only when ``/metrics`` is scraped
(:class:`CoreCollector`). The storage-latency and event-loop-lag histograms use
prometheus_client's ``Histogram`` (a few observations per second at most).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector

import salon

log = logging.getLogger(__name__)

STANZA_KINDS = ("message", "presence", "iq")
#: The limits Salon enforces, each counted when it acts (README, "Abuse controls").
LIMIT_NAMES = (
    "read_shaped",  # a connection's reading paused by its byte-rate shaper
    "connections_per_ip",  # a connection refused: its address has too many open
    "ip_blocked",  # a connection refused or closed: its address is blocked after failures
    "auth_failures_block",  # an address blocked for too many SASL failures
    "stanza_rate",  # a stanza refused by the per-session stanza-rate limit
    "spam_reports",  # XEP-0377 reports received
)
LOOP_LAG_INTERVAL = 0.5  # seconds between event-loop lag probes
STORAGE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class CoreMetrics:
    """Counters of one running server. ``registry`` is what ``/metrics`` exports; the
    network side registers its own collector (sessions, queues, s2s) in it."""

    __slots__ = (
        "auth_failures",
        "auth_successes",
        "limits",
        "loop_lag",
        "loop_lag_seconds",
        "offline_held",
        "registry",
        "stanzas_in",
        "stanzas_out",
        "started",
        "storage_latency",
    )

    def __init__(self) -> None:
        self.started = time.time()
        self.stanzas_in: dict[str, int] = dict.fromkeys(STANZA_KINDS, 0)
        self.stanzas_out: dict[str, int] = dict.fromkeys(STANZA_KINDS, 0)
        self.auth_successes: dict[str, int] = {}
        self.auth_failures: dict[str, int] = {}
        self.limits: dict[str, int] = dict.fromkeys(LIMIT_NAMES, 0)
        self.offline_held: int | None = None  # refreshed in the background (not per scrape)
        self.loop_lag_seconds = 0.0  # the last probe's lag
        self.registry = CollectorRegistry(auto_describe=True)
        self.storage_latency = Histogram(
            "salon_storage_latency_seconds",
            "Time a database statement took, by statement kind.",
            ["operation"],
            buckets=STORAGE_BUCKETS,
            registry=self.registry,
        )
        self.loop_lag = Histogram(
            "salon_event_loop_lag_seconds",
            "How late the event loop ran a timer (time spent in callbacks that do not yield).",
            buckets=LAG_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(CoreCollector(self))

    # ------------------------------------------------------------------ hot-path counters
    def stanza_in(self, kind: str) -> None:
        counts = self.stanzas_in
        if kind in counts:
            counts[kind] += 1

    def stanza_out(self, kind: str) -> None:
        counts = self.stanzas_out
        if kind in counts:
            counts[kind] += 1

    def auth(self, mechanism: str, *, success: bool) -> None:
        counts = self.auth_successes if success else self.auth_failures
        mechanism = mechanism or "none"
        counts[mechanism] = counts.get(mechanism, 0) + 1

    def limit_hit(self, name: str) -> None:
        self.limits[name] += 1

    # ------------------------------------------------------------------ background probes
    async def probe_loop_lag(self) -> None:
        """Forever: sleep ``LOOP_LAG_INTERVAL`` and record how late the wake-up came."""
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(LOOP_LAG_INTERVAL)
            lag = max(loop.time() - before - LOOP_LAG_INTERVAL, 0.0)
            self.loop_lag_seconds = lag
            self.loop_lag.observe(lag)

    def observe_sql(self, engine: Any) -> None:
        """Time every statement ``engine`` (an SQLAlchemy ``AsyncEngine``) runs into the
        storage-latency histogram, labelled select/insert/update/delete/other."""
        from sqlalchemy import event

        children = {
            op: self.storage_latency.labels(op)
            for op in ("select", "insert", "update", "delete", "other")
        }
        sync_engine = engine.sync_engine

        def before(conn: Any, _cursor: Any, _stmt: str, *_args: Any) -> None:
            conn.info.setdefault("salon_t0", []).append(time.perf_counter())

        def after(conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
            starts = conn.info.get("salon_t0")
            if not starts:
                return
            elapsed = time.perf_counter() - starts.pop()
            op = statement.lstrip()[:6].lower()
            children.get(op, children["other"]).observe(elapsed)

        event.listen(sync_engine, "before_cursor_execute", before)
        event.listen(sync_engine, "after_cursor_execute", after)

    async def count_offline(self, engine: Any) -> None:
        """Refresh ``offline_held``: messages waiting in offline storage, all hosts."""
        from sqlalchemy import func, select

        from salon.storage.sql.schema import offline_messages

        async with engine.connect() as conn:
            total = await conn.scalar(select(func.count()).select_from(offline_messages))
        self.offline_held = int(total or 0)


class CoreCollector(Collector):
    """Turns :class:`CoreMetrics`' plain counters into metric families at scrape time."""

    def __init__(self, metrics: CoreMetrics) -> None:
        self.m = metrics

    def collect(self) -> Iterator[Any]:
        m = self.m
        info = InfoMetricFamily("salon_build", "Salon's version.")
        info.add_metric([], {"version": salon.__version__})
        yield info
        uptime = GaugeMetricFamily("salon_uptime_seconds", "Seconds since the server started.")
        uptime.add_metric([], time.time() - m.started)
        yield uptime
        for name, doc, counts in (
            ("salon_stanzas_in", "Stanzas received from clients and servers.", m.stanzas_in),
            ("salon_stanzas_out", "Stanzas written to clients and servers.", m.stanzas_out),
        ):
            family = CounterMetricFamily(name, doc, labels=["kind"])
            for kind, value in counts.items():
                family.add_metric([kind], value)
            yield family
        auth = CounterMetricFamily(
            "salon_auth",
            "SASL authentications by mechanism and result.",
            labels=["mechanism", "result"],
        )
        for result, counts in (("success", m.auth_successes), ("failure", m.auth_failures)):
            for mechanism, value in sorted(counts.items()):
                auth.add_metric([mechanism, result], value)
        yield auth
        limits = CounterMetricFamily(
            "salon_limit_hits", "Times each abuse limit acted.", labels=["limit"]
        )
        for name, value in m.limits.items():
            limits.add_metric([name], value)
        yield limits
        lag = GaugeMetricFamily("salon_event_loop_lag_last_seconds", "The last lag probe's lag.")
        lag.add_metric([], m.loop_lag_seconds)
        yield lag
        if m.offline_held is not None:
            offline = GaugeMetricFamily(
                "salon_offline_messages", "Messages held in offline storage, all hosts."
            )
            offline.add_metric([], m.offline_held)
            yield offline
