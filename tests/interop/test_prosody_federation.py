"""Federation with Prosody (Debian's package): messages, subscriptions and presence in both
directions, with Salon initiating and with Prosody initiating, over Server Dialback and over
SASL EXTERNAL with a test CA both servers trust.

Salon serves capulet.example on 127.0.0.1; Prosody serves montague.example on 127.0.0.4 with
its own config and data directory under tmp_path. Neither side asks DNS: Salon has a static
override, Prosody a ten-line test plugin (written below) that answers its s2s resolver from
its config. ``.ci/run`` installs Prosody; without the binary these tests skip, saying why.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme

from salon.app import App
from salon.config import DEFAULT_MODULES, settings_from_dict
from tests.integration.harness import (
    NS_CLIENT,
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

PROSODY = shutil.which("prosody")
PROSODYCTL = shutil.which("prosodyctl")

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(
        PROSODY is None or PROSODYCTL is None,
        reason="Prosody is not installed (.ci/run installs Debian's 'prosody' package)",
    ),
]

PROSODY_ADDRESS = "127.0.0.4"

ROUTES_PLUGIN = """\
-- Test only: reach the domains in salon_test_routes at fixed addresses instead of asking
-- DNS, the way Salon's [s2s] overrides do.
module:set_global();
local service = require "net.resolvers.service";
local manual = require "net.resolvers.manual";
local routes = module:get_option("salon_test_routes", {});
local original_new = service.new;
service.new = function (hostname, srv, conn_type, extra)
	local route = routes[hostname];
	if not route then
		return original_new(hostname, srv, conn_type, extra);
	end
	if srv ~= "xmpp-server" then
		return manual.new({}, conn_type, extra);
	end
	return manual.new({ { "tcp4", route[1], route[2], extra } }, conn_type, extra);
end
function module.unload()
	service.new = original_new;
end
"""


def lua_string(text: str | Path) -> str:
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass
class Prosody:
    process: subprocess.Popen[bytes]
    directory: Path
    config: Path
    c2s_port: int
    s2s_port: int
    ca: trustme.CA

    def log_tail(self, lines: int = 60) -> str:
        path = self.directory / "prosody.log"
        if not path.exists():
            return "(no log)"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def register(self, user: str, password: str = PASSWORD) -> str:
        assert PROSODYCTL is not None
        subprocess.run(
            [PROSODYCTL, "--config", str(self.config), "register", user, MONTAGUE, password],
            check=True,
            capture_output=True,
            timeout=30,
        )
        return f"{user}@{MONTAGUE}"

    def client_ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        self.ca.configure_trust(ctx)
        return ctx


async def start_prosody(
    directory: Path,
    ca: trustme.CA,
    *,
    trust: Path | None,
    salon_port: int,
    salon_domains: tuple[str, ...] = (CAPULET,),
    extra_config: str = "",
    extra_modules: tuple[str, ...] = (),
) -> Prosody:
    """Prosody for montague.example on 127.0.0.4; ``trust`` is the CA file it validates
    peers' certificates with (None: the system's, where the test CA is unknown). It reaches
    every domain of ``salon_domains`` at Salon's address."""
    assert PROSODY is not None
    directory.mkdir(parents=True)
    (directory / "data").mkdir()
    plugins = directory / "plugins"
    plugins.mkdir()
    (plugins / "mod_salon_test_routes.lua").write_text(ROUTES_PLUGIN)
    cert = ca.issue_cert(MONTAGUE)
    cert_path, key_path = directory / "montague.crt", directory / "montague.key"
    cert.cert_chain_pems[0].write_to_path(str(cert_path))
    cert.private_key_pem.write_to_path(str(key_path))
    c2s_port, s2s_port = free_port(PROSODY_ADDRESS), free_port(PROSODY_ADDRESS)
    cafile = f"cafile = {lua_string(trust)};" if trust else ""
    routes = "; ".join(
        f'["{domain}"] = {{ "{SALON_ADDRESS}", {salon_port} }}' for domain in salon_domains
    )
    config = directory / "prosody.cfg.lua"
    config.write_text(
        f"""
run_as_root = true
pidfile = {lua_string(directory / "prosody.pid")}
data_path = {lua_string(directory / "data")}
plugin_paths = {{ {lua_string(plugins)} }}
log = {{ {{ levels = {{ min = "debug" }}, to = "file",
           filename = {lua_string(directory / "prosody.log")} }} }}
interfaces = {{ "{PROSODY_ADDRESS}" }}
c2s_ports = {{ {c2s_port} }}
c2s_direct_tls_ports = {{ }}
s2s_ports = {{ {s2s_port} }}
s2s_direct_tls_ports = {{ }}
http_ports = {{ }}
https_ports = {{ }}
modules_enabled = {{
    "roster"; "saslauth"; "tls"; "dialback"; "disco"; "ping"; "salon_test_routes";
    {"".join(f'"{m}"; ' for m in extra_modules)}
}}
modules_disabled = {{ "admin_shell"; "posix" }}
authentication = "internal_hashed"
storage = "internal"
c2s_require_encryption = true
s2s_require_encryption = true
s2s_secure_auth = false
salon_test_routes = {{ {routes} }}
ssl = {{
    certificate = {lua_string(cert_path)};
    key = {lua_string(key_path)};
    {cafile}
}}
VirtualHost "{MONTAGUE}"
{extra_config}
"""
    )
    process = subprocess.Popen(
        [PROSODY, "--config", str(config), "-F"],
        stdin=subprocess.DEVNULL,
        stdout=(directory / "stdout.log").open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    prosody = Prosody(process, directory, config, c2s_port, s2s_port, ca)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while loop.time() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"Prosody exited at start:\n{prosody.log_tail()}")
        try:
            _reader, writer = await asyncio.open_connection(PROSODY_ADDRESS, c2s_port)
            writer.close()
            for port in (s2s_port,):
                _r, w = await asyncio.open_connection(PROSODY_ADDRESS, port)
                w.close()
            return prosody
        except OSError:
            await asyncio.sleep(0.1)
    raise AssertionError(f"Prosody did not start listening:\n{prosody.log_tail()}")


def stop_prosody(prosody: Prosody) -> None:
    if prosody.process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(prosody.process.pid, signal.SIGTERM)
        try:
            prosody.process.wait(10)
        except subprocess.TimeoutExpired:
            prosody.process.kill()
            prosody.process.wait(5)


@dataclass
class Setup:
    salon: RunningServer
    prosody: Prosody
    mode: str

    def peer_log(self) -> str:
        return self.prosody.log_tail()


SetupFactory = Callable[..., Awaitable[Setup]]


@pytest.fixture
async def interop(tmp_path: Path, ca: trustme.CA) -> AsyncIterator[SetupFactory]:
    running: list[Any] = []

    async def make(
        mode: str,
        salon_domains: tuple[str, ...] = (CAPULET,),
        prosody_modules: tuple[str, ...] = (),
    ) -> Setup:
        """mode 'external': both trust the test CA; 'dialback': neither trusts the other.
        Salon serves ``salon_domains`` (capulet.example first); Prosody loads
        ``prosody_modules`` besides its usual ones."""
        trusted = tmp_path / "trusted-ca.pem"
        ca.cert_pem.write_to_path(str(trusted))
        untrusted = tmp_path / "untrusted-ca.pem"
        trustme.CA().cert_pem.write_to_path(str(untrusted))
        salon_port = free_port(SALON_ADDRESS)
        prosody = await start_prosody(
            tmp_path / "prosody",
            ca,
            trust=trusted if mode == "external" else None,
            salon_port=salon_port,
            salon_domains=salon_domains,
            extra_modules=prosody_modules,
        )
        running.append(prosody)
        data_dir = tmp_path / "salon"
        data_dir.mkdir()
        data = server_settings(data_dir, issue_host_certs(ca, data_dir, salon_domains))
        data["modules"] = {"enabled": list(dict.fromkeys([*DEFAULT_MODULES, "roster", "offline"]))}
        data["s2s"] = {
            "enabled": True,
            "interfaces": [SALON_ADDRESS],
            "port": salon_port,
            "direct_tls_port": 0,
            "ca_file": str(trusted if mode == "external" else untrusted),
            "overrides": {MONTAGUE: f"{PROSODY_ADDRESS}:{prosody.s2s_port}"},
            "connect_timeout": 8.0,
        }
        server = App(settings_from_dict(data))
        await server.start()
        ca_path = data_dir / "ca.pem"
        ca.cert_pem.write_to_path(str(ca_path))
        salon = RunningServer(server, ca, ca_path, data_dir, domain=CAPULET)
        running.append(salon)
        return Setup(salon, prosody, mode)

    yield make
    for item in reversed(running):
        if isinstance(item, RunningServer):
            await item.server.stop()
        else:
            stop_prosody(item)


# --------------------------------------------------------------------------- clients
async def salon_login(setup: Setup, local: str, domain: str = CAPULET) -> RawClient:
    jid = await setup.salon.add_user(local, domain=domain)
    client = await RawClient.connect(setup.salon)
    client.full = await client.login(setup.salon, jid, domain=domain)  # type: ignore[attr-defined]
    return client


async def prosody_login(setup: Setup, local: str) -> RawClient:
    jid = await asyncio.to_thread(setup.prosody.register, local)
    reader, writer = await asyncio.open_connection(PROSODY_ADDRESS, setup.prosody.c2s_port)
    client = RawClient(reader, writer)
    client.full = await client.login(setup.prosody, jid, domain=MONTAGUE)  # type: ignore[arg-type, attr-defined]
    return client


def assert_mechanisms(setup: Setup) -> None:
    """Both directions used the mechanism the mode calls for."""
    used_external, incoming = s2s_mechanisms(setup)
    if setup.mode == "external":
        assert used_external == {True}, "Salon → Prosody did not use SASL EXTERNAL"
        assert incoming == {"EXTERNAL"}, f"Prosody → Salon authenticated with {incoming}"
    else:
        assert used_external == {False}
        assert incoming and incoming <= {"dialback"}, incoming


MODES = pytest.mark.parametrize("mode", ["dialback", "external"])


# --------------------------------------------------------------------------- tests
@MODES
async def test_salon_initiates_messages_both_ways(interop: SetupFactory, mode: str) -> None:
    setup = await interop(mode)
    romeo = await prosody_login(setup, "romeo")
    await available_with_roster(romeo)
    juliet = await salon_login(setup, "juliet")
    await juliet.send(chat(romeo.full, "Salon to Prosody"))  # type: ignore[attr-defined]
    msg = await expect(setup, romeo, "message", lambda e: body(e) == "Salon to Prosody")
    assert msg.get("from") == juliet.full  # type: ignore[attr-defined]
    await romeo.send(chat(juliet.full, "Prosody to Salon"))  # type: ignore[attr-defined]
    reply = await expect(setup, juliet, "message", lambda e: body(e) == "Prosody to Salon")
    assert reply.get("from") == romeo.full  # type: ignore[attr-defined]
    assert_mechanisms(setup)


@MODES
async def test_prosody_initiates_messages_both_ways(interop: SetupFactory, mode: str) -> None:
    setup = await interop(mode)
    juliet = await salon_login(setup, "juliet")
    await available_with_roster(juliet)
    romeo = await prosody_login(setup, "romeo")
    await romeo.send(chat(f"juliet@{CAPULET}", "Prosody first"))
    msg = await expect(setup, juliet, "message", lambda e: body(e) == "Prosody first")
    assert msg.get("from") == romeo.full  # type: ignore[attr-defined]
    await juliet.send(chat(romeo.full, "Salon answers"))  # type: ignore[attr-defined]
    await expect(setup, romeo, "message", lambda e: body(e) == "Salon answers")
    assert_mechanisms(setup)


@MODES
async def test_mutual_subscription_and_presence(interop: SetupFactory, mode: str) -> None:
    setup = await interop(mode)
    juliet = await salon_login(setup, "juliet")
    romeo = await prosody_login(setup, "romeo")
    await available_with_roster(juliet)
    await available_with_roster(romeo)
    juliet_bare, romeo_bare = f"juliet@{CAPULET}", f"romeo@{MONTAGUE}"

    # Salon's user asks first.
    await juliet.send(f"<presence to='{romeo_bare}' type='subscribe'/>")
    await expect(setup, romeo, "presence", lambda e: e.get("type") == "subscribe")
    await romeo.send(f"<presence to='{juliet_bare}' type='subscribed'/>")
    await expect(setup, juliet, "presence", lambda e: e.get("type") == "subscribed")
    await expect(
        setup,
        juliet,
        "presence",
        lambda e: e.get("from") == romeo.full and e.get("type") is None,  # type: ignore[attr-defined]
    )

    # Then Prosody's user.
    await romeo.send(f"<presence to='{juliet_bare}' type='subscribe'/>")
    await expect(setup, juliet, "presence", lambda e: e.get("type") == "subscribe")
    await juliet.send(f"<presence to='{romeo_bare}' type='subscribed'/>")
    await expect(
        setup,
        romeo,
        "presence",
        lambda e: e.get("from") == juliet.full and e.get("type") is None,  # type: ignore[attr-defined]
    )

    # Presence changes now flow both ways.
    await juliet.send("<presence><show>dnd</show></presence>")
    await expect(setup, romeo, "presence", lambda e: e.findtext(q(NS_CLIENT, "show")) == "dnd")
    await romeo.send("<presence><show>away</show></presence>")
    await expect(setup, juliet, "presence", lambda e: e.findtext(q(NS_CLIENT, "show")) == "away")
    await romeo.send("<presence type='unavailable'/>")
    await expect(setup, juliet, "presence", lambda e: e.get("type") == "unavailable")
    assert_mechanisms(setup)


ROUNDS = 20
ROUND_DOMAINS = tuple(f"r{n}.{CAPULET}" for n in range(1, ROUNDS + 1))


async def wait_for_no_federation(setup: Setup) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TIMEOUT
    s2s = setup.salon.server.s2s
    while s2s.outgoing or s2s.incoming:
        assert loop.time() < deadline, "Salon's s2s connections did not close"
        await asyncio.sleep(0.02)


async def prosody_initiated_round(setup: Setup, romeo: RawClient, n: int, domain: str) -> None:
    """One round of the twenty below, with Salon's user ``juliet@domain``."""
    romeo_full: str = romeo.full  # type: ignore[attr-defined]
    juliet = await salon_login(setup, "juliet", domain)
    await available_with_roster(juliet)
    juliet_bare, juliet_full = f"juliet@{domain}", juliet.full  # type: ignore[attr-defined]
    where = f"round {n}"

    await romeo.send(chat(juliet_bare, f"{where}: Prosody first"))
    msg = await expect(setup, juliet, "message", lambda e: body(e) == f"{where}: Prosody first")
    assert msg.get("from") == romeo_full, where
    await juliet.send(chat(romeo_full, f"{where}: Salon answers"))
    await expect(setup, romeo, "message", lambda e: body(e) == f"{where}: Salon answers")

    await romeo.send(f"<presence to='{juliet_bare}' type='subscribe'/>")
    request = await expect(setup, juliet, "presence", lambda e: e.get("type") == "subscribe")
    assert request.get("from") == f"romeo@{MONTAGUE}", where
    await juliet.send(f"<presence to='romeo@{MONTAGUE}' type='subscribed'/>")
    await expect(
        setup,
        romeo,
        "presence",
        lambda e: e.get("from") == juliet_bare and e.get("type") == "subscribed",
    )
    await expect(
        setup,
        romeo,
        "presence",
        lambda e: e.get("from") == juliet_full and e.get("type") is None,
    )

    await romeo.send(f"<iq type='get' id='s{n}' to='{domain}'><ping xmlns='urn:xmpp:ping'/></iq>")
    pong = await expect(setup, romeo, "iq", lambda e: e.get("id") == f"s{n}")
    assert pong.get("type") == "result" and pong.get("from") == domain, where
    await romeo.send(
        f"<iq type='get' id='u{n}' to='{juliet_full}'><ping xmlns='urn:xmpp:ping'/></iq>"
    )
    ping = await expect(setup, juliet, "iq", lambda e: e.get("id") == f"u{n}")
    assert ping.get("from") == romeo_full and ping.get("type") == "get", where
    await juliet.send(f"<iq type='result' id='u{n}' to='{romeo_full}'/>")
    pong = await expect(setup, romeo, "iq", lambda e: e.get("id") == f"u{n}")
    assert pong.get("type") == "result" and pong.get("from") == juliet_full, where
    await juliet.send(
        f"<iq type='get' id='m{n}' to='{MONTAGUE}'><ping xmlns='urn:xmpp:ping'/></iq>"
    )
    pong = await expect(setup, juliet, "iq", lambda e: e.get("id") == f"m{n}")
    assert pong.get("type") == "result" and pong.get("from") == MONTAGUE, where

    assert any(
        remote == MONTAGUE and local == domain
        for conn in setup.salon.server.s2s.incoming
        for remote, local in conn.authenticated
    ), f"{where}: Prosody did not open a connection for {domain}"
    await juliet.close()
    setup.salon.server.s2s.close_connections(MONTAGUE)
    await wait_for_no_federation(setup)


@MODES
async def test_prosody_initiated_exchange_twenty_rounds(interop: SetupFactory, mode: str) -> None:
    """Issue 9: Prosody initiates, and everyday federation works every time.

    Each round talks to a new domain of Salon, so Prosody opens a new connection (and a new
    STARTTLS on Salon's s2s port), and Salon closes its own connections at the end of the
    round, so it dials back and answers over new ones too. Prosody and Salon keep running
    across rounds (restarting Prosody twenty times would test its start-up, not federation).
    Per round: Prosody's user writes first, Salon's answers, Prosody's user subscribes to
    Salon's and sees it online, pings Salon's server and Salon's user; Salon's user pings
    Prosody's server.
    """
    setup = await interop(mode, salon_domains=(CAPULET, *ROUND_DOMAINS))
    romeo = await prosody_login(setup, "romeo")
    await available_with_roster(romeo)
    for n, domain in enumerate(ROUND_DOMAINS, start=1):
        await prosody_initiated_round(setup, romeo, n, domain)
