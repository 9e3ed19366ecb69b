"""The operator's verbs as subprocesses: about, users, cert import, check certs, and a
``salon serve`` that reloads its certificate on ``salon reload`` with a session connected."""

from __future__ import annotations

import asyncio
import base64
import os
import re
import signal
import ssl
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import cast

import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import trustme
from cryptography import x509

from tests.integration.harness import PASSWORD, RunningServer, free_port, issue_host_certs

SALON = [sys.executable, "-m", "salon"]


async def salon(*args: str, cwd: Path) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *SALON, *args, cwd=cwd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode()


def write_config(tmp: Path, ca: trustme.CA) -> Path:
    issue_host_certs(ca, tmp, ("localhost",))
    config = tmp / "salon.toml"
    config.write_text(
        "[server]\nstorage = 'sqlite:///salon.db'\n"
        "[c2s]\ninterfaces = ['127.0.0.1']\nport = 0\ndirect_tls_port = 0\n"
        "[http]\nport = 0\ntls_port = 0\n"
        "[s2s]\nenabled = false\nport = 0\ndirect_tls_port = 0\n"
        '[hosts."localhost"]\n'
    )
    return config


async def test_about_and_users(tmp_path: Path, ca: trustme.CA) -> None:
    config = write_config(tmp_path, ca)
    code, out = await salon("about", "-c", str(config), cwd=tmp_path)
    assert code == 0 and "Salon " in out and "Modules enabled:" in out and "salon.db" in out
    for name in ("alice", "bob"):
        code, _ = await salon("adduser", "-c", str(config), f"{name}@localhost",
                              "--password", PASSWORD, cwd=tmp_path)  # fmt: skip
        assert code == 0
    code, out = await salon("users", "list", "-c", str(config), cwd=tmp_path)
    assert out.split() == ["alice@localhost", "bob@localhost"]
    code, out = await salon("users", "count", "-c", str(config), cwd=tmp_path)
    assert "localhost: 2" in out and "total: 2" in out


async def test_cert_import_and_check(tmp_path: Path, ca: trustme.CA) -> None:
    config = write_config(tmp_path, ca)
    live = tmp_path / "live" / "localhost"
    live.mkdir(parents=True)
    issued = ca.issue_cert("localhost")
    issued.cert_chain_pems[0].write_to_path(str(live / "fullchain.pem"))
    issued.private_key_pem.write_to_path(str(live / "privkey.pem"))
    code, out = await salon("cert", "import", "-c", str(config), str(tmp_path / "live"),
                            cwd=tmp_path)  # fmt: skip
    assert code == 0, out
    assert (tmp_path / "certs" / "localhost.crt").read_bytes() == (
        live / "fullchain.pem"
    ).read_bytes()
    assert (tmp_path / "certs" / "localhost.key").stat().st_mode & 0o077 == 0
    code, out = await salon("check", "certs", "-c", str(config), cwd=tmp_path)
    assert code == 0 and out.startswith("OK")
    # a certificate for another name is refused, with advice
    other = ca.issue_cert("elsewhere.example")
    other.cert_chain_pems[0].write_to_path(str(tmp_path / "certs" / "localhost.crt"))
    other.private_key_pem.write_to_path(str(tmp_path / "certs" / "localhost.key"))
    code, out = await salon("check", "certs", "-c", str(config), cwd=tmp_path)
    assert code == 1 and "FAIL" in out and "salon cert import" in out


async def _peer_serial(
    port: int, ca: trustme.CA
) -> tuple[int, asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    header = (
        "<?xml version='1.0'?><stream:stream to='localhost' version='1.0' xmlns='jabber:client' "
        "xmlns:stream='http://etherx.jabber.org/streams'>"
    )
    writer.write(header.encode())
    await _read_until(reader, b"</stream:features>")
    writer.write(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
    await _read_until(reader, b"proceed")
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    await writer.start_tls(ctx, server_hostname="localhost")
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.write(header.encode())
    await _read_until(reader, b"</stream:features>")
    return x509.load_der_x509_certificate(der).serial_number, reader, writer


async def _read_until(reader: asyncio.StreamReader, marker: bytes) -> bytes:
    data = b""
    while marker not in data:
        chunk = await asyncio.wait_for(reader.read(65536), 10)
        assert chunk, data
        data += chunk
    return data


async def _serve(config: Path, tmp_path: Path) -> tuple[asyncio.subprocess.Process, int]:
    """``salon serve`` as a subprocess with the account alice; its c2s port."""
    code, _ = await salon("adduser", "-c", str(config), "alice@localhost", "--password", PASSWORD,
                          cwd=tmp_path)  # fmt: skip
    assert code == 0
    proc = await asyncio.create_subprocess_exec(
        *SALON, "serve", "-c", str(config), cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    assert proc.stdout is not None
    port = 0
    while not port:
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        assert line, "the server exited"
        if match := re.match(r"listening: c2s on 127\.0\.0\.1:(\d+)", line):
            port = int(match.group(1))
    return proc, port


async def _login_alice(
    port: int, ca: trustme.CA
) -> tuple[int, asyncio.StreamReader, asyncio.StreamWriter]:
    """A bound session of alice over STARTTLS; the serial of the certificate it saw."""
    serial, reader, writer = await _peer_serial(port, ca)
    payload = base64.b64encode(f"\0alice\0{PASSWORD}".encode()).decode()
    writer.write(
        (
            f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{payload}</auth>"
        ).encode()
    )
    await _read_until(reader, b"success")
    writer.write(
        b"<stream:stream to='localhost' version='1.0' xmlns='jabber:client' "
        b"xmlns:stream='http://etherx.jabber.org/streams'>"
    )
    await _read_until(reader, b"</stream:features>")
    writer.write(b"<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>")
    await _read_until(reader, b"</iq>")
    return serial, reader, writer


async def _wait_for_line(proc: asyncio.subprocess.Process, *wanted: str) -> str:
    """The first line of the server's output that is one of ``wanted``."""
    assert proc.stdout is not None
    while True:
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        assert line, "the server exited"
        if line.strip() in wanted:
            return line.strip()


async def test_reload_swaps_certificate_keeping_sessions(tmp_path: Path, ca: trustme.CA) -> None:
    config = write_config(tmp_path, ca)
    proc, port = await _serve(config, tmp_path)
    try:
        assert proc.stdout is not None
        old_serial, reader, writer = await _login_alice(port, ca)
        issue_host_certs(ca, tmp_path, ("localhost",))  # a new certificate in place
        code, out = await salon("reload", "-c", str(config), cwd=tmp_path)
        assert code == 0, out
        assert await _wait_for_line(proc, "reloaded", "reload refused") == "reloaded"
        new_serial, _r2, w2 = await _peer_serial(port, ca)
        assert new_serial != old_serial
        # the first connection is still up: its stream answers
        writer.write(b"<iq type='get' id='x'><ping xmlns='urn:xmpp:ping'/></iq>")
        reply = await _read_until(reader, b"result")
        assert b"id='x'" in reply or b'id="x"' in reply
        writer.close()
        w2.close()
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 30)
    assert not (tmp_path / "salon.pid").exists()


async def test_reload_enables_a_module_and_refuses_a_broken_config(
    tmp_path: Path, ca: trustme.CA
) -> None:
    config = write_config(tmp_path, ca)
    base = config.read_text()
    config.write_text(base + "[modules]\nenabled = ['disco', 'ping']\n")
    proc, port = await _serve(config, tmp_path)
    disco = b"<iq type='get' id='{}' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>"
    try:
        _serial, reader, writer = await _login_alice(port, ca)
        writer.write(disco.replace(b"{}", b"d1"))
        assert b"urn:xmpp:time" not in await _read_until(reader, b"</iq>")
        # a mistake in the file: refused, the running config stays
        config.write_text(base + "[modules]\nenabled = ['disco', 'ping', 'no_such_module']\n")
        code, out = await salon("reload", "-c", str(config), cwd=tmp_path)
        assert code == 0, out
        assert await _wait_for_line(proc, "reloaded", "reload refused") == "reload refused"
        config.write_text(base + "[modules\nenabled = ['disco']\n")  # not even TOML
        os.kill(proc.pid, signal.SIGHUP)
        assert await _wait_for_line(proc, "reloaded", "reload refused") == "reload refused"
        writer.write(b"<iq type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>")
        assert b"result" in await _read_until(reader, b"p1")
        # a good one: time starts, and the same session sees its feature
        config.write_text(base + "[modules]\nenabled = ['disco', 'ping', 'time']\n")
        code, out = await salon("reload", "-c", str(config), cwd=tmp_path)
        assert code == 0, out
        assert await _wait_for_line(proc, "reloaded", "reload refused") == "reloaded"
        writer.write(disco.replace(b"{}", b"d2"))
        assert b"urn:xmpp:time" in await _read_until(reader, b"</iq>")
        writer.close()
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 30)


async def test_check_federation_against_a_live_server(
    server_factory: Callable[..., Awaitable[RunningServer]], tmp_path: Path
) -> None:
    """``salon check federation`` as a subprocess: every step OK against a server that
    federates; a FAIL with advice, and exit status 1, where nothing listens."""
    srv = await server_factory(s2s={"enabled": True, "interfaces": ["127.0.0.1"]})
    port = srv.server.port("s2s")
    code, out = await salon("check", "federation", "localhost", "--from", "elsewhere.example",
                            "--address", f"127.0.0.1:{port}", "--ca-file", str(srv.ca_path),
                            cwd=tmp_path)  # fmt: skip
    assert code == 0, out
    lines = out.splitlines()
    assert lines and all(line.startswith("OK") for line in lines), out
    assert any("STARTTLS" in line for line in lines) and any(
        "certificate" in line for line in lines
    )
    closed = free_port("127.0.0.1")
    code, out = await salon("check", "federation", "localhost",
                            "--address", f"127.0.0.1:{closed}", cwd=tmp_path)  # fmt: skip
    assert code == 1 and "FAIL" in out and "->" in out, out


class _Zone(asyncio.DatagramProtocol):
    """A DNS server on loopback for ``example.test``: the two required SRV records and an
    address; every other name is NXDOMAIN."""

    RECORDS = {
        ("_xmpp-client._tcp.example.test.", "SRV"): "0 5 5222 xmpp.example.test.",
        ("_xmpp-server._tcp.example.test.", "SRV"): "0 5 5269 xmpp.example.test.",
        ("example.test.", "A"): "192.0.2.10",
    }

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        query = dns.message.from_wire(data)
        reply = dns.message.make_response(query)
        question = query.question[0]
        key = (question.name.to_text(), dns.rdatatype.to_text(question.rdtype))
        if key in self.RECORDS:
            reply.answer.append(
                dns.rrset.from_text(question.name, 60, "IN", key[1], self.RECORDS[key])
            )
        elif not any(name == key[0] for name, _ in self.RECORDS):
            reply.set_rcode(dns.rcode.NXDOMAIN)
        self.transport.sendto(reply.to_wire(), addr)


async def test_check_dns_reads_the_records_of_a_nameserver(tmp_path: Path) -> None:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(_Zone, local_addr=("127.0.0.1", 0))
    try:
        port = transport.get_extra_info("sockname")[1]
        code, out = await salon("check", "dns", "example.test",
                                "--nameserver", f"127.0.0.1:{port}", cwd=tmp_path)  # fmt: skip
        assert code == 0, out
        assert "OK   _xmpp-client._tcp.example.test SRV -> xmpp.example.test:5222" in out
        assert "OK   _xmpp-server._tcp.example.test SRV -> xmpp.example.test:5269" in out
        assert "OK   example.test A -> 192.0.2.10" in out
        assert "_xmpps-client._tcp.example.test SRV missing (optional" in out  # not a failure
        code, out = await salon("check", "dns", "nothing.test",
                                "--nameserver", f"127.0.0.1:{port}", cwd=tmp_path)  # fmt: skip
        assert code == 1, out
        assert "FAIL _xmpp-client._tcp.nothing.test SRV missing" in out
        assert "-> add '_xmpp-client._tcp.nothing.test. 3600 IN SRV 0 5 5222" in out
        assert "FAIL nothing.test has no A or AAAA record" in out
    finally:
        transport.close()


async def test_invite_from_the_command_line_registers_its_username_only(
    tmp_path: Path, ca: trustme.CA
) -> None:
    config = write_config(tmp_path, ca)
    config.write_text(
        config.read_text()
        + "[modules]\nenabled = ['disco', 'register']\n[modules.register]\ninvite_only = true\n"
    )
    proc, port = await _serve(config, tmp_path)
    try:
        # made while the server runs: it reads invitations from storage, no reload needed
        code, out = await salon("invite", "-c", str(config), "juliet@localhost", cwd=tmp_path)
        assert code == 0, out
        match = re.search(r"^xmpp:juliet@localhost\?register;preauth=(\S+)$", out, re.M)
        assert match, out
        assert "valid until" in out
        code, out = await salon("invite", "-c", str(config), "alice@localhost", cwd=tmp_path)
        assert code == 1 and "already exists" in out
        _serial, reader, writer = await _peer_serial(port, ca)
        preauth = f"<preauth xmlns='urn:xmpp:pars:0' token='{match[1]}'/>"
        writer.write(f"<iq type='set' id='pa1'>{preauth}</iq>".encode())
        assert (await _iq_reply(reader, "pa1")).startswith(b"<iq type='result'")
        for iq_id, name, expected in (("r1", "romeo", b"<forbidden "), ("r2", "juliet", None)):
            writer.write(
                f"<iq type='set' id='{iq_id}'><query xmlns='jabber:iq:register'>"
                f"<username>{name}</username><password>{PASSWORD}</password></query></iq>".encode()
            )
            reply = await _iq_reply(reader, iq_id)
            if expected is None:
                assert reply.startswith(b"<iq type='result'"), reply
            else:
                assert b"type='error'" in reply and expected in reply, reply
        writer.close()
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 30)


async def _iq_reply(reader: asyncio.StreamReader, iq_id: str) -> bytes:
    """The server's whole <iq/> with id ``iq_id`` (Salon writes single-quoted attributes)."""
    pattern = re.compile(
        rb"<iq [^>]*id='" + re.escape(iq_id.encode()) + rb"'[^>]*?(/>|>.*?</iq>)", re.S
    )
    data = b""
    while (found := pattern.search(data)) is None:
        chunk = await asyncio.wait_for(reader.read(65536), 10)
        assert chunk, data
        data += chunk
    return found.group(0)
