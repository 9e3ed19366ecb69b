"""Real Salon cluster nodes for the cluster tests: each node is its own ``salon serve``
process (so a test can SIGKILL one), all on the Redis at 127.0.0.1:6379 and the PostgreSQL
at 127.0.0.1:5432 database ``test``.

Isolation: each test gets a fresh PostgreSQL schema (as tests/storage does) and its own Redis
key prefix, deleted afterwards; two runs never see each other's keys or rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import ssl
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
import trustme
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.schema import DropSchema

from salon.auth.credentials import make_credentials
from salon.storage import open_storage
from salon.storage.interfaces import RosterItem, Storage
from salon.storage.sql.engine import to_async_url
from tests.integration.harness import DOMAINS, PASSWORD, free_port, issue_host_certs

POSTGRES_URL = os.environ.get(
    "SALON_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("SALON_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
HEARTBEAT = 0.2  # seconds: nodes notice a dead one within about a second
TTL = 1.0
START_TIMEOUT = 90.0


def _toml(value: Any) -> str:
    if isinstance(value, dict):
        raise TypeError("tables are written by _write_toml")
    return json.dumps(value)  # JSON strings, numbers, booleans and lists are valid TOML


def write_toml(path: Path, tables: dict[str, dict[str, Any]]) -> None:
    lines: list[str] = []

    def table(name: str, body: dict[str, Any]) -> None:
        plain = {k: v for k, v in body.items() if not isinstance(v, dict)}
        lines.append(f"[{name}]")
        lines.extend(f"{json.dumps(k)} = {_toml(v)}" for k, v in plain.items())
        for key, sub in body.items():
            if isinstance(sub, dict):
                table(f"{name}.{json.dumps(key)}", sub)

    for name, body in tables.items():
        table(name, body)
    path.write_text("\n".join(lines) + "\n")


@dataclass
class Node:
    """One ``salon serve`` process: what ``connect_slixmpp`` needs to reach it."""

    name: str
    port: int
    tls_port: int
    ca_path: Path
    data_dir: Path
    config: Path
    proc: subprocess.Popen[bytes] | None = None
    workers: int = 1
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.data_dir / "salon.log"

    def client_ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_path))

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@dataclass
class Cluster:
    nodes: list[Node]
    storage: Storage
    redis: aioredis.Redis
    prefix: str
    postgres_url: str
    domain: str = "localhost"
    _counter: int = 0

    async def add_user(self, local: str | None = None) -> str:
        if local is None:
            self._counter += 1
            local = f"u{self._counter}-{uuid.uuid4().hex[:6]}"
        await self.storage.accounts.create(self.domain, local, make_credentials(PASSWORD))
        return f"{local}@{self.domain}"

    async def befriend(self, a: str, b: str) -> None:
        for owner, contact in ((a, b), (b, a)):
            local, domain = owner.split("@", 1)
            await self.storage.roster.put_item(
                domain, local, RosterItem(jid=contact, subscription="both")
            )

    async def sessions_in_redis(self, node: str) -> dict[str, Any]:
        found: dict[str, Any] = await self.redis.hgetall(f"{self.prefix}sess:{node}")
        return found


async def _start_node(node: Node) -> None:
    out = node.log.open("wb")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "salon", "serve", "-c", str(node.config)]
    if node.workers > 1:
        command += ["--workers", str(node.workers)]
    node.proc = subprocess.Popen(
        command,
        stdout=out,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=node.data_dir,
    )
    loop = asyncio.get_running_loop()
    deadline = loop.time() + START_TIMEOUT
    while node.log_text().count("listening: c2s on") < node.workers:
        if node.proc.poll() is not None:
            raise AssertionError(f"node {node.name} exited:\n{node.log_text()}")
        if loop.time() > deadline:
            raise AssertionError(f"node {node.name} did not start:\n{node.log_text()}")
        await asyncio.sleep(0.05)


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
async def cluster_factory(
    tmp_path: Path, ca: trustme.CA
) -> AsyncIterator[Callable[..., Awaitable[Cluster]]]:
    url, _ = to_async_url(POSTGRES_URL)
    admin = create_async_engine(url, connect_args={"timeout": 5})
    try:
        async with admin.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as exc:
        await admin.dispose()
        pytest.fail(f"PostgreSQL unreachable at {POSTGRES_URL}: {exc!r}", pytrace=False)
    red = aioredis.from_url(REDIS_URL, decode_responses=True)
    try:
        await red.ping()
    except Exception as exc:
        await admin.dispose()
        pytest.fail(f"Redis unreachable at {REDIS_URL}: {exc!r}", pytrace=False)
    schema = f"salon_test_{uuid.uuid4().hex[:16]}"
    prefix = f"salontest:{uuid.uuid4().hex[:12]}:"
    pg = f"{POSTGRES_URL}{'&' if '?' in POSTGRES_URL else '?'}schema={schema}"
    made: list[Cluster] = []

    async def make(
        count: int = 3,
        modules: dict[str, Any] | None = None,
        workers: int = 1,
        redis_url: str = REDIS_URL,
        domains: tuple[str, ...] = DOMAINS,
        sections: Callable[[Node], dict[str, Any]] | None = None,
    ) -> Cluster:
        """``count`` nodes serving ``domains`` (accounts go to the first); with ``workers``
        > 1, each is ``salon serve --workers``. ``sections(node)`` gives tables that replace
        the node's own (``{"s2s": {...}}`` to federate)."""
        storage = await open_storage(pg)  # creates and migrates the schema
        ca_path = tmp_path / "ca.pem"
        ca.cert_pem.write_to_path(str(ca_path))
        nodes = []
        for index in range(1, count + 1):
            data_dir = tmp_path / f"node{index}"
            data_dir.mkdir()
            hosts = issue_host_certs(ca, data_dir, domains)
            node = Node(
                f"n{index}",
                free_port("127.0.0.1"),
                free_port("127.0.0.1"),
                ca_path,
                data_dir,
                data_dir / "salon.toml",
                workers=workers,
            )
            tables: dict[str, Any] = {
                "server": {
                    "data_dir": str(data_dir),
                    "storage": pg,
                    "log_level": "info",
                    "log_levels": {"salon.app": "debug"},
                },
                "c2s": {
                    "interfaces": ["127.0.0.1"],
                    "port": node.port,
                    "direct_tls_port": node.tls_port,
                    "auth_failure_delay": 0.01,
                },
                "http": {"enabled": False},
                "s2s": {"enabled": False},
                "cluster": {
                    "redis": redis_url,
                    "node": node.name,
                    "key_prefix": prefix,
                    "heartbeat_interval": HEARTBEAT,
                    "heartbeat_ttl": TTL,
                },
                "hosts": hosts,
            }
            if modules:
                tables["modules"] = modules
            if sections is not None:
                tables.update(sections(node))
            write_toml(node.config, tables)
            nodes.append(node)
        cluster = Cluster(nodes, storage, red, prefix, pg, domains[0])
        made.append(cluster)  # before starting: a node that fails to start is still stopped
        await asyncio.gather(*(_start_node(n) for n in nodes))
        return cluster

    yield make
    for cluster in made:
        for node in cluster.nodes:
            if node.proc is not None and node.proc.poll() is None:
                node.proc.send_signal(signal.SIGTERM)
        for node in cluster.nodes:
            if node.proc is not None:
                try:
                    node.proc.wait(15)
                except subprocess.TimeoutExpired:
                    node.proc.kill()
                    node.proc.wait(5)
        await cluster.storage.close()
    keys = [key async for key in red.scan_iter(match=f"{prefix}*", count=1000)]
    if keys:
        await red.delete(*keys)
    await red.aclose()
    async with admin.begin() as conn:
        await conn.execute(DropSchema(schema, cascade=True, if_exists=True))
    await admin.dispose()


@pytest.fixture
async def cluster(cluster_factory: Callable[..., Awaitable[Cluster]]) -> Cluster:
    return await cluster_factory(3)


def suppress_all() -> contextlib.AbstractContextManager[None]:
    return contextlib.suppress(Exception)
