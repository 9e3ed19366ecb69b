"""XEP-0065 SOCKS5 Bytestreams proxy at proxy.localhost: discovery, a file transfer between
two slixmpp clients through the real relay, activation errors, and the relay's bounds (byte
cap, back-pressure, activation timeout on the injected clock) over real sockets."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import slixmpp
import trustme
from slixmpp.exceptions import IqError

from salon.app import App
from salon.config import DEFAULT_MODULES, settings_from_dict
from salon.core.bytestreams import dst_addr
from salon.core.clock import Clock, ManualClock
from salon.net.socks5 import RelayConnection
from tests.integration.harness import (
    DOMAINS,
    RunningServer,
    SlixClient,
    connect_slixmpp,
    issue_host_certs,
    server_settings,
)

PROXY = "proxy.localhost"
TIMEOUT = 5.0
StartProxy = Callable[..., Awaitable[RunningServer]]


@pytest.fixture
async def start_proxy(tmp_path: Path, ca: trustme.CA) -> AsyncIterator[StartProxy]:
    apps: list[App] = []

    async def start(clock: Clock | None = None, **socks5: Any) -> RunningServer:
        data_dir = tmp_path / f"server{len(apps)}"
        data_dir.mkdir()
        data = server_settings(data_dir, issue_host_certs(ca, data_dir, DOMAINS))
        data["modules"] = {"enabled": [*DEFAULT_MODULES, "proxy65"]}
        data["socks5"] = {"port": 0, **socks5}
        app = App(settings_from_dict(data), clock=clock)
        await app.start()
        apps.append(app)
        ca_path = data_dir / "ca.pem"
        ca.cert_pem.write_to_path(str(ca_path))
        return RunningServer(app, ca, ca_path, data_dir)

    yield start
    for app in apps:
        await app.stop()


def with_s5b(xmpp: slixmpp.ClientXMPP) -> None:
    xmpp.register_plugin("xep_0030")
    xmpp.register_plugin("xep_0065", {"auto_accept": True})


async def login(srv: RunningServer) -> SlixClient:
    return await connect_slixmpp(srv, await srv.add_user(), configure=with_s5b)


# ------------------------------------------------------------------ raw SOCKS5 client
# Keep every StreamWriter referenced: a collected writer closes its connection.
async def socks5_connect(
    port: int, address: str, greeting: bytes = b"\x05\x01\x00", command: int = 1
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]:
    """Greeting and CONNECT request; returns the streams and the CONNECT reply."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(greeting)
    method = await asyncio.wait_for(reader.readexactly(2), TIMEOUT)
    if method != b"\x05\x00":
        return reader, writer, method
    raw = address.encode()
    writer.write(bytes((5, command, 0, 3, len(raw))) + raw + b"\x00\x00")
    head = await asyncio.wait_for(reader.readexactly(5), TIMEOUT)
    rest = await asyncio.wait_for(reader.readexactly(head[4] + 2), TIMEOUT)
    return reader, writer, head + rest


async def closed_by_relay(reader: asyncio.StreamReader) -> bytes:
    """Everything the relay still sends before it closes the connection."""
    data = b""
    while True:
        try:
            chunk = await asyncio.wait_for(reader.read(65536), TIMEOUT)
        except ConnectionError:
            return data
        if not chunk:
            return data
        data += chunk


async def activate(client: SlixClient, sid: str, target: str) -> None:
    await client.xmpp.plugin["xep_0065"].activate(PROXY, sid, target, timeout=TIMEOUT)


# ------------------------------------------------------------------ discovery
async def test_proxy_is_discovered_with_its_identity_and_streamhost(
    start_proxy: StartProxy,
) -> None:
    srv = await start_proxy()
    alice = await login(srv)
    disco = alice.xmpp.plugin["xep_0030"]
    items = await disco.get_items("localhost", timeout=TIMEOUT)
    assert PROXY in {item[0] for item in items["disco_items"]["items"]}
    info = await disco.get_info(PROXY, timeout=TIMEOUT)
    assert ("proxy", "bytestreams") in {i[:2] for i in info["disco_info"]["identities"]}
    assert "http://jabber.org/protocol/bytestreams" in info["disco_info"]["features"]
    proxies = await alice.xmpp.plugin["xep_0065"].discover_proxies(timeout=TIMEOUT)
    assert proxies == {slixmpp.JID(PROXY): ("127.0.0.1", str(srv.server.port("socks5")))}
    await alice.disconnect()


async def test_public_host_and_port_are_announced(start_proxy: StartProxy) -> None:
    srv = await start_proxy(public_host="files.example.org", public_port=1080)
    alice = await login(srv)
    reply = await alice.xmpp.plugin["xep_0065"].get_network_address(PROXY, timeout=TIMEOUT)
    host = reply["socks"]["streamhost"]
    assert (str(host["jid"]), host["host"], int(host["port"])) == (
        PROXY,
        "files.example.org",
        1080,
    )
    await alice.disconnect()


# ------------------------------------------------------------------ a transfer
async def test_two_clients_transfer_a_file_through_the_proxy(start_proxy: StartProxy) -> None:
    srv = await start_proxy()
    alice, bob = await login(srv), await login(srv)
    received = bytearray()
    done = asyncio.Event()
    payload = os.urandom(300_000)
    bob.xmpp.add_event_handler("socks5_data", lambda data: received.extend(data))
    bob.xmpp.add_event_handler("socks5_closed", lambda _exc: done.set())

    sock = await asyncio.wait_for(
        alice.xmpp.plugin["xep_0065"].handshake(bob.jid, timeout=TIMEOUT), TIMEOUT
    )
    assert sock is not None
    for start in range(0, len(payload), 16384):
        await sock.write(payload[start : start + 16384])
    sock.transport.close()  # the end of the file: the relay closes bob's side after flushing
    await asyncio.wait_for(done.wait(), TIMEOUT)
    assert hashlib.sha256(received).digest() == hashlib.sha256(payload).digest()
    assert srv.server.socks5 is not None and not srv.server.socks5.transfers
    await alice.disconnect()
    await bob.disconnect()


# ------------------------------------------------------------------ activation errors
async def test_activating_an_unknown_stream_is_item_not_found(start_proxy: StartProxy) -> None:
    srv = await start_proxy()
    alice = await login(srv)
    with pytest.raises(IqError) as err:
        await activate(alice, "no-such-sid", "bob@localhost/x")
    assert err.value.condition == "item-not-found"
    await alice.disconnect()


async def test_activating_with_one_side_connected_is_not_allowed(
    start_proxy: StartProxy,
) -> None:
    srv = await start_proxy()
    alice = await login(srv)
    target = "bob@localhost/x"
    _, writer, answer = await socks5_connect(
        srv.server.port("socks5"), dst_addr("s1", alice.jid, target)
    )
    assert answer[1] == 0
    with pytest.raises(IqError) as err:
        await activate(alice, "s1", target)
    assert err.value.condition == "not-allowed"
    writer.close()
    await alice.disconnect()


async def test_only_the_requester_can_activate(start_proxy: StartProxy) -> None:
    """The hash binds the requester's full JID: anybody else's activation finds nothing."""
    srv = await start_proxy()
    alice, mallory = await login(srv), await login(srv)
    target = "bob@localhost/x"
    port = srv.server.port("socks5")
    address = dst_addr("s2", alice.jid, target)
    _r1, w1, _ = await socks5_connect(port, address)
    r2, w2, _ = await socks5_connect(port, address)
    with pytest.raises(IqError) as err:
        await activate(mallory, "s2", target)
    assert err.value.condition == "item-not-found"
    await activate(alice, "s2", target)
    with pytest.raises(IqError) as again:
        await activate(alice, "s2", target)
    assert again.value.condition == "not-allowed"
    w1.write(b"ping")
    assert await asyncio.wait_for(r2.readexactly(4), TIMEOUT) == b"ping"
    w1.close()
    w2.close()
    await alice.disconnect()
    await mallory.disconnect()


async def test_activate_without_target_is_bad_request_and_bad_jid_is_jid_malformed(
    start_proxy: StartProxy,
) -> None:
    srv = await start_proxy()
    alice = await login(srv)
    iq = alice.xmpp.Iq(sto=PROXY, stype="set")
    iq["socks"]["sid"] = "s"
    with pytest.raises(IqError) as err:
        await iq.send(timeout=TIMEOUT)
    assert err.value.condition == "bad-request"
    with pytest.raises(IqError) as bad:
        await activate(alice, "s", "bob@localhost")  # a bare JID cannot be a target
    assert bad.value.condition == "jid-malformed"
    await alice.disconnect()


# ------------------------------------------------------------------ the relay's rules
async def test_nothing_is_relayed_before_activation(start_proxy: StartProxy) -> None:
    srv = await start_proxy()
    port = srv.server.port("socks5")
    address = dst_addr("s3", "a@localhost/r", "b@localhost/r")
    _, w1, _ = await socks5_connect(port, address)
    r2, w2, _ = await socks5_connect(port, address)
    w1.write(b"too early")
    with contextlib.suppress(TimeoutError):
        data = await asyncio.wait_for(r2.read(100), 0.3)
        raise AssertionError(f"relayed before activation: {data!r}")
    w1.close()
    w2.close()


async def test_third_connection_for_a_stream_is_refused(start_proxy: StartProxy) -> None:
    srv = await start_proxy()
    port = srv.server.port("socks5")
    address = dst_addr("s4", "a@localhost/r", "b@localhost/r")
    _, w1, _ = await socks5_connect(port, address)
    _, w2, _ = await socks5_connect(port, address)
    r3, _w3, answer = await socks5_connect(port, address)
    assert answer[1] == 0x02  # RFC 1928: connection not allowed by ruleset
    assert await closed_by_relay(r3) == b""
    w1.close()
    w2.close()


async def test_unsupported_command_and_authentication_are_refused(
    start_proxy: StartProxy,
) -> None:
    srv = await start_proxy()
    port = srv.server.port("socks5")
    r1, _w1, answer = await socks5_connect(port, "x" * 40, command=2)  # BIND
    assert answer[1] == 0x07
    assert await closed_by_relay(r1) == b""
    r2, _w2, method = await socks5_connect(port, "x" * 40, greeting=b"\x05\x01\x02")
    assert method == b"\x05\xff"  # no acceptable method
    assert await closed_by_relay(r2) == b""


async def test_a_transfer_past_the_byte_cap_is_cut(start_proxy: StartProxy) -> None:
    srv = await start_proxy(max_bytes=10_000)
    alice = await login(srv)
    target = "bob@localhost/x"
    port = srv.server.port("socks5")
    address = dst_addr("s5", alice.jid, target)
    _, w1, _ = await socks5_connect(port, address)
    r2, _w2, _ = await socks5_connect(port, address)
    await activate(alice, "s5", target)
    w1.write(os.urandom(4_000))
    assert len(await asyncio.wait_for(r2.readexactly(4_000), TIMEOUT)) == 4_000
    w1.write(os.urandom(8_000))  # 12 000 in all: past the cap
    assert len(await closed_by_relay(r2)) < 8_000
    assert srv.server.socks5 is not None and not srv.server.socks5.transfers
    await alice.disconnect()


async def test_a_slow_reader_pauses_the_sender(start_proxy: StartProxy) -> None:
    """Back-pressure: the relay buffers at most about buffer_size (plus one read) towards a
    reader that does not read, then stops reading from the sender; nothing is lost."""
    buffer_size = 65536
    srv = await start_proxy(buffer_size=buffer_size)
    relay = srv.server.socks5
    assert relay is not None
    alice = await login(srv)
    target = "bob@localhost/x"
    port = srv.server.port("socks5")
    address = dst_addr("s6", alice.jid, target)
    _, w1, _ = await socks5_connect(port, address)
    r2, _w2, _ = await socks5_connect(port, address)
    await activate(alice, "s6", target)
    payload = os.urandom(16 * 1024 * 1024)  # far more than the kernels' socket buffers

    async def send() -> None:
        w1.write(payload)
        await w1.drain()

    sender = asyncio.create_task(send())

    def paused() -> RelayConnection | None:
        for conn in relay.connections:
            if conn.peer_paused:
                return conn
        return None

    loop = asyncio.get_running_loop()
    deadline = loop.time() + TIMEOUT
    while (conn := paused()) is None:
        assert loop.time() < deadline, "the relay never paused the sender"
        await asyncio.sleep(0.01)
    transfer = conn.transfer
    assert transfer is not None
    reader_side = transfer.other(conn)
    assert reader_side is not None and reader_side.transport is not None
    assert reader_side.transport.get_write_buffer_size() <= buffer_size + 262144
    assert not sender.done()  # the sender is held back, not buffered without bound
    received = await asyncio.wait_for(r2.readexactly(len(payload)), 4 * TIMEOUT)
    assert received == payload
    await asyncio.wait_for(sender, TIMEOUT)
    w1.close()
    await alice.disconnect()


async def test_unactivated_connections_time_out_on_the_clock(start_proxy: StartProxy) -> None:
    clock = ManualClock()
    srv = await start_proxy(clock=clock, activation_timeout=30.0, idle_timeout=100.0)
    port = srv.server.port("socks5")
    address = dst_addr("s7", "a@localhost/r", "b@localhost/r")
    r1, _w1, answer = await socks5_connect(port, address)
    assert answer[1] == 0
    silent, _w_silent = await asyncio.open_connection("127.0.0.1", port)  # never even greets
    await clock.advance(29.0)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(r1.read(1), 0.2)
        raise AssertionError("closed before the activation timeout")
    await clock.advance(2.0)
    assert await closed_by_relay(r1) == b""
    assert await closed_by_relay(silent) == b""
    assert srv.server.socks5 is not None and not srv.server.socks5.transfers


async def test_an_idle_active_transfer_times_out_on_the_clock(start_proxy: StartProxy) -> None:
    clock = ManualClock()
    srv = await start_proxy(clock=clock, idle_timeout=100.0)
    alice = await login(srv)
    target = "bob@localhost/x"
    port = srv.server.port("socks5")
    address = dst_addr("s8", alice.jid, target)
    r1, w1, _ = await socks5_connect(port, address)
    r2, _w2, _ = await socks5_connect(port, address)
    await activate(alice, "s8", target)
    await clock.advance(60.0)
    w1.write(b"still here")
    assert await asyncio.wait_for(r2.readexactly(10), TIMEOUT) == b"still here"
    await clock.advance(60.0)  # 60 s since the last byte: still open
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(r2.read(1), 0.2)
        raise AssertionError("closed before the idle timeout")
    await clock.advance(41.0)
    assert await closed_by_relay(r1) == b""
    assert await closed_by_relay(r2) == b""
    await alice.disconnect()
