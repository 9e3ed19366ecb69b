"""Start a real Salon server in-process on ephemeral ports and talk to it over sockets.

Two kinds of client:

* ``SlixClient``: slixmpp, a real client library, for normal flows.
* ``RawClient``: bytes over a socket for edge cases. It reads the server's output with the
  standard library's ``XMLPullParser``, a different parser from the server's, so a parser bug
  cannot hide itself.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import inspect
import random
import socket
import ssl
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import slixmpp
import trustme

from salon.app import App
from salon.auth.credentials import make_credentials
from salon.config import settings_from_dict
from salon.core.clock import Clock

NS_STREAM = "http://etherx.jabber.org/streams"
NS_STREAMS = "urn:ietf:params:xml:ns:xmpp-streams"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
NS_TLS = "urn:ietf:params:xml:ns:xmpp-tls"
NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
NS_BIND = "urn:ietf:params:xml:ns:xmpp-bind"
NS_CLIENT = "jabber:client"
PASSWORD = "correct horse battery staple"
DOMAINS = ("localhost", "example.test")
DEFAULT_TIMEOUT = 5.0


def q(ns: str, tag: str) -> str:
    """ElementTree's Clark name."""
    return f"{{{ns}}}{tag}"


async def until(
    condition: Callable[[], bool | Awaitable[bool]],
    what: str = "the condition",
    timeout: float = DEFAULT_TIMEOUT * 2,
) -> None:
    """Wait for an event the test cannot await directly (a server-side state change): check
    ``condition`` (sync or async) until it holds. AssertionError naming ``what`` when the
    generous ``timeout`` passes first, so a slow machine only makes the test slower."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if loop.time() >= deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


@dataclass
class RunningServer:
    server: App
    ca: trustme.CA
    ca_path: Path
    data_dir: Path
    domain: str = "localhost"
    _counter: int = 0

    @property
    def port(self) -> int:
        return self.server.port("c2s")

    @property
    def tls_port(self) -> int:
        return self.server.port("c2s_direct_tls")

    @property
    def http_port(self) -> int:
        return self.server.port("http")

    @property
    def https_port(self) -> int:
        return self.server.port("https")

    def http_url(self, path: str = "/", *, secure: bool = True) -> str:
        """A URL of the web server: HTTPS (verified with ``client_ssl_context``) by default."""
        if secure:
            return f"https://localhost:{self.https_port}{path}"
        return f"http://127.0.0.1:{self.http_port}{path}"

    def client_ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        self.ca.configure_trust(ctx)
        return ctx

    async def add_user(
        self, local: str | None = None, password: str = PASSWORD, domain: str | None = None
    ) -> str:
        """Create a fresh account; returns its bare JID."""
        if local is None:
            self._counter += 1
            local = f"user{self._counter}-{uuid.uuid4().hex[:6]}"
        domain = domain or self.domain
        await self.server.core.storage.accounts.create(domain, local, make_credentials(password))
        return f"{local}@{domain}"


def issue_host_certs(ca: trustme.CA, data_dir: Path, domains: tuple[str, ...]) -> dict[str, Any]:
    hosts: dict[str, Any] = {}
    for domain in domains:
        cert = ca.issue_cert(domain)
        cert_path = data_dir / "certs" / f"{domain}.crt"
        key_path = data_dir / "certs" / f"{domain}.key"
        cert_path.parent.mkdir(parents=True, exist_ok=True)
        cert.cert_chain_pems[0].write_to_path(str(cert_path))
        for extra in cert.cert_chain_pems[1:]:
            with cert_path.open("ab") as f:
                f.write(extra.bytes())
        cert.private_key_pem.write_to_path(str(key_path))
        hosts[domain] = {"certificate": str(cert_path), "key": str(key_path)}
    return hosts


def server_settings(data_dir: Path, hosts: dict[str, Any], **c2s: Any) -> dict[str, Any]:
    options: dict[str, Any] = {
        "interfaces": ["127.0.0.1"],
        "port": 0,
        "direct_tls_port": 0,
        "auth_failure_delay": 0.01,
    }
    options.update(c2s)
    return {
        "server": {"data_dir": str(data_dir), "storage": "sqlite:///salon.db"},
        "c2s": options,
        "hosts": hosts,
        "http": {"port": 0, "tls_port": 0},  # ephemeral ports; tests may add [http] options
        # No federation unless a test asks (start_server(s2s={...})): nothing leaves loopback.
        "s2s": {"enabled": False, "port": 0, "direct_tls_port": 0},
    }


async def start_server(
    data_dir: Path,
    ca: trustme.CA,
    *,
    modules: list[str] | None = None,
    module_options: dict[str, dict[str, Any]] | None = None,
    http: dict[str, Any] | None = None,
    s2s: dict[str, Any] | None = None,
    clock: Clock | None = None,
    sections: dict[str, dict[str, Any]] | None = None,
    **c2s: Any,
) -> RunningServer:
    """``modules`` replaces the enabled list; ``module_options`` gives ``[modules.<name>]``
    tables (e.g. ``{"ping": {"interval": 1}}``); ``http`` adds ``[http]`` options; other
    keywords are ``[c2s]`` options."""
    data_dir.mkdir(parents=True, exist_ok=True)
    hosts = issue_host_certs(ca, data_dir, DOMAINS)
    data = server_settings(data_dir, hosts, **c2s)
    data["http"].update(http or {})
    data["s2s"].update(s2s or {})
    _merge(data, sections or {})  # other tables: [server], [limits], hosts' admins, ...
    if modules is not None or module_options:
        data["modules"] = dict(module_options or {})
        if modules is not None:
            data["modules"]["enabled"] = modules
    settings = settings_from_dict(data)
    server = App(settings, clock=clock)
    await server.start()
    ca_path = data_dir / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    return RunningServer(server, ca, ca_path, data_dir)


def _merge(into: dict[str, Any], tables: dict[str, Any]) -> None:
    for key, value in tables.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


# --------------------------------------------------------------------------- slixmpp
@dataclass
class SlixClient:
    """A connected, authenticated, bound slixmpp client plus a queue of what it received."""

    xmpp: slixmpp.ClientXMPP
    inbox: asyncio.Queue[Any] = field(default_factory=asyncio.Queue)

    @property
    def jid(self) -> str:
        return str(self.xmpp.boundjid)

    async def expect(
        self, predicate: Callable[[Any], bool] = lambda s: True, timeout: float = DEFAULT_TIMEOUT
    ) -> Any:
        """The next received stanza for which ``predicate`` holds (others are skipped)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError("expected stanza did not arrive")
            try:
                stanza = await asyncio.wait_for(self.inbox.get(), remaining)
            except TimeoutError:
                raise AssertionError("expected stanza did not arrive") from None
            if predicate(stanza):
                return stanza

    async def expect_nothing(
        self, predicate: Callable[[Any], bool] = lambda s: True, within: float = 0.3
    ) -> None:
        """Prove a negative, bounded: nothing matching arrives within ``within`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while (remaining := deadline - loop.time()) > 0:
            try:
                stanza = await asyncio.wait_for(self.inbox.get(), remaining)
            except TimeoutError:
                return
            if predicate(stanza):
                raise AssertionError(f"unexpected stanza: {stanza}")

    async def disconnect(self) -> None:
        self.xmpp.disconnect()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.xmpp.disconnected, 3)


async def connect_slixmpp(
    srv: RunningServer,
    jid: str,
    password: str = PASSWORD,
    *,
    mechanism: str | None = None,
    direct_tls: bool = False,
    timeout: float = 10.0,
    configure: Callable[[slixmpp.ClientXMPP], None] | None = None,
) -> SlixClient:
    """``configure`` runs on the client before it connects (plugins, event handlers)."""
    xmpp = slixmpp.ClientXMPP(jid, password, sasl_mech=mechanism)
    xmpp.ca_certs = srv.ca_path
    xmpp.enable_plaintext = False
    xmpp.enable_direct_tls = direct_tls
    xmpp.enable_starttls = not direct_tls
    client = SlixClient(xmpp)
    loop = asyncio.get_running_loop()
    started: asyncio.Future[bool] = loop.create_future()

    def on_start(_event: Any) -> None:
        if not started.done():
            started.set_result(True)

    def on_fail(event: Any) -> None:
        if not started.done():
            started.set_exception(AssertionError(f"login failed: {event}"))

    def incoming(stanza: Any) -> Any:
        client.inbox.put_nowait(stanza)
        return stanza

    xmpp.add_event_handler("session_start", on_start)
    xmpp.add_event_handler("failed_all_auth", on_fail)
    xmpp.add_event_handler("connection_failed", on_fail)
    xmpp.add_filter("in", incoming)
    if configure is not None:
        configure(xmpp)
    port = srv.tls_port if direct_tls else srv.port
    xmpp.connect(getattr(srv, "address", "127.0.0.1"), port)  # a test network may differ
    try:
        await asyncio.wait_for(started, timeout)
    except BaseException:
        xmpp.disconnect()
        raise
    return client


# --------------------------------------------------------------------------- raw sockets
class RawClient:
    """A byte-level XMPP client for edge cases, reading with the stdlib's XMLPullParser."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.stream_attrs: dict[str, str] = {}
        self.stream_tag = ""  # Clark name of the root element the server opened, once it has
        self.closed_by_server = False
        self._reset_parser()

    @classmethod
    async def connect(
        cls, srv: RunningServer, *, direct_tls: bool = False, server_hostname: str = "localhost"
    ) -> RawClient:
        if direct_tls:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1",
                srv.tls_port,
                ssl=srv.client_ssl_context(),
                server_hostname=server_hostname,
            )
        else:
            reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
        return cls(reader, writer)

    def _reset_parser(self) -> None:
        self._parser = ET.XMLPullParser(events=("start", "end"))
        self._depth = 0
        self._ready: list[ET.Element] = []
        self.stream_closed = False

    async def send(self, data: str | bytes) -> None:
        self.writer.write(data.encode() if isinstance(data, str) else data)
        await self.writer.drain()

    def _pump(self, data: bytes) -> None:
        self._parser.feed(data)
        for event, elem in self._parser.read_events():
            if event == "start":
                self._depth += 1
                if self._depth == 1:
                    self.stream_attrs = dict(elem.attrib)
                    self.stream_tag = elem.tag
            else:
                self._depth -= 1
                if self._depth == 1:
                    self._ready.append(elem)
                elif self._depth == 0:
                    self.stream_closed = True

    async def _read_more(self, timeout: float) -> bool:
        try:
            data = await asyncio.wait_for(self.reader.read(65536), timeout)
        except (ConnectionError, asyncio.IncompleteReadError):
            data = b""
        if not data:
            self.closed_by_server = True
            return False
        self._pump(data)
        return True

    async def next(self, timeout: float = DEFAULT_TIMEOUT) -> ET.Element:
        """The next top-level element the server sent."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self._ready:
            remaining = deadline - loop.time()
            if remaining <= 0 or self.closed_by_server:
                raise AssertionError("no element arrived")
            try:
                if not await self._read_more(remaining):
                    raise AssertionError("connection closed before an element arrived")
            except TimeoutError:
                raise AssertionError("no element arrived") from None
        return self._ready.pop(0)

    async def expect_nothing(self, within: float = 0.3) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while not self._ready and (remaining := deadline - loop.time()) > 0:
            try:
                if not await self._read_more(remaining):
                    break
            except TimeoutError:
                break
        assert not self._ready, f"unexpected: {ET.tostring(self._ready[0])!r}"

    async def open(self, to: str = "localhost", *, header: str | None = None) -> ET.Element:
        """Send a stream header; return the server's <stream:features/>."""
        self._reset_parser()
        await self.send(
            header
            or (
                f"<?xml version='1.0'?><stream:stream to='{to}' version='1.0' "
                f"xmlns='jabber:client' xmlns:stream='{NS_STREAM}'>"
            )
        )
        features = await self.next()
        assert features.tag == q(NS_STREAM, "features"), features.tag
        return features

    async def starttls(self, srv: RunningServer, server_hostname: str = "localhost") -> None:
        await self.send(f"<starttls xmlns='{NS_TLS}'/>")
        proceed = await self.next()
        assert proceed.tag == q(NS_TLS, "proceed"), proceed.tag
        await self.writer.start_tls(srv.client_ssl_context(), server_hostname=server_hostname)

    async def auth_plain(self, jid: str, password: str = PASSWORD) -> ET.Element:
        local = jid.split("@", 1)[0]
        payload = base64.b64encode(f"\0{local}\0{password}".encode()).decode()
        await self.send(f"<auth xmlns='{NS_SASL}' mechanism='PLAIN'>{payload}</auth>")
        return await self.next()

    async def bind(self, resource: str | None = None) -> str:
        inner = f"<resource>{resource}</resource>" if resource else ""
        await self.send(f"<iq type='set' id='bind1'><bind xmlns='{NS_BIND}'>{inner}</bind></iq>")
        reply = await self.next()
        assert reply.get("type") == "result", ET.tostring(reply)
        jid = reply.find(f"{q(NS_BIND, 'bind')}/{q(NS_BIND, 'jid')}")
        assert jid is not None and jid.text
        return jid.text

    async def login(
        self,
        srv: RunningServer,
        jid: str,
        password: str = PASSWORD,
        resource: str | None = "raw",
        domain: str = "localhost",
    ) -> str:
        """STARTTLS, SASL PLAIN, restart, bind; returns the bound full JID."""
        await self.open(domain)
        await self.starttls(srv, domain)
        await self.open(domain)
        success = await self.auth_plain(jid, password)
        assert success.tag == q(NS_SASL, "success"), ET.tostring(success)
        await self.open(domain)
        return await self.bind(resource)

    async def ping(self, to: str = "localhost", iq_id: str = "ping1") -> ET.Element:
        """Send an XEP-0199 ping and return the server's reply, asserting it is the result."""
        await self.send(f"<iq type='get' id='{iq_id}' to='{to}'><ping xmlns='urn:xmpp:ping'/></iq>")
        reply = await self.next()
        assert reply.tag == q(NS_CLIENT, "iq"), ET.tostring(reply)
        assert reply.get("id") == iq_id and reply.get("type") == "result", ET.tostring(reply)
        return reply

    async def expect_stream_error(self, condition: str, timeout: float = DEFAULT_TIMEOUT) -> None:
        """The server sends <stream:error> with ``condition``, closes the stream and the TCP
        connection (RFC 6120 §4.9.1.1)."""
        error = await self.next(timeout)
        assert error.tag == q(NS_STREAM, "error"), ET.tostring(error)
        conditions = [child.tag for child in error if child.tag != q(NS_STREAMS, "text")]
        assert conditions == [q(NS_STREAMS, condition)], conditions
        await self.expect_closed(timeout)

    async def expect_closed(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self.closed_by_server:
            remaining = deadline - loop.time()
            assert remaining > 0, "the server did not close the connection"
            with contextlib.suppress(asyncio.TimeoutError):
                await self._read_more(remaining)
        assert self.stream_closed, "the server closed TCP without </stream:stream>"

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()
            await asyncio.wait_for(self.writer.wait_closed(), 2)


async def raw_session(
    srv: RunningServer, jid: str | None = None, resource: str | None = "raw"
) -> tuple[RawClient, str]:
    """A RawClient logged in and bound (a fresh account unless ``jid`` is given); returns it
    with its full JID."""
    if jid is None:
        jid = await srv.add_user()
    client = await RawClient.connect(srv)
    full = await client.login(srv, jid, resource=resource)
    return client, full


def stanza_error_condition(stanza: ET.Element) -> str | None:
    """The defined condition of an error stanza, or None."""
    for error in stanza:
        if error.tag.endswith("}error"):
            for child in error:
                if child.tag.startswith(f"{{{NS_STANZAS}}}") and not child.tag.endswith("}text"):
                    return child.tag.split("}", 1)[1]
    return None


def free_port(address: str) -> int:
    """A port to listen on later. Taken below Linux's ephemeral range (32768-60999): a port
    the kernel handed out would be free again at once, and any outgoing connection on the
    machine could take it as its source port before the server binds it. A port handed out
    is not handed out again for the next 2,000 calls: two calls before anything binds (a
    cluster's nodes) would otherwise be free to return the same one."""
    for _ in range(200):
        port = random.randrange(20_000, 32_000)
        if port in _RECENT_PORTS:
            continue
        with socket.socket() as sock:
            try:
                sock.bind((address, port))
            except OSError:
                continue
            _RECENT_PORTS.append(port)  # the oldest falls out at maxlen
            return port
    raise RuntimeError(f"no free port on {address}")


_RECENT_PORTS: collections.deque[int] = collections.deque(maxlen=2_000)
