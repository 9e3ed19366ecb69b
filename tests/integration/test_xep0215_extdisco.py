"""XEP-0215 External Service Discovery: STUN/TURN servers from the configuration, with
TURN credentials in the TURN REST API shared-secret scheme (as coturn checks them)."""

from __future__ import annotations

import base64
import hmac
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from salon.core.clock import ManualClock
from tests.integration.harness import RunningServer, SlixClient, connect_slixmpp, q
from tests.integration.pubsub_helpers import error_of, iq_xml

NS = "urn:xmpp:extdisco:2"
NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
SECRET = "north-wind"
NOW = 1_700_000_000
TTL = 3600
ServerFactory = Callable[..., Awaitable[RunningServer]]
SERVICES = [
    {"type": "stun", "host": "stun.example.org", "port": 3478, "transport": "udp"},
    {"type": "turn", "host": "turn.example.org", "port": 3478, "transport": "udp"},
    {"type": "turn", "host": "turn.example.org", "port": 3479, "transport": "tcp"},
    {"type": "turns", "host": "turn.example.org", "port": 5349, "transport": "tcp", "name": "TLS"},
]


@pytest.fixture
async def server(server_factory: ServerFactory) -> RunningServer:
    return await server_factory(
        clock=ManualClock(float(NOW)),
        module_options={"extdisco": {"services": SERVICES, "secret": SECRET, "ttl": TTL}},
    )


def expected_password(username: str) -> str:
    return base64.b64encode(hmac.new(SECRET.encode(), username.encode(), "sha1").digest()).decode()


def services_of(reply: Any, tag: str = "services") -> list[ET.Element]:
    assert reply["type"] == "result", reply
    top = reply.xml.find(q(NS, tag))
    assert top is not None
    return top.findall(q(NS, "service"))


async def client_of(server: RunningServer) -> tuple[str, SlixClient]:
    jid = await server.add_user()
    return jid, await connect_slixmpp(server, jid)


async def test_server_advertises_extdisco(server: RunningServer) -> None:
    _jid, client = await client_of(server)
    reply = await iq_xml(client, f"<query xmlns='{NS_DISCO_INFO}'/>", "get", "localhost")
    assert NS in {f.get("var") for f in reply.xml.iter(q(NS_DISCO_INFO, "feature"))}
    await client.disconnect()


async def test_services_list_with_turn_credentials(server: RunningServer) -> None:
    jid, client = await client_of(server)
    found = services_of(await iq_xml(client, f"<services xmlns='{NS}'/>", "get", "localhost"))
    assert [(s.get("type"), s.get("host"), s.get("port"), s.get("transport")) for s in found] == [
        (str(e["type"]), str(e["host"]), str(e["port"]), str(e["transport"])) for e in SERVICES
    ]
    stun = found[0]
    assert stun.get("username") is None and stun.get("restricted") is None
    username = f"{NOW + TTL}:{jid}"
    for turn in found[1:]:
        assert turn.get("username") == username
        assert turn.get("password") == expected_password(username)
        assert turn.get("expires") == "2023-11-14T23:13:20Z"  # NOW + TTL in UTC
        assert turn.get("restricted") in ("1", "true")
    assert found[3].get("name") == "TLS"
    await client.disconnect()


async def test_services_of_one_type(server: RunningServer) -> None:
    _jid, client = await client_of(server)
    reply = await iq_xml(client, f"<services xmlns='{NS}' type='turn'/>", "get", "localhost")
    assert reply.xml.find(q(NS, "services")).get("type") == "turn"
    assert [s.get("port") for s in services_of(reply)] == ["3478", "3479"]
    none = await iq_xml(client, f"<services xmlns='{NS}' type='ftp'/>", "get", "localhost")
    assert services_of(none) == []
    await client.disconnect()


async def test_credentials_request(server: RunningServer) -> None:
    jid, client = await client_of(server)
    ask = f"<credentials xmlns='{NS}'><service host='turn.example.org' type='turn'/></credentials>"
    found = services_of(await iq_xml(client, ask, "get", "localhost"), "credentials")
    assert [s.get("port") for s in found] == ["3478", "3479"]  # both ports of that host
    username = f"{NOW + TTL}:{jid}"
    assert {(s.get("username"), s.get("password")) for s in found} == {
        (username, expected_password(username))
    }
    one_port = ask.replace("type='turn'", "type='turn' port='3479'")
    found = services_of(await iq_xml(client, one_port, "get", "localhost"), "credentials")
    assert [s.get("port") for s in found] == ["3479"]
    # credentials are fresh on each request: time moved, so did the expiry
    clock = server.server.core.clock
    assert isinstance(clock, ManualClock)
    await clock.advance(100)
    later = services_of(await iq_xml(client, one_port, "get", "localhost"), "credentials")
    assert later[0].get("username") == f"{NOW + 100 + TTL}:{jid}"
    await client.disconnect()


async def test_credentials_errors(server: RunningServer) -> None:
    _jid, client = await client_of(server)
    unknown = f"<credentials xmlns='{NS}'><service host='elsewhere.org' type='turn'/></credentials>"
    assert error_of(await iq_xml(client, unknown, "get", "localhost"))[:2] == (
        "cancel",
        "item-not-found",
    )
    no_type = f"<credentials xmlns='{NS}'><service host='turn.example.org'/></credentials>"
    assert error_of(await iq_xml(client, no_type, "get", "localhost"))[:2] == (
        "modify",
        "bad-request",
    )
    empty = f"<credentials xmlns='{NS}'/>"
    assert error_of(await iq_xml(client, empty, "get", "localhost"))[1] == "bad-request"
    await client.disconnect()


async def test_unconfigured_server_lists_nothing(server_factory: ServerFactory) -> None:
    srv = await server_factory()
    _jid, client = await client_of(srv)
    assert services_of(await iq_xml(client, f"<services xmlns='{NS}'/>", "get", "localhost")) == []
    await client.disconnect()
