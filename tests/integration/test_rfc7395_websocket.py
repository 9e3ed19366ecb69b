"""XMPP over WebSocket (RFC 7395), spoken raw with aiohttp's WebSocket client over wss://.

Every message the server sends is parsed as a document of its own (ElementTree), which is
what RFC 7395 §3.3 requires of it; a WebSocket session is an ordinary session, checked
against a TCP client.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest

from salon.jid import JID
from tests.integration.harness import (
    NS_BIND,
    NS_CLIENT,
    NS_TLS,
    RawClient,
    RunningServer,
    q,
    raw_session,
    until,
)
from tests.integration.web_helpers import (
    NS_FRAMING,
    WsClient,
    http_session,
    mechanisms,
)

Factory = Callable[..., Awaitable[RunningServer]]
OPEN = f"<open xmlns='{NS_FRAMING}' to='localhost' version='1.0'/>"


@pytest.fixture
async def http(server: RunningServer) -> AsyncIterator[aiohttp.ClientSession]:
    async with http_session(server) as session:
        yield session


def ws_url(srv: RunningServer, *, secure: bool = True) -> str:
    url = srv.http_url("/xmpp-websocket", secure=secure)
    return "ws" + url.removeprefix("http")


async def connect(srv: RunningServer, http: aiohttp.ClientSession, **headers: str) -> WsClient:
    return await WsClient.connect(http, ws_url(srv), **headers)


# --------------------------------------------------------------------------- handshake
async def test_handshake_needs_the_xmpp_subprotocol(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await WsClient.connect(http, ws_url(server), protocols=())
    assert refused.value.status == 400
    client = await connect(server, http)
    assert client.ws.protocol == "xmpp"  # RFC 7395 §3.1
    await client.close()


async def test_open_is_answered_with_open_and_features(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    client = await connect(server, http)
    opened, features = await client.open()
    assert opened.get("from") == "localhost"
    assert opened.get("version") == "1.0"
    assert opened.get("id")
    assert opened.get("{http://www.w3.org/XML/1998/namespace}lang") == "en"
    assert "PLAIN" in mechanisms(features) and "SCRAM-SHA-1" in mechanisms(features)
    assert features.find(q(NS_TLS, "starttls")) is None  # TLS belongs to the WebSocket
    await client.close()


# --------------------------------------------------------------------------- sessions
async def test_login_and_message_exchange_with_a_tcp_client(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    client = await connect(server, http)
    full = await client.login(await server.add_user())
    assert full.endswith("/ws")
    raw, raw_jid = await raw_session(server)
    await client.send(
        f"<message xmlns='{NS_CLIENT}' to='{raw_jid}' type='chat'><body>from the web</body>"
        "</message>"
    )
    received = await raw.next()
    assert received.get("from") == full
    assert received.findtext(q(NS_CLIENT, "body")) == "from the web"
    await raw.send(f"<message to='{full}' type='chat'><body>from TCP</body></message>")
    delivered = await client.next()  # one stanza per message, jabber:client declared on it
    assert delivered.tag == q(NS_CLIENT, "message")
    assert delivered.get("from") == raw_jid
    assert delivered.findtext(q(NS_CLIENT, "body")) == "from TCP"
    await raw.close()
    await client.close()


async def test_close_is_answered_with_close(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    client = await connect(server, http)
    jid = await client.login(await server.add_user())
    await client.send(f"<close xmlns='{NS_FRAMING}'/>")
    closing = await client.next()
    assert closing.tag == q(NS_FRAMING, "close")
    await client.expect_closed()
    sessions = server.server.core.sessions
    await until(lambda: sessions.get(JID.parse(jid)) is None, "the session to end")


async def test_websocket_gone_without_close_sends_unavailable_presence(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    client = await connect(server, http)
    full = await client.login(await server.add_user())
    raw, raw_jid = await raw_session(server)
    await client.send(f"<presence xmlns='{NS_CLIENT}' to='{raw_jid}'/>")
    assert (await raw.next()).get("type") is None
    await client.ws.close()  # no <close/>
    gone = await raw.next()
    assert gone.get("from") == full and gone.get("type") == "unavailable"
    await raw.close()


async def test_resource_conflict_ends_the_websocket_session(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    jid = await server.add_user()
    client = await connect(server, http)
    await client.login(jid, resource="same")
    raw = await RawClient.connect(server)
    await raw.login(server, jid, resource="same")
    await client.expect_stream_error("conflict")
    await raw.close()


# --------------------------------------------------------------------------- errors
async def test_stanza_before_authentication_is_a_stream_error(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    client = await connect(server, http)
    await client.open()
    await client.send(f"<message xmlns='{NS_CLIENT}' to='a@localhost'><body>x</body></message>")
    await client.expect_stream_error("not-authorized")


@pytest.mark.parametrize(
    ("frame", "condition"),
    [
        ("<message xmlns='jabber:client'><body>cut", "not-well-formed"),
        ("<presence xmlns='jabber:client'/><presence xmlns='jabber:client'/>", "bad-format"),
        ("</frame><presence xmlns='jabber:client'/>", "not-well-formed"),
    ],
    ids=["incomplete", "two-elements", "unbalanced"],
)
async def test_a_message_must_be_one_complete_element(
    server: RunningServer, http: aiohttp.ClientSession, frame: str, condition: str
) -> None:
    client = await connect(server, http)
    await client.login(await server.add_user())
    await client.send(frame)
    await client.expect_stream_error(condition)


async def test_error_before_open_still_opens_first(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    client = await connect(server, http)
    await client.send("<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='elsewhere.test'/>")
    opened = await client.next()
    assert opened.tag == q(NS_FRAMING, "open")
    await client.expect_stream_error("host-unknown")


async def test_oversize_stanza_is_policy_violation(server_factory: Factory) -> None:
    srv = await server_factory(max_stanza_size=10000)
    async with http_session(srv) as http:
        client = await connect(srv, http)
        await client.login(await srv.add_user())
        big = "x" * 12000
        await client.send(
            f"<message xmlns='{NS_CLIENT}' to='a@localhost'><body>{big}</body></message>"
        )
        await client.expect_stream_error("policy-violation")


async def test_see_other_uri_sends_the_client_elsewhere(server_factory: Factory) -> None:
    other = "wss://chat.example.test/xmpp-websocket"
    srv = await server_factory(http={"see_other_uri": other})
    async with http_session(srv) as http:
        client = await connect(srv, http)
        await client.send(OPEN)
        redirect = await client.next()
        assert redirect.tag == q(NS_FRAMING, "close")  # RFC 7395 §3.6.1
        assert redirect.get("see-other-uri") == other
        await client.expect_closed()


async def test_plain_ws_is_not_encrypted_unless_a_trusted_proxy_says_so(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    # A remote client through the local proxy (a direct loopback client counts as secure:
    # tests/integration/test_http_loopback_secure.py).
    remote = {"X-Forwarded-For": "203.0.113.7"}
    plain = await WsClient.connect(http, ws_url(server, secure=False), **remote)
    _, features = await plain.open()
    assert mechanisms(features) == []  # c2s.require_encryption, as on TCP
    await plain.close()
    proxied = await WsClient.connect(
        http, ws_url(server, secure=False), **remote, **{"X-Forwarded-Proto": "https"}
    )
    _, features = await proxied.open()
    assert "PLAIN" in mechanisms(features)
    await proxied.close()


async def test_bind_is_refused_once_bound(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    client = await connect(server, http)
    await client.login(await server.add_user())
    await client.send(f"<iq xmlns='{NS_CLIENT}' type='set' id='b2'><bind xmlns='{NS_BIND}'/></iq>")
    refused = await client.next()
    assert refused.get("type") == "error", ET.tostring(refused)
    await client.close()
