"""BOSH (XEP-0124) carrying XMPP (XEP-0206), spoken raw over HTTPS with aiohttp's client.

A BOSH session is an ordinary session: the same SASL, binding, routing, presence, offline
storage, conflict rule and limits as on TCP, which the tests check against a TCP client.
"""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest

from salon.core.clock import ManualClock
from salon.jid import JID
from salon.net.bosh import BoshSession
from tests.integration.harness import (
    NS_CLIENT,
    NS_SASL,
    NS_STREAM,
    RawClient,
    RunningServer,
    q,
    raw_session,
    until,
)
from tests.integration.web_helpers import (
    NS_HTTPBIND,
    NS_XBOSH,
    BoshClient,
    http_session,
    mechanisms,
    plain_payload,
    stream_error_conditions,
)

Factory = Callable[..., Awaitable[RunningServer]]


@pytest.fixture
async def http(server: RunningServer) -> AsyncIterator[aiohttp.ClientSession]:
    async with http_session(server) as session:
        yield session


def bosh(srv: RunningServer, http: aiohttp.ClientSession, **headers: str) -> BoshClient:
    return BoshClient(http, srv.http_url("/http-bind"), **headers)


def children(body: ET.Element, tag: str, ns: str = NS_CLIENT) -> list[ET.Element]:
    return body.findall(q(ns, tag))


def message(to: str, text: str) -> str:
    return f"<message xmlns='{NS_CLIENT}' to='{to}' type='chat'><body>{text}</body></message>"


def assert_terminated(body: ET.Element, condition: str | None) -> None:
    assert body.get("type") == "terminate", ET.tostring(body)
    assert body.get("condition") == condition, ET.tostring(body)


def session_of(srv: RunningServer, client: BoshClient) -> BoshSession:
    assert srv.server.http is not None and client.sid is not None
    return srv.server.http.bosh.sessions[client.sid]


async def until_open(srv: RunningServer, client: BoshClient, held: int, waiting: int = 0) -> None:
    """Wait until the server holds ``held`` requests of the session and has ``waiting`` more
    waiting for a missing rid (the requests were sent, not yet seen: an event, not a delay)."""
    session = session_of(srv, client)
    await until(
        lambda: len(session._held) == held and len(session._pending) == waiting,
        f"{held} held and {waiting} waiting requests",
    )


async def is_unanswered(request: asyncio.Task[ET.Element], within: float = 0.3) -> bool:
    """A bounded wait to prove a negative: no answer to ``request`` arrives ``within``."""
    done, _ = await asyncio.wait({request}, timeout=within)
    return not done


async def manual_server(
    server_factory: Factory, **options: object
) -> tuple[RunningServer, ManualClock]:
    """A server whose BOSH timers (wait, inactivity, pause, polling) run on a ManualClock."""
    clock = ManualClock()
    return await server_factory(clock=clock, **options), clock


# --------------------------------------------------------------------------- life cycle
async def test_session_creation_negotiates_the_session_attributes(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    client = bosh(server, http)
    created = await client.create(wait="600", hold="3", ack="1")
    assert created.get("sid")
    assert created.get("wait") == "60"  # the client asked more than bosh_max_wait
    assert created.get("hold") == "1"  # ... and more than bosh_max_hold
    assert created.get("requests") == "2"  # hold + 1
    assert created.get("inactivity") == "60"
    assert created.get("polling") == "2"
    assert created.get("maxpause") == "120"
    assert created.get("ver") == "1.11"
    assert created.get("from") == "localhost"
    assert created.get("authid")
    assert created.get("ack") == str(client.rid)  # XEP-0124 §9.1
    assert created.get(q(NS_XBOSH, "version")) == "1.0"
    assert created.get(q(NS_XBOSH, "restartlogic")) == "true"
    features = created.find(q(NS_STREAM, "features"))
    assert features is not None
    assert "PLAIN" in mechanisms(features) and "SCRAM-SHA-256" in mechanisms(features)
    assert features.find(q("urn:ietf:params:xml:ns:xmpp-tls", "starttls")) is None
    shorter = await bosh(server, http).create(wait="7")
    assert shorter.get("wait") == "7"


async def test_login_and_message_exchange_with_a_tcp_client(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    client = bosh(server, http)
    full = await client.login(await server.add_user())
    assert full.endswith("/bosh")
    raw, raw_jid = await raw_session(server)
    poll = client.post_later()  # a long-poll held by the server
    sending = client.post_later(message(raw_jid, "from the web"))
    assert children(await poll, "message") == []  # hold=1: the older request is answered
    received = await raw.next()
    assert received.get("from") == full
    assert received.findtext(q(NS_CLIENT, "body")) == "from the web"
    await raw.send(f"<message to='{full}' type='chat'><body>from TCP</body></message>")
    answered = await sending
    [delivered] = children(answered, "message")
    assert delivered.get("from") == raw_jid
    assert delivered.findtext(q(NS_CLIENT, "body")) == "from TCP"
    await raw.close()


async def test_idle_request_is_answered_empty_at_wait(server_factory: Factory) -> None:
    srv, clock = await manual_server(server_factory)
    async with http_session(srv) as http:
        client = bosh(srv, http)
        await client.login(await srv.add_user(), wait="10")
        idle = client.post_later()
        await until_open(srv, client, held=1)
        await clock.advance(9.5)
        assert await is_unanswered(idle)  # held while 'wait' has not passed
        await clock.advance(0.5)
        answered = await idle
        assert len(answered) == 0 and answered.get("type") is None


async def test_terminate_ends_the_session(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    client = bosh(server, http)
    jid = await client.login(await server.add_user())
    answered = await client.request(
        f"<presence xmlns='{NS_CLIENT}' type='unavailable'/>", type="terminate"
    )
    assert_terminated(answered, None)
    sessions = server.server.core.sessions
    await until(lambda: not list(sessions.resources(JID.parse(jid).bare)), "the session to end")
    assert_terminated(await client.request(), "item-not-found")


async def test_offline_message_reaches_a_bosh_session(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    jid = await server.add_user()
    raw, raw_jid = await raw_session(server)
    await raw.send(f"<message to='{jid}' type='chat'><body>while you were out</body></message>")
    offline = server.server.core.storage.offline
    await until(lambda: offline.count(server.domain, jid.split("@", 1)[0]), "the message stored")
    client = bosh(server, http)
    await client.login(jid, wait="2")
    answered = await client.request(f"<presence xmlns='{NS_CLIENT}'/>")
    received = children(answered, "message")
    while not received:  # stored messages follow the presence, in a later response
        received = children(await client.request(), "message")
    [stored] = [m for m in received if m.get("from") == raw_jid]
    assert stored.findtext(q(NS_CLIENT, "body")) == "while you were out"
    assert stored.find(q("urn:xmpp:delay", "delay")) is not None
    await raw.close()


# --------------------------------------------------------------------------- request ids
async def test_request_ids_out_of_order_within_the_window_are_processed_in_order(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    client = bosh(server, http)
    await client.login(await server.add_user(), wait="1")
    raw, raw_jid = await raw_session(server)
    first_rid, second_rid = client.next_rid(), client.next_rid()
    second = client.post_later(message(raw_jid, "second"), rid=second_rid)
    await raw.expect_nothing(within=0.3)  # waits for the missing request
    first = client.post_later(message(raw_jid, "first"), rid=first_rid)
    bodies = [(await raw.next()).findtext(q(NS_CLIENT, "body")) for _ in range(2)]
    assert bodies == ["first", "second"]
    for answered in await asyncio.gather(first, second):
        assert answered.get("type") is None
    await raw.close()


async def test_repeated_request_gets_the_same_response(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    client = bosh(server, http)
    await client.login(await server.add_user())
    data = client.body(
        f"<iq xmlns='{NS_CLIENT}' type='get' id='p1' to='localhost'>"
        "<ping xmlns='urn:xmpp:ping'/></iq>"
    )
    status, first = await client.post_raw(data)
    assert status == 200 and b"type='result'" in first
    assert await client.post_raw(data) == (200, first)  # XEP-0124 §14.3, not processed twice


async def test_request_sent_again_while_held_is_answered_on_the_new_one(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    client = bosh(server, http)
    await client.login(await server.add_user(), wait="1")
    rid = client.next_rid()
    first = client.post_later(rid=rid)
    await until_open(server, client, held=1)
    again = client.post_later(rid=rid)  # the client thinks the first connection broke
    assert len(await first) == 0  # let go, empty
    ping = f"<iq xmlns='{NS_CLIENT}' type='get' id='p2'><ping xmlns='urn:xmpp:ping'/></iq>"
    pong = client.post_later(ping)
    assert (await again).get("type") is None  # the session lives on
    [result] = children(await pong, "iq")
    assert result.get("id") == "p2" and result.get("type") == "result"


async def test_rid_outside_the_window_is_item_not_found(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    client = bosh(server, http)
    await client.login(await server.add_user())
    assert_terminated(await client.request(rid=client.rid + 3), "item-not-found")
    assert_terminated(await client.request(), "item-not-found")  # the session is gone


async def test_unknown_sid_is_item_not_found(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    client = bosh(server, http)
    client.sid = "no-such-session"
    assert_terminated(await client.request(), "item-not-found")


async def test_server_acknowledges_requests_received_meanwhile(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    client = bosh(server, http)
    await client.create(ack="1", wait="5")
    held_rid = client.rid + 1
    held = client.post_later()
    await until_open(server, client, held=1)
    later = client.post_later()
    answered = await held
    assert answered.get("ack") == str(held_rid + 1)  # XEP-0124 §9.1
    await client.request(type="terminate")
    await later


# --------------------------------------------------------------------------- errors
async def test_malformed_requests_are_bad_request(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    client = bosh(server, http)
    for data in ("<body rid='1'", "not xml", f"<iq xmlns='{NS_CLIENT}'/>", "<body rid='1'/>"):
        assert_terminated(await client.post(data, status=400), "bad-request")
    creation = client.body(rid="x1", to="localhost", ver="1.11")
    assert_terminated(await client.post(creation), "bad-request")
    # A client older than XEP-0124 1.6 (no 'ver') gets the HTTP error code as well.
    assert_terminated(
        await client.post(client.body(rid="x1", to="localhost"), status=400), "bad-request"
    )
    assert_terminated(
        await client.post(f"<body xmlns='{NS_HTTPBIND}' to='localhost' ver='1.11'/>"), "bad-request"
    )


async def test_unknown_host_is_host_unknown(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    assert_terminated(
        await bosh(server, http).post(bosh(server, http).body(to="elsewhere.test")), "host-unknown"
    )


async def test_too_many_open_requests_is_policy_violation(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    client = bosh(server, http)
    await client.create(wait="5")  # hold 1, requests 2
    held = client.post_later()
    await until_open(server, client, held=1)
    skipped = client.next_rid()
    ahead = client.post_later()  # waits for the skipped rid
    await until_open(server, client, held=1, waiting=1)
    third = await client.request(rid=skipped)  # three open requests: one too many
    assert_terminated(third, "policy-violation")
    for answered in await asyncio.gather(held, ahead):
        assert answered.get("type") == "terminate"


async def test_polling_faster_than_allowed_is_policy_violation(server_factory: Factory) -> None:
    srv, clock = await manual_server(server_factory)
    async with http_session(srv) as http:
        client = bosh(srv, http)
        created = await client.create(hold="0")
        assert (created.get("hold"), created.get("requests")) == ("0", "1")
        assert created.get("polling") == "2"
        assert (await client.request()).get("type") is None  # a polling session answers at once
        await clock.advance(2)
        assert (await client.request()).get("type") is None  # 'polling' seconds later: fine
        await clock.advance(1.5)
        assert_terminated(await client.request(), "policy-violation")  # within 'polling'


async def test_inactivity_ends_the_session_with_unavailable_presence_to_contacts(
    server_factory: Factory,
) -> None:
    srv, clock = await manual_server(server_factory, http={"bosh_inactivity": 30})
    async with http_session(srv) as http:
        client = bosh(srv, http)
        full = await client.login(await srv.add_user(), wait="10")
        raw, raw_jid = await raw_session(srv)
        presence = client.post_later(f"<presence xmlns='{NS_CLIENT}' to='{raw_jid}'/>")
        available = await raw.next()
        assert available.tag == q(NS_CLIENT, "presence") and available.get("type") is None
        await until_open(srv, client, held=1)
        await clock.advance(10)  # 'wait' passes: the held request is answered empty
        assert len(await presence) == 0
        await clock.advance(29)
        await raw.expect_nothing()  # within 'inactivity' the session lives on
        # No request for 'inactivity' seconds after the last answer: the session ends.
        await clock.advance(1)
        gone = await raw.next()
        assert gone.get("from") == full and gone.get("type") == "unavailable"
        assert_terminated(await client.request(), "item-not-found")
        await raw.close()


async def test_pause_extends_the_inactivity_limit(server_factory: Factory) -> None:
    srv, clock = await manual_server(server_factory, http={"bosh_inactivity": 10})
    jid = await srv.add_user()
    auth = f"<auth xmlns='{NS_SASL}' mechanism='PLAIN'>{plain_payload(jid)}</auth>"
    async with http_session(srv) as http:
        client = bosh(srv, http)
        await client.create(wait="5")
        assert (await client.request(pause="30")).get("type") is None  # answered at once
        await clock.advance(16)  # past 'inactivity', within the pause
        resumed = await client.request(auth)
        assert resumed.find(q(NS_SASL, "success")) is not None, ET.tostring(resumed)

        paused = bosh(srv, http)
        await paused.create(wait="5")
        assert (await paused.request(pause="30")).get("type") is None
        await clock.advance(30)  # the pause is over too: the session has ended
        assert_terminated(await paused.request(auth), "item-not-found")


async def test_resource_conflict_ends_the_bosh_session(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    jid = await server.add_user()
    client = bosh(server, http)
    await client.login(jid, resource="same")
    poll = client.post_later()
    raw = await RawClient.connect(server)
    await raw.login(server, jid, resource="same")  # RFC 6120 §7.7.2.2: the newer one wins
    ended = await poll
    assert_terminated(ended, "remote-stream-error")  # XEP-0206 §6
    [error] = ended.findall(q(NS_STREAM, "error"))
    assert stream_error_conditions(error) == ["conflict"]
    await raw.close()


async def test_stanza_before_authentication_is_a_stream_error(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    client = bosh(server, http)
    await client.create()
    ended = await client.request(message("someone@localhost", "too early"))
    assert_terminated(ended, "remote-stream-error")
    [error] = ended.findall(q(NS_STREAM, "error"))
    assert stream_error_conditions(error) == ["not-authorized"]


async def test_failed_logins_are_limited_as_on_tcp(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    jid = await server.add_user()
    client = bosh(server, http)
    await client.create()
    auth = f"<auth xmlns='{NS_SASL}' mechanism='PLAIN'>{plain_payload(jid, 'wrong')}</auth>"
    for _ in range(2):
        failed = await client.request(auth)
        assert failed.find(f"{q(NS_SASL, 'failure')}/{q(NS_SASL, 'not-authorized')}") is not None
    ended = await client.request(auth)
    assert_terminated(ended, "remote-stream-error")
    [error] = ended.findall(q(NS_STREAM, "error"))
    assert stream_error_conditions(error) == ["policy-violation"]


async def test_plain_http_is_not_encrypted_unless_a_trusted_proxy_says_so(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    url = server.http_url("/http-bind", secure=False)
    # A remote client through the local proxy (a direct loopback client counts as secure:
    # tests/integration/test_http_loopback_secure.py).
    remote = {"X-Forwarded-For": "203.0.113.7"}
    plain = await BoshClient(http, url, **remote).create()
    features = plain.find(q(NS_STREAM, "features"))
    assert features is not None and mechanisms(features) == []  # c2s.require_encryption
    proxied = await BoshClient(http, url, **remote, **{"X-Forwarded-Proto": "https"}).create()
    features = proxied.find(q(NS_STREAM, "features"))
    assert features is not None and "PLAIN" in mechanisms(features)
