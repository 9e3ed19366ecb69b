"""RFC 6120 §7 (resource binding) and the legacy session establishment of RFC 3921."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from tests.integration.harness import (
    NS_BIND,
    NS_CLIENT,
    NS_SASL,
    RawClient,
    RunningServer,
    q,
    stanza_error_condition,
)
from tests.integration.sasl_helpers import NS_PING, NS_SESSION, secure_stream


async def authenticated(srv: RunningServer, jid: str) -> tuple[RawClient, ET.Element]:
    """A raw client through TLS and SASL; returns it with the post-auth features."""
    client = await RawClient.connect(srv)
    await secure_stream(client, srv)
    success = await client.auth_plain(jid)
    assert success.tag == q(NS_SASL, "success"), ET.tostring(success)
    return client, await client.open()


async def bind_request(client: RawClient, resource: str | None, iq_id: str = "b1") -> ET.Element:
    inner = "" if resource is None else f"<resource>{resource}</resource>"
    await client.send(f"<iq type='set' id='{iq_id}'><bind xmlns='{NS_BIND}'>{inner}</bind></iq>")
    reply = await client.next()
    assert reply.tag == q(NS_CLIENT, "iq") and reply.get("id") == iq_id, ET.tostring(reply)
    return reply


def error_type(iq: ET.Element) -> str | None:
    error = iq.find(q(NS_CLIENT, "error"))
    return None if error is None else error.get("type")


async def ping_server(client: RawClient) -> None:
    await client.send(f"<iq type='get' id='p1' to='localhost'><ping xmlns='{NS_PING}'/></iq>")
    pong = await client.next()
    assert pong.get("type") == "result" and pong.get("id") == "p1", ET.tostring(pong)


async def test_features_after_auth_offer_bind_and_optional_session(server: RunningServer) -> None:
    client, features = await authenticated(server, await server.add_user())
    assert features.find(q(NS_BIND, "bind")) is not None
    session = features.find(q(NS_SESSION, "session"))
    assert session is not None
    assert [child.tag for child in session] == [q(NS_SESSION, "optional")]
    assert features.find(q(NS_SASL, "mechanisms")) is None
    await client.close()


async def test_requested_resource_is_honoured(server: RunningServer) -> None:
    jid = await server.add_user()
    client, _ = await authenticated(server, jid)
    assert await client.bind("balcony") == f"{jid}/balcony"
    await ping_server(client)
    await client.close()


async def test_server_generates_unique_resources(server: RunningServer) -> None:
    jid = await server.add_user()
    bound: list[str] = []
    clients: list[RawClient] = []
    for request in (None, ""):  # no <resource/>, and an empty one (RFC 6120 §7.6.1)
        client, _ = await authenticated(server, jid)
        clients.append(client)
        reply = await bind_request(client, request)
        assert reply.get("type") == "result", ET.tostring(reply)
        bound.append(reply.findtext(f"{q(NS_BIND, 'bind')}/{q(NS_BIND, 'jid')}") or "")
    for full in bound:
        bare, slash, resource = full.partition("/")
        assert bare == jid and slash and resource
    assert bound[0] != bound[1]
    # Both sessions are alive: neither replaced the other.
    for client in clients:
        await ping_server(client)
        await client.close()


async def test_resource_is_prepared_with_opaque_string(server: RunningServer) -> None:
    """RFC 7622 §3.4: the resourcepart is enforced with the OpaqueString profile: NFC, and
    non-ASCII spaces mapped to U+0020."""
    jid = await server.add_user()
    client, _ = await authenticated(server, jid)
    assert await client.bind("cafe\u0301\u00a0phone") == f"{jid}/caf\u00e9 phone"
    await client.close()


@pytest.mark.parametrize(
    "resource",
    ["line\u2028sep", "zero\u200bwidth", "c1\u0085control", "unassigned\u0378", "x" * 1024],
    ids=["U+2028", "U+200B", "U+0085", "U+0378", "too-long"],
)
async def test_invalid_resource_is_bad_request(server: RunningServer, resource: str) -> None:
    jid = await server.add_user()
    client, _ = await authenticated(server, jid)
    reply = await bind_request(client, resource)
    assert reply.get("type") == "error"
    assert stanza_error_condition(reply) == "bad-request"
    assert error_type(reply) == "modify"
    # The stream survives and the client may try again (RFC 6120 §7.7.2.1).
    assert await client.bind("fine") == f"{jid}/fine"
    await client.close()


async def test_same_resource_replaces_the_old_session_with_conflict(
    server: RunningServer,
) -> None:
    jid = await server.add_user()
    old = await RawClient.connect(server)
    assert await old.login(server, jid, resource="desk") == f"{jid}/desk"
    new = await RawClient.connect(server)
    assert await new.login(server, jid, resource="desk") == f"{jid}/desk"
    await old.expect_stream_error("conflict")
    await ping_server(new)
    await new.close()


async def test_legacy_session_request_gets_a_result(server: RunningServer) -> None:
    jid = await server.add_user()
    client, _ = await authenticated(server, jid)
    await client.bind("legacy")
    await client.send(f"<iq type='set' id='s1'><session xmlns='{NS_SESSION}'/></iq>")
    reply = await client.next()
    assert reply.tag == q(NS_CLIENT, "iq")
    assert (reply.get("type"), reply.get("id")) == ("result", "s1")
    await client.close()


async def test_binding_twice_is_not_allowed(server: RunningServer) -> None:
    jid = await server.add_user()
    client, _ = await authenticated(server, jid)
    assert await client.bind("first") == f"{jid}/first"
    reply = await bind_request(client, "second", "b2")
    assert reply.get("type") == "error"
    assert stanza_error_condition(reply) == "not-allowed"
    assert error_type(reply) == "cancel"
    # Still bound to the first resource.
    await ping_server(client)
    await client.close()


async def test_resource_limit_is_resource_constraint(server: RunningServer) -> None:
    server.server.core.sessions.max_resources = 2
    jid = await server.add_user()
    clients: list[RawClient] = []
    for resource in ("one", "two"):
        client = await RawClient.connect(server)
        assert await client.login(server, jid, resource=resource) == f"{jid}/{resource}"
        clients.append(client)
    third, _ = await authenticated(server, jid)
    reply = await bind_request(third, "three")
    assert reply.get("type") == "error"
    assert stanza_error_condition(reply) == "resource-constraint"
    assert error_type(reply) == "wait"
    # Taking over an existing resource is not a new one: it is still allowed.
    assert await third.bind("two") == f"{jid}/two"
    await clients[1].expect_stream_error("conflict")
    await ping_server(clients[0])
    for client in (clients[0], third):
        await client.close()
