"""Abuse controls on a live server: shaping, per-IP limits, stanza rate."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from tests.integration.harness import NS_STANZAS, RawClient, RunningServer, q

ServerFactory = Callable[..., Awaitable[RunningServer]]


async def ping_rtt(client: RawClient, iq_id: str) -> float:
    start = time.monotonic()
    await client.send(f"<iq type='get' id='{iq_id}'><ping xmlns='urn:xmpp:ping'/></iq>")
    while True:
        reply = await client.next(timeout=30)
        if reply.get("id") == iq_id:
            return time.monotonic() - start


async def test_flooder_is_shaped_while_others_stay_fast(server_factory: ServerFactory) -> None:
    srv = await server_factory(
        sections={"limits": {"c2s_read_rate": 20_000, "c2s_read_burst": 20_000}}
    )
    flooder, other = RawClient(*await _open(srv)), RawClient(*await _open(srv))
    await flooder.login(srv, await srv.add_user())
    await other.login(srv, await srv.add_user())
    # ~100 kB of messages to nobody in particular: 4+ seconds at 20 kB/s
    body = "x" * 900
    flood = "".join(
        f"<message to='nobody@example.invalid' id='f{i}'><body>{body}</body></message>"
        for i in range(100)
    )
    flooder.writer.write(flood.encode())
    await asyncio.sleep(0)
    flooder_rtt_task = asyncio.create_task(ping_rtt(flooder, "flood-ping"))
    other_rtts = [await ping_rtt(other, f"p{i}") for i in range(5)]
    flooder_rtt = await flooder_rtt_task
    assert max(other_rtts) < 1.0, other_rtts
    assert flooder_rtt > 1.0, flooder_rtt  # its ping waits behind its own shaped flood
    assert flooder_rtt > 5 * max(other_rtts)
    assert srv.server.core.metrics.limits["read_shaped"] >= 1


async def _open(srv: RunningServer) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", srv.port)


async def test_connections_per_ip(server_factory: ServerFactory) -> None:
    srv = await server_factory(sections={"limits": {"max_connections_per_ip": 2, "exempt": []}})
    first, second = await RawClient.connect(srv), await RawClient.connect(srv)
    await first.open()
    await second.open()
    third = await RawClient.connect(srv)
    await third.send(
        "<?xml version='1.0'?><stream:stream to='localhost' version='1.0' "
        "xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
    )
    await third.expect_stream_error("policy-violation")
    assert srv.server.core.metrics.limits["connections_per_ip"] == 1


async def test_sasl_failures_block_the_address(server_factory: ServerFactory) -> None:
    srv = await server_factory(sections={"limits": {"max_auth_failures_per_ip": 2, "exempt": []}})
    user = await srv.add_user()
    client = await RawClient.connect(srv)
    await client.open()
    await client.starttls(srv)
    await client.open()
    assert (await client.auth_plain(user, "wrong")).tag == q(
        "urn:ietf:params:xml:ns:xmpp-sasl", "failure"
    )
    await client.auth_plain(user, "wrong again")
    await client.expect_stream_error("policy-violation")
    later = await RawClient.connect(srv)  # a new connection from the blocked address
    await later.send(
        "<?xml version='1.0'?><stream:stream to='localhost' version='1.0' "
        "xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
    )
    await later.expect_stream_error("policy-violation")


async def test_stanza_rate_answers_wait_resource_constraint(server_factory: ServerFactory) -> None:
    srv = await server_factory(sections={"limits": {"stanza_rate": 0.5, "stanza_burst": 3}})
    client = await RawClient.connect(srv)
    await client.login(srv, await srv.add_user())
    await client.send(
        "".join(f"<iq type='get' id='r{i}'><ping xmlns='urn:xmpp:ping'/></iq>" for i in range(6))
    )
    replies = [await client.next() for _ in range(6)]
    errors = [r for r in replies if r.get("type") == "error"]
    assert len(errors) >= 2
    for error in errors:
        err = error.find(q("jabber:client", "error"))
        assert err is not None and err.get("type") == "wait"
        assert err.find(q(NS_STANZAS, "resource-constraint")) is not None
    assert srv.server.core.metrics.limits["stanza_rate"] >= 2
