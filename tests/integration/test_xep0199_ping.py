"""XEP-0199: XMPP Ping, client-to-server and server-to-client."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable

from slixmpp.exceptions import IqError

from salon.jid import JID
from tests.integration.harness import (
    NS_CLIENT,
    RawClient,
    RunningServer,
    connect_slixmpp,
    q,
    raw_session,
)

NS_PING = "urn:xmpp:ping"
MODULES = ["disco", "presence", "message", "ping"]
ServerFactory = Callable[..., Awaitable[RunningServer]]


async def fast_pinging_server(server_factory: ServerFactory) -> RunningServer:
    options = {"ping": {"interval": 0.4, "timeout": 0.4}}
    return await server_factory(modules=MODULES, module_options=options)


def is_server_ping(element: ET.Element, domain: str, to: str) -> bool:
    return (
        element.tag == q(NS_CLIENT, "iq")
        and element.get("type") == "get"
        and element.get("from") == domain
        and element.get("to") == to
        and element.find(q(NS_PING, "ping")) is not None
    )


# ---------------------------------------------------------------------- client to server
async def test_server_answers_ping_with_empty_result(server_factory: ServerFactory) -> None:
    server = await server_factory(modules=MODULES)
    client = await connect_slixmpp(server, await server.add_user())
    client.xmpp.register_plugin("xep_0199")
    rtt = await client.xmpp.plugin["xep_0199"].ping(server.domain, timeout=5)
    assert rtt >= 0
    await client.disconnect()


async def test_ping_to_own_bare_jid_is_answered_by_the_server(
    server_factory: ServerFactory,
) -> None:
    server = await server_factory(modules=MODULES)
    jid = await server.add_user()
    client, full = await raw_session(server, jid)
    reply = await client.ping(to=jid)
    assert reply.get("from") == jid and reply.get("to") == full
    assert len(reply) == 0  # XEP-0199 §4.3: an empty IQ-result
    await client.close()


async def test_ping_is_advertised_in_disco(server_factory: ServerFactory) -> None:
    server = await server_factory(modules=MODULES)
    client = await connect_slixmpp(server, await server.add_user())
    client.xmpp.register_plugin("xep_0030")
    info = await client.xmpp.plugin["xep_0030"].get_info(jid=server.domain)
    assert NS_PING in info["disco_info"]["features"]
    await client.disconnect()


# ---------------------------------------------------------------------- server to client
async def test_silent_client_is_pinged_and_stays_when_it_answers(
    server_factory: ServerFactory,
) -> None:
    server = await fast_pinging_server(server_factory)
    client = await connect_slixmpp(server, await server.add_user())
    client.xmpp.register_plugin("xep_0199")  # answers pings with a result
    for _ in range(2):
        ping = await client.expect(lambda s: s.name == "iq" and s["type"] == "get", timeout=3)
        assert str(ping["from"]) == server.domain and str(ping["to"]) == client.jid
        assert ping.xml.find(q(NS_PING, "ping")) is not None
    # Well past interval + timeout, the answered connection is still open.
    await client.xmpp.plugin["xep_0199"].ping(server.domain, timeout=2)
    await client.disconnect()


async def test_an_error_answer_also_proves_the_client_alive(
    server_factory: ServerFactory,
) -> None:
    # XEP-0199 §4.1: a client that does not support ping answers with an error; that is
    # still an answer.
    server = await fast_pinging_server(server_factory)
    client, full = await raw_session(server)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 1.5  # several rounds of interval + timeout
    answered = 0
    while (remaining := deadline - loop.time()) > 0:
        try:
            ping = await client.next(timeout=remaining)
        except AssertionError:
            break  # no element before the deadline
        assert is_server_ping(ping, server.domain, full), ET.tostring(ping)
        await client.send(
            f"<iq type='error' id='{ping.get('id')}' to='{server.domain}'>"
            f"<ping xmlns='{NS_PING}'/><error type='cancel'>"
            "<service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
        )
        answered += 1
    assert answered >= 2
    assert not client.closed_by_server
    await client.close()


async def test_client_that_does_not_answer_gets_connection_timeout(
    server_factory: ServerFactory,
) -> None:
    server = await fast_pinging_server(server_factory)
    client, full = await raw_session(server)
    ping = await client.next(timeout=3)
    assert is_server_ping(ping, server.domain, full), ET.tostring(ping)
    await client.expect_stream_error("connection-timeout", timeout=3)
    for _ in range(50):  # the session is gone from the server too
        if not server.server.core.sessions.is_online(JID.parse(full).bare):
            break
        await asyncio.sleep(0.02)
    assert not server.server.core.sessions.is_online(JID.parse(full).bare)


async def test_active_client_is_not_pinged(server_factory: ServerFactory) -> None:
    server = await fast_pinging_server(server_factory)
    client, full = await raw_session(server)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 1.5  # several intervals
    count = 0
    while loop.time() < deadline:
        count += 1
        reply = await client.ping(iq_id=f"busy{count}")  # fails if a server ping came instead
        assert not is_server_ping(reply, server.domain, full)
        await asyncio.sleep(0.15)
    await client.expect_nothing(within=0.2)
    await client.close()


async def test_stale_answer_for_unknown_id_is_ignored(server_factory: ServerFactory) -> None:
    # RFC 6120 §8.2.3: a result is never answered, whatever its id.
    server = await server_factory(modules=MODULES)
    client = await RawClient.connect(server)
    jid = await server.add_user()
    await client.login(server, jid)
    await client.send(f"<iq type='result' id='never-asked' to='{server.domain}'/>")
    await client.expect_nothing(within=0.3)
    await client.ping()
    await client.close()


async def test_ping_to_unknown_account_is_service_unavailable(
    server_factory: ServerFactory,
) -> None:
    server = await server_factory(modules=MODULES)
    client = await connect_slixmpp(server, await server.add_user())
    client.xmpp.register_plugin("xep_0199")
    try:
        await client.xmpp.plugin["xep_0199"].send_ping(f"nobody@{server.domain}/x", timeout=5)
    except IqError as err:
        assert err.condition == "service-unavailable"
    else:
        raise AssertionError("expected an error")
    await client.disconnect()
