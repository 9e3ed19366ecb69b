"""The load generator's client: raw asyncio protocols, precomputed bytes, no XML library.

A :class:`Conn` buffers bytes only while it logs in (stream header, STARTTLS, SASL, bind), where
it waits for fixed markers such as ``</stream:features>``. Once online it switches to a counting
mode in which ``data_received`` only counts what arrives with ``bytes.count``/``rfind`` and one
compiled regular expression that pulls the send timestamps out of message bodies. Nothing in the
hot path parses XML.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
import re
import ssl
import time
from dataclasses import dataclass, field

NS = b"xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'"
SASL = b"xmlns='urn:ietf:params:xml:ns:xmpp-sasl'"
STARTTLS = b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
ROSTER_GET = b"<iq type='get' id='roster1'><query xmlns='jabber:iq:roster'/></iq>"
PRESENCE = b"<presence/>"
UNAVAILABLE = b"<presence type='unavailable'/>"
CLOSE = b"</stream:stream>"

BODY_SIZE = 100
TS_DIGITS = 16
PAD = b" " + b"x" * (BODY_SIZE - TS_DIGITS - 1)
MSG_SUFFIX = PAD + b"</body></message>"
TS_RE = re.compile(rb"<body>(\d{16})")
# A server's ping (XEP-0199; Salon's offline store asks one to learn the messages arrived);
# RFC 6120 §8.2.3: a client answers every iq get.
PING_RE = re.compile(rb"<iq type='get' id='([^']+)' from='([^']+)'[^>]*><ping ")
STREAM_ERROR_RE = re.compile(rb"<stream:error><([a-z-]+)")
MSG_END = b"</message>"
PRESENCE_TAG = b"<presence"

MODE_LOGIN, MODE_MESSAGES, MODE_PRESENCE, MODE_DISCARD, MODE_SOAK = 0, 1, 2, 3, 4

CLIENT_TLS = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
CLIENT_TLS.check_hostname = False
CLIENT_TLS.verify_mode = ssl.CERT_NONE


def now_us() -> int:
    return time.perf_counter_ns() // 1000


def header(domain: str) -> bytes:
    return (
        b"<?xml version='1.0'?><stream:stream to='"
        + domain.encode()
        + b"' version='1.0' xml:lang='en' "
        + NS
        + b">"
    )


def message_prefix(to: str) -> bytes:
    """Everything before the timestamp: the generator appends timestamp + MSG_SUFFIX."""
    return b"<message type='chat' to='" + to.encode() + b"'><body>"


class LoginFailed(Exception):
    pass


@dataclass
class Counters:
    """What every connection in counting mode adds to. One instance per scenario."""

    messages: int = 0
    presences: int = 0
    errors: int = 0
    last_delivery: float = 0.0
    latencies: list[int] | None = None
    closed: int = 0
    pings: int = 0  # server pings answered (MODE_SOAK)
    stream_errors: dict[bytes, int] = field(default_factory=dict)  # MODE_SOAK: by condition


# SCRAM-SHA-1 (RFC 5802) client. SaltedPassword (the PBKDF2 part) is cached per
# (password, salt, iterations), as real clients cache it, so that the generator's cost per
# login is a few HMACs and the server, not the generator, does the measured work.
_SCRAM_CACHE: dict[tuple[str, bytes, int], tuple[bytes, bytes]] = {}


def _scram_keys(password: str, salt: bytes, iterations: int) -> tuple[bytes, bytes]:
    key = (password, salt, iterations)
    keys = _SCRAM_CACHE.get(key)
    if keys is None:
        salted = hashlib.pbkdf2_hmac("sha1", password.encode(), salt, iterations)
        client_key = hmac.new(salted, b"Client Key", "sha1").digest()
        keys = (client_key, hashlib.sha1(client_key).digest())
        _SCRAM_CACHE[key] = keys
    return keys


def scram_first(username: str) -> tuple[bytes, bytes]:
    """(client-first-message-bare, the <auth/> bytes)."""
    nonce = base64.b64encode(os.urandom(18))
    bare = b"n=" + username.encode() + b",r=" + nonce
    payload = base64.b64encode(b"n,," + bare)
    return bare, b"<auth " + SASL + b" mechanism='SCRAM-SHA-1'>" + payload + b"</auth>"


def scram_final(bare: bytes, challenge_b64: bytes, password: str) -> bytes:
    server_first = base64.b64decode(challenge_b64)
    attrs = dict(part.split(b"=", 1) for part in server_first.split(b","))
    salt, iterations, nonce = base64.b64decode(attrs[b"s"]), int(attrs[b"i"]), attrs[b"r"]
    client_key, stored_key = _scram_keys(password, salt, iterations)
    without_proof = b"c=biws,r=" + nonce
    auth_message = bare + b"," + server_first + b"," + without_proof
    signature = hmac.new(stored_key, auth_message, "sha1").digest()
    proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
    final = without_proof + b",p=" + base64.b64encode(proof)
    return b"<response " + SASL + b">" + base64.b64encode(final) + b"</response>"


def plain_auth(username: str, password: str) -> bytes:
    token = base64.b64encode(b"\0" + username.encode() + b"\0" + password.encode())
    return b"<auth " + SASL + b" mechanism='PLAIN'>" + token + b"</auth>"


class Conn(asyncio.Protocol):
    """One client connection."""

    __slots__ = (
        "buf",
        "closed",
        "counters",
        "index",
        "marker",
        "mode",
        "tail",
        "transport",
        "waiter",
    )

    def __init__(self, counters: Counters, index: int = 0) -> None:
        self.counters = counters
        self.index = index
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.buf = bytearray()
        self.tail = b""
        self.mode = MODE_LOGIN
        self.waiter: asyncio.Future[None] | None = None
        self.marker = b""
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    # -- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        mode = self.mode
        if mode == MODE_MESSAGES:
            if self.tail:
                data = self.tail + data
            end = data.rfind(MSG_END)
            if end < 0:
                self.tail = data if len(data) < 1_000_000 else b""
                return
            self.tail = data[end + 10 :]
            stamps = TS_RE.findall(data, 0, end)
            counters = self.counters
            counters.messages += len(stamps)
            lat = counters.latencies
            if lat is not None:
                now = time.perf_counter_ns() // 1000
                lat.extend([now - int(s) for s in stamps])
            return
        if mode == MODE_PRESENCE:
            chunk = self.tail + data
            found = chunk.count(PRESENCE_TAG)
            if found:
                counters = self.counters
                counters.presences += found
                counters.last_delivery = time.perf_counter()
            self.tail = chunk[-8:]
            return
        if mode == MODE_DISCARD:
            return
        if mode == MODE_SOAK:  # messages and presence, counted by their tags
            chunk = self.tail + data
            counters = self.counters
            counters.messages += chunk.count(MSG_END)
            counters.presences += chunk.count(PRESENCE_TAG)
            if b"<ping " in chunk:  # answered; a ping cut in two is caught with the tail
                for iq_id, sender in PING_RE.findall(chunk):
                    self.transport.write(b"<iq type='result' id='%s' to='%s'/>" % (iq_id, sender))
                    counters.pings += 1
                cut = chunk.rfind(b"<iq ")
                self.tail = chunk[cut:] if cut >= 0 and b"</iq>" not in chunk[cut:] else chunk[-8:]
            else:
                self.tail = chunk[-8:]  # shorter than either tag: nothing is counted twice
            if b"<stream:error>" in chunk:
                for condition in STREAM_ERROR_RE.findall(chunk):
                    counters.stream_errors[condition] = counters.stream_errors.get(condition, 0) + 1
            return
        self.buf += data
        waiter = self.waiter
        buf = self.buf
        if (
            waiter is not None
            and not waiter.done()
            and (self.marker in buf or b"<failure" in buf or b"<stream:error" in buf)
        ):
            waiter.set_result(None)

    def eof_received(self) -> bool | None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.mode != MODE_LOGIN:
            self.counters.closed += 1
        if not self.closed.done():
            self.closed.set_result(None)
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(ConnectionError(f"closed: {bytes(self.buf[-300:])!r}"))

    # -- login helpers ----------------------------------------------------------------------

    async def expect(self, marker: bytes, timeout: float) -> bytes:
        """Wait for ``marker``; return and consume the buffer up to and including it."""
        buf = self.buf
        if marker not in buf:
            if b"<failure" in buf or b"<stream:error" in buf:
                raise LoginFailed(bytes(buf[-400:]).decode(errors="replace"))
            if self.closed.done():
                raise ConnectionError(f"closed while waiting for {marker!r}")
            self.marker = marker
            self.waiter = asyncio.get_running_loop().create_future()
            try:
                await asyncio.wait_for(self.waiter, timeout)
            except TimeoutError:
                raise TimeoutError(
                    f"no {marker!r} after {timeout}s: {bytes(buf[-300:])!r}"
                ) from None
            finally:
                self.waiter = None
            if marker not in buf:
                raise LoginFailed(bytes(buf[-400:]).decode(errors="replace"))
        end = buf.index(marker) + len(marker)
        out = bytes(buf[:end])
        del buf[:end]
        return out

    def write(self, data: bytes) -> None:
        self.transport.write(data)


@dataclass
class LoginSpec:
    port: int
    domain: str = "localhost"
    password: str = "pw"
    tls: bool = False
    mechanism: str = "SCRAM-SHA-1"  # or "PLAIN"
    presence: bool = True
    roster: bool = False
    timeout: float = 30.0
    source_ips: list[str] = field(default_factory=lambda: ["127.0.0.1"])


@dataclass
class LoginResult:
    conn: Conn
    started: float
    bound: float  # perf_counter at bind result


async def login(spec: LoginSpec, username: str, counters: Counters, index: int = 0) -> LoginResult:
    """Connect, (STARTTLS), authenticate, bind, (roster get), (initial presence)."""
    loop = asyncio.get_running_loop()
    source = spec.source_ips[index % len(spec.source_ips)]
    started = time.perf_counter()
    _t, conn = await loop.create_connection(
        lambda: Conn(counters, index), "127.0.0.1", spec.port, local_addr=(source, 0)
    )
    try:
        timeout = spec.timeout
        head = header(spec.domain)
        conn.write(head)
        await conn.expect(b"</stream:features>", timeout)
        if spec.tls:
            conn.write(STARTTLS)
            await conn.expect(b"<proceed", timeout)
            conn.buf.clear()
            conn.transport = await loop.start_tls(  # type: ignore[assignment]
                conn.transport, conn, CLIENT_TLS, server_hostname=spec.domain
            )
            conn.write(head)
            await conn.expect(b"</stream:features>", timeout)
        if spec.mechanism == "PLAIN":
            conn.write(plain_auth(username, spec.password))
        else:
            bare, auth = scram_first(username)
            conn.write(auth)
            await conn.expect(b"<challenge", timeout)
            await conn.expect(b">", timeout)
            frame = await conn.expect(b"</challenge>", timeout)
            conn.write(scram_final(bare, frame[: -len(b"</challenge>")], spec.password))
        await conn.expect(b"<success", timeout)
        conn.write(head)
        await conn.expect(b"</stream:features>", timeout)
        conn.write(
            b"<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
            b"<resource>bench</resource></bind></iq>"
        )
        await conn.expect(b"</jid>", timeout)
        bound = time.perf_counter()
        if spec.roster:
            conn.write(ROSTER_GET)
            await conn.expect(b"roster1", timeout)
            await conn.expect(b"</iq>", timeout)
        if spec.presence:
            conn.write(PRESENCE)
    except BaseException:
        conn.transport.abort()
        raise
    return LoginResult(conn, started, bound)


async def close(conn: Conn, timeout: float = 5.0) -> None:
    """End the stream and wait for the server to close the TCP connection (its side then
    holds the TIME_WAIT), or abort after ``timeout``."""
    conn.mode = MODE_DISCARD
    try:
        conn.transport.write(CLOSE)
        await asyncio.wait_for(asyncio.shield(conn.closed), timeout)
    except (TimeoutError, ConnectionError, OSError):
        pass
    finally:
        if not conn.transport.is_closing():
            conn.transport.close()
