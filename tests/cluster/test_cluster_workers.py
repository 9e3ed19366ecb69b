"""``salon serve --workers 2``: two processes share the client port (SO_REUSEPORT), each a
cluster node named after the configured one; users on different workers talk as on one
server."""

from __future__ import annotations

from tests.cluster.conftest import Cluster
from tests.cluster.test_cluster import chat, login
from tests.integration.harness import SlixClient, until
from tests.integration.message_helpers import is_message

ATTEMPTS = 24  # connections tried until two land on different workers


async def test_two_workers_share_the_port(cluster_factory: object) -> None:
    cluster: Cluster = await cluster_factory(1, workers=2)  # type: ignore[operator]
    (node,) = cluster.nodes
    alive = [await cluster.redis.exists(f"{cluster.prefix}node:n1-{i}") for i in (1, 2)]
    assert alive == [1, 1]
    where: dict[str, SlixClient] = {}
    clients = []
    for n in range(ATTEMPTS):
        user = await cluster.add_user(f"w{n}")
        client = await login(node, f"{user}/r")
        clients.append(client)

        async def placed(user: str = user) -> bool:
            return any([await _bound(cluster, w, user) for w in ("n1-1", "n1-2")])

        await until(placed, "the session in a worker's directory")
        for worker in ("n1-1", "n1-2"):
            if await _bound(cluster, worker, user):
                where.setdefault(worker, client)
        if len(where) == 2:
            break
    assert len(where) == 2, "the kernel never spread connections over both workers"
    first, second = where["n1-1"], where["n1-2"]
    chat(first, second.jid, "across workers")
    got = await second.expect(lambda s: is_message(s, "across workers"))
    assert str(got["from"]) == first.jid
    for client in clients:
        await client.disconnect()


async def _bound(cluster: Cluster, worker: str, user: str) -> bool:
    return f"{user}/r" in await cluster.sessions_in_redis(worker)
