"""Federation between two Salon servers (RFC 6120 §13, XEP-0220, XEP-0185, XEP-0368).

capulet.example listens on 127.0.0.1 and montague.example on 127.0.0.2, each with its own
certificate; static overrides replace DNS. With both trusting the test CA the servers
authenticate with SASL EXTERNAL; with an untrusted CA they fall back to Server Dialback.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ssl
import sys
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme

from salon.app import App
from salon.config import DEFAULT_MODULES, settings_from_dict
from salon.core.clock import Clock, ManualClock
from tests.integration.harness import (
    NS_CLIENT,
    NS_STREAM,
    RawClient,
    RunningServer,
    free_port,
    issue_host_certs,
    q,
    server_settings,
    stanza_error_condition,
    until,
)

CAPULET = "capulet.example"
MONTAGUE = "montague.example"
VERONA = "verona.example"  # a second domain of the capulet server (piggy-backing)
CAPULET_ADDRESS = "127.0.0.1"
MONTAGUE_ADDRESS = "127.0.0.2"
MODULES = list(dict.fromkeys([*DEFAULT_MODULES, "roster", "offline"]))  # no duplicates
NS_TLS = "urn:ietf:params:xml:ns:xmpp-tls"
NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
TIMEOUT = 8.0


@dataclass
class Peer:
    """One federating server and where it listens."""

    srv: RunningServer
    address: str
    port: int

    @property
    def server(self) -> App:
        return self.srv.server


async def start_peer(
    data_dir: Path,
    ca: trustme.CA,
    domains: tuple[str, ...],
    address: str,
    port: int,
    *,
    trust: Path,
    overrides: dict[str, str],
    clock: Clock | None = None,
    **s2s: Any,
) -> Peer:
    data_dir.mkdir(parents=True, exist_ok=True)
    hosts = issue_host_certs(ca, data_dir, domains)
    data = server_settings(data_dir, hosts)
    data["modules"] = {"enabled": MODULES}
    data["s2s"] = {
        "enabled": True,
        "interfaces": [address],
        "port": port,
        "direct_tls_port": 0,
        "ca_file": str(trust),
        "overrides": overrides,
        "connect_timeout": 3.0,
        **s2s,
    }
    server = App(settings_from_dict(data), clock=clock)
    await server.start()
    ca_path = data_dir / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    return Peer(RunningServer(server, ca, ca_path, data_dir, domain=domains[0]), address, port)


@dataclass
class Verona:
    """The two servers of a test, started on demand."""

    capulet: Peer
    montague: Peer


Federation = Callable[..., Awaitable[Verona]]


@pytest.fixture
async def federation(tmp_path: Path, ca: trustme.CA) -> AsyncIterator[Federation]:
    started: list[Peer] = []
    ca_pem = tmp_path / "trusted-ca.pem"
    ca.cert_pem.write_to_path(str(ca_pem))
    untrusted = tmp_path / "untrusted-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(untrusted))

    async def make(
        *,
        dialback: bool = False,
        capulet: dict[str, Any] | None = None,
        montague: dict[str, Any] | None = None,
        capulet_domains: tuple[str, ...] = (CAPULET,),
        extra_overrides: dict[str, str] | None = None,
        capulet_clock: Clock | None = None,
    ) -> Verona:
        trust = untrusted if dialback else ca_pem
        c_port, m_port = free_port(CAPULET_ADDRESS), free_port(MONTAGUE_ADDRESS)
        to_capulet = {domain: f"{CAPULET_ADDRESS}:{c_port}" for domain in capulet_domains}
        c = await start_peer(
            tmp_path / f"capulet{len(started)}",
            ca,
            capulet_domains,
            CAPULET_ADDRESS,
            c_port,
            trust=trust,
            overrides={MONTAGUE: f"{MONTAGUE_ADDRESS}:{m_port}", **(extra_overrides or {})},
            clock=capulet_clock,
            **(capulet or {}),
        )
        started.append(c)
        m = await start_peer(
            tmp_path / f"montague{len(started)}",
            ca,
            (MONTAGUE,),
            MONTAGUE_ADDRESS,
            m_port,
            trust=trust,
            overrides=to_capulet,
            **(montague or {}),
        )
        started.append(m)
        return Verona(c, m)

    yield make
    for peer in reversed(started):
        with contextlib.suppress(Exception):
            await peer.server.stop()


# --------------------------------------------------------------------------- clients
async def login(peer: Peer, local: str, resource: str = "raw", domain: str | None = None) -> Any:
    domain = domain or peer.srv.domain
    jid = await peer.srv.add_user(local, domain=domain)
    client = await RawClient.connect(peer.srv)
    full = await client.login(peer.srv, jid, resource=resource, domain=domain)
    client.full = full  # type: ignore[attr-defined]
    return client


async def available(client: RawClient) -> None:
    await client.send("<presence/>")
    with contextlib.suppress(AssertionError):
        while True:  # our own presence (and whatever else arrives first)
            await client.next(0.3)


async def expect(
    client: RawClient, tag: str, predicate: Callable[[ET.Element], bool] = lambda e: True
) -> ET.Element:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TIMEOUT
    while True:
        element = await client.next(max(deadline - loop.time(), 0.01))
        if element.tag == q(NS_CLIENT, tag) and predicate(element):
            return element


def body(element: ET.Element) -> str | None:
    return element.findtext(q(NS_CLIENT, "body"))


def chat(to: str, text: str, msg_id: str = "m1") -> str:
    return f"<message to='{to}' type='chat' id='{msg_id}'><body>{text}</body></message>"


# --------------------------------------------------------------------------- messages
@pytest.mark.parametrize("dialback", [False, True], ids=["sasl-external", "dialback"])
async def test_message_to_online_remote_user(federation: Federation, dialback: bool) -> None:
    pair = await federation(dialback=dialback)
    romeo = await login(pair.montague, "romeo")
    await available(romeo)
    juliet = await login(pair.capulet, "juliet")
    await juliet.send(chat(f"romeo@{MONTAGUE}", "Wherefore art thou?"))
    msg = await expect(romeo, "message", lambda e: body(e) == "Wherefore art thou?")
    assert msg.get("from") == juliet.full and msg.get("to") == f"romeo@{MONTAGUE}"
    # And back the other way, over the connection montague opens.
    await romeo.send(chat(juliet.full, "Here!", "m2"))
    reply = await expect(juliet, "message", lambda e: body(e) == "Here!")
    assert reply.get("from") == romeo.full
    await juliet.expect_nothing(0.2)  # no error bounced
    mechanism = "dialback" if dialback else "EXTERNAL"
    conns = list(pair.capulet.server.s2s.outgoing)
    assert len(conns) == 1 and conns[0].stream.authorized == {CAPULET}
    assert (mechanism == "EXTERNAL") == conns[0].stream._external_done


async def test_message_to_offline_remote_user_is_stored_there(federation: Federation) -> None:
    pair = await federation()
    await pair.montague.srv.add_user("romeo", domain=MONTAGUE)
    juliet = await login(pair.capulet, "juliet")
    await juliet.send(chat(f"romeo@{MONTAGUE}", "Call me but love"))
    await juliet.expect_nothing(1.0)  # stored by montague.example, not bounced
    romeo = await RawClient.connect(pair.montague.srv)
    await romeo.login(pair.montague.srv, f"romeo@{MONTAGUE}", domain=MONTAGUE)
    await romeo.send("<presence/>")
    msg = await expect(romeo, "message", lambda e: body(e) == "Call me but love")
    assert msg.get("from") == juliet.full
    assert msg.find("{urn:xmpp:delay}delay") is not None


async def test_message_to_unknown_remote_user_bounces_back(federation: Federation) -> None:
    pair = await federation()
    juliet = await login(pair.capulet, "juliet")
    await juliet.send(chat(f"nobody@{MONTAGUE}", "anyone?", "n1"))
    error = await expect(juliet, "message", lambda e: e.get("type") == "error")
    assert stanza_error_condition(error) == "service-unavailable"
    assert error.get("from") == f"nobody@{MONTAGUE}" and error.get("id") == "n1"


# --------------------------------------------------------------------------- presence
async def test_mutual_subscription_and_presence_across_servers(federation: Federation) -> None:
    pair = await federation()
    juliet = await login(pair.capulet, "juliet")
    romeo = await login(pair.montague, "romeo")
    for client in (juliet, romeo):
        await client.send("<iq type='get' id='r0'><query xmlns='jabber:iq:roster'/></iq>")
        await expect(client, "iq", lambda e: e.get("id") == "r0")
        await available(client)
    romeo_bare, juliet_bare = f"romeo@{MONTAGUE}", f"juliet@{CAPULET}"

    await juliet.send(f"<presence to='{romeo_bare}' type='subscribe'/>")
    request = await expect(romeo, "presence", lambda e: e.get("type") == "subscribe")
    assert request.get("from") == juliet_bare
    await romeo.send(f"<presence to='{juliet_bare}' type='subscribed'/>")
    await expect(juliet, "presence", lambda e: e.get("type") == "subscribed")
    # Juliet now sees Romeo's availability (the probe/answer crossed the servers).
    await expect(juliet, "presence", lambda e: e.get("from") == romeo.full and not e.get("type"))

    await romeo.send(f"<presence to='{juliet_bare}' type='subscribe'/>")
    await expect(juliet, "presence", lambda e: e.get("type") == "subscribe")
    await juliet.send(f"<presence to='{romeo_bare}' type='subscribed'/>")
    await expect(romeo, "presence", lambda e: e.get("from") == juliet.full and not e.get("type"))

    # Broadcasts now flow both ways.
    await romeo.send("<presence><show>away</show></presence>")
    away = await expect(juliet, "presence", lambda e: e.findtext(q(NS_CLIENT, "show")) == "away")
    assert away.get("from") == romeo.full
    await juliet.send("<presence type='unavailable'/>")
    gone = await expect(romeo, "presence", lambda e: e.get("type") == "unavailable")
    assert gone.get("from") == juliet.full


# --------------------------------------------------------------------------- iq
async def test_iq_ping_to_a_remote_user_and_server(federation: Federation) -> None:
    pair = await federation()
    romeo = await login(pair.montague, "romeo")
    juliet = await login(pair.capulet, "juliet")
    await juliet.send(
        f"<iq type='get' id='p1' to='{romeo.full}'><ping xmlns='urn:xmpp:ping'/></iq>"
    )
    ping = await expect(romeo, "iq", lambda e: e.get("id") == "p1")
    assert ping.get("from") == juliet.full and ping.get("type") == "get"
    await romeo.send(f"<iq type='result' id='p1' to='{juliet.full}'/>")
    result = await expect(juliet, "iq", lambda e: e.get("id") == "p1")
    assert result.get("type") == "result" and result.get("from") == romeo.full

    # The remote server answers for itself; the reply crosses back over federation.
    await juliet.send(f"<iq type='get' id='p2' to='{MONTAGUE}'><ping xmlns='urn:xmpp:ping'/></iq>")
    result = await expect(juliet, "iq", lambda e: e.get("id") == "p2")
    assert result.get("type") == "result" and result.get("from") == MONTAGUE


# --------------------------------------------------------------------------- bounces
async def test_unreachable_domain_bounces_remote_server_not_found(federation: Federation) -> None:
    closed_port = free_port(CAPULET_ADDRESS)
    pair = await federation(extra_overrides={"nowhere.example": f"127.0.0.1:{closed_port}"})
    juliet = await login(pair.capulet, "juliet")
    for n in range(3):
        await juliet.send(chat("ghost@nowhere.example", f"hello {n}", f"g{n}"))
    for n in range(3):
        error = await expect(juliet, "message", lambda e, n=n: e.get("id") == f"g{n}")
        assert error.get("type") == "error"
        assert stanza_error_condition(error) == "remote-server-not-found"
        assert body(error) == f"hello {n}"
    assert not pair.capulet.server.s2s.routes


@contextlib.asynccontextmanager
async def silent_peer(address: str, *, close_after: float) -> AsyncIterator[int]:
    """A TCP server that accepts, reads and answers nothing, then drops the connection."""
    accepted = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal accepted
        accepted += 1
        with contextlib.suppress(Exception):
            await asyncio.wait_for(reader.read(65536), close_after)
        await asyncio.sleep(close_after)
        writer.close()

    srv = await asyncio.start_server(handle, address, 0)
    try:
        yield int(srv.sockets[0].getsockname()[1])
    finally:
        srv.close()


async def test_peer_going_down_mid_queue_bounces_every_queued_stanza(
    federation: Federation,
) -> None:
    async with silent_peer("127.0.0.3", close_after=0.5) as port:
        pair = await federation(
            extra_overrides={"dying.example": f"127.0.0.3:{port}"}, capulet={"max_queue": 3}
        )
        juliet = await login(pair.capulet, "juliet")
        for n in range(4):
            await juliet.send(chat("mercutio@dying.example", f"m{n}", f"d{n}"))
        # The queue holds three; the fourth bounces at once (a bounded queue).
        overflow = await expect(juliet, "message", lambda e: e.get("id") == "d3")
        assert stanza_error_condition(overflow) == "resource-constraint"
        # The peer then drops the connection: every queued stanza comes back.
        for n in range(3):
            error = await expect(juliet, "message", lambda e, n=n: e.get("id") == f"d{n}")
            assert stanza_error_condition(error) == "remote-server-timeout"
        await juliet.expect_nothing(0.2)


async def test_silent_peer_times_out_and_bounces(federation: Federation) -> None:
    async with silent_peer("127.0.0.3", close_after=30) as port:
        pair = await federation(
            extra_overrides={"slow.example": f"127.0.0.3:{port}"},
            capulet={"connect_timeout": 0.5},
        )
        juliet = await login(pair.capulet, "juliet")
        await juliet.send(chat("tybalt@slow.example", "draw!", "t1"))
        error = await expect(juliet, "message", lambda e: e.get("id") == "t1")
        assert stanza_error_condition(error) == "remote-server-timeout"


async def test_peer_restart_bounces_then_reconnects_on_demand(federation: Federation) -> None:
    pair = await federation()
    romeo = await login(pair.montague, "romeo")
    await available(romeo)
    juliet = await login(pair.capulet, "juliet")
    await juliet.send(chat(romeo.full, "one"))
    await expect(romeo, "message", lambda e: body(e) == "one")
    await pair.montague.server.stop()
    s2s = pair.capulet.server.s2s
    await until(lambda: not s2s.outgoing, "the peer's shutdown to close the stream")
    await juliet.send(chat(romeo.full, "two", "m2"))
    error = await expect(juliet, "message", lambda e: e.get("id") == "m2")
    assert stanza_error_condition(error) == "remote-server-not-found"
    # montague.example comes back on the same address: the next stanza reconnects.
    data = pair.montague.srv.data_dir
    settings = pair.montague.server.settings
    revived = App(settings)
    await revived.start()
    try:
        peer = Peer(
            RunningServer(revived, pair.montague.srv.ca, data / "ca.pem", data, MONTAGUE),
            MONTAGUE_ADDRESS,
            pair.montague.port,
        )
        romeo2 = await login(peer, "romeo2")
        await available(romeo2)
        await juliet.send(chat(romeo2.full, "three", "m3"))
        await expect(romeo2, "message", lambda e: body(e) == "three")
    finally:
        await revived.stop()


async def test_idle_connection_closes_and_reopens(federation: Federation) -> None:
    clock = ManualClock()  # capulet's time: its idle sweep runs when the test moves it
    pair = await federation(capulet={"idle_timeout": 60}, capulet_clock=clock)
    romeo = await login(pair.montague, "romeo")
    await available(romeo)
    juliet = await login(pair.capulet, "juliet")
    await juliet.send(chat(romeo.full, "before"))
    await expect(romeo, "message", lambda e: body(e) == "before")
    s2s = pair.capulet.server.s2s
    [conn] = s2s.outgoing
    await clock.advance(59)
    assert s2s.outgoing == {conn}, "closed before idle_timeout"
    await clock.advance(2)
    await until(lambda: not s2s.outgoing, "the idle connection to close")
    await juliet.send(chat(romeo.full, "after", "m2"))
    await expect(romeo, "message", lambda e: body(e) == "after")
    assert s2s.outgoing and conn not in s2s.outgoing  # a fresh connection


# --------------------------------------------------------------------------- policies
async def test_disabled_federation_answers_remote_server_not_found(
    federation: Federation,
) -> None:
    pair = await federation(capulet={"enabled": False})
    juliet = await login(pair.capulet, "juliet")
    await juliet.send(chat(f"romeo@{MONTAGUE}", "hi", "x1"))
    error = await expect(juliet, "message", lambda e: e.get("id") == "x1")
    assert stanza_error_condition(error) == "remote-server-not-found"
    assert "s2s" not in pair.capulet.server.listeners


async def test_deny_list_bounces_and_refuses_the_peer(federation: Federation) -> None:
    pair = await federation(capulet={"deny": [MONTAGUE]}, montague={"deny": [CAPULET]})
    juliet = await login(pair.capulet, "juliet")
    await juliet.send(chat(f"romeo@{MONTAGUE}", "hi", "x1"))
    error = await expect(juliet, "message", lambda e: e.get("id") == "x1")
    assert stanza_error_condition(error) == "remote-server-not-found"
    romeo = await login(pair.montague, "romeo")
    await romeo.send(chat(f"juliet@{CAPULET}", "hi", "x2"))
    error = await expect(romeo, "message", lambda e: e.get("id") == "x2")
    assert stanza_error_condition(error) == "remote-server-not-found"


async def test_allow_list_admits_only_listed_domains(federation: Federation) -> None:
    pair = await federation(capulet={"allow": ["friends.example"]})
    juliet = await login(pair.capulet, "juliet")
    await juliet.send(chat(f"romeo@{MONTAGUE}", "hi", "x1"))
    error = await expect(juliet, "message", lambda e: e.get("id") == "x1")
    assert "federate" in (error.findtext(f".//{{{NS_STANZAS}}}text") or "")


NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"


async def test_require_certificate_refuses_a_dialback_only_peer(federation: Federation) -> None:
    # montague.example trusts nobody's CA and insists on certificates: capulet.example can
    # only offer dialback, which montague.example refuses.
    pair = await federation(dialback=True, montague={"require_certificate": True})
    juliet = await login(pair.capulet, "juliet")
    await juliet.send(chat(f"romeo@{MONTAGUE}", "hi", "x1"))
    error = await expect(juliet, "message", lambda e: e.get("id") == "x1")
    assert stanza_error_condition(error) == "remote-server-timeout"


async def test_piggybacking_a_second_domain_on_one_connection(federation: Federation) -> None:
    pair = await federation(capulet_domains=(CAPULET, VERONA))
    romeo = await login(pair.montague, "romeo")
    await available(romeo)
    juliet = await login(pair.capulet, "juliet")
    await juliet.send(chat(romeo.full, "from capulet"))
    await expect(romeo, "message", lambda e: body(e) == "from capulet")
    nurse = await login(pair.capulet, "nurse", domain=VERONA)
    await nurse.send(chat(romeo.full, "from verona", "v1"))
    msg = await expect(romeo, "message", lambda e: body(e) == "from verona")
    assert msg.get("from") == nurse.full
    (conn,) = pair.capulet.server.s2s.outgoing  # one connection carries both domains
    assert conn.stream.authorized == {CAPULET, VERONA}


async def test_direct_tls_connection(federation: Federation, tmp_path: Path) -> None:
    pair = await federation()
    direct_port = pair.montague.server.port("s2s_direct_tls")
    pair.capulet.server.s2s.resolver.overrides[MONTAGUE] = (MONTAGUE_ADDRESS, direct_port, True)
    romeo = await login(pair.montague, "romeo")
    await available(romeo)
    juliet = await login(pair.capulet, "juliet")
    await juliet.send(chat(romeo.full, "over xmpps"))
    await expect(romeo, "message", lambda e: body(e) == "over xmpps")
    (conn,) = pair.capulet.server.s2s.outgoing
    assert conn.target is not None and conn.target.is_direct_tls


# --------------------------------------------------------------------------- forgery
def server_header(from_: str, to: str) -> str:
    return (
        f"<?xml version='1.0'?><stream:stream xmlns='jabber:server' "
        f"xmlns:stream='{NS_STREAM}' xmlns:db='jabber:server:dialback' "
        f"from='{from_}' to='{to}' version='1.0'>"
    )


async def raw_server_stream(
    peer: Peer, ca: trustme.CA, claimed: str, *, certificate: str | None
) -> tuple[RawClient, ET.Element]:
    """A hand-driven server connection to ``peer`` claiming to be ``claimed``, after
    STARTTLS (presenting a certificate for ``certificate`` if given)."""
    reader, writer = await asyncio.open_connection(peer.address, peer.port)
    raw = RawClient(reader, writer)
    header = server_header(claimed, peer.srv.domain)
    await raw.open(header=header)
    await raw.send(f"<starttls xmlns='{NS_TLS}'/>")
    assert (await raw.next()).tag == q(NS_TLS, "proceed")
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ca.configure_trust(ctx)
    if certificate is not None:
        ca.issue_cert(certificate).configure_cert(ctx)
    await writer.start_tls(ctx, server_hostname=peer.srv.domain)
    features = await raw.open(header=header)
    return raw, features


async def test_forged_from_on_an_authenticated_stream_is_invalid_from(
    federation: Federation, ca: trustme.CA
) -> None:
    pair = await federation()
    romeo = await login(pair.montague, "romeo")
    await available(romeo)
    raw, features = await raw_server_stream(pair.montague, ca, CAPULET, certificate=CAPULET)
    mechanisms = [m.text for m in features.iter(q(NS_SASL, "mechanism"))]
    assert mechanisms == ["EXTERNAL"]
    authzid = base64.b64encode(CAPULET.encode()).decode()
    await raw.send(f"<auth xmlns='{NS_SASL}' mechanism='EXTERNAL'>{authzid}</auth>")
    assert (await raw.next()).tag == q(NS_SASL, "success")
    await raw.open(header=server_header(CAPULET, MONTAGUE))
    await raw.send(
        f"<message from='juliet@{CAPULET}/x' to='{romeo.full}' type='chat'><body>ok</body>"
        "</message>"
    )
    await expect(romeo, "message", lambda e: body(e) == "ok")
    await raw.send(
        f"<message from='eve@evil.example' to='{romeo.full}' type='chat'><body>forged</body>"
        "</message>"
    )
    await raw.expect_stream_error("invalid-from")
    await romeo.expect_nothing(0.3)


async def test_forged_dialback_key_is_refused(federation: Federation, ca: trustme.CA) -> None:
    # Someone without capulet.example's certificate claims to be it: montague.example asks
    # the real capulet.example, which does not know the key.
    pair = await federation()
    raw, features = await raw_server_stream(pair.montague, ca, CAPULET, certificate=None)
    assert features.find(q(NS_SASL, "mechanisms")) is None  # no certificate, no EXTERNAL
    assert features.find("{urn:xmpp:features:dialback}dialback") is not None
    await raw.send(f"<db:result from='{CAPULET}' to='{MONTAGUE}'>{'ab' * 32}</db:result>")
    answer = await raw.next(TIMEOUT)
    assert answer.tag == "{jabber:server:dialback}result"
    assert answer.get("type") == "invalid"
    await raw.send(
        f"<message from='juliet@{CAPULET}' to='romeo@{MONTAGUE}'><body>x</body></message>"
    )
    await raw.expect_stream_error("not-authorized")


# --------------------------------------------------------------------------- STARTTLS races
# A peer server in its own process, as in production: it opens a stream, asks for STARTTLS
# and starts the TLS handshake (presenting a client certificate) the moment <proceed/> is in,
# then restarts the stream and waits for the new features. It stops at the first round that
# fails and says why.
PEER_STARTTLS_ROUNDS = """
import socket, ssl, sys
address, port, rounds, cert, key, timeout = sys.argv[1:7]
header = (
    "<?xml version='1.0'?><stream:stream xmlns='jabber:server' "
    "xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' "
    "from='capulet.example' to='montague.example' version='1.0'>"
).encode()
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
ctx.load_cert_chain(cert, key)

def read_until(sock, marker):
    data = b""
    while marker not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before {marker!r}; got {data[-200:]!r}")
        data += chunk
    return data

for n in range(int(rounds)):
    sock = socket.create_connection((address, int(port)), timeout=float(timeout))
    try:
        sock.sendall(header)
        read_until(sock, b"</stream:features>")
        sock.sendall(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        read_until(sock, b"<proceed")
        tls = ctx.wrap_socket(sock, server_hostname="montague.example")
        tls.sendall(header)
        read_until(tls, b"</stream:features>")
        tls.close()
    except Exception as exc:
        print(f"round {n + 1} failed: {exc!r}")
        sys.exit(1)
print(f"{rounds} rounds ok")
"""


@pytest.mark.parametrize("loop_name", ["asyncio", "uvloop"])
def test_starttls_when_the_client_hello_follows_proceed_at_once(
    tmp_path: Path, ca: trustme.CA, loop_name: str
) -> None:
    """Regression (issue 9): the ClientHello of a peer that starts TLS the moment it reads
    <proceed/> must reach the TLS layer; it was once held back with the bytes meant for
    after the handshake, and the handshake stalled until connect_timeout. ``salon serve``
    runs on uvloop, where that window was widest; both loops are tried."""
    import uvloop  # a dependency of Salon (salon serve installs it)

    factory = uvloop.new_event_loop if loop_name == "uvloop" else asyncio.new_event_loop
    peer_cert = ca.issue_cert(CAPULET)
    cert_path, key_path = tmp_path / "peer.crt", tmp_path / "peer.key"
    peer_cert.cert_chain_pems[0].write_to_path(str(cert_path))
    peer_cert.private_key_pem.write_to_path(str(key_path))
    trust = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(trust))
    rounds = 30

    async def run() -> tuple[int, str]:
        port = free_port(MONTAGUE_ADDRESS)
        peer = await start_peer(
            tmp_path / "montague",
            ca,
            (MONTAGUE,),
            MONTAGUE_ADDRESS,
            port,
            trust=trust,
            overrides={},
            connect_timeout=2.0,
        )
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                PEER_STARTTLS_ROUNDS,
                MONTAGUE_ADDRESS,
                str(port),
                str(rounds),
                str(cert_path),
                str(key_path),
                "5",
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
            output, _ = await asyncio.wait_for(process.communicate(), 60)
            assert process.returncode is not None
            return process.returncode, output.decode(errors="replace")
        finally:
            await peer.server.stop()

    with asyncio.Runner(loop_factory=factory) as runner:
        returncode, output = runner.run(run())
    assert returncode == 0 and f"{rounds} rounds ok" in output, output


@contextlib.asynccontextmanager
async def peer_that_stalls_in_tls(address: str) -> AsyncIterator[tuple[int, asyncio.Future[bytes]]]:
    """A server that negotiates up to <proceed/> and then never answers the ClientHello;
    the future gets every byte it received after <proceed/>, once the connection ends."""
    loop = asyncio.get_running_loop()
    after_proceed: asyncio.Future[bytes] = loop.create_future()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b">")  # <?xml ...?>
            await reader.readuntil(b">")  # <stream:stream ...>
            writer.write(
                server_header("mute.example", CAPULET).encode()
                + f"<stream:features><starttls xmlns='{NS_TLS}'><required/></starttls>"
                "</stream:features>".encode()
            )
            await reader.readuntil(b"/>")  # <starttls/>
            writer.write(f"<proceed xmlns='{NS_TLS}'/>".encode())
            received = b""
            while chunk := await reader.read(65536):
                received += chunk
            after_proceed.set_result(received)
        except Exception as exc:
            if not after_proceed.done():
                after_proceed.set_exception(exc)
        finally:
            writer.close()

    srv = await asyncio.start_server(handle, address, 0)
    try:
        yield int(srv.sockets[0].getsockname()[1]), after_proceed
    finally:
        srv.close()


async def test_no_plaintext_is_written_into_a_tls_handshake(federation: Federation) -> None:
    """Regression (issue 9): a stream closed while its TLS handshake was running wrote its
    stream error in plaintext underneath TLS (the peer's TLS layer saw WRONG_VERSION_NUMBER).
    During the handshake only TLS records may go out."""
    async with peer_that_stalls_in_tls("127.0.0.3") as (port, after_proceed):
        pair = await federation(
            extra_overrides={"mute.example": f"127.0.0.3:{port}"},
            capulet={"connect_timeout": 1.0},
        )
        juliet = await login(pair.capulet, "juliet")
        await juliet.send(chat("tybalt@mute.example", "draw!", "t1"))
        error = await expect(juliet, "message", lambda e: e.get("id") == "t1")
        assert stanza_error_condition(error) == "remote-server-timeout"
        received = await asyncio.wait_for(after_proceed, TIMEOUT)
    assert received[:1] == b"\x16", received[:40]  # a TLS handshake record: the ClientHello
    assert b"stream:error" not in received and b"</stream:stream>" not in received, received


async def close_all_federation(*peers: Peer) -> None:
    """Close every s2s connection of ``peers`` and wait until they are gone, so the next
    stanza opens fresh ones (new TCP, new STARTTLS, new authentication)."""
    for peer in peers:
        peer.server.s2s.close_connections()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TIMEOUT
    while any(p.server.s2s.outgoing or p.server.s2s.incoming for p in peers):
        assert loop.time() < deadline, "s2s connections did not close"
        await asyncio.sleep(0.02)
    assert not any(p.server.s2s.routes for p in peers)


@pytest.mark.parametrize("dialback", [False, True], ids=["sasl-external", "dialback"])
async def test_both_servers_initiate_at_the_same_moment(
    federation: Federation, dialback: bool
) -> None:
    """Issue 9: each server opens its connection to the other at the same moment, so each
    verifies the other's dialback key while its own is being verified. Every round starts
    from no connection at all, and every message arrives."""
    pair = await federation(dialback=dialback)
    romeo = await login(pair.montague, "romeo")
    juliet = await login(pair.capulet, "juliet")
    await available(romeo)
    await available(juliet)
    for n in range(5):
        await asyncio.gather(
            juliet.send(chat(romeo.full, f"to romeo {n}", f"j{n}")),
            romeo.send(chat(juliet.full, f"to juliet {n}", f"r{n}")),
        )
        got_romeo, got_juliet = await asyncio.gather(
            expect(romeo, "message", lambda e, n=n: body(e) == f"to romeo {n}"),
            expect(juliet, "message", lambda e, n=n: body(e) == f"to juliet {n}"),
        )
        assert got_romeo.get("from") == juliet.full and got_juliet.get("from") == romeo.full
        outgoing = [*pair.capulet.server.s2s.outgoing, *pair.montague.server.s2s.outgoing]
        assert len(outgoing) == 2 and all(conn.stream.authorized for conn in outgoing)
        await close_all_federation(pair.capulet, pair.montague)
    await juliet.expect_nothing(0.2)  # nothing bounced
    await romeo.expect_nothing(0.2)
