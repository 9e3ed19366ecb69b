"""RFC 6120 §5 (STARTTLS) and XEP-0368 (direct TLS), as a client observes them."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable

import pytest

from tests.integration.harness import (
    DOMAINS,
    NS_SASL,
    NS_TLS,
    RawClient,
    RunningServer,
    SlixClient,
    connect_slixmpp,
    q,
)
from tests.integration.sasl_helpers import (
    NS_SASL_CB,
    mechanisms,
    ping,
    restart_and_bind,
    scram_exchange,
    secure_stream,
    verify_success,
)

ServerFactory = Callable[..., Awaitable[RunningServer]]
SCRAM_ONLY = {"SCRAM-SHA-512", "SCRAM-SHA-256", "SCRAM-SHA-1"}


def slix_tls(client: SlixClient) -> ssl.SSLObject:
    sslobj = client.xmpp.transport.get_extra_info("ssl_object")
    assert sslobj is not None, "slixmpp's connection is not TLS"
    return sslobj


def verified_dns_names(sslobj: ssl.SSLObject) -> list[str]:
    # getpeercert() is an empty dict unless the certificate was verified against the CA.
    cert = sslobj.getpeercert()
    assert cert, "the peer certificate was not verified"
    return [value for kind, value in cert.get("subjectAltName", ()) if kind == "DNS"]


@pytest.mark.parametrize("direct_tls", [False, True], ids=["starttls", "direct-tls"])
async def test_slixmpp_over_verified_tls(server: RunningServer, direct_tls: bool) -> None:
    jid = await server.add_user()
    client = await connect_slixmpp(server, jid, mechanism="SCRAM-SHA-256", direct_tls=direct_tls)
    try:
        sslobj = slix_tls(client)
        assert sslobj.version() in ("TLSv1.2", "TLSv1.3")
        assert verified_dns_names(sslobj) == ["localhost"]
        await ping(client)
    finally:
        await client.disconnect()


@pytest.mark.parametrize("domain", DOMAINS)
async def test_direct_tls_negotiates_alpn_xmpp_client(server: RunningServer, domain: str) -> None:
    """XEP-0368 §3: direct TLS clients offer the ALPN protocol "xmpp-client"; the server
    selects it whichever host certificate SNI picked."""
    ctx = server.client_ssl_context()
    ctx.set_alpn_protocols(["xmpp-client"])
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", server.tls_port, ssl=ctx, server_hostname=domain
    )
    client = RawClient(reader, writer)
    assert writer.get_extra_info("ssl_object").selected_alpn_protocol() == "xmpp-client"
    features = await client.open(domain)
    assert features.find(q(NS_TLS, "starttls")) is None
    assert "PLAIN" in mechanisms(features)
    await client.close()


async def test_starttls_again_after_tls_fails_and_closes(server: RunningServer) -> None:
    """RFC 6120 §5.4.2.2: a second STARTTLS is answered with <failure/>, then the stream and
    the connection are closed."""
    client = await RawClient.connect(server)
    features = await secure_stream(client, server)
    assert features.find(q(NS_TLS, "starttls")) is None
    await client.send(f"<starttls xmlns='{NS_TLS}'/>")
    failure = await client.next()
    assert failure.tag == q(NS_TLS, "failure")
    assert len(failure) == 0
    await client.expect_closed()


async def test_starttls_on_direct_tls_fails_and_closes(server: RunningServer) -> None:
    client = await RawClient.connect(server, direct_tls=True)
    features = await client.open()
    assert features.find(q(NS_TLS, "starttls")) is None
    await client.send(f"<starttls xmlns='{NS_TLS}'/>")
    assert (await client.next()).tag == q(NS_TLS, "failure")
    await client.expect_closed()


async def test_plaintext_allowed_server_offers_optional_starttls_and_scram(
    server_factory: ServerFactory,
) -> None:
    srv = await server_factory(require_encryption=False)
    jid = await srv.add_user()
    client = await RawClient.connect(srv)
    features = await client.open()
    starttls = features.find(q(NS_TLS, "starttls"))
    assert starttls is not None
    assert starttls.find(q(NS_TLS, "required")) is None
    # No channel binding without TLS, and no PLAIN either.
    assert set(mechanisms(features)) == SCRAM_ONLY
    assert features.find(q(NS_SASL_CB, "sasl-channel-binding")) is None

    verify_success(await scram_exchange(client, "SCRAM-SHA-256", jid.split("@")[0]))
    assert await restart_and_bind(client, "localhost", "clear") == f"{jid}/clear"
    await client.close()


async def test_plaintext_allowed_server_still_upgrades_to_tls(
    server_factory: ServerFactory,
) -> None:
    srv = await server_factory(require_encryption=False)
    client = await RawClient.connect(srv)
    features = await secure_stream(client, srv)
    assert "SCRAM-SHA-256-PLUS" in mechanisms(features)
    assert "PLAIN" in mechanisms(features)
    success = await client.auth_plain(await srv.add_user())
    assert success.tag == q(NS_SASL, "success")
    await client.close()
