"""XEP-0199: XMPP Ping, client-to-server and server-to-client."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable

from slixmpp.exceptions import IqError

from salon.core.clock import ManualClock
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


INTERVAL, TIMEOUT = 300.0, 30.0  # the module's defaults; time is the test's to move


async def manual_pinging_server(server_factory: ServerFactory) -> tuple[RunningServer, ManualClock]:
    """A server on a ManualClock: nothing is pinged or timed out until the test moves time."""
    clock = ManualClock()
    options = {"ping": {"interval": INTERVAL, "timeout": TIMEOUT}}
    return await server_factory(modules=MODULES, module_options=options, clock=clock), clock


async def pass_one_interval(clock: ManualClock) -> None:
    """Move time on by one interval, in the module's own check steps (interval / 4), so the
    ping goes out at the end of the last step and its timeout is still ahead."""
    for _ in range(4):
        await clock.advance(INTERVAL / 4)


async def no_ping_pending(server: RunningServer) -> None:
    """Wait until the server has taken the answer to its ping (an event, not a sleep)."""
    for _ in range(500):
        ping = server.server.core.hosts[server.domain].modules["ping"]
        if not getattr(ping, "pinging", None):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the server never took the answer to its ping")


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
    server, clock = await manual_pinging_server(server_factory)
    client = await connect_slixmpp(server, await server.add_user())
    client.xmpp.register_plugin("xep_0199")  # answers pings with a result
    for _ in range(2):
        await pass_one_interval(clock)  # silent for a whole interval: pinged
        ping = await client.expect(lambda s: s.name == "iq" and s["type"] == "get", timeout=5)
        assert str(ping["from"]) == server.domain and str(ping["to"]) == client.jid
        assert ping.xml.find(q(NS_PING, "ping")) is not None
        await no_ping_pending(server)
    await clock.advance(INTERVAL / 4)  # past the timeout: the answered connection stays
    await client.xmpp.plugin["xep_0199"].ping(server.domain, timeout=5)
    await client.disconnect()


async def test_an_error_answer_also_proves_the_client_alive(
    server_factory: ServerFactory,
) -> None:
    # XEP-0199 §4.1: a client that does not support ping answers with an error; that is
    # still an answer.
    server, clock = await manual_pinging_server(server_factory)
    client, full = await raw_session(server)
    for _ in range(2):
        await pass_one_interval(clock)
        ping = await client.next(timeout=5)
        assert is_server_ping(ping, server.domain, full), ET.tostring(ping)
        await client.send(
            f"<iq type='error' id='{ping.get('id')}' to='{server.domain}'>"
            f"<ping xmlns='{NS_PING}'/><error type='cancel'>"
            "<service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
        )
        await no_ping_pending(server)
    await clock.advance(INTERVAL / 4)  # past the timeout
    reply = await client.ping(iq_id="still-here")
    assert reply.get("type") == "result"
    assert not client.closed_by_server
    await client.close()


async def test_client_that_does_not_answer_gets_connection_timeout(
    server_factory: ServerFactory,
) -> None:
    server, clock = await manual_pinging_server(server_factory)
    client, full = await raw_session(server)
    await pass_one_interval(clock)
    ping = await client.next(timeout=5)
    assert is_server_ping(ping, server.domain, full), ET.tostring(ping)
    await clock.advance(TIMEOUT - 1)  # not yet
    await client.expect_nothing(within=0.2)
    await clock.advance(2)
    await client.expect_stream_error("connection-timeout", timeout=5)
    for _ in range(250):  # the session is gone from the server too
        if not server.server.core.sessions.is_online(JID.parse(full).bare):
            break
        await asyncio.sleep(0.02)
    assert not server.server.core.sessions.is_online(JID.parse(full).bare)


async def test_active_client_is_not_pinged(server_factory: ServerFactory) -> None:
    server, clock = await manual_pinging_server(server_factory)
    client, full = await raw_session(server)
    for count in range(8):  # two whole intervals, never silent for one
        await clock.advance(INTERVAL / 4)
        reply = await client.ping(iq_id=f"busy{count}")  # fails if a server ping came instead
        assert not is_server_ping(reply, server.domain, full)
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
