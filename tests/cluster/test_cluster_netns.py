"""The cluster on separate hosts: each node runs in a network namespace of the test's own
making (``ip netns``, a veth pair each), so the nodes share no loopback and reach one another
only through Redis, as on separate machines. One node is cut off by taking its link down:
its sessions leave the directory, its users' contacts get unavailable presence, messages to
them are stored offline; with the link back up the node rejoins and publishes its sessions
again.

Redis here is a redis-server of the test's own, listening on the host side of every link;
PostgreSQL (which listens on loopback) is reached through a small TCP relay the test runs on
those addresses. Skipped, saying why, where namespaces cannot be made (not root, no iproute2,
no permission)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
import trustme

from salon.auth.credentials import make_credentials
from salon.storage import open_storage
from salon.storage.interfaces import RosterItem
from tests.cluster.conftest import POSTGRES_URL, START_TIMEOUT, write_toml
from tests.cluster.test_cluster import chat, login
from tests.integration.harness import DOMAINS, PASSWORD, issue_host_certs, until
from tests.integration.im_helpers import presence
from tests.integration.message_helpers import is_message

NODES = 3
REDIS_PORT = 6390
PG_PORT = 5440
C2S_PORT = 5222
TLS_PORT = 5223


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)


def _why_no_namespaces() -> str | None:
    if shutil.which("ip") is None:
        return "iproute2's ip is not installed"
    if shutil.which("redis-server") is None:
        return "redis-server is not installed"
    if os.geteuid() != 0:
        return "network namespaces need root"
    probe = f"s4p{uuid.uuid4().hex[:6]}"
    made = _ip("netns", "add", probe)
    if made.returncode != 0:
        return f"ip netns add failed: {made.stderr.strip()}"
    _ip("netns", "del", probe)
    return None


@dataclass
class Host:
    """A node's namespace and its link: ``gateway`` on the host side, ``address`` inside."""

    index: int
    tag: str
    ca_path: Path
    data_dir: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def ns(self) -> str:
        return f"s4{self.tag}n{self.index}"

    @property
    def link(self) -> str:
        return f"s4{self.tag}h{self.index}"

    @property
    def gateway(self) -> str:
        return f"10.197.{self.index}.1"

    @property
    def address(self) -> str:
        return f"10.197.{self.index}.2"

    port = C2S_PORT
    tls_port = TLS_PORT

    def log_text(self) -> str:
        log = self.data_dir / "salon.log"
        return log.read_text(errors="replace") if log.exists() else ""


def _make_link(host: Host) -> None:
    inner = f"{host.link}i"
    steps = [
        ("netns", "add", host.ns),
        ("link", "add", host.link, "type", "veth", "peer", "name", inner),
        ("link", "set", inner, "netns", host.ns),
        ("addr", "add", f"{host.gateway}/24", "dev", host.link),
        ("link", "set", host.link, "up"),
        ("-n", host.ns, "addr", "add", f"{host.address}/24", "dev", inner),
        ("-n", host.ns, "link", "set", inner, "up"),
        ("-n", host.ns, "link", "set", "lo", "up"),
        ("-n", host.ns, "route", "add", "default", "via", host.gateway),
    ]
    for step in steps:
        done = _ip(*step)
        if done.returncode != 0:
            raise RuntimeError(f"ip {' '.join(step)}: {done.stderr.strip()}")


def _remove_link(host: Host) -> None:
    _ip("link", "del", host.link)
    _ip("netns", "del", host.ns)


async def _relay(listen: str, port: int, target: tuple[str, int]) -> asyncio.Server:
    """A TCP relay from ``listen:port`` to ``target`` (PostgreSQL listens on loopback)."""

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*target)
        except OSError:
            writer.close()
            return
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    return await asyncio.start_server(handle, listen, port)


@pytest.fixture
async def hosts(tmp_path: Path) -> AsyncIterator[tuple[list[Host], Any, str, str]]:
    why = _why_no_namespaces()
    if why is not None:
        pytest.skip(f"network namespaces cannot be made here ({why}): netns variant skipped")
    tag = uuid.uuid4().hex[:4]
    ca = trustme.CA()
    ca_path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    made: list[Host] = []
    relays: list[asyncio.Server] = []
    redis_proc: subprocess.Popen[bytes] | None = None
    schema = f"salon_test_{uuid.uuid4().hex[:16]}"
    pg_local = f"{POSTGRES_URL}{'&' if '?' in POSTGRES_URL else '?'}schema={schema}"
    storage = await open_storage(pg_local)
    try:
        for index in range(1, NODES + 1):
            host = Host(index, tag, ca_path, tmp_path / f"host{index}")
            host.data_dir.mkdir()
            _make_link(host)
            made.append(host)
            relays.append(await _relay(host.gateway, PG_PORT, ("127.0.0.1", 5432)))
        binds = [h.gateway for h in made] + ["127.0.0.1"]
        redis_proc = subprocess.Popen(
            ["redis-server", "--port", str(REDIS_PORT), "--bind", *binds, "--save", "",
             "--appendonly", "no", "--protected-mode", "no", "--dir", str(tmp_path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        yield made, storage, schema, tag
    finally:
        for host in made:
            if host.proc is not None and host.proc.poll() is None:
                host.proc.send_signal(signal.SIGKILL)
                host.proc.wait(10)
            _remove_link(host)
        for relay in relays:
            relay.close()
        if redis_proc is not None:
            redis_proc.kill()
            redis_proc.wait(10)
        await storage.close()
        from sqlalchemy.ext.asyncio import create_async_engine
        from sqlalchemy.schema import DropSchema

        from salon.storage.sql.engine import to_async_url

        engine = create_async_engine(to_async_url(POSTGRES_URL)[0])
        async with engine.begin() as conn:
            await conn.execute(DropSchema(schema, cascade=True, if_exists=True))
        await engine.dispose()


async def _start(host: Host, schema: str, tag: str) -> None:
    pg = POSTGRES_URL.replace("127.0.0.1:5432", f"{host.gateway}:{PG_PORT}")
    pg = f"{pg}{'&' if '?' in pg else '?'}schema={schema}"
    write_toml(
        host.data_dir / "salon.toml",
        {
            "server": {"data_dir": str(host.data_dir), "storage": pg},
            "c2s": {
                "interfaces": [host.address],
                "port": C2S_PORT,
                "direct_tls_port": TLS_PORT,
                "auth_failure_delay": 0.01,
            },
            "http": {"enabled": False},
            "s2s": {"enabled": False},
            "cluster": {
                "redis": f"redis://{host.gateway}:{REDIS_PORT}/0",
                "node": f"h{host.index}",
                "key_prefix": f"netns{tag}:",
                "heartbeat_interval": 0.2,
                "heartbeat_ttl": 1.0,
            },
            "hosts": issue_host_certs_for(host),
        },
    )
    out = (host.data_dir / "salon.log").open("wb")
    host.proc = subprocess.Popen(
        ["ip", "netns", "exec", host.ns, sys.executable, "-m", "salon", "serve", "-c",
         str(host.data_dir / "salon.toml")],
        stdout=out,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    loop = asyncio.get_running_loop()
    deadline = loop.time() + START_TIMEOUT
    while "listening: c2s on" not in host.log_text():
        if host.proc.poll() is not None or loop.time() > deadline:
            raise AssertionError(f"node h{host.index} did not start:\n{host.log_text()}")
        await asyncio.sleep(0.05)


_CA: dict[Path, trustme.CA] = {}


def issue_host_certs_for(host: Host) -> dict[str, Any]:
    ca = _CA.setdefault(host.ca_path, trustme.CA())
    ca.cert_pem.write_to_path(str(host.ca_path))
    return issue_host_certs(ca, host.data_dir, DOMAINS)


async def test_node_cut_off_from_redis(hosts: tuple[list[Host], Any, str, str]) -> None:
    made, storage, schema, tag = hosts
    await asyncio.gather(*(_start(h, schema, tag) for h in made))
    h1, h2, h3 = made
    users = {}
    for name in ("alice", "bob", "carol"):
        await storage.accounts.create("localhost", name, make_credentials(PASSWORD))
        users[name] = f"{name}@localhost"
    for owner, contact in (("bob", "carol"), ("carol", "bob")):
        item = RosterItem(jid=users[contact], subscription="both")
        await storage.roster.put_item("localhost", owner, item)
    ca = await login(h1, f"{users['alice']}/a")  # type: ignore[arg-type]
    cb = await login(h2, f"{users['bob']}/b")  # type: ignore[arg-type]
    cc = await login(h3, f"{users['carol']}/c")  # type: ignore[arg-type]
    await cc.expect(presence(sender=f"{users['bob']}/b"))
    chat(ca, f"{users['bob']}/b", "through redis")
    await cb.expect(lambda s: is_message(s, "through redis"))

    assert _ip("link", "set", h2.link, "down").returncode == 0  # h2 loses Redis (and all)
    await cc.expect(presence("unavailable", f"{users['bob']}/b"), timeout=10)
    chat(ca, f"{users['bob']}/b", "while cut off")

    async def stored() -> bool:
        return any(
            "while cut off" in m.stanza for m in await storage.offline.list("localhost", "bob")
        )

    await until(stored, "the message for the cut-off user stored offline", timeout=15)

    assert _ip("link", "set", h2.link, "up").returncode == 0
    red = aioredis.from_url(f"redis://127.0.0.1:{REDIS_PORT}/0", decode_responses=True)
    try:

        async def rejoined() -> bool:
            return f"{users['bob']}/b" in await red.hgetall(f"netns{tag}:sess:h2")

        await until(rejoined, "h2 publishing its sessions again", timeout=30)
    finally:
        await red.aclose()
    chat(ca, f"{users['bob']}/b", "back again")
    await cb.expect(lambda s: is_message(s, "back again"), timeout=15)
    for client in (ca, cb, cc):
        with contextlib.suppress(Exception):
            await client.disconnect()
