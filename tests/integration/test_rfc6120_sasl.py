"""RFC 6120 §6 (SASL), RFC 5802 (SCRAM), RFC 5929/XEP-0440 (channel binding), RFC 4616 (PLAIN).

What the client observes: the mechanisms offered, ``<success/>`` with a server signature it can
verify, and each failure with exactly the condition RFC 6120 §6.5 names.
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable

import pytest
from scramp import ScramClient

from salon.core.clock import ManualClock
from tests.integration.harness import (
    NS_SASL,
    NS_STREAM,
    NS_TLS,
    PASSWORD,
    RawClient,
    RunningServer,
    connect_slixmpp,
    q,
    until,
)
from tests.integration.sasl_helpers import (
    NS_SASL_CB,
    b64,
    mechanisms,
    ping,
    restart_and_bind,
    sasl_condition,
    scram_exchange,
    secure_stream,
    tls_server_end_point,
    verify_success,
)

ServerFactory = Callable[..., Awaitable[RunningServer]]

ALL_OVER_TLS = {
    "SCRAM-SHA-512-PLUS",
    "SCRAM-SHA-256-PLUS",
    "SCRAM-SHA-1-PLUS",
    "SCRAM-SHA-512",
    "SCRAM-SHA-256",
    "SCRAM-SHA-1",
    "PLAIN",
}
SCRAM_PLUS = ["SCRAM-SHA-1-PLUS", "SCRAM-SHA-256-PLUS", "SCRAM-SHA-512-PLUS"]
WRONG_PASSWORD = "Tr0ub4dor&3"


def local(jid: str) -> str:
    return jid.split("@", 1)[0]


async def send_plain(
    client: RawClient, authcid: str, password: str = PASSWORD, authzid: str = ""
) -> None:
    message = f"{authzid}\0{authcid}\0{password}"
    await client.send(f"<auth xmlns='{NS_SASL}' mechanism='PLAIN'>{b64(message)}</auth>")


async def secure_client(srv: RunningServer) -> RawClient:
    client = await RawClient.connect(srv)
    await secure_stream(client, srv)
    return client


# --------------------------------------------------------------------------- features
async def test_before_tls_only_required_starttls_is_offered(server: RunningServer) -> None:
    client = await RawClient.connect(server)
    features = await client.open()
    # RFC 6120 §5.3.1 and §6.4.1: with TLS mandatory, no mechanisms before it.
    assert [child.tag for child in features] == [q(NS_TLS, "starttls")]
    assert [child.tag for child in features[0]] == [q(NS_TLS, "required")]
    await client.close()


@pytest.mark.parametrize("direct_tls", [False, True], ids=["starttls", "direct-tls"])
async def test_after_tls_mechanisms_and_channel_binding_types(
    server: RunningServer, direct_tls: bool
) -> None:
    client = await RawClient.connect(server, direct_tls=direct_tls)
    features = await client.open() if direct_tls else await secure_stream(client, server)
    offered = mechanisms(features)
    assert set(offered) == ALL_OVER_TLS
    assert len(offered) == len(ALL_OVER_TLS)
    assert features.find(q(NS_TLS, "starttls")) is None
    # XEP-0440: the channel-binding types the server supports on this connection.
    cb = features.find(q(NS_SASL_CB, "sasl-channel-binding"))
    assert cb is not None
    assert [(c.tag, c.get("type")) for c in cb] == [
        (q(NS_SASL_CB, "channel-binding"), "tls-server-end-point")
    ]
    await client.close()


# --------------------------------------------------------------------------- slixmpp
@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-1", "SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"])
async def test_slixmpp_login(server: RunningServer, mechanism: str) -> None:
    jid = await server.add_user()
    client = await connect_slixmpp(server, jid, mechanism=mechanism)
    try:
        # slixmpp verifies the SCRAM server signature itself (mutual authentication).
        assert client.xmpp.plugin["feature_mechanisms"].mech.name == mechanism
        assert client.jid.startswith(f"{jid}/")
        await ping(client)
    finally:
        await client.disconnect()


# --------------------------------------------------------------------------- SCRAM-PLUS
@pytest.mark.parametrize("direct_tls", [False, True], ids=["starttls", "direct-tls"])
@pytest.mark.parametrize("mechanism", SCRAM_PLUS)
async def test_scram_plus_with_tls_server_end_point(
    server: RunningServer, mechanism: str, direct_tls: bool
) -> None:
    jid = await server.add_user()
    client = await RawClient.connect(server, direct_tls=direct_tls)
    features = await client.open() if direct_tls else await secure_stream(client, server)
    assert mechanism in mechanisms(features)
    cb_data = tls_server_end_point(client)
    result = await scram_exchange(
        client, mechanism, local(jid), channel_binding=("tls-server-end-point", cb_data)
    )
    assert result.scram.gs2_header.gs2_char == "p"
    verify_success(result)
    assert await restart_and_bind(client, "localhost", "plus") == f"{jid}/plus"
    await client.close()


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-1-PLUS", "SCRAM-SHA-256-PLUS"])
async def test_scram_plus_with_wrong_binding_data_is_not_authorized(
    server: RunningServer, mechanism: str
) -> None:
    jid = await server.add_user()
    client = await secure_client(server)
    cb_data = bytearray(tls_server_end_point(client))
    cb_data[0] ^= 0xFF  # as if a man in the middle terminated TLS with another certificate
    result = await scram_exchange(
        client, mechanism, local(jid), channel_binding=("tls-server-end-point", bytes(cb_data))
    )
    assert sasl_condition(result.reply) == "not-authorized"
    await client.close()


async def test_scram_plus_with_unsupported_binding_type_is_not_authorized(
    server: RunningServer,
) -> None:
    jid = await server.add_user()
    client = await secure_client(server)
    cb_data = tls_server_end_point(client)
    result = await scram_exchange(
        client, "SCRAM-SHA-256-PLUS", local(jid), channel_binding=("tls-unique", cb_data)
    )
    assert sasl_condition(result.reply) == "not-authorized"
    await client.close()


async def test_scram_gs2_y_flag_while_plus_is_offered_is_a_downgrade(
    server: RunningServer,
) -> None:
    """RFC 5802 §6: 'y' says "I think the server cannot bind"; it offered -PLUS, so the
    mechanism list was tampered with and authentication must fail."""
    jid = await server.add_user()
    client = await secure_client(server)
    cb = ("tls-server-end-point", tls_server_end_point(client))
    result = await scram_exchange(client, "SCRAM-SHA-256", local(jid), channel_binding=cb)
    assert result.scram.gs2_header.gs2_char == "y"
    assert sasl_condition(result.reply) == "not-authorized"
    await client.close()


# --------------------------------------------------------------------------- failures
@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-1", "SCRAM-SHA-256", "SCRAM-SHA-512"])
async def test_wrong_password_is_not_authorized(server: RunningServer, mechanism: str) -> None:
    jid = await server.add_user()
    client = await secure_client(server)
    if mechanism == "PLAIN":
        await send_plain(client, local(jid), WRONG_PASSWORD)
        reply = await client.next()
    else:
        result = await scram_exchange(client, mechanism, local(jid), WRONG_PASSWORD)
        assert result.challenged
        reply = result.reply
    assert sasl_condition(reply) == "not-authorized"
    await client.close()


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-1", "SCRAM-SHA-256", "SCRAM-SHA-512"])
async def test_unknown_user_is_not_authorized(server: RunningServer, mechanism: str) -> None:
    client = await secure_client(server)
    if mechanism == "PLAIN":
        await send_plain(client, "nobody")
        reply = await client.next()
    else:
        result = await scram_exchange(client, mechanism, "nobody")
        # Not revealed early: a challenge with a (fake) salt, then the failure.
        assert result.challenged
        reply = result.reply
    assert sasl_condition(reply) == "not-authorized"
    await client.close()


@pytest.mark.parametrize("mechanism", ["X-UNKNOWN", "DIGEST-MD5", None])
async def test_unknown_mechanism_is_invalid_mechanism(
    server: RunningServer, mechanism: str | None
) -> None:
    client = await secure_client(server)
    attr = "" if mechanism is None else f" mechanism='{mechanism}'"
    await client.send(f"<auth xmlns='{NS_SASL}'{attr}>{b64('x')}</auth>")
    assert sasl_condition(await client.next()) == "invalid-mechanism"
    await client.close()


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256"])
async def test_auth_before_tls_is_encryption_required(
    server: RunningServer, mechanism: str
) -> None:
    jid = await server.add_user()
    client = await RawClient.connect(server)
    await client.open()
    if mechanism == "PLAIN":
        await send_plain(client, local(jid))
        reply = await client.next()
    else:
        reply = (await scram_exchange(client, mechanism, local(jid))).reply
    assert sasl_condition(reply) == "encryption-required"
    # The stream stays usable: the client can now do what it was told.
    await client.starttls(server)
    await client.open()
    await send_plain(client, local(jid))
    assert (await client.next()).tag == q(NS_SASL, "success")
    await client.close()


async def test_plain_without_tls_is_neither_offered_nor_accepted(
    server_factory: ServerFactory,
) -> None:
    """On a server that allows plaintext streams PLAIN is still refused without TLS: RFC 6120
    §6.5.4 names <encryption-required/> for a mechanism that needs a protected stream."""
    srv = await server_factory(require_encryption=False)
    jid = await srv.add_user()
    client = await RawClient.connect(srv)
    features = await client.open()
    assert "PLAIN" not in mechanisms(features)
    assert not [m for m in mechanisms(features) if m.endswith("-PLUS")]
    await send_plain(client, local(jid))
    assert sasl_condition(await client.next()) == "encryption-required"
    await client.close()


async def test_abort_then_retry_on_the_same_stream(server: RunningServer) -> None:
    jid = await server.add_user()
    client = await secure_client(server)
    scram = ScramClient(["SCRAM-SHA-256"], local(jid), PASSWORD)
    first = b64(scram.get_client_first())
    await client.send(f"<auth xmlns='{NS_SASL}' mechanism='SCRAM-SHA-256'>{first}</auth>")
    assert (await client.next()).tag == q(NS_SASL, "challenge")
    await client.send(f"<abort xmlns='{NS_SASL}'/>")
    assert sasl_condition(await client.next()) == "aborted"
    verify_success(await scram_exchange(client, "SCRAM-SHA-256", local(jid)))
    await client.close()


async def test_invalid_base64_is_incorrect_encoding(server: RunningServer) -> None:
    jid = await server.add_user()
    client = await secure_client(server)
    await client.send(f"<auth xmlns='{NS_SASL}' mechanism='PLAIN'>not*base64!</auth>")
    assert sasl_condition(await client.next()) == "incorrect-encoding"
    # In a <response/> as well.
    scram = ScramClient(["SCRAM-SHA-256"], local(jid), PASSWORD)
    first = b64(scram.get_client_first())
    await client.send(f"<auth xmlns='{NS_SASL}' mechanism='SCRAM-SHA-256'>{first}</auth>")
    assert (await client.next()).tag == q(NS_SASL, "challenge")
    await client.send(f"<response xmlns='{NS_SASL}'>@@@@</response>")
    assert sasl_condition(await client.next()) == "incorrect-encoding"
    await client.close()


async def test_authzid_of_another_user_is_invalid_authzid(server: RunningServer) -> None:
    jid = await server.add_user()
    other = await server.add_user()
    client = await secure_client(server)
    await send_plain(client, local(jid), authzid=other)
    assert sasl_condition(await client.next()) == "invalid-authzid"
    # SCRAM carries the authzid in its gs2 header.
    first = f"n,a={other},n={local(jid)},r=abcdefghijklmnop"
    await client.send(f"<auth xmlns='{NS_SASL}' mechanism='SCRAM-SHA-256'>{b64(first)}</auth>")
    assert sasl_condition(await client.next()) == "invalid-authzid"
    # Its own bare JID is an acceptable authzid (RFC 6120 §6.3.8).
    await send_plain(client, local(jid), authzid=jid)
    assert (await client.next()).tag == q(NS_SASL, "success")
    await client.close()


async def test_retry_after_failure_succeeds_on_the_same_stream(server: RunningServer) -> None:
    jid = await server.add_user()
    client = await secure_client(server)
    failed = await scram_exchange(client, "SCRAM-SHA-1", local(jid), WRONG_PASSWORD)
    assert sasl_condition(failed.reply) == "not-authorized"
    verify_success(await scram_exchange(client, "SCRAM-SHA-1", local(jid)))
    assert await restart_and_bind(client, "localhost", "again") == f"{jid}/again"
    await client.close()


async def test_too_many_failures_end_the_stream_with_policy_violation(
    server: RunningServer,
) -> None:
    """RFC 6120 §6.4.5: past the retry limit (max_auth_attempts, 3 by default) the server
    closes the stream, with <policy-violation/>."""
    jid = await server.add_user()
    client = await secure_client(server)
    for _ in range(server.server.settings.c2s.max_auth_attempts):
        await send_plain(client, local(jid), WRONG_PASSWORD)
        assert sasl_condition(await client.next()) == "not-authorized"
    await client.expect_stream_error("policy-violation")


async def test_delayed_failure_does_not_block_other_connections(
    server_factory: ServerFactory,
) -> None:
    clock = ManualClock()  # the delay runs on the server's clock: the test moves it
    srv = await server_factory(auth_failure_delay=1.0, clock=clock)
    guessed = await srv.add_user()
    honest = await srv.add_user()
    guesser = await secure_client(srv)
    await send_plain(guesser, local(guessed), WRONG_PASSWORD)
    connections = srv.server.connections
    await until(
        lambda: any(c._deferred_handle is not None for c in connections), "a held-back failure"
    )

    other = await connect_slixmpp(srv, honest, mechanism="SCRAM-SHA-256")
    await ping(other)
    # The other client logged in and got its pong while the failure was still held back.
    await guesser.expect_nothing(within=0.2)
    await clock.advance(0.9)
    await guesser.expect_nothing(within=0.2)
    await clock.advance(0.1)  # auth_failure_delay has passed
    failure = await guesser.next(timeout=5)
    assert sasl_condition(failure) == "not-authorized"
    await other.disconnect()
    await guesser.close()


async def test_success_data_is_the_scram_server_final(server: RunningServer) -> None:
    """RFC 6120 §6.3.10: additional data with success goes in <success/>, not a challenge."""
    jid = await server.add_user()
    client = await secure_client(server)
    result = await scram_exchange(client, "SCRAM-SHA-512", local(jid))
    assert result.reply.tag == q(NS_SASL, "success")
    assert base64.b64decode(result.reply.text or "").startswith(b"v=")
    verify_success(result)
    features = await client.open()
    assert features.tag == q(NS_STREAM, "features")
    assert mechanisms(features) == []
    await client.close()
