"""XEP-0114 external components: slixmpp's ComponentXMPP against the real server, plus raw
sockets for the error paths (bad secret, conflict, forged from, unknown domain)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import slixmpp
import trustme

from salon.app import App
from salon.config import settings_from_dict
from tests.integration.harness import (
    DOMAINS,
    NS_STREAM,
    RawClient,
    RunningServer,
    SlixClient,
    connect_slixmpp,
    issue_host_certs,
    q,
    server_settings,
    stanza_error_condition,
)

COMPONENT = "gw.localhost"
SECRET = "s3cret-for-the-gateway"
OTHER = "bots.localhost"  # configured, never connected in these tests
NS_COMPONENT = "jabber:component:accept"
TIMEOUT = 5.0


@pytest.fixture
async def srv(tmp_path: Path, ca: trustme.CA) -> AsyncIterator[RunningServer]:
    data_dir = tmp_path / "server"
    data_dir.mkdir()
    data = server_settings(data_dir, issue_host_certs(ca, data_dir, DOMAINS))
    data["components"] = {
        "port": 0,
        "handshake_timeout": 5.0,
        COMPONENT: {"secret": SECRET},
        OTHER: {"secret": "other-secret"},
    }
    app = App(settings_from_dict(data))
    await app.start()
    ca_path = data_dir / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    yield RunningServer(app, ca, ca_path, data_dir)
    await app.stop()


class Component:
    """A connected slixmpp ComponentXMPP and what it received."""

    def __init__(self, xmpp: slixmpp.ComponentXMPP) -> None:
        self.xmpp = xmpp
        self.inbox: asyncio.Queue[Any] = asyncio.Queue()

    async def expect(self, tag: str) -> Any:
        while True:
            stanza = await asyncio.wait_for(self.inbox.get(), TIMEOUT)
            if stanza.name == tag:
                return stanza

    async def close(self) -> None:
        self.xmpp.disconnect()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.xmpp.disconnected, 3)


async def connect_component(srv: RunningServer, secret: str = SECRET) -> Component:
    xmpp = slixmpp.ComponentXMPP(COMPONENT, secret, "127.0.0.1", srv.server.port("component"))
    xmpp.register_plugin("xep_0030")
    xmpp.register_plugin("xep_0199")
    component = Component(xmpp)
    started: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
    xmpp.add_event_handler("session_start", lambda _e: started.done() or started.set_result(True))
    xmpp.add_event_handler("message", component.inbox.put_nowait)
    xmpp.connect()
    await asyncio.wait_for(started, TIMEOUT)
    return component


async def raw_component(srv: RunningServer, domain: str = COMPONENT) -> RawClient:
    """A raw socket that opened a component stream and read the server's header."""
    reader, writer = await asyncio.open_connection("127.0.0.1", srv.server.port("component"))
    client = RawClient(reader, writer)
    await client.send(
        f"<?xml version='1.0'?><stream:stream xmlns='{NS_COMPONENT}' "
        f"xmlns:stream='{NS_STREAM}' to='{domain}'>"
    )
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TIMEOUT
    while not client.stream_attrs and not client.closed_by_server and loop.time() < deadline:
        await client._read_more(deadline - loop.time())
    return client


async def handshake(client: RawClient, secret: str = SECRET) -> None:
    digest = hashlib.sha1((client.stream_attrs["id"] + secret).encode()).hexdigest()
    await client.send(f"<handshake>{digest}</handshake>")


def ping_iq(xmpp: slixmpp.BaseXMPP, to: str, sender: str | None = None) -> Any:
    iq = xmpp.make_iq_get(ito=to, ifrom=sender)
    iq.xml.append(ET.Element("{urn:xmpp:ping}ping"))
    return iq


async def error_of(iq: Any) -> str | None:
    """The condition of the error an iq gets (read from the XML: slixmpp's error plugin
    only knows jabber:client, a component's errors are in jabber:component:accept)."""
    with pytest.raises(slixmpp.exceptions.IqError) as info:
        await iq.send(timeout=TIMEOUT)
    return stanza_error_condition(info.value.iq.xml)


async def user(srv: RunningServer) -> SlixClient:
    def plugins(xmpp: slixmpp.ClientXMPP) -> None:
        xmpp.register_plugin("xep_0199")

    return await connect_slixmpp(srv, await srv.add_user(), configure=plugins)


# ---------------------------------------------------------------------- routing
async def test_user_messages_a_jid_on_the_component_and_it_replies(srv: RunningServer) -> None:
    component = await connect_component(srv)
    alice = await user(srv)
    try:
        alice.xmpp.send_message(mto=f"bot@{COMPONENT}", mbody="hello gateway", mtype="chat")
        got = await component.expect("message")
        assert got["body"] == "hello gateway"
        assert got["from"] == alice.xmpp.boundjid  # stamped with the full JID
        assert str(got["to"]) == f"bot@{COMPONENT}"

        reply = got.reply("hello human")
        reply.send()
        answer = await alice.expect(lambda s: s.name == "message" and s["body"] == "hello human")
        assert str(answer["from"]) == f"bot@{COMPONENT}"
    finally:
        await alice.disconnect()
        await component.close()


async def test_iq_from_user_to_component(srv: RunningServer) -> None:
    component = await connect_component(srv)
    alice = await user(srv)
    try:
        iq = alice.xmpp.make_iq_get(
            queryxmlns="http://jabber.org/protocol/disco#info", ito=COMPONENT
        )
        result = await iq.send(timeout=TIMEOUT)
        assert result["type"] == "result"
        assert str(result["from"]) == COMPONENT
    finally:
        await alice.disconnect()
        await component.close()


async def test_iq_from_component_to_user_and_to_server(srv: RunningServer) -> None:
    component = await connect_component(srv)
    alice = await user(srv)
    try:
        ping = ping_iq(component.xmpp, str(alice.xmpp.boundjid), f"bot@{COMPONENT}")
        result = await ping.send(timeout=TIMEOUT)
        assert result["type"] == "result"
        assert result["from"] == alice.xmpp.boundjid

        # The server itself answers the component (the reply is routed to its domain).
        ping = ping_iq(component.xmpp, "localhost", COMPONENT)
        result = await ping.send(timeout=TIMEOUT)
        assert result["type"] == "result"
    finally:
        await alice.disconnect()
        await component.close()


async def test_component_gets_error_for_stanza_to_offline_user(srv: RunningServer) -> None:
    """Errors the server generates for the component's stanzas go back to it."""
    component = await connect_component(srv)
    try:
        iq = ping_iq(component.xmpp, "nobody@localhost/gone", COMPONENT)
        assert await error_of(iq) == "service-unavailable"
    finally:
        await component.close()


async def test_disconnected_component_domain_is_service_unavailable(srv: RunningServer) -> None:
    client = await user(srv)
    try:
        client.xmpp.send_message(mto=f"someone@{OTHER}", mbody="anyone?", mtype="chat")
        error = await client.expect(lambda s: s.name == "message" and s["type"] == "error")
        assert error["error"]["condition"] == "service-unavailable"
        assert error["error"]["type"] == "wait"
        assert str(error["from"]) == f"someone@{OTHER}"
    finally:
        await client.disconnect()


async def test_domain_is_unavailable_again_after_the_component_leaves(srv: RunningServer) -> None:
    component = await connect_component(srv)
    await component.close()
    client = await user(srv)
    try:
        assert await error_of(ping_iq(client.xmpp, COMPONENT)) == "service-unavailable"
    finally:
        await client.disconnect()


# ---------------------------------------------------------------------- stream errors
async def test_handshake_reply_is_empty_handshake(srv: RunningServer) -> None:
    client = await raw_component(srv)
    try:
        assert client.stream_tag == q(NS_STREAM, "stream")
        assert client.stream_attrs.get("from") == COMPONENT
        assert client.stream_attrs.get("id")
        await handshake(client)
        reply = await client.next()
        assert reply.tag == q(NS_COMPONENT, "handshake")
        assert not list(reply) and not (reply.text or "").strip()
    finally:
        await client.close()


async def test_bad_secret_gets_not_authorized(srv: RunningServer) -> None:
    client = await raw_component(srv)
    try:
        await handshake(client, "wrong secret")
        await client.expect_stream_error("not-authorized")
    finally:
        await client.close()


async def test_stanza_before_handshake_gets_not_authorized(srv: RunningServer) -> None:
    client = await raw_component(srv)
    try:
        await client.send(f"<message from='{COMPONENT}' to='a@localhost'><body>x</body></message>")
        await client.expect_stream_error("not-authorized")
    finally:
        await client.close()


async def test_unknown_domain_gets_host_unknown(srv: RunningServer) -> None:
    client = await raw_component(srv, "nobody.localhost")
    try:
        await client.expect_stream_error("host-unknown")
    finally:
        await client.close()


async def test_second_connection_for_the_domain_gets_conflict(srv: RunningServer) -> None:
    component = await connect_component(srv)
    alice = await user(srv)
    second = await raw_component(srv)
    try:
        await handshake(second)
        await second.expect_stream_error("conflict")
        # The first connection keeps the domain.
        alice.xmpp.send_message(mto=f"bot@{COMPONENT}", mbody="still there?")
        got = await component.expect("message")
        assert got["body"] == "still there?"
    finally:
        await second.close()
        await alice.disconnect()
        await component.close()


async def test_forged_from_gets_invalid_from(srv: RunningServer) -> None:
    alice = await user(srv)
    client = await raw_component(srv)
    try:
        await handshake(client)
        assert (await client.next()).tag == q(NS_COMPONENT, "handshake")
        await client.send(
            f"<message from='admin@localhost' to='{alice.jid}'><body>forged</body></message>"
        )
        await client.expect_stream_error("invalid-from")
        await alice.expect_nothing(lambda s: s.name == "message" and s["body"] == "forged")
    finally:
        await client.close()
        await alice.disconnect()


async def test_stanza_without_to_gets_improper_addressing(srv: RunningServer) -> None:
    client = await raw_component(srv)
    try:
        await handshake(client)
        assert (await client.next()).tag == q(NS_COMPONENT, "handshake")
        await client.send(f"<message from='{COMPONENT}'><body>where to?</body></message>")
        await client.expect_stream_error("improper-addressing")
    finally:
        await client.close()


async def test_raw_component_receives_stanzas_in_its_namespace(srv: RunningServer) -> None:
    alice = await user(srv)
    client = await raw_component(srv)
    try:
        await handshake(client)
        assert (await client.next()).tag == q(NS_COMPONENT, "handshake")
        alice.xmpp.send_message(mto=f"x@{COMPONENT}", mbody="ns check")
        got = await client.next()
        assert got.tag == q(NS_COMPONENT, "message"), ET.tostring(got)
        assert got.get("from") == alice.jid
        # Subdomain JIDs and resources are the component's too.
        await client.send(
            f"<message from='x@{COMPONENT}/r' to='{alice.jid}' type='chat'>"
            "<body>from a resource</body></message>"
        )
        answer = await alice.expect(lambda s: s.name == "message")
        assert str(answer["from"]) == f"x@{COMPONENT}/r"
        assert answer["body"] == "from a resource"
        # A message the server cannot deliver comes back as an error stanza.
        await client.send(
            f"<iq type='get' id='q1' from='{COMPONENT}' to='nobody@localhost/none'>"
            "<ping xmlns='urn:xmpp:ping'/></iq>"
        )
        error = await client.next()
        assert error.tag == q(NS_COMPONENT, "iq") and error.get("type") == "error"
        assert stanza_error_condition(error) == "service-unavailable"
    finally:
        await client.close()
        await alice.disconnect()
