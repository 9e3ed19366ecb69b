"""Federation with ejabberd (Debian's package): messages, subscriptions and presence in both
directions, with Salon initiating and with ejabberd initiating, over Server Dialback and over
SASL EXTERNAL with a test CA both servers trust.

Salon serves capulet.example on 127.0.0.1; ejabberd serves montague.example on 127.0.0.5, run
straight from Erlang (not through the Debian service or ``ejabberdctl``) with its own config,
Mnesia spool and logs under tmp_path. Nothing asks the machine's DNS: Salon has a static
override; ejabberd asks a small DNS server of the test (its ``inetrc`` names no other), which
answers the SRV query for capulet.example with Salon's address and port. Accounts are
created by in-band registration.
``.ci/run`` installs ejabberd; without it these tests skip, saying why.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import ssl
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest
import trustme

from salon.app import App
from salon.config import DEFAULT_MODULES, settings_from_dict
from tests.integration.harness import (
    NS_CLIENT,
    NS_SASL,
    PASSWORD,
    RawClient,
    RunningServer,
    free_port,
    issue_host_certs,
    q,
    server_settings,
)
from tests.interop.exchange import (
    CAPULET,
    MONTAGUE,
    SALON_ADDRESS,
    TIMEOUT,
    available_with_roster,
    body,
    chat,
    expect,
    s2s_mechanisms,
)

ERL = shutil.which("erl")
# Debian's package puts ejabberd's Erlang applications under /usr/lib/<multiarch triplet>.
_APPS = sorted(Path("/usr/lib").glob("*/ejabberd-*/ebin/ejabberd.app"))
EJABBERD_LIB = _APPS[-1].parents[2] if _APPS else None
HAS_EJABBERD = ERL is not None and EJABBERD_LIB is not None

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(
        not HAS_EJABBERD,
        reason="ejabberd is not installed (.ci/run installs Debian's 'ejabberd' package)",
    ),
]

EJABBERD_ADDRESS = "127.0.0.5"


@dataclass
class Ejabberd:
    process: subprocess.Popen[bytes]
    directory: Path
    c2s_port: int
    s2s_port: int
    ca: trustme.CA

    def log_tail(self, lines: int = 60) -> str:
        path = self.directory / "logs" / "ejabberd.log"
        if not path.exists():
            return "(no log)"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def client_ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        self.ca.configure_trust(ctx)
        return ctx


class SrvResponder(asyncio.DatagramProtocol):
    """DNS over UDP for ejabberd: ``_xmpp-server._tcp.<domain>`` SRV records from a table,
    NXDOMAIN for anything else. (ejabberd resolves an SRV target with the system's
    getaddrinfo, so the target is an address literal.)"""

    def __init__(self, services: dict[str, tuple[str, int]]) -> None:
        self.services = services
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            query = dns.message.from_wire(data)
        except Exception:
            return
        response = dns.message.make_response(query)
        question = query.question[0] if query.question else None
        name = str(question.name).rstrip(".").lower() if question is not None else ""
        prefix = "_xmpp-server._tcp."
        target = self.services.get(name.removeprefix(prefix)) if name.startswith(prefix) else None
        if question is not None and question.rdtype == dns.rdatatype.SRV and target is not None:
            host, port = target
            response.answer.append(
                dns.rrset.from_text(question.name, 60, "IN", "SRV", f"0 0 {port} {host}.")
            )
        else:
            response.set_rcode(dns.rcode.NXDOMAIN)
        assert self.transport is not None
        self.transport.sendto(response.to_wire(), addr)


async def start_ejabberd(
    directory: Path, ca: trustme.CA, *, trust: Path, dns_port: int
) -> Ejabberd:
    """ejabberd for montague.example on 127.0.0.5; ``trust`` is the CA file it validates
    peers' certificates with; it asks DNS at 127.0.0.5:``dns_port`` only."""
    assert ERL is not None and EJABBERD_LIB is not None
    for sub in ("spool", "logs"):
        (directory / sub).mkdir(parents=True)
    # ejabberd arms a timer for its certificate's expiry, and Erlang timers reach only
    # about 49 days ahead: a certificate valid for decades would stop it from starting.
    cert = ca.issue_cert(MONTAGUE, not_after=datetime.now(UTC) + timedelta(days=30))
    cert_path = directory / "montague.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_path))
    c2s_port, s2s_port = free_port(EJABBERD_ADDRESS), free_port(EJABBERD_ADDRESS)
    config = directory / "ejabberd.yml"
    config.write_text(
        f"""
hosts: ["{MONTAGUE}"]
loglevel: info
certfiles: ["{cert_path}"]
ca_file: "{trust}"
listen:
  - port: {c2s_port}
    ip: "{EJABBERD_ADDRESS}"
    module: ejabberd_c2s
    starttls_required: true
  - port: {s2s_port}
    ip: "{EJABBERD_ADDRESS}"
    module: ejabberd_s2s_in
s2s_use_starttls: required
s2s_dns_timeout: 2
s2s_dns_retries: 1
auth_method: internal
registration_timeout: infinity
access_rules:
  register:
    allow: all
modules:
  mod_disco: {{}}
  mod_ping: {{}}
  mod_register:
    access: register
    ip_access: all
  mod_roster: {{}}
  mod_s2s_dialback: {{}}
"""
    )
    inetrc = directory / "inetrc"
    dns_ip = ",".join(EJABBERD_ADDRESS.split("."))
    # The order matters: resolv_conf resets the list of name servers.
    inetrc.write_text(
        f'{{resolv_conf, ""}}.\n{{hosts_file, ""}}.\n{{nameserver, {{{dns_ip}}}, {dns_port}}}.\n'
    )
    env = {
        **os.environ,
        "EJABBERD_CONFIG_PATH": str(config),
        "EJABBERD_LOG_PATH": str(directory / "logs" / "ejabberd.log"),
        "ERL_LIBS": str(EJABBERD_LIB),
        "ERL_INETRC": str(inetrc),
        "ERL_CRASH_DUMP": str(directory / "logs" / "erl_crash.dump"),
        "HOME": str(directory),
    }
    process = subprocess.Popen(
        [
            ERL,
            "-noinput",
            "-noshell",
            "-mnesia",
            "dir",
            f'"{directory / "spool"}"',
            "-s",
            "ejabberd",
        ],
        stdin=subprocess.DEVNULL,
        stdout=(directory / "logs" / "stdout.log").open("wb"),
        stderr=subprocess.STDOUT,
        env=env,
        cwd=directory,
        start_new_session=True,
    )
    ejabberd = Ejabberd(process, directory, c2s_port, s2s_port, ca)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while loop.time() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"ejabberd exited at start:\n{ejabberd.log_tail()}")
        try:
            for port in (c2s_port, s2s_port):
                _reader, writer = await asyncio.open_connection(EJABBERD_ADDRESS, port)
                writer.close()
            return ejabberd
        except OSError:
            await asyncio.sleep(0.2)
    stop_ejabberd(ejabberd)
    raise AssertionError(f"ejabberd did not start listening:\n{ejabberd.log_tail()}")


def stop_ejabberd(ejabberd: Ejabberd) -> None:
    if ejabberd.process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(ejabberd.process.pid, signal.SIGTERM)
        try:
            ejabberd.process.wait(15)
        except subprocess.TimeoutExpired:
            ejabberd.process.kill()
            ejabberd.process.wait(5)


@dataclass
class Setup:
    salon: RunningServer
    ejabberd: Ejabberd
    mode: str

    def peer_log(self) -> str:
        return self.ejabberd.log_tail()


SetupFactory = Callable[[str], Awaitable[Setup]]


@pytest.fixture
async def interop(tmp_path: Path, ca: trustme.CA) -> AsyncIterator[SetupFactory]:
    running: list[Any] = []

    async def make(mode: str) -> Setup:
        """mode 'external': both trust the test CA; 'dialback': neither trusts the other."""
        trusted = tmp_path / "trusted-ca.pem"
        ca.cert_pem.write_to_path(str(trusted))
        untrusted = tmp_path / "untrusted-ca.pem"
        trustme.CA().cert_pem.write_to_path(str(untrusted))
        trust = trusted if mode == "external" else untrusted
        salon_port = free_port(SALON_ADDRESS)
        dns_transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
            lambda: SrvResponder({CAPULET: (SALON_ADDRESS, salon_port)}),
            local_addr=(EJABBERD_ADDRESS, 0),
        )
        running.append(dns_transport)
        dns_port = dns_transport.get_extra_info("sockname")[1]
        ejabberd = await start_ejabberd(tmp_path / "ejabberd", ca, trust=trust, dns_port=dns_port)
        running.append(ejabberd)
        data_dir = tmp_path / "salon"
        data_dir.mkdir()
        data = server_settings(data_dir, issue_host_certs(ca, data_dir, (CAPULET,)))
        data["modules"] = {"enabled": list(dict.fromkeys([*DEFAULT_MODULES, "roster", "offline"]))}
        data["s2s"] = {
            "enabled": True,
            "interfaces": [SALON_ADDRESS],
            "port": salon_port,
            "direct_tls_port": 0,
            "ca_file": str(trust),
            "overrides": {MONTAGUE: f"{EJABBERD_ADDRESS}:{ejabberd.s2s_port}"},
            "connect_timeout": 8.0,
        }
        server = App(settings_from_dict(data))
        await server.start()
        ca_path = data_dir / "ca.pem"
        ca.cert_pem.write_to_path(str(ca_path))
        salon = RunningServer(server, ca, ca_path, data_dir, domain=CAPULET)
        running.append(salon)
        return Setup(salon, ejabberd, mode)

    yield make
    for item in reversed(running):
        if isinstance(item, RunningServer):
            await item.server.stop()
        elif isinstance(item, Ejabberd):
            stop_ejabberd(item)
        else:
            item.close()


# --------------------------------------------------------------------------- clients
async def salon_login(setup: Setup, local: str) -> RawClient:
    jid = await setup.salon.add_user(local, domain=CAPULET)
    client = await RawClient.connect(setup.salon)
    client.full = await client.login(setup.salon, jid, domain=CAPULET)  # type: ignore[attr-defined]
    return client


async def ejabberd_login(setup: Setup, local: str) -> RawClient:
    """Register ``local`` in-band (XEP-0077) on a TLS stream, then log in on it."""
    reader, writer = await asyncio.open_connection(EJABBERD_ADDRESS, setup.ejabberd.c2s_port)
    client = RawClient(reader, writer)
    await client.open(MONTAGUE)
    await client.starttls(setup.ejabberd, MONTAGUE)  # type: ignore[arg-type]
    await client.open(MONTAGUE)
    await client.send(
        "<iq type='set' id='reg1'><query xmlns='jabber:iq:register'>"
        f"<username>{local}</username><password>{PASSWORD}</password></query></iq>"
    )
    registered = await client.next(TIMEOUT)
    assert registered.get("type") == "result", ET.tostring(registered)
    success = await client.auth_plain(f"{local}@{MONTAGUE}")
    assert success.tag == q(NS_SASL, "success"), ET.tostring(success)
    await client.open(MONTAGUE)
    client.full = await client.bind("raw")  # type: ignore[attr-defined]
    return client


def assert_mechanisms(setup: Setup) -> None:
    """Both directions were authenticated, with certificates when both trust the CA."""
    used_external, incoming = s2s_mechanisms(setup)
    if setup.mode == "external":
        assert used_external == {True}
        assert incoming and incoming <= {"EXTERNAL", "dialback+PKIX"}, incoming
    else:
        assert used_external == {False}
        assert incoming == {"dialback"}, incoming


MODES = pytest.mark.parametrize("mode", ["dialback", "external"])


# --------------------------------------------------------------------------- tests
@MODES
async def test_salon_initiates_messages_both_ways(interop: SetupFactory, mode: str) -> None:
    setup = await interop(mode)
    romeo = await ejabberd_login(setup, "romeo")
    await available_with_roster(romeo)
    juliet = await salon_login(setup, "juliet")
    await juliet.send(chat(romeo.full, "Salon to ejabberd"))  # type: ignore[attr-defined]
    msg = await expect(setup, romeo, "message", lambda e: body(e) == "Salon to ejabberd")
    assert msg.get("from") == juliet.full  # type: ignore[attr-defined]
    await romeo.send(chat(juliet.full, "ejabberd to Salon"))  # type: ignore[attr-defined]
    reply = await expect(setup, juliet, "message", lambda e: body(e) == "ejabberd to Salon")
    assert reply.get("from") == romeo.full  # type: ignore[attr-defined]
    assert_mechanisms(setup)


@MODES
async def test_ejabberd_initiates_messages_both_ways(interop: SetupFactory, mode: str) -> None:
    setup = await interop(mode)
    juliet = await salon_login(setup, "juliet")
    await available_with_roster(juliet)
    romeo = await ejabberd_login(setup, "romeo")
    await romeo.send(chat(f"juliet@{CAPULET}", "ejabberd first"))
    msg = await expect(setup, juliet, "message", lambda e: body(e) == "ejabberd first")
    assert msg.get("from") == romeo.full  # type: ignore[attr-defined]
    await juliet.send(chat(romeo.full, "Salon answers"))  # type: ignore[attr-defined]
    await expect(setup, romeo, "message", lambda e: body(e) == "Salon answers")
    assert_mechanisms(setup)


@MODES
async def test_mutual_subscription_and_presence(interop: SetupFactory, mode: str) -> None:
    setup = await interop(mode)
    juliet = await salon_login(setup, "juliet")
    romeo = await ejabberd_login(setup, "romeo")
    await available_with_roster(juliet)
    await available_with_roster(romeo)
    juliet_bare, romeo_bare = f"juliet@{CAPULET}", f"romeo@{MONTAGUE}"
    juliet_full, romeo_full = juliet.full, romeo.full  # type: ignore[attr-defined]

    # Salon's user asks first.
    await juliet.send(f"<presence to='{romeo_bare}' type='subscribe'/>")
    await expect(setup, romeo, "presence", lambda e: e.get("type") == "subscribe")
    await romeo.send(f"<presence to='{juliet_bare}' type='subscribed'/>")
    await expect(setup, juliet, "presence", lambda e: e.get("type") == "subscribed")
    await expect(
        setup, juliet, "presence", lambda e: e.get("from") == romeo_full and not e.get("type")
    )

    # Then ejabberd's user.
    await romeo.send(f"<presence to='{juliet_bare}' type='subscribe'/>")
    await expect(setup, juliet, "presence", lambda e: e.get("type") == "subscribe")
    await juliet.send(f"<presence to='{romeo_bare}' type='subscribed'/>")
    await expect(
        setup, romeo, "presence", lambda e: e.get("from") == juliet_full and not e.get("type")
    )

    # Presence changes now flow both ways.
    await juliet.send("<presence><show>dnd</show></presence>")
    await expect(setup, romeo, "presence", lambda e: e.findtext(q(NS_CLIENT, "show")) == "dnd")
    await romeo.send("<presence><show>away</show></presence>")
    await expect(setup, juliet, "presence", lambda e: e.findtext(q(NS_CLIENT, "show")) == "away")
    await romeo.send("<presence type='unavailable'/>")
    await expect(setup, juliet, "presence", lambda e: e.get("type") == "unavailable")
    assert_mechanisms(setup)
