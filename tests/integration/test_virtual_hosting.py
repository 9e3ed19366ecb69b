"""Virtual hosting: one server, two domains (``localhost`` and ``example.test``), each with its
own certificate from the test CA and its own accounts."""

from __future__ import annotations

import ssl

import pytest

from tests.integration.harness import (
    DOMAINS,
    NS_CLIENT,
    NS_SASL,
    NS_STREAM,
    NS_TLS,
    RawClient,
    RunningServer,
    connect_slixmpp,
    q,
)
from tests.integration.sasl_helpers import (
    mechanisms,
    ping,
    restart_and_bind,
    sasl_condition,
    scram_exchange,
    subject_alt_names,
    tls_server_end_point,
    verify_success,
)


def dns_names(sslobj: ssl.SSLObject) -> list[str]:
    cert = sslobj.getpeercert()
    assert cert, "the peer certificate was not verified"
    return [value for kind, value in cert.get("subjectAltName", ()) if kind == "DNS"]


@pytest.mark.parametrize("domain", DOMAINS)
async def test_slixmpp_login_on_each_domain(server: RunningServer, domain: str) -> None:
    jid = await server.add_user(domain=domain)
    client = await connect_slixmpp(server, jid, mechanism="SCRAM-SHA-256")
    try:
        assert client.jid.startswith(f"{jid}/")
        sslobj = client.xmpp.transport.get_extra_info("ssl_object")
        assert dns_names(sslobj) == [domain]
        await ping(client, domain)
    finally:
        await client.disconnect()


@pytest.mark.parametrize("domain", DOMAINS)
@pytest.mark.parametrize("send_sni", [True, False], ids=["sni", "no-sni"])
async def test_starttls_presents_the_certificate_of_the_stream_to_domain(
    server: RunningServer, domain: str, send_sni: bool
) -> None:
    """Without SNI the stream header's 'to' is all the server has to go by (RFC 6120 §13.7.2)."""
    client = await RawClient.connect(server)
    header = await client.open(domain)
    assert client.stream_attrs.get("from") == domain
    assert header.find(q(NS_TLS, "starttls")) is not None
    await client.send(f"<starttls xmlns='{NS_TLS}'/>")
    assert (await client.next()).tag == q(NS_TLS, "proceed")
    ctx = server.client_ssl_context()
    ctx.check_hostname = False  # the certificate chain is still verified (CERT_REQUIRED)
    await client.writer.start_tls(ctx, server_hostname=domain if send_sni else None)
    assert subject_alt_names(client) == [domain]
    features = await client.open(domain)
    assert "PLAIN" in mechanisms(features)
    await client.close()


@pytest.mark.parametrize("domain", DOMAINS)
async def test_direct_tls_presents_the_certificate_chosen_by_sni(
    server: RunningServer, domain: str
) -> None:
    jid = await server.add_user(domain=domain)
    client = await RawClient.connect(server, direct_tls=True, server_hostname=domain)
    assert subject_alt_names(client) == [domain]
    features = await client.open(domain)
    assert client.stream_attrs.get("from") == domain
    # The channel binding is that of the certificate SNI chose, not the default one.
    cb = ("tls-server-end-point", tls_server_end_point(client))
    assert "SCRAM-SHA-256-PLUS" in mechanisms(features)
    result = await scram_exchange(
        client, "SCRAM-SHA-256-PLUS", jid.split("@")[0], channel_binding=cb
    )
    verify_success(result)
    assert await restart_and_bind(client, domain, "sni") == f"{jid}/sni"
    await client.close()


async def test_message_between_domains_is_delivered(server: RunningServer) -> None:
    romeo_jid = await server.add_user("romeo", domain="localhost")
    juliet_jid = await server.add_user("juliet", domain="example.test")
    romeo = await connect_slixmpp(server, romeo_jid)
    juliet = await connect_slixmpp(server, juliet_jid)
    try:
        for client in (romeo, juliet):
            client.xmpp.send_presence()
            await client.expect(lambda s: s.name == "presence")
        romeo.xmpp.send_message(mto=juliet_jid, mbody="Wherefore art thou?", mtype="chat")
        msg = await juliet.expect(lambda s: s.name == "message")
        assert msg["body"] == "Wherefore art thou?"
        assert str(msg["from"]) == romeo.jid
        juliet.xmpp.send_message(mto=romeo.jid, mbody="Deny thy father", mtype="chat")
        reply = await romeo.expect(lambda s: s.name == "message")
        assert reply["body"] == "Deny thy father"
        assert str(reply["from"]) == juliet.jid
    finally:
        await romeo.disconnect()
        await juliet.disconnect()


async def test_same_localpart_on_two_domains_are_different_accounts(
    server: RunningServer,
) -> None:
    passwords = {"localhost": "password of the localhost alice", "example.test": "other one"}
    for domain, password in passwords.items():
        await server.add_user("alice", password=password, domain=domain)

    # Each account only accepts its own password.
    for domain, password in passwords.items():
        wrong = next(p for d, p in passwords.items() if d != domain)
        client = await RawClient.connect(server)
        await client.open(domain)
        await client.starttls(server, domain)
        await client.open(domain)
        assert sasl_condition(await client.auth_plain(f"alice@{domain}", wrong)) == (
            "not-authorized"
        )
        assert (await client.auth_plain(f"alice@{domain}", password)).tag == q(NS_SASL, "success")
        await client.close()

    # Both can be online with the same resource: no <conflict/> between them.
    sessions: dict[str, RawClient] = {}
    for domain, password in passwords.items():
        client = await RawClient.connect(server)
        bound = await client.login(server, f"alice@{domain}", password, "same", domain)
        assert bound == f"alice@{domain}/same"
        sessions[domain] = client
    bob = await RawClient.connect(server)
    await bob.login(server, await server.add_user("bob"), resource="bob")

    await bob.send(
        "<message type='chat' id='m1' to='alice@example.test/same'><body>to the other</body>"
        "</message>"
    )
    got = await sessions["example.test"].next()
    assert got.tag == q(NS_CLIENT, "message")
    assert got.findtext(q(NS_CLIENT, "body")) == "to the other"
    # The localhost alice neither received it nor was disconnected.
    await sessions["localhost"].expect_nothing()
    assert not sessions["localhost"].closed_by_server
    for client in (*sessions.values(), bob):
        await client.send("</stream:stream>")
        await client.expect_closed()


async def test_stream_to_an_unhosted_domain_is_host_unknown(server: RunningServer) -> None:
    client = await RawClient.connect(server)
    await client.send(
        "<?xml version='1.0'?><stream:stream to='elsewhere.test' version='1.0' "
        f"xmlns='jabber:client' xmlns:stream='{NS_STREAM}'>"
    )
    await client.expect_stream_error("host-unknown")
