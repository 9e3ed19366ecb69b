"""Per-IP limits over WebSocket (RFC 7395) and BOSH (XEP-0124/0206), shared with TCP: the
concurrent connections of one address, and the temporary block after failed logins, which
spans connections and transports. Each refusal is the error the transport's spec names
(a ``policy-violation`` stream error; BOSH's ``policy-violation`` terminate condition) and
counts in the limit metric."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest

from tests.integration.harness import NS_SASL, NS_STREAM, RawClient, RunningServer, q, until
from tests.integration.web_helpers import (
    NS_FRAMING,
    BoshClient,
    WsClient,
    http_session,
    plain_payload,
    stream_error_conditions,
)

Factory = Callable[..., Awaitable[RunningServer]]
TCP_HEADER = (
    "<?xml version='1.0'?><stream:stream to='localhost' version='1.0' "
    "xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
)


@pytest.fixture
async def http() -> AsyncIterator[Callable[[RunningServer], aiohttp.ClientSession]]:
    sessions: list[aiohttp.ClientSession] = []

    def make(srv: RunningServer) -> aiohttp.ClientSession:
        sessions.append(http_session(srv))
        return sessions[-1]

    yield make
    for session in sessions:
        await session.close()


def ws_url(srv: RunningServer) -> str:
    return "ws" + srv.http_url("/xmpp-websocket").removeprefix("http")


def bosh(srv: RunningServer, http: aiohttp.ClientSession) -> BoshClient:
    return BoshClient(http, srv.http_url("/http-bind"))


async def ws_refused(client: WsClient) -> None:
    """The server opens the stream only to end it with <policy-violation/> (RFC 7395 §3.6)."""
    await client.send(f"<open xmlns='{NS_FRAMING}' to='localhost' version='1.0'/>")
    messages = [await client.next()]
    if messages[0].tag == q(NS_FRAMING, "open"):
        messages.append(await client.next())
    error = messages[-1]
    assert error.tag == q(NS_STREAM, "error"), ET.tostring(error)
    assert stream_error_conditions(error) == ["policy-violation"], ET.tostring(error)
    close = await client.next()
    assert close.tag == q(NS_FRAMING, "close"), ET.tostring(close)
    await client.expect_closed()


def assert_policy_violation(body: ET.Element) -> None:
    """XEP-0124 §17.2: a terminal binding error, condition policy-violation."""
    assert body.get("type") == "terminate", ET.tostring(body)
    assert body.get("condition") == "policy-violation", ET.tostring(body)
    assert body.get("sid") is None  # no session was made


async def test_websocket_connections_per_ip_count_with_tcp(
    server_factory: Factory, http: Callable[[RunningServer], aiohttp.ClientSession]
) -> None:
    srv = await server_factory(sections={"limits": {"max_connections_per_ip": 2, "exempt": []}})
    session = http(srv)
    first = await WsClient.connect(session, ws_url(srv))
    await first.open()
    tcp = await RawClient.connect(srv)  # TCP and WebSocket share the address's count
    await tcp.open()
    third = await WsClient.connect(session, ws_url(srv))
    await ws_refused(third)
    assert srv.server.core.metrics.limits["connections_per_ip"] == 1
    late_tcp = await RawClient.connect(srv)
    await late_tcp.send(TCP_HEADER)
    await late_tcp.expect_stream_error("policy-violation")
    assert srv.server.core.metrics.limits["connections_per_ip"] == 2
    # a WebSocket that ends gives its place back
    await first.ws.close()
    await until(lambda: len(srv.server.connections) == 1, "the first WebSocket to be gone")
    again = await WsClient.connect(session, ws_url(srv))
    await again.open()
    await again.ws.close()
    await tcp.close()


async def test_failed_logins_over_websocket_block_the_address_everywhere(
    server_factory: Factory, http: Callable[[RunningServer], aiohttp.ClientSession]
) -> None:
    srv = await server_factory(sections={"limits": {"max_auth_failures_per_ip": 2, "exempt": []}})
    jid = await srv.add_user()
    session = http(srv)
    client = await WsClient.connect(session, ws_url(srv))
    await client.open()
    auth = f"<auth xmlns='{NS_SASL}' mechanism='PLAIN'>{plain_payload(jid, 'wrong')}</auth>"
    for _ in range(2):
        await client.send(auth)
        failure = await client.next()
        assert failure.tag == q(NS_SASL, "failure"), ET.tostring(failure)
    await client.expect_stream_error("policy-violation")  # the second failure blocks
    assert srv.server.core.metrics.limits["auth_failures_block"] == 1
    # the block spans connections and transports: a new WebSocket, TCP and BOSH alike
    await ws_refused(await WsClient.connect(session, ws_url(srv)))
    tcp = await RawClient.connect(srv)
    await tcp.send(TCP_HEADER)
    await tcp.expect_stream_error("policy-violation")
    assert_policy_violation(await bosh(srv, session).create())
    assert srv.server.core.metrics.limits["ip_blocked"] == 3


async def test_bosh_sessions_per_ip(
    server_factory: Factory, http: Callable[[RunningServer], aiohttp.ClientSession]
) -> None:
    srv = await server_factory(sections={"limits": {"max_connections_per_ip": 1, "exempt": []}})
    session = http(srv)
    first = bosh(srv, session)
    await first.login(await srv.add_user())
    assert_policy_violation(await bosh(srv, session).create())
    assert srv.server.core.metrics.limits["connections_per_ip"] == 1
    tcp = await RawClient.connect(srv)  # the BOSH session holds the address's one place
    await tcp.send(TCP_HEADER)
    await tcp.expect_stream_error("policy-violation")
    # a legacy client (XEP-0124 before 1.6) gets the HTTP status instead
    code, _ = await bosh(srv, session).post_raw(
        bosh(srv, session).body(to="localhost", wait="60", hold="1")
    )
    assert code == 403
    # a terminated session gives its place back
    ended = await first.request(type="terminate")
    assert ended.get("type") == "terminate"
    await until(lambda: not srv.server.connections, "the BOSH session to end")
    second = bosh(srv, session)
    created = await second.create()
    assert created.get("sid") and created.get("type") is None


async def test_failed_logins_over_bosh_block_new_sessions(
    server_factory: Factory, http: Callable[[RunningServer], aiohttp.ClientSession]
) -> None:
    srv = await server_factory(sections={"limits": {"max_auth_failures_per_ip": 2, "exempt": []}})
    jid = await srv.add_user()
    session = http(srv)
    client = bosh(srv, session)
    await client.create()
    auth = f"<auth xmlns='{NS_SASL}' mechanism='PLAIN'>{plain_payload(jid, 'wrong')}</auth>"
    failed = await client.request(auth)
    assert failed.find(q(NS_SASL, "failure")) is not None, ET.tostring(failed)
    ended = await client.request(auth)
    assert ended.get("type") == "terminate" and ended.get("condition") == "remote-stream-error"
    [error] = ended.findall(q(NS_STREAM, "error"))
    assert stream_error_conditions(error) == ["policy-violation"]
    assert_policy_violation(await bosh(srv, session).create())
    assert srv.server.core.metrics.limits["ip_blocked"] == 1
