"""XEP-0160 offline messages with XEP-0203 delay stamps, on a real server.

Durability is proved twice: across a graceful restart of an in-process server, and across a
SIGKILL of a real ``python -m salon serve`` process.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import ssl
import sys
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

import pytest
import trustme

from salon.auth.credentials import make_credentials
from salon.jid import JID
from salon.storage import open_storage
from tests.integration.harness import (
    DOMAINS,
    PASSWORD,
    RawClient,
    RunningServer,
    connect_slixmpp,
    issue_host_certs,
    q,
    raw_session,
    until,
)
from tests.integration.message_helpers import (
    MODULES,
    NS_CHATSTATES,
    NS_HINTS,
    available,
    delay_of,
    disco_features,
    el,
    is_error_message,
    is_message,
    send_message,
    sync,
)

Factory = Callable[..., Awaitable[RunningServer]]
STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


async def offline_count(srv: RunningServer, jid: str) -> int:
    return await srv.server.core.storage.offline.count(srv.domain, jid.split("@", 1)[0])


async def wait_until_empty(srv: RunningServer, jid: str) -> None:
    """The store is emptied once the client answered the server's confirming ping."""
    for _ in range(100):
        if await offline_count(srv, jid) == 0:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the delivered messages were not deleted")


async def test_offline_messages_arrive_in_order_with_delay_on_login(
    server_factory: Factory,
) -> None:
    srv = await server_factory(modules=MODULES)
    romeo_jid, juliet_jid = await srv.add_user("romeo"), await srv.add_user("juliet")
    romeo = await connect_slixmpp(srv, romeo_jid)
    before = datetime.now(UTC).replace(microsecond=0)
    bodies = [f"message {n}" for n in range(5)]
    for n, body in enumerate(bodies):
        send_message(romeo, juliet_jid, body, "chat" if n % 2 else None)  # chat and normal
    await sync(romeo)
    await romeo.expect_nothing(lambda s: s.name == "message")  # accepted: no error
    assert await offline_count(srv, juliet_jid) == 5

    juliet = await connect_slixmpp(srv, juliet_jid)
    await juliet.expect_nothing(is_message)  # XEP-0160 §2: not before available presence
    juliet.xmpp.send_presence()
    got = [await juliet.expect(is_message) for _ in bodies]
    assert [m["body"] for m in got] == bodies
    assert [m["type"] for m in got] == ["normal", "chat", "normal", "chat", "normal"]
    for message in got:
        assert str(message["from"]) == romeo.jid
        delay = delay_of(message)
        assert delay is not None and delay.get("from") == "localhost"
        stamp = delay.get("stamp") or ""
        assert STAMP.match(stamp), stamp
        assert datetime.fromisoformat(stamp) >= before
    await wait_until_empty(srv, juliet_jid)

    # Delivered once: a second resource coming online later gets nothing.
    second = await connect_slixmpp(srv, f"{juliet_jid}/second")
    await available(second)
    await second.expect_nothing(is_message)


async def test_headline_and_chat_state_only_messages_are_not_stored(
    server_factory: Factory,
) -> None:
    srv = await server_factory(modules=MODULES)
    romeo_jid, juliet_jid = await srv.add_user("romeo"), await srv.add_user("juliet")
    romeo = await connect_slixmpp(srv, romeo_jid)
    send_message(romeo, juliet_jid, "news", "headline")  # RFC 6121 §8.5.2.2.1: ignored
    send_message(romeo, juliet_jid, None, "chat", (el(NS_CHATSTATES, "composing"),))
    await sync(romeo)
    await romeo.expect_nothing(lambda s: s.name == "message")
    assert await offline_count(srv, juliet_jid) == 0
    juliet = await connect_slixmpp(srv, juliet_jid)
    await available(juliet)
    await juliet.expect_nothing(is_message)


async def test_full_queue_answers_service_unavailable(server_factory: Factory) -> None:
    srv = await server_factory(modules=MODULES, module_options={"offline": {"quota": 2}})
    romeo_jid, juliet_jid = await srv.add_user("romeo"), await srv.add_user("juliet")
    romeo = await connect_slixmpp(srv, romeo_jid)
    for body in ("one", "two", "three"):
        send_message(romeo, juliet_jid, body)
    # XEP-0160 §2 step 3: a full queue is answered with <service-unavailable/>.
    bounce = await romeo.expect(lambda s: is_error_message(s, "service-unavailable"))
    assert bounce["body"] == "three" and str(bounce["from"]) == juliet_jid
    await romeo.expect_nothing(lambda s: s.name == "message")
    juliet = await connect_slixmpp(srv, juliet_jid)
    await available(juliet)
    assert [(await juliet.expect(is_message))["body"] for _ in range(2)] == ["one", "two"]
    await juliet.expect_nothing(is_message)


async def test_no_store_hint_is_bounced_not_stored(server_factory: Factory) -> None:
    srv = await server_factory(modules=MODULES)
    romeo_jid, juliet_jid = await srv.add_user("romeo"), await srv.add_user("juliet")
    romeo = await connect_slixmpp(srv, romeo_jid)
    send_message(romeo, juliet_jid, "ephemeral", extra=(el(NS_HINTS, "no-store"),))
    await romeo.expect(lambda s: is_error_message(s, "service-unavailable"))
    assert await offline_count(srv, juliet_jid) == 0


async def test_negative_priority_gets_nothing_until_priority_is_raised(
    server_factory: Factory,
) -> None:
    srv = await server_factory(modules=MODULES)
    romeo_jid, juliet_jid = await srv.add_user("romeo"), await srv.add_user("juliet")
    romeo = await connect_slixmpp(srv, romeo_jid)
    juliet = await connect_slixmpp(srv, juliet_jid)
    await available(juliet, priority=-1)
    send_message(romeo, juliet_jid, "stored while you hid")
    await sync(romeo)
    await juliet.expect_nothing(is_message)  # RFC 6121 §8.5.2.1.2: never to negative ones
    assert await offline_count(srv, juliet_jid) == 1
    juliet.xmpp.send_presence(ppriority=1)  # still available, priority now non-negative
    message = await juliet.expect(is_message)
    assert message["body"] == "stored while you hid" and delay_of(message) is not None
    await wait_until_empty(srv, juliet_jid)


async def test_a_second_resource_does_not_get_what_the_first_is_being_given(
    server_factory: Factory,
) -> None:
    """Deliveries to one user are serialised: while the first resource has not yet confirmed
    its offline messages, a second one coming online waits, then finds them gone."""
    srv = await server_factory(modules=MODULES)
    romeo_jid, juliet_jid = await srv.add_user("romeo"), await srv.add_user("juliet")
    romeo = await connect_slixmpp(srv, romeo_jid)
    bodies = [f"m{n}" for n in range(20)]
    for body in bodies:
        send_message(romeo, juliet_jid, body)
    await sync(romeo)
    one, _full = await raw_session(srv, juliet_jid, resource="one")
    await one.send("<presence/>")
    got, ping = await read_offline(one)
    assert got == bodies
    two = await connect_slixmpp(srv, f"{juliet_jid}/two")
    two.xmpp.send_presence()
    await two.expect_nothing(is_message, within=0.5)
    await one.send(f"<iq type='result' id='{ping.get('id')}' to='{ping.get('from')}'/>")
    await wait_until_empty(srv, juliet_jid)
    await two.expect_nothing(is_message)


async def test_a_user_known_to_have_nothing_stored_gets_what_is_stored_later(
    server_factory: Factory,
) -> None:
    """The server remembers who has nothing stored, so coming online costs them no query; a
    message stored since is still delivered, on a priority raise as on the next login."""
    srv = await server_factory(modules=MODULES)
    romeo_jid, juliet_jid = await srv.add_user("romeo"), await srv.add_user("juliet")
    offline = srv.server.core.hosts[srv.domain].modules["offline"]
    romeo = await connect_slixmpp(srv, romeo_jid)
    juliet = await connect_slixmpp(srv, juliet_jid)
    await available(juliet)
    for _ in range(100):  # read at start, or the delivery found nothing and said so
        if offline.nothing_stored(JID.parse(juliet_jid)):
            break
        await asyncio.sleep(0.02)
    else:
        raise AssertionError("nothing stored was not remembered")

    juliet.xmpp.send_presence(ppriority=-1)
    await sync(juliet)
    send_message(romeo, juliet_jid, "while you hid")
    await sync(romeo)
    assert await offline_count(srv, juliet_jid) == 1
    juliet.xmpp.send_presence(ppriority=0)
    assert (await juliet.expect(is_message))["body"] == "while you hid"
    await wait_until_empty(srv, juliet_jid)
    await juliet.disconnect()

    send_message(romeo, juliet_jid, "while you were away")
    await sync(romeo)
    assert await offline_count(srv, juliet_jid) == 1
    juliet = await connect_slixmpp(srv, juliet_jid)
    juliet.xmpp.send_presence()
    assert (await juliet.expect(is_message))["body"] == "while you were away"
    await wait_until_empty(srv, juliet_jid)


async def read_offline(client: RawClient) -> tuple[list[str], ET.Element]:
    """The bodies of the messages a raw client receives, up to the server's ping."""
    bodies: list[str] = []
    while True:
        stanza = await client.next()
        if stanza.find(q("urn:xmpp:ping", "ping")) is not None:
            return bodies, stanza
        if stanza.tag == q("jabber:client", "message"):
            bodies.append(stanza.findtext(q("jabber:client", "body")) or "")


async def test_unconfirmed_delivery_keeps_the_messages(server_factory: Factory) -> None:
    """A client that drops the connection without answering the server's ping after its
    offline messages gets them again next time: nothing is lost with a dying socket."""
    srv = await server_factory(modules=MODULES)
    romeo_jid, juliet_jid = await srv.add_user("romeo"), await srv.add_user("juliet")
    romeo = await connect_slixmpp(srv, romeo_jid)
    for body in ("a", "b"):
        send_message(romeo, juliet_jid, body)
    await sync(romeo)
    raw, _full = await raw_session(srv, juliet_jid)
    await raw.send("<presence/>")
    bodies, _ping = await read_offline(raw)
    assert bodies == ["a", "b"]
    raw.writer.transport.abort()  # gone without answering the ping
    sessions = srv.server.core.sessions
    await until(lambda: not sessions.is_online(JID.parse(juliet_jid)), "the session to end")
    assert await offline_count(srv, juliet_jid) == 2
    juliet = await connect_slixmpp(srv, juliet_jid)
    juliet.xmpp.send_presence()
    assert [(await juliet.expect(is_message))["body"] for _ in range(2)] == ["a", "b"]
    await wait_until_empty(srv, juliet_jid)  # slixmpp answered the ping (with an error)


async def test_disco_advertises_msgoffline(server_factory: Factory) -> None:
    srv = await server_factory(modules=MODULES)
    client = await connect_slixmpp(srv, await srv.add_user())
    assert "msgoffline" in await disco_features(client, "localhost")


async def test_stored_messages_survive_a_restart(server_factory: Factory) -> None:
    srv = await server_factory(modules=MODULES)
    romeo_jid, juliet_jid = await srv.add_user("romeo"), await srv.add_user("juliet")
    romeo = await connect_slixmpp(srv, romeo_jid)
    send_message(romeo, juliet_jid, "before the restart")
    await sync(romeo)
    await romeo.disconnect()
    await srv.server.stop()

    again = await server_factory(data_dir=srv.data_dir, modules=MODULES)
    juliet = await connect_slixmpp(again, juliet_jid)
    juliet.xmpp.send_presence()
    message = await juliet.expect(is_message)
    assert message["body"] == "before the restart" and delay_of(message) is not None
    await wait_until_empty(again, juliet_jid)


# --------------------------------------------------------------------------- SIGKILL
@dataclass
class ServerProcess:
    """A ``python -m salon serve`` child process; quacks like RunningServer for clients."""

    process: asyncio.subprocess.Process
    ca: trustme.CA
    ca_path: Path
    port: int
    domain: str = "localhost"

    def client_ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        self.ca.configure_trust(ctx)
        return ctx


async def serve_process(
    data_dir: Path, ca: trustme.CA, modules: list[str] = MODULES
) -> ServerProcess:
    hosts = issue_host_certs(ca, data_dir, DOMAINS)
    ca_path = data_dir / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    tables = "".join(
        f'[hosts."{d}"]\ncertificate = "{h["certificate"]}"\nkey = "{h["key"]}"\n'
        for d, h in hosts.items()
    )
    config = data_dir / "salon.toml"
    config.write_text(
        f'[server]\ndata_dir = "{data_dir}"\nstorage = "sqlite:///salon.db"\n'
        'log_level = "warning"\n'
        '[c2s]\ninterfaces = ["127.0.0.1"]\nport = 0\ndirect_tls_port = 0\n'
        "[http]\nport = 0\ntls_port = 0\n"
        # no federation here: a fixed s2s port may be taken by another server on the machine
        "[s2s]\nenabled = false\nport = 0\ndirect_tls_port = 0\n"
        f"{tables}[modules]\nenabled = {modules!r}\n".replace("'", '"')
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "salon",
        "serve",
        "--config",
        str(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=(data_dir / "stderr.log").open("ab"),
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    while True:
        line = (await asyncio.wait_for(process.stdout.readline(), 15)).decode()
        assert line, (data_dir / "stderr.log").read_text()
        match = re.match(r"listening: c2s on 127\.0\.0\.1:(\d+)", line)
        if match:
            return ServerProcess(process, ca, ca_path, int(match[1]))


@pytest.fixture
async def processes() -> AsyncIterator[list[ServerProcess]]:
    started: list[ServerProcess] = []
    yield started
    for proc in started:
        if proc.process.returncode is None:
            proc.process.kill()
            await proc.process.wait()


async def test_stored_message_survives_sigkill(
    tmp_path: Path, ca: trustme.CA, processes: list[ServerProcess]
) -> None:
    """The push commits before the server goes on: once the sender's next stanza is
    answered, the message is on disk, whatever then happens to the process."""
    storage = await open_storage("sqlite:///salon.db", base_dir=tmp_path)
    try:
        for local in ("romeo", "juliet"):
            await storage.accounts.create("localhost", local, make_credentials(PASSWORD))
    finally:
        await storage.close()
    first = await serve_process(tmp_path, ca)
    processes.append(first)
    sender = await RawClient.connect(cast(RunningServer, first))
    await sender.login(cast(RunningServer, first), "romeo@localhost")
    await sender.send(
        "<message to='juliet@localhost' type='chat' id='m1'><body>survives</body></message>"
    )
    await sender.ping()  # answered only after the message was routed and stored
    first.process.send_signal(signal.SIGKILL)  # no graceful anything
    await first.process.wait()
    await sender.close()

    second = await serve_process(tmp_path, ca)
    processes.append(second)
    juliet = await connect_slixmpp(cast(RunningServer, second), "juliet@localhost")
    juliet.xmpp.send_presence()
    message = await juliet.expect(is_message)
    assert message["body"] == "survives" and str(message["from"]) == "romeo@localhost/raw"
    assert delay_of(message) is not None
    await juliet.disconnect()
