"""XEP-0077 In-Band Registration on a real server: before authentication (new accounts) and
after it (password change, account removal)."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import slixmpp
from slixmpp.exceptions import IqError

from tests.integration.harness import (
    PASSWORD,
    RawClient,
    RunningServer,
    connect_slixmpp,
    q,
    raw_session,
    stanza_error_condition,
)

NS_REGISTER = "jabber:iq:register"
NS_FEATURE = "http://jabber.org/features/iq-register"
NS_CLIENT = "jabber:client"
NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
MODULES = ["disco", "ping", "presence", "message", "register"]
OPEN = {"register": {"allow_registration": True}}
Factory = Callable[..., Awaitable[RunningServer]]


@pytest.fixture
async def server(server_factory: Factory) -> RunningServer:
    """Registration open."""
    return await server_factory(modules=MODULES, module_options=OPEN)


# --------------------------------------------------------------------------- helpers
async def preauth(srv: RunningServer, domain: str = "localhost") -> tuple[RawClient, ET.Element]:
    """A raw client past STARTTLS, not authenticated; returns it and the stream features."""
    client = await RawClient.connect(srv)
    await client.open(domain)
    await client.starttls(srv, domain)
    return client, await client.open(domain)


async def register_iq(
    client: RawClient, query: str, iq_type: str = "set", iq_id: str = "reg"
) -> ET.Element:
    await client.send(
        f"<iq type='{iq_type}' id='{iq_id}'><query xmlns='{NS_REGISTER}'>{query}</query></iq>"
    )
    reply = await client.next()
    assert reply.tag == q(NS_CLIENT, "iq") and reply.get("id") == iq_id, ET.tostring(reply)
    return reply


async def register(
    client: RawClient, username: str, password: str = PASSWORD, iq_id: str = "reg"
) -> ET.Element:
    fields = f"<username>{username}</username><password>{password}</password>"
    return await register_iq(client, fields, iq_id=iq_id)


def error_of(reply: ET.Element) -> tuple[str | None, str | None]:
    """(condition, error type) of an iq error."""
    assert reply.get("type") == "error", ET.tostring(reply)
    error = reply.find(q(NS_CLIENT, "error"))
    assert error is not None
    return stanza_error_condition(reply), error.get("type")


async def can_log_in(srv: RunningServer, jid: str, password: str = PASSWORD) -> bool:
    client = await RawClient.connect(srv)
    domain = jid.split("@", 1)[1]
    await client.open(domain)
    await client.starttls(srv, domain)
    await client.open(domain)
    outcome = await client.auth_plain(jid, password)
    await client.close()
    assert outcome.tag in (q(NS_SASL, "success"), q(NS_SASL, "failure")), outcome.tag
    return outcome.tag == q(NS_SASL, "success")


async def account_exists(srv: RunningServer, username: str, domain: str = "localhost") -> bool:
    return await srv.server.core.storage.accounts.get(domain, username) is not None


async def slixmpp_register(srv: RunningServer, jid: str, password: str) -> slixmpp.ClientXMPP:
    """slixmpp's own XEP-0077 flow: it sees the stream feature, fetches the form, submits it,
    then authenticates with the new account and binds."""
    xmpp = slixmpp.ClientXMPP(jid, password)
    xmpp.ca_certs = srv.ca_path
    xmpp.enable_plaintext = False
    xmpp.enable_direct_tls = False
    xmpp.enable_starttls = True
    xmpp.register_plugin("xep_0077")
    loop = asyncio.get_running_loop()
    form_fields: asyncio.Future[set[str]] = loop.create_future()
    started: asyncio.Future[bool] = loop.create_future()

    async def on_register(form: Any) -> None:
        form_fields.set_result(set(form["register"]["fields"]))
        iq = xmpp.Iq()
        iq["type"] = "set"
        iq["register"]["username"] = xmpp.boundjid.user
        iq["register"]["password"] = password
        await iq.send(timeout=5)

    def on_fail(event: Any) -> None:
        if not started.done():
            started.set_exception(AssertionError(f"login failed: {event}"))

    xmpp.add_event_handler("register", on_register)
    xmpp.add_event_handler("session_start", lambda _e: started.done() or started.set_result(True))
    xmpp.add_event_handler("failed_all_auth", on_fail)
    xmpp.connect("127.0.0.1", srv.port)
    try:
        await asyncio.wait_for(started, 10)
    except BaseException:
        xmpp.disconnect()
        raise
    assert form_fields.result() == {"username", "password"}
    return xmpp


# --------------------------------------------------------------------------- closed by default
async def test_registration_is_off_by_default(server_factory: Factory) -> None:
    srv = await server_factory()  # the default module set, which includes register
    client, features = await preauth(srv)
    assert features.find(q(NS_FEATURE, "register")) is None
    assert features.find(q(NS_SASL, "mechanisms")) is not None
    for iq_type, query in (("get", ""), ("set", "<username>eve</username><password>x</password>")):
        reply = await register_iq(client, query, iq_type=iq_type)
        assert error_of(reply) == ("not-allowed", "cancel")
    assert not await account_exists(srv, "eve")
    assert await can_log_in(srv, await srv.add_user("other"))  # the stream is still usable
    await client.close()


async def test_preauth_iq_before_tls_ends_the_stream(server: RunningServer) -> None:
    client = await RawClient.connect(server)
    features = await client.open()
    assert features.find(q(NS_FEATURE, "register")) is None
    await client.send(f"<iq type='get' id='r'><query xmlns='{NS_REGISTER}'/></iq>")
    await client.expect_stream_error("not-authorized")


async def test_other_iqs_before_auth_still_end_the_stream(server: RunningServer) -> None:
    client, _ = await preauth(server)
    await client.send("<iq type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>")
    await client.expect_stream_error("not-authorized")


# --------------------------------------------------------------------------- registering
async def test_open_registration_is_advertised_with_a_form(server: RunningServer) -> None:
    client, features = await preauth(server)
    assert features.find(q(NS_FEATURE, "register")) is not None
    reply = await register_iq(client, "", iq_type="get")
    assert reply.get("type") == "result"
    query = reply.find(q(NS_REGISTER, "query"))
    assert query is not None
    assert [child.tag for child in query] == [
        q(NS_REGISTER, "instructions"),
        q(NS_REGISTER, "username"),
        q(NS_REGISTER, "password"),
    ]
    await client.close()


async def test_slixmpp_registers_then_logs_in_with_the_new_account(server: RunningServer) -> None:
    xmpp = await slixmpp_register(server, "newbie@localhost", "s3cret pass")
    assert str(xmpp.boundjid.bare) == "newbie@localhost"
    assert await account_exists(server, "newbie")
    xmpp.disconnect()
    assert await can_log_in(server, "newbie@localhost", "s3cret pass")
    assert not await can_log_in(server, "newbie@localhost", PASSWORD)


async def test_raw_registration_on_another_host_then_login_on_the_same_stream(
    server: RunningServer,
) -> None:
    client, _ = await preauth(server, "example.test")
    reply = await register(client, "Mercutio")
    assert reply.get("type") == "result" and reply.find("*") is None
    assert await account_exists(server, "mercutio", "example.test")
    assert not await account_exists(server, "mercutio", "localhost")
    success = await client.auth_plain("mercutio@example.test")
    assert success.tag == q(NS_SASL, "success")
    await client.open("example.test")
    assert await client.bind("here") == "mercutio@example.test/here"
    await client.close()


async def test_a_taken_username_is_a_conflict(server: RunningServer) -> None:
    await server.add_user("romeo")
    client, _ = await preauth(server)
    for name in ("romeo", "ROMEO"):  # the same localpart once case-mapped
        reply = await register(client, name, "hijack")
        assert error_of(reply)[0] == "conflict"
        assert reply.find(q(NS_REGISTER, "query")) is None  # the password is not echoed
    assert await can_log_in(server, "romeo@localhost")
    assert not await can_log_in(server, "romeo@localhost", "hijack")
    await client.close()


@pytest.mark.parametrize(
    "query",
    [
        "<username>bad@name</username><password>pw</password>",
        "<username>a/b</username><password>pw</password>",
        "<username></username><password>pw</password>",
        "<username>   </username><password>pw</password>",
        "<password>pw</password>",
        "<username>nopass</username>",
        "<username>nopass</username><password/>",
        "<username>nopass</username><password>\ue000</password>",  # SASLprep refuses it
    ],
)
async def test_a_bad_or_missing_field_is_not_acceptable(server: RunningServer, query: str) -> None:
    client, _ = await preauth(server)
    reply = await register_iq(client, query)
    assert error_of(reply) == ("not-acceptable", "modify")
    assert await server.server.core.storage.accounts.count("localhost") == 0
    await client.close()


async def test_removal_before_auth_is_an_unexpected_request(server: RunningServer) -> None:
    client, _ = await preauth(server)
    reply = await register_iq(client, "<remove/>")
    assert error_of(reply)[0] == "unexpected-request"
    await client.close()


async def test_registrations_per_address_are_limited(server_factory: Factory) -> None:
    options = {"register": {"allow_registration": True, "registrations_per_address": 2}}
    srv = await server_factory(modules=MODULES, module_options=options)
    client, _ = await preauth(srv)
    assert (await register(client, "first", iq_id="1")).get("type") == "result"
    assert error_of(await register(client, "first", iq_id="2"))[0] == "conflict"  # not counted
    assert (await register(client, "second", iq_id="3")).get("type") == "result"
    reply = await register(client, "third", iq_id="4")
    assert error_of(reply) == ("not-acceptable", "wait")
    await client.close()
    again, _ = await preauth(srv)  # a new connection from the same address
    assert error_of(await register(again, "fourth"))[0] == "not-acceptable"
    await again.close()
    assert not await account_exists(srv, "third") and not await account_exists(srv, "fourth")
    assert await srv.server.core.storage.accounts.count("localhost") == 2


# --------------------------------------------------------------------------- after auth
async def test_a_logged_in_user_is_told_it_is_registered(server: RunningServer) -> None:
    client, _ = await raw_session(server, await server.add_user("juliet"))
    reply = await register_iq(client, "", iq_type="get")
    query = reply.find(q(NS_REGISTER, "query"))
    assert reply.get("type") == "result" and query is not None
    assert query.find(q(NS_REGISTER, "registered")) is not None
    assert query.findtext(q(NS_REGISTER, "username")) == "juliet"
    await client.close()


async def test_the_server_advertises_the_protocol_in_disco(server: RunningServer) -> None:
    client, _ = await raw_session(server)
    await client.send(f"<iq type='get' id='d' to='localhost'><query xmlns='{NS_DISCO_INFO}'/></iq>")
    reply = await client.next()
    features = {f.get("var") for f in reply.iter(q(NS_DISCO_INFO, "feature"))}
    assert NS_REGISTER in features
    await client.close()


async def test_password_change_then_only_the_new_password_works(server_factory: Factory) -> None:
    srv = await server_factory(modules=MODULES)  # registration closed: changes still work
    jid = await srv.add_user("juliet")
    juliet = await connect_slixmpp(srv, jid)
    juliet.xmpp.register_plugin("xep_0077")
    await juliet.xmpp.plugin["xep_0077"].change_password("n3w password", timeout=5)
    assert await can_log_in(srv, jid, "n3w password")
    assert not await can_log_in(srv, jid, PASSWORD)
    again = await connect_slixmpp(srv, jid, "n3w password")
    await again.disconnect()
    await juliet.disconnect()


async def test_password_change_addressed_to_the_server(server: RunningServer) -> None:
    """§3.3's example sends the change to the server's domain rather than without 'to'."""
    jid = await server.add_user("juliet")
    client, _ = await raw_session(server, jid)
    await client.send(
        f"<iq type='set' id='c1' to='localhost'><query xmlns='{NS_REGISTER}'>"
        "<username>juliet</username><password>another one</password></query></iq>"
    )
    reply = await client.next()
    assert reply.get("type") == "result" and reply.get("id") == "c1"
    assert await can_log_in(server, jid, "another one")
    await client.close()


@pytest.mark.parametrize(
    ("query", "condition"),
    [
        ("<username>juliet</username><password/>", "bad-request"),  # empty keeps the old one
        ("<username>romeo</username><password>mine now</password>", "bad-request"),
        ("<username>juliet</username><password>\ue000</password>", "not-acceptable"),
    ],
)
async def test_a_refused_password_change_keeps_the_old_password(
    server: RunningServer, query: str, condition: str
) -> None:
    await server.add_user("romeo")
    client, _ = await raw_session(server, await server.add_user("juliet"))
    reply = await register_iq(client, query)
    assert error_of(reply)[0] == condition
    assert reply.find(q(NS_REGISTER, "query")) is None  # never echoed (§3.3)
    assert await can_log_in(server, "juliet@localhost")
    assert await can_log_in(server, "romeo@localhost")
    await client.close()


async def test_slixmpp_change_password_errors_surface_as_iq_errors(server: RunningServer) -> None:
    jid = await server.add_user("juliet")
    juliet = await connect_slixmpp(server, jid)
    juliet.xmpp.register_plugin("xep_0077")
    with pytest.raises(IqError) as caught:
        await juliet.xmpp.plugin["xep_0077"].change_password("", timeout=5)
    assert caught.value.condition == "bad-request"
    await juliet.disconnect()


async def test_removal_answers_then_closes_every_session_and_deletes_the_account(
    server: RunningServer,
) -> None:
    jid = await server.add_user("juliet")
    bystander, _ = await raw_session(server, await server.add_user("nurse"))
    balcony, _ = await raw_session(server, jid, resource="balcony")
    chamber, _ = await raw_session(server, jid, resource="chamber")
    reply = await register_iq(balcony, "<remove/>")
    assert reply.get("type") == "result"
    await balcony.expect_stream_error("not-authorized")
    await chamber.expect_stream_error("not-authorized")
    assert not await account_exists(server, "juliet")
    assert not await can_log_in(server, jid)
    await bystander.ping()  # nobody else was touched
    await bystander.close()


async def test_slixmpp_cancel_registration(server: RunningServer) -> None:
    jid = await server.add_user("juliet")
    juliet = await connect_slixmpp(server, jid)
    juliet.xmpp.register_plugin("xep_0077")
    disconnected = asyncio.get_running_loop().create_future()
    juliet.xmpp.add_event_handler(
        "disconnected", lambda _e: disconnected.done() or disconnected.set_result(True)
    )
    result = await juliet.xmpp.plugin["xep_0077"].cancel_registration(timeout=5)
    assert result["type"] == "result"
    await asyncio.wait_for(disconnected, 5)
    assert not await account_exists(server, "juliet")


async def test_remove_with_other_fields_is_a_bad_request(server: RunningServer) -> None:
    client, _ = await raw_session(server, await server.add_user("juliet"))
    reply = await register_iq(client, "<remove/><username>juliet</username>")
    assert error_of(reply)[0] == "bad-request"
    assert await account_exists(server, "juliet")
    await client.ping()  # the session lives on
    await client.close()
