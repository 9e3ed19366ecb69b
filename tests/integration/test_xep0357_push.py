"""XEP-0357 Push Notifications against a real app server: a slixmpp ComponentXMPP connected
over XEP-0114 receives the pubsub publishes and answers them (result, or the error the test
asks for, or nothing). Users are raw XML clients, so the exact stanzas are checked."""

from __future__ import annotations

import asyncio
import contextlib
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import slixmpp
import trustme
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from salon.app import App
from salon.config import settings_from_dict
from salon.core.clock import ManualClock
from salon.jid import JID
from tests.integration.harness import (
    DOMAINS,
    NS_CLIENT,
    RawClient,
    RunningServer,
    issue_host_certs,
    q,
    raw_session,
    server_settings,
    stanza_error_condition,
)
from tests.integration.test_xep0198_sm import (
    drain,
    enable,
    hibernating,
    kill,
    resume,
    sync,
    until,
)

APP = "push.localhost"
SECRET = "component-secret"
NS_PUSH = "urn:xmpp:push:0"
NS_PUBSUB = "http://jabber.org/protocol/pubsub"
NS_DATA = "jabber:x:data"
NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
NS_CSI = "urn:xmpp:csi:0"
PUBLISH_OPTIONS = "http://jabber.org/protocol/pubsub#publish-options"
TIMEOUT = 5.0

Start = Callable[..., Awaitable[RunningServer]]


# --------------------------------------------------------------------------- the app server
class AppServer:
    """A slixmpp ComponentXMPP acting as the XEP-0357 app server. ``answer`` says how it
    answers the next publishes: "result", "silent", or "<type>:<condition>" for an error."""

    def __init__(self, xmpp: slixmpp.ComponentXMPP) -> None:
        self.xmpp = xmpp
        self.publishes: asyncio.Queue[ET.Element] = asyncio.Queue()
        self.answer = "result"

    def on_iq(self, iq: Any) -> None:
        xml: ET.Element = iq.xml
        self.publishes.put_nowait(xml)
        ns = self.xmpp.default_ns
        head = (
            f"<iq xmlns='{ns}' from='{xml.get('to')}' to='{xml.get('from')}' id='{xml.get('id')}'"
        )
        if self.answer == "result":
            self.xmpp.send_raw(f"{head} type='result'/>")
        elif self.answer != "silent":
            etype, condition = self.answer.split(":")
            self.xmpp.send_raw(
                f"{head} type='error'><error type='{etype}'><{condition} "
                "xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
            )

    async def publish(self, timeout: float = TIMEOUT) -> ET.Element:
        return await asyncio.wait_for(self.publishes.get(), timeout)

    async def nothing(self, within: float = 0.3) -> None:
        """Prove a negative, bounded: no publish arrives within ``within`` seconds."""
        with contextlib.suppress(TimeoutError):
            got = await asyncio.wait_for(self.publishes.get(), within)
            raise AssertionError(f"unexpected publish: {ET.tostring(got)!r}")

    async def close(self) -> None:
        self.xmpp.disconnect()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.xmpp.disconnected, 3)


async def connect_app_server(srv: RunningServer) -> AppServer:
    xmpp = slixmpp.ComponentXMPP(APP, SECRET, "127.0.0.1", srv.server.port("component"))
    app = AppServer(xmpp)
    xpath = f"{{{xmpp.default_ns}}}iq/{{{NS_PUBSUB}}}pubsub"
    xmpp.register_handler(Callback("push publish", MatchXPath(xpath), app.on_iq))
    started: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
    xmpp.add_event_handler("session_start", lambda _e: started.done() or started.set_result(True))
    xmpp.connect()
    await asyncio.wait_for(started, TIMEOUT)
    return app


@pytest.fixture
async def start(tmp_path: Path, ca: trustme.CA) -> AsyncIterator[Start]:
    """Start a server with the app server's component configured; ``push`` gives the push
    module's options, ``clock`` a ManualClock."""
    apps: list[App] = []

    async def make(clock: ManualClock | None = None, **push: Any) -> RunningServer:
        data_dir = tmp_path / f"server{len(apps)}"
        data_dir.mkdir()
        data = server_settings(data_dir, issue_host_certs(ca, data_dir, DOMAINS))
        data["components"] = {"port": 0, APP: {"secret": SECRET}}
        data["modules"] = {"push": push}
        app = App(settings_from_dict(data), clock=clock)
        await app.start()
        apps.append(app)
        ca_path = data_dir / "ca.pem"
        ca.cert_pem.write_to_path(str(ca_path))
        return RunningServer(app, ca, ca_path, data_dir)

    yield make
    for app in apps:
        await app.stop()


# --------------------------------------------------------------------------- helpers
def enable_xml(node: str = "node1", secret: str | None = "s3cr3t", jid: str = APP) -> str:
    form = ""
    if secret is not None:
        form = (
            f"<x xmlns='{NS_DATA}' type='submit'>"
            f"<field var='FORM_TYPE'><value>{PUBLISH_OPTIONS}</value></field>"
            f"<field var='secret'><value>{secret}</value></field></x>"
        )
    enable = f"<enable xmlns='{NS_PUSH}' jid='{jid}' node='{node}'>{form}</enable>"
    return f"<iq type='set' id='en-{node}'>{enable}</iq>"


async def iq(client: RawClient, xml: str) -> ET.Element:
    """Send an iq and return its answer (what comes before it is dropped)."""
    iq_id = ET.fromstring(xml).get("id")
    await client.send(xml)
    while True:
        reply = await client.next()
        if reply.tag == q(NS_CLIENT, "iq") and reply.get("id") == iq_id:
            return reply


async def enable_push(
    client: RawClient, node: str = "node1", secret: str | None = "s3cr3t"
) -> None:
    reply = await iq(client, enable_xml(node, secret))
    assert reply.get("type") == "result", ET.tostring(reply)


async def registered_user(srv: RunningServer, node: str = "node1") -> str:
    """An account that enabled pushes to the app server and logged out again."""
    client, full = await raw_session(srv, resource="phone")
    await enable_push(client, node)
    await client.close()
    jid = full.split("/", 1)[0]
    await until(lambda: not srv.server.core.sessions.is_online(_jid(jid)))
    return jid


def _jid(text: str) -> JID:
    return JID.parse(text)


async def chat(sender: RawClient, to: str, body: str, mtype: str = "chat") -> None:
    await sender.send(f"<message to='{to}' type='{mtype}'><body>{body}</body></message>")


def summary(publish: ET.Element) -> dict[str, str]:
    """The fields of the summary form in a publish."""
    form = publish.find(
        f"{q(NS_PUBSUB, 'pubsub')}/{q(NS_PUBSUB, 'publish')}/{q(NS_PUBSUB, 'item')}"
        f"/{q(NS_PUSH, 'notification')}/{q(NS_DATA, 'x')}"
    )
    assert form is not None, ET.tostring(publish)
    return {
        f.get("var", ""): f.findtext(q(NS_DATA, "value")) or ""
        for f in form.iter(q(NS_DATA, "field"))
    }


def publish_options(publish: ET.Element) -> dict[str, str]:
    form = publish.find(
        f"{q(NS_PUBSUB, 'pubsub')}/{q(NS_PUBSUB, 'publish-options')}/{q(NS_DATA, 'x')}"
    )
    assert form is not None, ET.tostring(publish)
    return {
        f.get("var", ""): f.findtext(q(NS_DATA, "value")) or ""
        for f in form.iter(q(NS_DATA, "field"))
    }


def node_of(publish: ET.Element) -> str | None:
    el = publish.find(f"{q(NS_PUBSUB, 'pubsub')}/{q(NS_PUBSUB, 'publish')}")
    return None if el is None else el.get("node")


async def unregistered(srv: RunningServer, jid: str, timeout: float = TIMEOUT) -> None:
    """Wait (bounded) until ``jid`` has no push registration stored."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while await stored_registrations(srv, jid) is not None:
        assert loop.time() < deadline, "the registration is still stored"
        await asyncio.sleep(0.01)


async def stored_registrations(srv: RunningServer, jid: str) -> str | None:
    local, domain = jid.split("@", 1)
    return await srv.server.core.storage.keyvalue("push").get(domain, local)


# --------------------------------------------------------------------------- registration
async def test_push_is_advertised_on_the_account(start: Start) -> None:
    srv = await start()
    client, full = await raw_session(srv)
    bare = full.split("/", 1)[0]
    reply = await iq(
        client, f"<iq type='get' id='d1' to='{bare}'><query xmlns='{NS_DISCO_INFO}'/></iq>"
    )
    features = {f.get("var") for f in reply.iter(q(NS_DISCO_INFO, "feature"))}
    assert NS_PUSH in features
    await client.close()


@pytest.mark.parametrize(
    ("payload", "condition"),
    [
        (f"<enable xmlns='{NS_PUSH}' node='n'/>", "bad-request"),  # no jid
        (f"<enable xmlns='{NS_PUSH}' jid='{APP}'/>", "bad-request"),  # no node
        (f"<enable xmlns='{NS_PUSH}' jid='a@b@c' node='n'/>", "jid-malformed"),
        (  # a form, but not publish-options
            f"<enable xmlns='{NS_PUSH}' jid='{APP}' node='n'><x xmlns='{NS_DATA}' type='submit'>"
            "<field var='FORM_TYPE'><value>urn:example</value></field></x></enable>",
            "bad-request",
        ),
        (f"<disable xmlns='{NS_PUSH}'/>", "bad-request"),  # no jid
    ],
)
async def test_invalid_enable_and_disable_are_refused(
    start: Start, payload: str, condition: str
) -> None:
    srv = await start()
    client, full = await raw_session(srv)
    reply = await iq(client, f"<iq type='set' id='bad'>{payload}</iq>")
    assert reply.get("type") == "error"
    assert stanza_error_condition(reply) == condition
    assert await stored_registrations(srv, full.split("/", 1)[0]) is None
    await client.close()


# --------------------------------------------------------------------------- notifications
async def test_message_to_offline_user_is_pushed_with_summary_and_secret(start: Start) -> None:
    srv = await start()
    app = await connect_app_server(srv)
    alice = await registered_user(srv)
    bob, bob_full = await raw_session(srv)

    await chat(bob, alice, "first")
    publish = await app.publish()
    assert publish.get("type") == "set"
    assert publish.get("from") == alice  # the user's bare JID
    assert publish.get("to") == APP
    assert node_of(publish) == "node1"
    fields = summary(publish)
    assert fields["FORM_TYPE"] == "urn:xmpp:push:summary"
    assert fields["message-count"] == "1"
    assert fields["last-message-sender"] == bob_full
    assert "last-message-body" not in fields  # not allowed by default
    assert publish_options(publish) == {"FORM_TYPE": PUBLISH_OPTIONS, "secret": "s3cr3t"}

    await chat(bob, alice, "second")
    assert summary(await app.publish())["message-count"] == "2"

    # Logging in resets the count; the stored messages are delivered as usual.
    client, _ = await raw_session(srv, alice)
    await client.close()
    await until(lambda: not srv.server.core.sessions.is_online(_jid(alice)))
    await chat(bob, alice, "third")
    assert summary(await app.publish())["message-count"] == "1"
    await bob.close()
    await app.close()


async def test_body_is_sent_only_when_allowed(start: Start) -> None:
    srv = await start(include_body=True, max_body_length=5)
    app = await connect_app_server(srv)
    alice = await registered_user(srv)
    bob, _ = await raw_session(srv)
    await chat(bob, alice, "wherefore art thou")
    assert summary(await app.publish())["last-message-body"] == "where"
    await bob.close()
    await app.close()


async def test_subscription_request_is_pushed(start: Start) -> None:
    srv = await start()
    app = await connect_app_server(srv)
    alice = await registered_user(srv)
    bob, _ = await raw_session(srv)
    await bob.send(f"<presence to='{alice}' type='subscribe'/>")
    fields = summary(await app.publish())
    assert fields["pending-subscription-count"] == "1"
    assert fields["message-count"] == "0"
    await bob.close()
    await app.close()


async def test_nothing_is_pushed_while_a_session_is_online(start: Start) -> None:
    srv = await start()
    app = await connect_app_server(srv)
    alice, alice_full = await raw_session(srv, resource="phone")
    alice_jid = alice_full.split("/", 1)[0]
    await enable_push(alice)
    await alice.send("<presence/>")
    await sync(alice)
    bob, _ = await raw_session(srv)
    await chat(bob, alice_jid, "you there?")
    got = await alice.next()
    while got.tag != q(NS_CLIENT, "message"):
        got = await alice.next()
    assert got.findtext(q(NS_CLIENT, "body")) == "you there?"
    await app.nothing()
    # Messages without a body (chat states) and headlines never wake the phone either.
    await alice.close()
    await until(lambda: not srv.server.core.sessions.is_online(_jid(alice_jid)))
    await bob.send(
        f"<message to='{alice_jid}' type='chat'>"
        "<composing xmlns='http://jabber.org/protocol/chatstates'/></message>"
    )
    await chat(bob, alice_jid, "news", mtype="headline")
    await app.nothing()
    await bob.close()
    await app.close()


async def test_hibernated_session_gets_a_push_and_resumes(start: Start) -> None:
    srv = await start()
    app = await connect_app_server(srv)
    alice, alice_full = await raw_session(srv, resource="phone")
    alice_jid = alice_full.split("/", 1)[0]
    await alice.send("<presence/>")
    await sync(alice)
    smid = (await enable(alice)).get("id")
    assert smid
    await enable_push(alice)
    await drain(alice)
    kill(alice)  # the phone lost its network: the session hibernates
    await until(hibernating(srv, alice_full))

    bob, bob_full = await raw_session(srv)
    await chat(bob, alice_full, "wake up")
    fields = summary(await app.publish())
    assert fields["message-count"] == "1"
    assert fields["last-message-sender"] == bob_full

    # The woken app resumes and gets the message.
    client, resumed = await resume(srv, alice_jid, smid, 0)
    assert resumed.tag.endswith("}resumed"), ET.tostring(resumed)
    bodies = []
    while "wake up" not in bodies:
        el = await client.next()
        if el.tag == q(NS_CLIENT, "message"):
            bodies.append(el.findtext(q(NS_CLIENT, "body")))
    # Connected again: no push.
    await chat(bob, alice_full, "again")
    await app.nothing()
    await client.close()
    await bob.close()
    await app.close()


async def test_unacknowledged_message_is_pushed_when_the_connection_drops(start: Start) -> None:
    """The message reached the server's side of a connection that was already dead: the
    client never acknowledged it, so the hibernating session is pushed for it."""
    srv = await start()
    app = await connect_app_server(srv)
    alice, alice_full = await raw_session(srv, resource="phone")
    assert (await enable(alice)).get("id")
    await enable_push(alice)
    bob, bob_full = await raw_session(srv)
    await chat(bob, alice_full, "did you get this?")
    await sync(bob)
    await app.nothing()  # delivered to a connected session: no push yet
    kill(alice)  # ... but it never acknowledged it
    await until(hibernating(srv, alice_full))
    fields = summary(await app.publish())
    assert fields["message-count"] == "1"
    assert fields["last-message-sender"] == bob_full
    await bob.close()
    await app.close()


async def test_inactive_session_is_pushed_only_when_configured(start: Start) -> None:
    for notify_inactive in (False, True):
        srv = await start(notify_inactive=notify_inactive)
        app = await connect_app_server(srv)
        alice, alice_full = await raw_session(srv, resource="phone")
        await alice.send("<presence/>")
        await enable_push(alice)
        await alice.send(f"<inactive xmlns='{NS_CSI}'/>")
        await sync(alice)
        bob, _ = await raw_session(srv)
        await chat(bob, alice_full.split("/", 1)[0], "in the background?")
        if notify_inactive:
            assert summary(await app.publish())["message-count"] == "1"
        else:
            await app.nothing()
        await alice.close()
        await bob.close()
        await app.close()


async def test_disable_stops_pushes(start: Start) -> None:
    srv = await start()
    app = await connect_app_server(srv)
    client, full = await raw_session(srv, resource="phone")
    alice = full.split("/", 1)[0]
    await enable_push(client, "n1")
    await enable_push(client, "n2")
    bob, _ = await raw_session(srv)

    # Disable one node: only the other is published to.
    reply = await iq(
        client, f"<iq type='set' id='dis1'><disable xmlns='{NS_PUSH}' jid='{APP}' node='n1'/></iq>"
    )
    assert reply.get("type") == "result"
    await client.close()
    await until(lambda: not srv.server.core.sessions.is_online(_jid(alice)))
    await chat(bob, alice, "one")
    assert node_of(await app.publish()) == "n2"
    await app.nothing()

    # Disable every node of the app server.
    client, _ = await raw_session(srv, alice)
    reply = await iq(
        client, f"<iq type='set' id='dis2'><disable xmlns='{NS_PUSH}' jid='{APP}'/></iq>"
    )
    assert reply.get("type") == "result"
    await client.close()
    await until(lambda: not srv.server.core.sessions.is_online(_jid(alice)))
    await chat(bob, alice, "two")
    await app.nothing()
    assert await stored_registrations(srv, alice) is None
    await bob.close()
    await app.close()


async def test_error_from_app_server_disables_the_registration(start: Start) -> None:
    srv = await start()
    app = await connect_app_server(srv)
    app.answer = "cancel:item-not-found"  # e.g. the device token is gone
    alice = await registered_user(srv)
    bob, _ = await raw_session(srv)
    await chat(bob, alice, "hello?")
    await app.publish()
    await unregistered(srv, alice)
    app.answer = "result"
    await chat(bob, alice, "anyone?")
    await app.nothing()  # disabled: no more publishes, no retry of the refused one
    await bob.close()
    await app.close()


# --------------------------------------------------------------------------- retries (clock)
async def advance_until_publish(app: AppServer, clock: ManualClock, step: float) -> ET.Element:
    """Move the server's clock in steps until the app server gets a publish (bounded)."""
    for _ in range(50):
        with contextlib.suppress(TimeoutError):
            return await asyncio.wait_for(app.publishes.get(), 0.05)
        await clock.advance(step)
    raise AssertionError("no publish arrived")


async def test_unanswered_publish_is_retried_with_backoff_then_given_up(start: Start) -> None:
    clock = ManualClock()
    srv = await start(clock=clock, timeout=10, retries=2, retry_delay=4, max_retry_delay=100)
    app = await connect_app_server(srv)
    app.answer = "silent"
    alice = await registered_user(srv)
    bob, _ = await raw_session(srv)
    await chat(bob, alice, "ping")
    await app.publish()
    # No retry before the timeout and the first back-off (10 + 4 s) have passed.
    await clock.advance(13.5)
    await app.nothing()
    await clock.advance(1)
    await app.publish()  # retry 1
    await clock.advance(10 + 7)  # timeout, then 7 of the 8 s second back-off
    await app.nothing()
    await clock.advance(1.5)
    await app.publish()  # retry 2, the last
    await clock.advance(10_000)
    await app.nothing()
    # Given up, not disabled: the next message is pushed again.
    assert await stored_registrations(srv, alice) is not None
    app.answer = "result"
    await bob.close()  # (its connection timed out in those 10,000 s)
    bob, _ = await raw_session(srv)
    await chat(bob, alice, "pong")
    assert summary(await app.publish())["message-count"] == "2"
    await bob.close()
    await app.close()


async def test_wait_error_is_retried_and_later_publish_carries_latest_count(start: Start) -> None:
    clock = ManualClock()
    srv = await start(clock=clock, retries=3, retry_delay=5)
    app = await connect_app_server(srv)
    app.answer = "wait:resource-constraint"
    alice = await registered_user(srv)
    bob, _ = await raw_session(srv)
    await chat(bob, alice, "one")
    assert summary(await app.publish())["message-count"] == "1"
    await chat(bob, alice, "two")  # folded into the retry: one publish in flight at a time
    await sync(bob)
    await app.nothing()
    app.answer = "result"
    retry = await advance_until_publish(app, clock, 1.0)
    assert summary(retry)["message-count"] == "2"
    await clock.advance(1000)
    await app.nothing()
    assert await stored_registrations(srv, alice) is not None  # 'wait' does not disable
    await bob.close()
    await app.close()
