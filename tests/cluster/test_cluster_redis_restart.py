"""Redis restarts (empty: no persistence) under a running cluster: the nodes reconnect,
write their sessions and streams again, rebuild their mirrors, and route as before. The
test runs its own redis-server on a free port, so the shared one is never touched."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from tests.cluster.conftest import Cluster, Node
from tests.cluster.test_cluster import chat, login
from tests.integration.harness import free_port, until
from tests.integration.message_helpers import is_message


class RedisServer:
    def __init__(self, port: int, folder: Path) -> None:
        self.port = port
        self.folder = folder
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--dir", str(self.folder),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    async def ready(self) -> None:
        client = aioredis.from_url(self.url)

        async def pong() -> bool:
            try:
                return bool(await client.ping())
            except Exception:
                return False

        try:
            await until(pong, "redis-server answering")
        finally:
            await client.aclose()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed: the Redis restart test needs its own")
    server = RedisServer(free_port("127.0.0.1"), tmp_path)
    server.start()
    yield server
    if server.proc is not None and server.proc.poll() is None:
        server.kill()


async def test_nodes_rebuild_after_redis_restart(
    cluster_factory: object, own_redis: RedisServer
) -> None:
    await own_redis.ready()

    def s2s(node: Node) -> dict[str, Any]:  # federation on: the nodes share a dialback secret
        port = free_port("127.0.0.1")
        return {"s2s": {"enabled": True, "interfaces": ["127.0.0.1"], "port": port,
                        "direct_tls_enabled": False}}  # fmt: skip

    cluster: Cluster = await cluster_factory(  # type: ignore[operator]
        2, redis_url=own_redis.url, sections=s2s
    )
    n1, n2 = cluster.nodes
    alice, bob = [await cluster.add_user(n) for n in ("alice", "bob")]
    ca = await login(n1, f"{alice}/a")
    cb = await login(n2, f"{bob}/b")
    chat(ca, f"{bob}/b", "before")
    await cb.expect(lambda s: is_message(s, "before"))

    check = aioredis.from_url(own_redis.url, decode_responses=True)
    secret = await check.get(f"{cluster.prefix}dialback")
    assert secret
    await check.aclose()
    own_redis.kill()
    own_redis.start()  # empty
    await own_redis.ready()
    check = aioredis.from_url(own_redis.url, decode_responses=True)
    try:

        async def rebuilt() -> bool:
            a = await check.hgetall(f"{cluster.prefix}sess:n1")
            b = await check.hgetall(f"{cluster.prefix}sess:n2")
            return f"{alice}/a" in a and f"{bob}/b" in b

        await until(rebuilt, "both nodes writing their sessions again", timeout=20)
        # the dialback secret is written back too: a node started now makes keys the
        # running ones verify
        assert await check.get(f"{cluster.prefix}dialback") == secret
    finally:
        await check.aclose()
    # Routing works again, both ways (bounded retries: a mirror may lag a moment).
    for direction, (src, dst) in enumerate(((ca, cb), (cb, ca))):
        chat(src, dst.jid, f"after {direction}")
        await dst.expect(lambda s, d=direction: is_message(s, f"after {d}"), timeout=10)
    await asyncio.gather(ca.disconnect(), cb.disconnect())
