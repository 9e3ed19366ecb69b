"""RFC 6120 stream errors over a real socket: the exact condition, then </stream:stream>, then
the TCP close (§4.9.1.1), and nobody else's session notices (QUALITY.md)."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable

import pytest

from tests.integration.harness import (
    NS_CLIENT,
    NS_SASL,
    NS_STREAM,
    PASSWORD,
    RawClient,
    RunningServer,
    q,
    raw_session,
    stanza_error_condition,
)

ServerFactory = Callable[..., Awaitable[RunningServer]]

XML_DECL = "<?xml version='1.0'?>"


def header(
    *,
    to: str = "localhost",
    version: str | None = "1.0",
    content_ns: str = NS_CLIENT,
    stream_ns: str = NS_STREAM,
    decl: str = XML_DECL,
) -> str:
    """A client stream header with each part replaceable."""
    version_attr = "" if version is None else f" version='{version}'"
    return (
        f"{decl}<stream:stream to='{to}'{version_attr} "
        f"xmlns='{content_ns}' xmlns:stream='{stream_ns}'>"
    )


async def opened(srv: RunningServer) -> RawClient:
    """A connection that has sent a good header and received the features (no TLS, no auth)."""
    client = await RawClient.connect(srv)
    await client.open()
    return client


async def send_header_expect_error(srv: RunningServer, text: str, condition: str) -> RawClient:
    """Send ``text`` as the very first bytes; the server must still open its own stream first
    (RFC 6120 §4.9.1.1) and then fail it with ``condition``."""
    client = await RawClient.connect(srv)
    await client.send(text)
    await client.expect_stream_error(condition)
    assert client.stream_tag == q(NS_STREAM, "stream"), client.stream_tag
    assert client.stream_attrs.get("id"), client.stream_attrs
    return client


# --------------------------------------------------------------------------- stream header
async def test_wrong_stream_namespace_gets_invalid_namespace(server: RunningServer) -> None:
    bystander, _ = await raw_session(server)
    await send_header_expect_error(
        server, header(stream_ns="urn:example:not-streams"), "invalid-namespace"
    )
    await bystander.ping()


async def test_jabber_server_content_namespace_on_c2s_gets_invalid_namespace(
    server: RunningServer,
) -> None:
    await send_header_expect_error(server, header(content_ns="jabber:server"), "invalid-namespace")


async def test_unhosted_to_gets_host_unknown_after_the_servers_header(
    server: RunningServer,
) -> None:
    bystander, _ = await raw_session(server)
    client = await send_header_expect_error(server, header(to="not-hosted.example"), "host-unknown")
    # The server's header names one of its own domains, never the unknown one.
    assert client.stream_attrs.get("from") != "not-hosted.example", client.stream_attrs
    await bystander.ping()


@pytest.mark.parametrize("to", ["LocalHost", "localhost.", "EXAMPLE.test."])
async def test_to_differing_in_case_or_a_trailing_dot_is_still_hosted(
    server: RunningServer, to: str
) -> None:
    """RFC 7622 §3.2: a domainpart is compared case-insensitively, without one trailing dot;
    so these are hosted domains, not host-unknown."""
    client = await RawClient.connect(server)
    await client.open(to)  # features, no stream error
    assert client.stream_attrs.get("from") == to.lower().rstrip("."), client.stream_attrs
    await client.starttls(server, to.lower().rstrip("."))
    await client.open(to)


async def test_version_2_gets_unsupported_version(server: RunningServer) -> None:
    await send_header_expect_error(server, header(version="2.0"), "unsupported-version")


async def test_missing_version_gets_unsupported_version(server: RunningServer) -> None:
    await send_header_expect_error(server, header(version=None), "unsupported-version")


async def test_iso_8859_1_declaration_gets_unsupported_encoding(server: RunningServer) -> None:
    await send_header_expect_error(
        server, header(decl="<?xml version='1.0' encoding='ISO-8859-1'?>"), "unsupported-encoding"
    )


# --------------------------------------------------------------------------- hostile XML
@pytest.mark.parametrize(
    ("before_header", "data"),
    [
        pytest.param(True, b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n", id="http-request"),
        pytest.param(False, b"<message><body>hi</message>", id="mismatched-tags"),
        pytest.param(False, b"<<<>>>", id="garbage-markup"),
        pytest.param(False, b"<message><body>\xc3\x28</body></message>", id="invalid-utf8"),
        pytest.param(False, b"<message to='a@localhost' to='b@localhost'/>", id="dup-attribute"),
    ],
)
async def test_malformed_xml_gets_not_well_formed(
    server: RunningServer, before_header: bool, data: bytes
) -> None:
    if before_header:
        client = await RawClient.connect(server)
    else:
        client = await opened(server)
    await client.send(data)
    await client.expect_stream_error("not-well-formed")
    assert client.stream_tag == q(NS_STREAM, "stream")


async def test_malformed_xml_on_the_direct_tls_port_gets_not_well_formed(
    server: RunningServer,
) -> None:
    client = await RawClient.connect(server, direct_tls=True)
    await client.open()
    await client.send("<message><body>hi</message>")
    await client.expect_stream_error("not-well-formed")


async def test_malformed_xml_after_login_gets_not_well_formed(server: RunningServer) -> None:
    bystander, bystander_jid = await raw_session(server)
    client, _ = await raw_session(server)
    await client.send(f"<message to='{bystander_jid}' type='chat'><body>hi</message>")
    await client.expect_stream_error("not-well-formed")
    await bystander.expect_nothing(within=0.3)  # the broken message was never routed
    await bystander.ping()


@pytest.mark.parametrize("logged_in", [False, True], ids=["before-auth", "after-bind"])
async def test_undeclared_prefix_gets_bad_namespace_prefix(
    server: RunningServer, logged_in: bool
) -> None:
    bystander, _ = await raw_session(server)
    client = (await raw_session(server))[0] if logged_in else await opened(server)
    await client.send("<foo:message to='localhost'><body>hi</body></foo:message>")
    await client.expect_stream_error("bad-namespace-prefix")
    await bystander.ping()


@pytest.mark.parametrize(
    "data",
    [
        pytest.param("<!-- a comment -->", id="comment"),
        pytest.param("<?style sheet='x'?>", id="processing-instruction"),
        pytest.param("<message to='localhost'><body>&foo;</body></message>", id="entity-ref"),
        pytest.param("<message to='localhost'><!-- inside --></message>", id="nested-comment"),
    ],
)
async def test_restricted_xml_after_the_header_gets_restricted_xml(
    server: RunningServer, data: str
) -> None:
    client = await opened(server)
    await client.send(data)
    await client.expect_stream_error("restricted-xml")


async def test_comment_after_login_gets_restricted_xml(server: RunningServer) -> None:
    bystander, _ = await raw_session(server)
    client, _ = await raw_session(server)
    await client.send("<!-- hello -->")
    await client.expect_stream_error("restricted-xml")
    await bystander.ping()


async def test_doctype_gets_restricted_xml(server: RunningServer) -> None:
    await send_header_expect_error(
        server,
        XML_DECL + "<!DOCTYPE stream:stream>" + header(decl=""),
        "restricted-xml",
    )


async def test_billion_laughs_gets_restricted_xml_quickly(server: RunningServer) -> None:
    bystander, _ = await raw_session(server)
    entities = ['<!ENTITY lol0 "lol">'] + [
        f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10)
    ]
    payload = (
        XML_DECL
        + f"<!DOCTYPE stream:stream [{''.join(entities)}]>"
        + header(decl="")
        + "<message to='localhost'><body>&lol9;</body></message>"
    )
    loop = asyncio.get_running_loop()
    started = loop.time()
    await send_header_expect_error(server, payload, "restricted-xml")
    # Expanding the entities would take minutes; 5 s is generous even on a loaded machine.
    assert loop.time() - started < 5.0, "the server spent time on the entities"
    await bystander.ping()


# --------------------------------------------------------------------------- limits
async def test_oversized_stanza_gets_policy_violation(server_factory: ServerFactory) -> None:
    srv = await server_factory(max_stanza_size=10000)
    bystander, bystander_jid = await raw_session(srv)
    client, _ = await raw_session(srv)
    # Just under the limit: delivered.
    await client.send(
        f"<message to='{bystander_jid}' type='chat'><body>{'a' * 9000}</body></message>"
    )
    delivered = await bystander.next()
    assert delivered.tag == q(NS_CLIENT, "message") and len(delivered.findtext("*") or "") == 9000
    # Over it: the stream ends and the stanza is not delivered.
    await client.send(
        f"<message to='{bystander_jid}' type='chat'><body>{'b' * 10500}</body></message>"
    )
    await client.expect_stream_error("policy-violation")
    await bystander.expect_nothing(within=0.3)
    await bystander.ping()


async def test_oversized_stanza_sent_in_small_chunks_gets_policy_violation(
    server_factory: ServerFactory,
) -> None:
    """The limit holds for a stanza that never ends: it is counted while it arrives."""
    srv = await server_factory(max_stanza_size=10000)
    bystander, bystander_jid = await raw_session(srv)
    client, _ = await raw_session(srv)
    start = f"<message to='{bystander_jid}' type='chat'><body>".encode()
    await client.send(start)
    sent = len(start)
    while sent + 100 <= 9950:
        await client.send(b"c" * 100)
        sent += 100
    await client.send(b"c" * (9950 - sent))
    await client.expect_nothing(within=0.3)  # 9950 bytes of an open stanza: still allowed
    await client.send(b"c" * 100)  # 10050 bytes: over
    await client.expect_stream_error("policy-violation")
    await bystander.expect_nothing(within=0.1)
    await bystander.ping()


async def test_endless_stream_header_gets_policy_violation(
    server_factory: ServerFactory,
) -> None:
    """The stream header is bounded too: one that never ends cannot grow the buffer."""
    srv = await server_factory(max_stanza_size=10000)
    client = await RawClient.connect(srv)
    await client.send("<stream:stream to='localhost' version='1.0' xmlns='jabber:client' ")
    for i in range(110):
        await client.send(f"a{i:03}='{'v' * 93}' ")  # 100 bytes each
    await client.expect_stream_error("policy-violation")


async def test_too_deep_nesting_gets_policy_violation(server: RunningServer) -> None:
    bystander, bystander_jid = await raw_session(server)
    client, _ = await raw_session(server)

    def nested(depth: int) -> str:
        inner = "<x xmlns='urn:example:nest'>" * depth + "</x>" * depth
        return f"<message to='{bystander_jid}' type='chat'>{inner}</message>"

    await client.send(nested(10))  # modest nesting is fine
    assert (await bystander.next()).tag == q(NS_CLIENT, "message")
    await client.send(nested(40))  # max_depth is 32
    await client.expect_stream_error("policy-violation")
    await bystander.expect_nothing(within=0.1)
    await bystander.ping()


# --------------------------------------------------------------------------- negotiation order
async def test_stanza_before_tls_and_auth_gets_not_authorized(server: RunningServer) -> None:
    bystander, bystander_jid = await raw_session(server)
    client = await opened(server)
    await client.send(f"<message to='{bystander_jid}' type='chat'><body>hi</body></message>")
    await client.expect_stream_error("not-authorized")
    await bystander.expect_nothing(within=0.1)
    await bystander.ping()


async def test_stanza_after_tls_before_auth_gets_not_authorized(server: RunningServer) -> None:
    client = await opened(server)
    await client.starttls(server)
    await client.open()
    await client.send("<iq type='get' id='p1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
    await client.expect_stream_error("not-authorized")


async def test_stanza_after_auth_before_bind_gets_not_authorized(server: RunningServer) -> None:
    bystander, bystander_jid = await raw_session(server)
    jid = await server.add_user()
    client = await opened(server)
    await client.starttls(server)
    await client.open()
    success = await client.auth_plain(jid)
    assert success.tag == q(NS_SASL, "success"), ET.tostring(success)
    await client.open()
    await client.send(f"<message to='{bystander_jid}' type='chat'><body>hi</body></message>")
    await client.expect_stream_error("not-authorized")
    await bystander.expect_nothing(within=0.1)
    await bystander.ping()


async def test_too_many_auth_failures_get_policy_violation(
    server_factory: ServerFactory,
) -> None:
    srv = await server_factory(max_auth_attempts=2)
    bystander, _ = await raw_session(srv)
    jid = await srv.add_user()
    client = await opened(srv)
    await client.starttls(srv)
    await client.open()
    for attempt in range(2):
        failure = await client.auth_plain(jid, PASSWORD + "-wrong")
        assert failure.tag == q(NS_SASL, "failure"), (attempt, ET.tostring(failure))
        assert [child.tag for child in failure] == [q(NS_SASL, "not-authorized")]
    await client.expect_stream_error("policy-violation")
    await bystander.ping()


# --------------------------------------------------------------------------- after bind
@pytest.mark.parametrize(
    "forged",
    ["bystander-full", "bystander-bare", "own-other-resource", "other-domain", "unparsable"],
)
async def test_forged_from_gets_invalid_from(server: RunningServer, forged: str) -> None:
    bystander, bystander_full = await raw_session(server)
    client, own_full = await raw_session(server)
    from_ = {
        "bystander-full": bystander_full,
        "bystander-bare": bystander_full.split("/", 1)[0],
        "own-other-resource": own_full.split("/", 1)[0] + "/elsewhere",
        "other-domain": own_full.replace("@localhost/", "@example.test/"),
        "unparsable": "@@",
    }[forged]
    await client.send(
        f"<message from='{from_}' to='{bystander_full}' type='chat'><body>hi</body></message>"
    )
    await client.expect_stream_error("invalid-from")
    await bystander.expect_nothing(within=0.3)  # the forged message never arrives
    await bystander.ping()


async def test_stanzas_after_a_forged_from_are_not_processed(server: RunningServer) -> None:
    """The stream error ends processing: what the client sent before the forged stanza is
    delivered, what it sent after it (in the same packet) is not (RFC 6120 §4.9.1.1)."""
    bystander, bystander_full = await raw_session(server)
    client, _ = await raw_session(server)
    await client.send(
        f"<message to='{bystander_full}' type='chat' id='early'><body>1</body></message>"
        f"<message from='{bystander_full}' to='{bystander_full}' type='chat' id='forged'/>"
        f"<message to='{bystander_full}' type='chat' id='late'><body>3</body></message>"
    )
    await client.expect_stream_error("invalid-from")
    assert (await bystander.next()).get("id") == "early"
    await bystander.expect_nothing(within=0.3)
    await bystander.ping()


async def test_from_equal_to_own_full_or_bare_jid_is_accepted(server: RunningServer) -> None:
    bystander, bystander_full = await raw_session(server)
    client, own_full = await raw_session(server)
    for i, from_ in enumerate((own_full, own_full.split("/", 1)[0])):
        await client.send(
            f"<message from='{from_}' to='{bystander_full}' type='chat' id='m{i}'>"
            "<body>hi</body></message>"
        )
        message = await bystander.next()
        assert message.get("id") == f"m{i}", ET.tostring(message)
        assert message.get("from") == own_full  # stamped with the full JID (§8.1.2.1)
    await client.ping()


@pytest.mark.parametrize(
    "element",
    [
        "<foo xmlns='jabber:client'/>",
        "<bar xmlns='urn:example'/>",
        "<message xmlns='urn:example'><body>hi</body></message>",
    ],
    ids=["foo-jabber-client", "bar-urn-example", "message-wrong-namespace"],
)
async def test_unknown_top_level_element_gets_unsupported_stanza_type(
    server: RunningServer, element: str
) -> None:
    bystander, bystander_full = await raw_session(server)
    client, _ = await raw_session(server)
    # All in one packet: the message before the bad element is routed, the one after is not.
    await client.send(
        f"<message to='{bystander_full}' type='chat' id='early'><body>1</body></message>"
        + element
        + f"<message to='{bystander_full}' type='chat' id='late'><body>3</body></message>"
    )
    await client.expect_stream_error("unsupported-stanza-type")
    assert (await bystander.next()).get("id") == "early"
    await bystander.expect_nothing(within=0.3)
    await bystander.ping()


async def test_binding_the_same_resource_again_closes_the_first_with_conflict(
    server: RunningServer,
) -> None:
    jid = await server.add_user()
    first, full = await raw_session(server, jid, resource="same")
    second = await RawClient.connect(server)
    assert await second.login(server, jid, resource="same") == full
    await first.expect_stream_error("conflict")
    await second.ping()
    # The full JID now belongs to the second connection.
    sender, _ = await raw_session(server)
    await sender.send(f"<message to='{full}' type='chat' id='c1'><body>who?</body></message>")
    message = await second.next()
    assert message.tag == q(NS_CLIENT, "message") and message.get("id") == "c1"


# --------------------------------------------------------------------------- timeouts
async def test_idle_connection_gets_connection_timeout(server_factory: ServerFactory) -> None:
    srv = await server_factory(idle_timeout=0.5)
    client, _ = await raw_session(srv)
    await client.expect_nothing(within=0.2)  # not before idle_timeout
    await client.expect_stream_error("connection-timeout", timeout=3.0)


async def test_slow_handshake_gets_connection_timeout(server_factory: ServerFactory) -> None:
    srv = await server_factory(handshake_timeout=0.5)
    client = await opened(srv)  # a header, then nothing
    await client.expect_nothing(within=0.2)  # not before handshake_timeout
    await client.expect_stream_error("connection-timeout", timeout=3.0)


async def test_whitespace_keepalives_are_not_errors(server_factory: ServerFactory) -> None:
    """RFC 6120 §4.6.1: whitespace between stanzas is a keepalive, at any stage, and it is no
    stanza: even more of it than max_stanza_size does not count against that limit."""
    srv = await server_factory(max_stanza_size=10000)
    client = await RawClient.connect(srv)
    await client.open()
    await client.send("\n  \t\r\n")  # before authentication too
    await client.starttls(srv)
    await client.open()
    jid = await srv.add_user()
    await client.send(" ")
    assert (await client.auth_plain(jid)).tag == q(NS_SASL, "success")
    await client.open()
    await client.bind("ws")
    for chunk in (" ", "\n", "\r\n\t "):
        await client.send(chunk)
        await client.expect_nothing(within=0.05)
    for _ in range(30):  # 15000 bytes of whitespace in all
        await client.send(" " * 500)
    await client.expect_nothing(within=0.1)
    await client.send(
        "  <iq type='get' id='p1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>\n"
    )
    assert (await client.next()).get("id") == "p1"
    await client.ping(iq_id="p2")


async def test_whitespace_keepalives_keep_an_idle_connection_open(
    server_factory: ServerFactory,
) -> None:
    srv = await server_factory(idle_timeout=0.6)
    client, _ = await raw_session(srv)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 1.8  # past the first sweep that would find it idle
    while loop.time() < deadline:
        await client.send(" ")
        await client.expect_nothing(within=0.2)
    await client.ping()


async def test_closing_the_stream_gets_an_orderly_close(server: RunningServer) -> None:
    bystander, _ = await raw_session(server)
    client, full = await raw_session(server)
    await client.send("</stream:stream>")
    await client.expect_closed()
    await client.expect_nothing(within=0)  # no <stream:error/> before </stream:stream>
    await bystander.ping()
    # The resource is gone: an iq to it bounces instead of vanishing (RFC 6120 §10.5.3.1).
    await bystander.send(f"<iq type='get' id='gone' to='{full}'><ping xmlns='urn:xmpp:ping'/></iq>")
    reply = await bystander.next()
    assert reply.get("id") == "gone", ET.tostring(reply)
    assert stanza_error_condition(reply) == "service-unavailable", ET.tostring(reply)


# --------------------------------------------------------------------------- isolation
async def test_other_sessions_survive_every_kind_of_stream_error(server: RunningServer) -> None:
    """A handful of broken connections, one after another, while two users keep talking."""
    alice, alice_full = await raw_session(server)
    bob, bob_full = await raw_session(server)

    async def fresh_bound() -> RawClient:
        return (await raw_session(server))[0]

    cases: list[tuple[Callable[[], Awaitable[RawClient]], str, str]] = [
        (lambda: RawClient.connect(server), header(stream_ns="urn:bad"), "invalid-namespace"),
        (lambda: RawClient.connect(server), header(to="nowhere.example"), "host-unknown"),
        (lambda: opened(server), "<!-- comment -->", "restricted-xml"),
        (lambda: opened(server), "<message/>", "not-authorized"),
        (fresh_bound, "<message><body></message>", "not-well-formed"),
        (fresh_bound, f"<message from='{bob_full}' to='{alice_full}'/>", "invalid-from"),
        (fresh_bound, "<foo xmlns='jabber:client'/>", "unsupported-stanza-type"),
        (fresh_bound, "<message>" + "<x xmlns='urn:n'>" * 100, "policy-violation"),
    ]
    for i, (connect, data, condition) in enumerate(cases):
        bad = await connect()
        await bad.send(data)
        await bad.expect_stream_error(condition)
        await alice.ping(iq_id=f"alive{i}")
        await bob.send(
            f"<message to='{alice_full}' type='chat' id='m{i}'><body>{i}</body></message>"
        )
        message = await alice.next()
        assert message.get("id") == f"m{i}" and message.get("from") == bob_full
    await alice.expect_nothing(within=0.1)
    await bob.expect_nothing(within=0.1)
