"""Keeps the cluster benchmarks (bench/cluster.py logins, bench/cluster_idle.py) from rotting:
each runs once with tiny numbers against ``salon serve --workers 2`` on the Redis at
127.0.0.1:6379 and the PostgreSQL at 127.0.0.1:5432. Nothing here checks a timing."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import uuid
from pathlib import Path

import pytest

from bench import cluster, cluster_idle
from tests.integration.harness import free_port


@pytest.fixture
def port(monkeypatch: pytest.MonkeyPatch) -> int:
    chosen = free_port("127.0.0.1")
    monkeypatch.setattr(cluster, "PORT", chosen)
    return chosen


def test_cluster_logins_run_on_two_workers(port: int) -> None:
    schema = f"salon_bench_{uuid.uuid4().hex[:12]}"
    storage = f"{cluster.POSTGRES_URL}?schema={schema}"
    prefix = f"salonbench:{uuid.uuid4().hex[:8]}:"
    try:
        asyncio.run(cluster.create_accounts(storage, 8, "l"))
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            log = folder / "server.log"
            proc = cluster.start(cluster.config(folder, storage, 2, prefix), 2, log)
            try:
                pids = cluster.server_pids(proc, 2)
                assert len(pids) == 2
                rate, cpu_ms, failed = asyncio.run(cluster.measure_logins(pids, 2, 1.0, 4))
            finally:
                cluster.stop(proc)
    finally:
        with contextlib.suppress(Exception):
            asyncio.run(cluster.drop_schema(schema))
    assert failed == 0
    assert rate > 0
    assert cpu_ms > 0


def test_cluster_idle_holds_sessions_from_several_generators(port: int) -> None:
    out = cluster_idle.run(
        workers=2, sessions=30, generators=2, concurrency=3, ramp_limit=120, hold=0.5
    )
    assert out["held"] == 30, out
    assert out["failed"] == 0, out
    assert out["open_at_end"] == 30, out  # no session was dropped while held
    assert len(out["rss_per_worker_kib"]) == 2
    assert sum(out["fds_per_worker"]) >= 30  # the sockets are on the workers
    assert "kib_per_session" in out
