"""XEP-0198 Stream Management on a real server: raw XML for exact counters and errors,
slixmpp's xep_0198 plugin for the flow a real client goes through, and WebSocket."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import trustme

from salon.app import App
from salon.config import settings_from_dict
from salon.core.clock import ManualClock
from salon.jid import JID
from salon.modules.smacks import MANAGED, Managed
from tests.integration.harness import (
    DOMAINS,
    NS_CLIENT,
    NS_SASL,
    NS_STANZAS,
    NS_STREAM,
    NS_STREAMS,
    RawClient,
    RunningServer,
    connect_slixmpp,
    issue_host_certs,
    q,
    raw_session,
    server_settings,
)
from tests.integration.im_helpers import befriend
from tests.integration.web_helpers import WsClient, http_session, plain_payload

NS_SM = "urn:xmpp:sm:3"
Factory = Callable[..., Awaitable[RunningServer]]


# --------------------------------------------------------------------------- helpers
async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait (bounded) for a condition of the server's state."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "the condition never held"
        await asyncio.sleep(0.01)


async def stored(srv: RunningServer, jid: str, count: int, timeout: float = 5.0) -> None:
    """Wait (bounded) until exactly ``count`` messages are in ``jid``'s offline storage."""
    local, domain = jid.split("@", 1)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        found = len(await srv.server.core.storage.offline.list(domain, local))
        if found == count:
            return
        assert found < count and loop.time() < deadline, f"{found} stored, not {count}"
        await asyncio.sleep(0.01)


async def sync(client: RawClient) -> None:
    """Return once the server handled what ``client`` sent so far (in order): the answer to
    a ping sent now comes after it. What arrives before the answer is dropped."""
    await client.send("<iq type='get' id='sync' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
    while (await client.next()).get("id") != "sync":
        pass


async def drain(client: RawClient, quiet: float = 0.2) -> None:
    """Read and drop whatever arrives until nothing has for ``quiet`` seconds."""
    while True:
        try:
            await client.next(timeout=quiet)
        except AssertionError:
            return


def managed(srv: RunningServer, full: str) -> Managed | None:
    session = srv.server.core.sessions.get(JID.parse(full))
    return None if session is None else session.get(MANAGED)


def queued(srv: RunningServer, full: str) -> list[object]:
    """The stanzas a session managed by SM holds unacknowledged."""
    state = managed(srv, full)
    return [] if state is None else list(state.state.unacked)


def queued_bodies(srv: RunningServer, full: str) -> set[str]:
    """The message bodies a session managed by SM holds unacknowledged."""
    state = managed(srv, full)
    if state is None:
        return set()
    return {text for s in state.state.unacked if (text := s.find_text("body", NS_CLIENT))}


def hibernating(srv: RunningServer, full: str) -> Callable[[], bool]:
    def check() -> bool:
        state = managed(srv, full)
        return state is not None and state.connection is None

    return check


async def authenticated(srv: RunningServer, jid: str) -> tuple[RawClient, ET.Element]:
    """A raw client past SASL, before bind; returns it with the stream features."""
    client = await RawClient.connect(srv)
    await client.open()
    await client.starttls(srv)
    await client.open()
    success = await client.auth_plain(jid)
    assert success.tag == q(NS_SASL, "success"), ET.tostring(success)
    return client, await client.open()


async def enable(client: RawClient, resume: bool = True, extra: str = "") -> ET.Element:
    attrs = " resume='true'" if resume else ""
    await client.send(f"<enable xmlns='{NS_SM}'{attrs}{extra}/>")
    enabled = await client.next()
    assert enabled.tag == q(NS_SM, "enabled"), ET.tostring(enabled)
    return enabled


async def sm_session(
    srv: RunningServer, jid: str | None = None, resource: str = "phone"
) -> tuple[RawClient, str, str]:
    """A raw client, bound, with resumable stream management; returns it, its full JID and
    its SM-ID."""
    client, full = await raw_session(srv, jid, resource=resource)
    enabled = await enable(client)
    smid = enabled.get("id")
    assert smid
    return client, full, smid


async def resume(srv: RunningServer, jid: str, previd: str, h: int) -> tuple[RawClient, ET.Element]:
    client, _ = await authenticated(srv, jid)
    await client.send(f"<resume xmlns='{NS_SM}' previd='{previd}' h='{h}'/>")
    return client, await client.next()


async def chat(sender: RawClient, to: str, body: str) -> None:
    await sender.send(f"<message to='{to}' type='chat'><body>{body}</body></message>")


def body(stanza: ET.Element) -> str | None:
    return stanza.findtext(q(NS_CLIENT, "body"))


async def bodies(client: RawClient, count: int) -> list[str | None]:
    """The bodies of the next ``count`` messages (other elements are skipped)."""
    found: list[str | None] = []
    while len(found) < count:
        el = await client.next()
        if el.tag == q(NS_CLIENT, "message"):
            found.append(body(el))
    return found


def failed_condition(el: ET.Element) -> str:
    assert el.tag == q(NS_SM, "failed"), ET.tostring(el)
    conditions = [c.tag for c in el if c.tag.startswith(f"{{{NS_STANZAS}}}")]
    assert len(conditions) == 1, ET.tostring(el)
    return conditions[0].split("}", 1)[1]


def kill(client: RawClient) -> None:
    """The client vanishes: the TCP connection is torn down without a stream close."""
    transport = client.writer.transport
    transport.abort()


@pytest.fixture
async def clocked(
    tmp_path: Path, ca: trustme.CA
) -> AsyncIterator[Callable[..., Awaitable[tuple[RunningServer, ManualClock]]]]:
    """Servers on a ManualClock: resumption windows run out when the test says so."""
    apps: list[App] = []

    async def start(**module_options: dict[str, Any]) -> tuple[RunningServer, ManualClock]:
        data_dir = tmp_path / f"clocked{len(apps)}"
        data_dir.mkdir(parents=True)
        data = server_settings(data_dir, issue_host_certs(ca, data_dir, DOMAINS))
        if module_options:
            data["modules"] = module_options
        clock = ManualClock()
        app = App(settings_from_dict(data), clock=clock)
        await app.start()
        apps.append(app)
        ca_path = data_dir / "ca.pem"
        ca.cert_pem.write_to_path(str(ca_path))
        return RunningServer(app, ca, ca_path, data_dir), clock

    yield start
    for app in apps:
        await app.stop()


# --------------------------------------------------------------------------- feature, enable
async def test_sm_is_offered_once_authenticated(server: RunningServer) -> None:
    client = await RawClient.connect(server)
    before = await client.open()
    assert before.find(q(NS_SM, "sm")) is None
    await client.close()
    client, features = await authenticated(server, await server.add_user())
    assert features.find(q(NS_SM, "sm")) is not None
    await client.close()


async def test_enable_without_resume_has_no_id(server: RunningServer) -> None:
    client, _ = await raw_session(server)
    enabled = await enable(client, resume=False)
    assert enabled.get("id") is None and enabled.get("resume") is None
    await client.close()


async def test_enable_with_resume_gives_id_and_max(server_factory: Factory) -> None:
    srv = await server_factory(module_options={"smacks": {"resume_timeout": 120}})
    client, _ = await raw_session(srv)
    enabled = await enable(client)
    assert enabled.get("id") and enabled.get("resume") in ("true", "1")
    assert enabled.get("max") == "120"
    other, _ = await raw_session(srv)
    shorter = await enable(other, extra=" max='30'")  # the client prefers a shorter window
    assert shorter.get("max") == "30"
    assert shorter.get("id") != enabled.get("id")
    await client.close()
    await other.close()


async def test_enable_before_bind_fails_and_bind_still_works(server: RunningServer) -> None:
    client, _ = await authenticated(server, await server.add_user())
    await client.send(f"<enable xmlns='{NS_SM}'/>")
    assert failed_condition(await client.next()) == "unexpected-request"
    assert (await client.bind("late")).endswith("/late")
    await enable(client)  # once bound, it works
    await client.close()


async def test_enable_twice_fails(server: RunningServer) -> None:
    client, _ = await raw_session(server)
    await enable(client)
    await client.send(f"<enable xmlns='{NS_SM}'/>")
    assert failed_condition(await client.next()) == "unexpected-request"
    await client.ping()  # the stream goes on
    await client.close()


async def test_ack_request_before_enable_fails(server: RunningServer) -> None:
    client, _ = await raw_session(server)
    await client.send(f"<r xmlns='{NS_SM}'/>")
    assert failed_condition(await client.next()) == "unexpected-request"
    await client.close()


# --------------------------------------------------------------------------- counting
async def test_h_counts_stanzas_handled_since_enable(server: RunningServer) -> None:
    client, _ = await raw_session(server)
    await client.ping(iq_id="before")  # before <enable/>: not counted
    await enable(client)
    await client.send(f"<r xmlns='{NS_SM}'/>")
    ack = await client.next()
    assert ack.tag == q(NS_SM, "a") and ack.get("h") == "0"
    for n in range(3):
        await client.ping(iq_id=f"p{n}")
    await client.send("<presence/>")
    assert (await client.next()).tag == q(NS_CLIENT, "presence")  # own presence, echoed
    await client.send(f"<r xmlns='{NS_SM}'/>")
    ack = await client.next()
    assert ack.tag == q(NS_SM, "a") and ack.get("h") == "4"
    await client.close()


async def test_ack_request_is_answered_in_order_with_stanzas(server: RunningServer) -> None:
    client, _ = await raw_session(server)
    await enable(client)
    pings = "".join(
        f"<iq type='get' id='q{n}' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>"
        for n in range(4)  # fewer than ack_request_after: the server asks for no ack
    )
    await client.send(pings + f"<r xmlns='{NS_SM}'/>")  # pipelined in one write
    got = [await client.next() for _ in range(5)]
    assert [el.get("id") for el in got[:4]] == [f"q{n}" for n in range(4)]
    assert got[4].tag == q(NS_SM, "a") and got[4].get("h") == "4"
    await client.close()


async def test_server_requests_an_ack_after_enough_stanzas(server_factory: Factory) -> None:
    srv = await server_factory(module_options={"smacks": {"ack_request_after": 3}})
    client, _ = await raw_session(srv)
    await enable(client)
    for n in range(2):
        await client.ping(iq_id=f"p{n}")
    await client.send("<iq type='get' id='p2' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
    third = await client.next()
    assert third.get("id") == "p2"
    request = await client.next()
    assert request.tag == q(NS_SM, "r")
    await client.send(f"<a xmlns='{NS_SM}' h='3'/>")
    await client.ping(iq_id="p3")  # acknowledged: no new request for one more stanza
    await client.expect_nothing(0.2)
    await client.close()


async def test_server_requests_acks_on_an_interval(server_factory: Factory) -> None:
    srv = await server_factory(module_options={"smacks": {"ack_request_interval": 0.1}})
    client, _ = await raw_session(srv)
    await enable(client)
    await client.ping()  # one stanza left unacknowledged
    request = await client.next(timeout=5)
    assert request.tag == q(NS_SM, "r")
    await client.close()


async def test_ack_of_more_than_was_sent_closes_the_stream(server: RunningServer) -> None:
    client, full = await raw_session(server)
    await enable(client)
    await client.ping()  # the server sent one stanza since <enabled/>
    await client.send(f"<a xmlns='{NS_SM}' h='5'/>")
    error = await client.next()
    assert error.tag == q(NS_STREAM, "error"), ET.tostring(error)
    assert error[0].tag == q(NS_STREAMS, "undefined-condition")
    too_high = error.find(q(NS_SM, "handled-count-too-high"))
    assert too_high is not None
    assert (too_high.get("h"), too_high.get("send-count")) == ("5", "1")
    await client.expect_closed()
    await until(lambda: server.server.core.sessions.get(JID.parse(full)) is None)


# --------------------------------------------------------------------------- resumption
async def test_resume_after_the_socket_dies_resends_exactly_the_unhandled(
    server: RunningServer,
) -> None:
    alice_jid = await server.add_user()
    alice, full, smid = await sm_session(server, alice_jid)
    await alice.send(f"<message to='{full}' type='chat' id='own'><body>x</body></message>")
    assert body(await alice.next()) == "x"  # to herself: one stanza each way
    bob, _ = await raw_session(server)
    for n in range(3):
        await chat(bob, full, f"m{n}")
    assert await bodies(alice, 3) == ["m0", "m1", "m2"]
    kill(alice)
    await until(hibernating(server, full))
    for n in range(3, 5):
        await chat(bob, full, f"m{n}")
    # Both reached the hibernated session (routing is asynchronous: wait for it, not a time).
    await until(lambda: len(queued(server, full)) == 6)
    # Alice handled four stanzas (x, m0, m1, m2); say she saw only three of them.
    alice2, resumed = await resume(server, alice_jid, smid, 3)
    assert resumed.tag == q(NS_SM, "resumed"), ET.tostring(resumed)
    assert resumed.get("previd") == smid
    assert resumed.get("h") == "1"  # the server handled her one message
    assert await bodies(alice2, 3) == ["m2", "m3", "m4"]
    request = await alice2.next()
    assert request.tag == q(NS_SM, "r")
    await alice2.send(f"<a xmlns='{NS_SM}' h='6'/>")
    # The session is bound on the new stream: the same full JID, stanzas flow both ways.
    await chat(alice2, full, "hello again")
    assert body(await alice2.next()) == "hello again"
    await alice2.send(f"<r xmlns='{NS_SM}'/>")
    ack = await alice2.next()
    assert ack.get("h") == "2"
    state = managed(server, full)
    assert state is not None and len(state.state.unacked) == 1
    await alice2.close()
    await bob.close()


async def test_hibernated_session_stays_available_to_contacts(
    clocked: Callable[..., Awaitable[tuple[RunningServer, ManualClock]]],
) -> None:
    srv, clock = await clocked()
    alice_jid, bob_jid = await srv.add_user(), await srv.add_user()
    await befriend(srv, alice_jid, bob_jid)
    bob, _ = await raw_session(srv, bob_jid)
    await bob.send("<presence/>")
    alice, full, _ = await sm_session(srv, alice_jid)
    await alice.send("<presence/>")
    await sync(alice)  # her presence went out before the answer
    await drain(bob)
    kill(alice)
    await until(hibernating(srv, full))
    await bob.expect_nothing(0.3)  # no unavailable presence while she may come back
    bare = JID.parse(alice_jid)
    assert [s.jid for s in srv.server.core.sessions.available(bare)] == [JID.parse(full)]
    await clock.advance(300)  # the window runs out: now she is gone
    gone = await bob.next()
    assert gone.get("from") == full and gone.get("type") == "unavailable"
    assert srv.server.core.sessions.get(JID.parse(full)) is None
    await bob.close()


async def test_window_runs_out_messages_go_offline_and_arrive_at_next_login(
    clocked: Callable[..., Awaitable[tuple[RunningServer, ManualClock]]],
) -> None:
    srv, clock = await clocked(smacks={"resume_timeout": 60})
    alice_jid, bob_jid = await srv.add_user(), await srv.add_user()
    await befriend(srv, alice_jid, bob_jid)
    bob, _ = await raw_session(srv, bob_jid)
    await bob.send("<presence/>")
    alice, full, smid = await sm_session(srv, alice_jid)
    await alice.send("<presence/>")
    await chat(bob, full, "before")  # received by the client, never acknowledged
    assert await bodies(alice, 1) == ["before"]
    kill(alice)
    await until(hibernating(srv, full))
    await chat(bob, alice_jid, "during-1")  # to the bare JID: the hibernated resource takes it
    await chat(bob, full, "during-2")
    # Both reached the hibernated session (a count of queued stanzas is not enough: presence
    # may be among them, and a message still being routed at expiry is stored by another path).
    await until(lambda: {"during-1", "during-2"} <= queued_bodies(srv, full))
    await clock.advance(59)
    assert srv.server.core.sessions.get(JID.parse(full)) is not None
    await clock.advance(1)
    while True:  # contacts learn she is gone once her messages are stored
        gone = await bob.next()
        if gone.tag == q(NS_CLIENT, "presence") and gone.get("type") == "unavailable":
            break
    await stored(srv, alice_jid, 3)  # already: stored before the presence went out
    # A resume now fails; she binds a new session and gets each message once.
    alice2, failed = await resume(srv, alice_jid, smid, 1)
    assert failed_condition(failed) == "item-not-found"
    await alice2.bind("phone")
    await alice2.send("<presence/>")
    got = []
    pinged = False
    while len(got) < 3 or not pinged:
        el = await alice2.next()
        if el.tag == q(NS_CLIENT, "message"):
            got.append(body(el))
            assert el.find("{urn:xmpp:delay}delay") is not None
        elif el.tag == q(NS_CLIENT, "iq") and el.get("type") == "get":
            # XEP-0160 delivery asks whether she read them; she answers.
            await alice2.send(f"<iq type='result' id='{el.get('id')}' to='localhost'/>")
            pinged = True
    assert got == ["before", "during-1", "during-2"]
    await drain(alice2)
    await stored(srv, alice_jid, 0)
    await alice2.expect_nothing(0.3)
    await alice2.close()
    await bob.close()


async def test_stanzas_for_a_hibernated_session_are_bounded(
    clocked: Callable[..., Awaitable[tuple[RunningServer, ManualClock]]],
) -> None:
    srv, _ = await clocked(smacks={"max_unacked": 3})
    alice_jid = await srv.add_user()
    alice, full, smid = await sm_session(srv, alice_jid)
    kill(alice)
    await until(hibernating(srv, full))
    bob, _ = await raw_session(srv)
    for n in range(5):
        await chat(bob, full, f"m{n}")
    # Past the bound the session ends rather than grow; nothing is lost: all is stored.
    await until(lambda: srv.server.core.sessions.get(JID.parse(full)) is None)
    await stored(srv, alice_jid, 5)
    alice2, failed = await resume(srv, alice_jid, smid, 0)
    assert failed_condition(failed) == "item-not-found"
    await alice2.close()
    await bob.close()


async def test_unknown_previd_fails_and_a_new_session_can_bind(server: RunningServer) -> None:
    jid = await server.add_user()
    client, failed = await resume(server, jid, "no-such-session", 0)
    assert failed_condition(failed) == "item-not-found"
    assert (await client.bind("fresh")).endswith("/fresh")
    await client.ping()
    await client.close()


async def test_another_accounts_session_cannot_be_resumed(server: RunningServer) -> None:
    alice, full, smid = await sm_session(server)
    kill(alice)
    await until(hibernating(server, full))
    mallory, failed = await resume(server, await server.add_user(), smid, 0)
    assert failed_condition(failed) == "item-not-found"
    assert hibernating(server, full)()
    await mallory.close()


async def test_resume_once_bound_fails(server: RunningServer) -> None:
    alice, _, smid = await sm_session(server)
    await alice.send(f"<resume xmlns='{NS_SM}' previd='{smid}' h='0'/>")
    assert failed_condition(await alice.next()) == "unexpected-request"
    await alice.ping()
    await alice.close()


async def test_resume_acknowledging_more_than_sent_closes_the_stream(
    server: RunningServer,
) -> None:
    jid = await server.add_user()
    alice, full, smid = await sm_session(server, jid)
    kill(alice)
    await until(hibernating(server, full))
    client, error = await resume(server, jid, smid, 7)
    assert error.tag == q(NS_STREAM, "error"), ET.tostring(error)
    assert error[0].tag == q(NS_STREAMS, "undefined-condition")
    too_high = error.find(q(NS_SM, "handled-count-too-high"))
    assert too_high is not None and too_high.get("send-count") == "0"
    await client.expect_closed()
    assert hibernating(server, full)()  # still waiting for a proper resume


async def test_resume_while_the_old_stream_is_open_closes_it(server: RunningServer) -> None:
    jid = await server.add_user()
    alice, full, smid = await sm_session(server, jid)
    bob, _ = await raw_session(server)
    await chat(bob, full, "one")
    assert await bodies(alice, 1) == ["one"]
    alice2, resumed = await resume(server, jid, smid, 1)
    assert resumed.tag == q(NS_SM, "resumed")
    await alice.expect_stream_error("conflict")
    await chat(bob, full, "two")
    assert await bodies(alice2, 1) == ["two"]
    assert managed(server, full) is not None  # the old stream's end did not end the session
    await alice2.close()
    await bob.close()


async def test_a_closed_stream_is_not_resumable(server: RunningServer) -> None:
    jid = await server.add_user()
    alice, full, smid = await sm_session(server, jid)
    await alice.send("</stream:stream>")
    await alice.expect_closed()
    await until(lambda: server.server.core.sessions.get(JID.parse(full)) is None)
    client, failed = await resume(server, jid, smid, 0)
    assert failed_condition(failed) == "item-not-found"
    await client.close()


async def test_unacknowledged_messages_of_a_closed_stream_are_not_lost(
    server: RunningServer,
) -> None:
    jid = await server.add_user()
    alice, full = await raw_session(server, jid)
    await enable(alice, resume=False)
    bob, _ = await raw_session(server)
    await chat(bob, full, "unacked")
    assert await bodies(alice, 1) == ["unacked"]
    kill(alice)  # not resumable: the session ends at once
    await until(lambda: server.server.core.sessions.get(JID.parse(full)) is None)
    await stored(server, jid, 1)
    await bob.close()


async def test_unacknowledged_iq_request_is_bounced(server: RunningServer) -> None:
    jid = await server.add_user()
    alice, full = await raw_session(server, jid)
    await enable(alice, resume=False)
    bob, _ = await raw_session(server)
    version = "<query xmlns='jabber:iq:version'/>"
    await bob.send(f"<iq type='get' id='v1' to='{full}'>{version}</iq>")
    assert (await alice.next()).get("id") == "v1"
    kill(alice)
    error = await bob.next()
    assert error.get("id") == "v1" and error.get("type") == "error"
    assert error.find(f"{q(NS_CLIENT, 'error')}/{q(NS_STANZAS, 'service-unavailable')}") is not None
    await bob.close()


# --------------------------------------------------------------------------- slixmpp
async def test_slixmpp_resumes_and_every_message_arrives_exactly_once(
    server: RunningServer,
) -> None:
    loop = asyncio.get_running_loop()
    enabled: asyncio.Future[Any] = loop.create_future()
    resumed: asyncio.Future[Any] = loop.create_future()
    disconnected: asyncio.Future[Any] = loop.create_future()

    def configure(xmpp: Any) -> None:
        xmpp.register_plugin("xep_0198")

        def done(future: asyncio.Future[Any]) -> Callable[[Any], None]:
            return lambda event: None if future.done() else future.set_result(event)

        xmpp.add_event_handler("sm_enabled", done(enabled))
        xmpp.add_event_handler("session_resumed", done(resumed))
        xmpp.add_event_handler("disconnected", done(disconnected))

    alice_jid = await server.add_user()
    alice = await connect_slixmpp(server, f"{alice_jid}/phone", configure=configure)
    await asyncio.wait_for(enabled, 5)
    bob, _ = await raw_session(server)
    full = f"{alice_jid}/phone"

    def is_body(stanza: Any) -> bool:
        return stanza.name == "message" and bool(stanza["body"])

    received: list[str] = []
    for n in range(3):
        await chat(bob, full, f"m{n}")
    for _ in range(3):
        received.append((await alice.expect(is_body))["body"])
    alice.xmpp.transport.abort()  # the phone loses its network mid-conversation
    for n in range(3, 8):  # some may race into the dying socket: they are resent
        await chat(bob, full, f"m{n}")
    await asyncio.wait_for(disconnected, 5)
    await until(hibernating(server, full))
    alice.xmpp.connect("127.0.0.1", server.port)
    await asyncio.wait_for(resumed, 10)
    for _ in range(5):
        received.append((await alice.expect(is_body))["body"])
    await alice.expect_nothing(is_body, within=0.5)
    assert received == [f"m{n}" for n in range(8)]
    state = managed(server, full)
    assert state is not None and state.connection is not None
    await alice.disconnect()
    await bob.close()


# --------------------------------------------------------------------------- WebSocket
async def test_resume_over_websocket(server: RunningServer) -> None:
    jid = await server.add_user()
    url = "ws" + server.http_url("/xmpp-websocket").removeprefix("http")
    async with http_session(server) as http:
        ws = await WsClient.connect(http, url)
        full = await ws.login(jid, resource="web")
        await ws.send(f"<enable xmlns='{NS_SM}' resume='true'/>")
        enabled = await ws.next()
        assert enabled.tag == q(NS_SM, "enabled")
        smid = enabled.get("id")
        await ws.ws.close()  # the WebSocket ends without <close/>: the session hibernates
        await until(hibernating(server, full))
        bob, _ = await raw_session(server)
        await chat(bob, full, "while away")
        ws2 = await WsClient.connect(http, url)
        _, features = await ws2.open()
        await ws2.send(f"<auth xmlns='{NS_SASL}' mechanism='PLAIN'>{plain_payload(jid)}</auth>")
        assert (await ws2.next()).tag == q(NS_SASL, "success")
        _, features = await ws2.open()
        assert features.find(q(NS_SM, "sm")) is not None
        await ws2.send(f"<resume xmlns='{NS_SM}' previd='{smid}' h='0'/>")
        resumed = await ws2.next()
        assert resumed.tag == q(NS_SM, "resumed"), ET.tostring(resumed)
        message = await ws2.next()
        assert message.findtext(q(NS_CLIENT, "body")) == "while away"
        await ws2.close()
        await bob.close()
