"""Server-to-server streams as sans-IO state machines (RFC 6120 §4 to §6 and §13, XEP-0220,
XEP-0185).

Two machines, one per direction of a TCP connection:

* :class:`S2SInStream`, the receiving side. It offers STARTTLS, then SASL EXTERNAL (only when
  the peer's certificate validated for the domain it claims) and Server Dialback. It answers
  ``<db:verify/>`` requests as the authoritative server of our domains, asks its shell to
  verify ``<db:result/>`` keys (unless the peer's certificate already proves the domain),
  and lets through only stanzas whose ``from`` and ``to`` domains form an authenticated
  pair.
* :class:`S2SOutStream`, the initiating side. It upgrades to TLS, authenticates with SASL
  EXTERNAL when offered, otherwise with dialback, one ``<db:result/>`` per local domain
  (several domains share one stream when the peer supports dialback errors: piggy-backing),
  and carries our ``<db:verify/>`` requests to the peer's authoritative server.

Stanzas inside Salon live in ``jabber:client``. The in-stream renames the ``jabber:server``
elements it receives; on the way out a ``jabber:client`` tree serialized as the content of a
``jabber:server`` stream needs no renaming (the default namespace is inherited).

Inbound::

    HEADER ──header──► OPEN ──starttls──► TLS ──tls_established──► HEADER
                        │  ├─ auth EXTERNAL ─ success ─► HEADER (restart)
                        │  ├─ db:result ─► VerifyKey … key_verified ─► pair authenticated
                        │  └─ stanzas of authenticated pairs ─► RemoteStanzaReceived
                        └── any error ──► CLOSED

Outbound::

    HEADER ─► FEATURES ─starttls─► TLS ─tls_established─► HEADER ─► FEATURES
                        ├─ EXTERNAL ─► SASL ─success─► HEADER ─► FEATURES ─► READY
                        └─ dialback offered ─► READY (db:result per local domain)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

from salon.errors import StanzaErrorCondition, StreamError, StreamErrorCondition
from salon.jid import JID, parse_jid
from salon.namespaces import (
    NS_CLIENT,
    NS_DIALBACK,
    NS_DIALBACK_FEATURES,
    NS_SASL,
    NS_SERVER,
    NS_STANZAS,
    NS_STREAM,
    NS_TLS,
)
from salon.stream.addressing import domain_or_none, to_client_namespace
from salon.stream.events import CloseConnection, Send, StartTls
from salon.stream.stream_errors import closing_bytes
from salon.xml.element import Element
from salon.xml.parser import StreamClosed, StreamOpened, XmlStreamParser
from salon.xml.serializer import STREAM_CLOSE, escape_attr, escape_text, serialize, stream_header

STANZA_TAGS = frozenset(("message", "presence", "iq"))
NS_XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
MAX_PENDING_DIALBACK = 32  # db:result / db:verify requests waiting on one stream
MAX_DOMAIN_PAIRS = 256  # authenticated (remote, local) pairs on one stream

PeerCertificate = Callable[[str], bool]
"""Whether the peer's PKIX-validated certificate covers a domain (RFC 6125)."""


def dialback_key(secret: bytes, receiving: str, originating: str, stream_id: str) -> str:
    """XEP-0185: HMAC-SHA256 over 'receiving originating id', keyed with SHA-256(secret) in
    hex, as the XEP's example computes it; the key is the HMAC in hex."""
    mac = hmac.new(hashlib.sha256(secret).hexdigest().encode(), digestmod=hashlib.sha256)
    mac.update(f"{receiving} {originating} {stream_id}".encode())
    return mac.hexdigest()


# ---------------------------------------------------------------------- actions
@dataclass(slots=True)
class RemoteStanzaReceived:
    """A stanza from an authenticated remote domain to one of ours, already in
    ``jabber:client``, with its parsed addresses."""

    stanza: Element
    sender: JID
    to: JID


@dataclass(slots=True)
class PeerAuthenticated:
    """Inbound: ``remote`` may now send stanzas to ``local`` over this stream."""

    remote: str
    local: str
    mechanism: str


@dataclass(slots=True)
class VerifyKey:
    """Inbound: ask the authoritative server of ``originating`` (a db:verify over an
    outgoing stream) whether ``key`` is its own; answer with ``key_verified``."""

    originating: str
    receiving: str
    stream_id: str
    key: str


@dataclass(slots=True)
class DomainAuthorized:
    """Outbound: stanzas from ``local`` may now flow over this stream."""

    local: str


@dataclass(slots=True)
class DomainRefused:
    """Outbound: the peer refused (or could not check) ``local``; its stanzas bounce with
    ``condition``."""

    local: str
    condition: StanzaErrorCondition
    text: str | None = None


@dataclass(slots=True)
class KeyVerified:
    """Outbound: the peer's answer to a db:verify we sent for a key ``originating`` (the
    peer's domain) presented to ``receiving`` (ours)."""

    originating: str
    receiving: str
    stream_id: str
    is_valid: bool


S2SAction = (
    Send
    | StartTls
    | CloseConnection
    | RemoteStanzaReceived
    | PeerAuthenticated
    | VerifyKey
    | DomainAuthorized
    | DomainRefused
    | KeyVerified
)


# ---------------------------------------------------------------------- common
@dataclass(slots=True)
class S2SLimits:
    max_stanza_size: int = 262144
    max_depth: int = 32
    new_id: Callable[[], str] = field(default=lambda: secrets.token_urlsafe(12))


class _S2SStream:
    """What both directions share: the parser, the header, stream errors and closing."""

    __slots__ = ("_header_sent", "_parser", "closed", "is_secure", "limits")

    def __init__(self, limits: S2SLimits, is_secure: bool) -> None:
        self.limits = limits
        self.is_secure = is_secure
        self.closed = False
        self._header_sent = False
        self._parser = XmlStreamParser(
            max_stanza_bytes=limits.max_stanza_size, max_depth=limits.max_depth
        )

    def receive_data(self, data: bytes) -> list[S2SAction]:
        if self.closed:
            return []
        try:
            events = self._parser.feed(data)
        except StreamError as exc:
            return self.close(exc.condition, exc.text)
        actions: list[S2SAction] = []
        for event in events:
            if self.closed or self._is_waiting_for_tls():
                break  # nothing may follow <starttls/>/<proceed/> before the handshake
            try:
                if isinstance(event, Element):
                    if event.ns == NS_STREAM and event.tag == "error":
                        # RFC 6120 §4.9: the peer ended the stream; never answer in kind.
                        actions.extend(self._peer_error(event))
                        self._set_closed()
                        actions.extend([Send(STREAM_CLOSE), CloseConnection(None)])
                    else:
                        actions.extend(self._on_element(event))
                elif isinstance(event, StreamOpened):
                    actions.extend(self._on_header(event))
                elif isinstance(event, StreamClosed):
                    actions.extend(self._peer_error(None))
                    self._set_closed()
                    actions.extend([Send(STREAM_CLOSE), CloseConnection(None)])
            except StreamError as exc:
                actions.extend(self.close(exc.condition, exc.text))
        return actions

    def close(
        self, condition: StreamErrorCondition | None = None, text: str | None = None
    ) -> list[S2SAction]:
        """End the stream: with a stream error when ``condition`` is given, else orderly."""
        if self.closed:
            return []
        header = None if self._header_sent else self._header(None)
        self._set_closed()
        return [Send(closing_bytes(header, condition, text, NS_SERVER)), CloseConnection(condition)]

    def _set_closed(self) -> None:
        self.closed = True

    def _restart(self) -> None:
        self._parser.reset()
        self._header_sent = False

    def _header_bytes(self, from_: str | None, to: str | None, stream_id: str | None) -> bytes:
        self._header_sent = True
        return stream_header(
            NS_SERVER,
            from_=from_,
            to=to,
            stream_id=stream_id,
            extra_ns={"db": NS_DIALBACK},
        )

    # hooks for the two directions
    def _header(self, stream_id: str | None) -> bytes:
        raise NotImplementedError

    def _is_waiting_for_tls(self) -> bool:
        raise NotImplementedError

    def _on_header(self, header: StreamOpened) -> list[S2SAction]:
        raise NotImplementedError

    def _on_element(self, el: Element) -> list[S2SAction]:
        raise NotImplementedError

    def _peer_error(self, error: Element | None) -> list[S2SAction]:
        """The peer ended the stream (with ``error``, or orderly when None)."""
        return []


# ---------------------------------------------------------------------- inbound
class S2SInState(Enum):
    HEADER = "header"  # waiting for the (re)started stream header
    OPEN = "open"  # features sent: TLS, SASL, dialback and stanzas
    TLS = "tls"  # <proceed/> sent, waiting for the handshake
    CLOSED = "closed"


@dataclass(slots=True)
class S2SInPolicy:
    """What the server decides for every incoming server-to-server stream."""

    is_local_host: Callable[[str], bool]
    default_host: str
    dialback_secret: bytes
    can_starttls: Callable[[str], bool] = lambda host: True
    require_encryption: bool = True
    require_certificate: bool = False
    is_peer_allowed: Callable[[str], bool] = lambda domain: True
    limits: S2SLimits = field(default_factory=S2SLimits)


class S2SInStream(_S2SStream):
    """The receiving side of one server-to-server connection."""

    __slots__ = (
        "_external_done",
        "_pending",
        "host",
        "pairs",
        "peer",
        "peer_certificate",
        "policy",
        "state",
        "stream_id",
    )

    def __init__(self, policy: S2SInPolicy, *, is_secure: bool = False) -> None:
        super().__init__(policy.limits, is_secure)
        self.policy = policy
        self.state = S2SInState.HEADER
        self.host: str | None = None  # our domain the peer asked for in the header
        self.peer: str | None = None  # the domain the peer claims in the header
        self.stream_id = ""
        self.peer_certificate: PeerCertificate | None = None
        self.pairs: set[tuple[str, str]] = set()  # authenticated (remote, local)
        self._pending: dict[tuple[str, str], str] = {}  # (remote, local) → key being checked
        self._external_done = False

    @property
    def remote_domains(self) -> set[str]:
        return {remote for remote, _local in self.pairs}

    # ------------------------------------------------------------ inputs from the shell
    def tls_established(self, peer_certificate: PeerCertificate | None) -> list[S2SAction]:
        """The handshake after <proceed/> finished (or direct TLS); the peer restarts."""
        self.is_secure = True
        self.peer_certificate = peer_certificate
        if self.state is S2SInState.TLS:
            self._restart()
            self.state = S2SInState.HEADER
        return []

    def key_verified(
        self,
        originating: str,
        receiving: str,
        is_valid: bool,
        error: StanzaErrorCondition | None = None,
    ) -> list[S2SAction]:
        """The authoritative server's answer to a ``VerifyKey`` (``error``: none came)."""
        if self.closed or self._pending.pop((originating, receiving), None) is None:
            return []
        if error is not None:
            return [Send(_db_result_error(receiving, originating, error))]
        result = "valid" if is_valid else "invalid"
        out = _db_element("result", {"from": receiving, "to": originating, "type": result})
        if not is_valid:
            return [Send(out)]
        self.pairs.add((originating, receiving))
        return [Send(out), PeerAuthenticated(originating, receiving, "dialback")]

    def _set_closed(self) -> None:
        self.closed = True
        self.state = S2SInState.CLOSED

    # ------------------------------------------------------------ header and features
    def _is_waiting_for_tls(self) -> bool:
        return self.state is S2SInState.TLS

    def _header(self, stream_id: str | None) -> bytes:
        return self._header_bytes(
            self.host or self.policy.default_host,
            self.peer,
            stream_id or self.stream_id or self.limits.new_id(),
        )

    def _on_header(self, header: StreamOpened) -> list[S2SAction]:
        if self.state is not S2SInState.HEADER:
            raise StreamError(StreamErrorCondition.BAD_FORMAT, "unexpected stream header")
        to = header.attrs.get("to")
        host = domain_or_none(to) if to else self.policy.default_host
        peer = domain_or_none(header.attrs.get("from") or "")
        if self.host is None:
            self.host = host if host and self.policy.is_local_host(host) else None
        if self.peer is None:
            self.peer = peer
        if header.ns != NS_STREAM:
            raise StreamError(StreamErrorCondition.INVALID_NAMESPACE, "wrong stream namespace")
        if header.tag != "stream":
            raise StreamError(StreamErrorCondition.BAD_FORMAT, "the root element is not stream")
        if header.default_ns != NS_SERVER:
            raise StreamError(StreamErrorCondition.INVALID_NAMESPACE, "content namespace")
        if self.host is None or host != self.host:
            raise StreamError(StreamErrorCondition.HOST_UNKNOWN, "this server does not serve it")
        if not _version_supported(header.attrs.get("version", "0.0")):
            raise StreamError(StreamErrorCondition.UNSUPPORTED_VERSION, "XMPP 1.0 only")
        self.stream_id = self.limits.new_id()
        self.state = S2SInState.OPEN
        return [Send(self._header(self.stream_id) + serialize(self._features(), NS_SERVER))]

    def _features(self) -> Element:
        assert self.host is not None
        features = Element("features", NS_STREAM)
        if not self.is_secure and self.policy.can_starttls(self.host):
            starttls = features.add("starttls", NS_TLS)
            if self.policy.require_encryption:
                starttls.add("required", NS_TLS)
        if not self.is_secure and self.policy.require_encryption:
            return features
        if self._can_external():
            features.add("mechanisms", NS_SASL).add("mechanism", NS_SASL, text="EXTERNAL")
        if not self.policy.require_certificate:
            features.add("dialback", NS_DIALBACK_FEATURES).add("errors", NS_DIALBACK_FEATURES)
        return features

    def _can_external(self) -> bool:
        peer = self.peer
        return (
            not self._external_done
            and self.is_secure
            and peer is not None
            and self.peer_certificate is not None
            and self.peer_certificate(peer)
            and self.policy.is_peer_allowed(peer)
        )

    # ------------------------------------------------------------ elements
    def _on_element(self, el: Element) -> list[S2SAction]:
        if self.state is not S2SInState.OPEN:
            raise StreamError(StreamErrorCondition.BAD_FORMAT)
        if el.ns == NS_SERVER and el.tag in STANZA_TAGS:
            return self._on_stanza(el)
        if el.ns == NS_DIALBACK and el.tag == "result":
            return self._on_db_result(el)
        if el.ns == NS_DIALBACK and el.tag == "verify":
            return self._on_db_verify(el)
        if el.ns == NS_TLS and el.tag == "starttls":
            return self._on_starttls()
        if el.ns == NS_SASL and el.tag == "auth":
            return self._on_auth(el)
        raise StreamError(
            StreamErrorCondition.UNSUPPORTED_STANZA_TYPE,
            f"<{el.tag}/> in {el.ns or 'no namespace'}",
        )

    def _on_starttls(self) -> list[S2SAction]:
        assert self.host is not None
        if self.is_secure or not self.policy.can_starttls(self.host):
            self._set_closed()
            failure = serialize(Element("failure", NS_TLS), NS_SERVER)
            return [Send(failure + STREAM_CLOSE), CloseConnection(None)]
        self.state = S2SInState.TLS
        return [Send(serialize(Element("proceed", NS_TLS), NS_SERVER)), StartTls()]

    def _on_auth(self, el: Element) -> list[S2SAction]:
        """SASL EXTERNAL (RFC 6120 §6.4, XEP-0178): the certificate proves the domain."""
        if el.get("mechanism") != "EXTERNAL":
            return [Send(_sasl_failure("invalid-mechanism"))]
        if not self.is_secure:
            return [Send(_sasl_failure("encryption-required"))]
        authzid = _decode_authzid(el.text)
        if authzid is None:
            return [Send(_sasl_failure("incorrect-encoding"))]
        peer = self.peer
        if authzid and (peer is None or domain_or_none(authzid) != peer):
            if peer is not None:
                return [Send(_sasl_failure("invalid-authzid"))]
            peer = domain_or_none(authzid)  # no 'from' on the header: the authzid names it
            self.peer = peer
        if peer is None or not self._can_external():
            return [Send(_sasl_failure("not-authorized"))]
        assert self.host is not None
        self._external_done = True
        self.pairs.add((peer, self.host))
        self._restart()
        self.state = S2SInState.HEADER
        success = serialize(Element("success", NS_SASL), NS_SERVER)
        return [Send(success), PeerAuthenticated(peer, self.host, "EXTERNAL")]

    def _on_db_result(self, el: Element) -> list[S2SAction]:
        """XEP-0220 §2.1: a domain of the peer asks to send to one of ours."""
        originating = domain_or_none(el.get("from") or "")
        receiving = domain_or_none(el.get("to") or "")
        if originating is None or receiving is None:
            raise StreamError(StreamErrorCondition.IMPROPER_ADDRESSING, "db:result addressing")
        if el.get("type") is not None:
            raise StreamError(StreamErrorCondition.UNSUPPORTED_STANZA_TYPE, "db:result answer")
        if not self.is_secure and self.policy.require_encryption:
            raise StreamError(StreamErrorCondition.POLICY_VIOLATION, "use TLS first")
        error: StanzaErrorCondition | None = None
        if not self.policy.is_local_host(receiving):
            error = StanzaErrorCondition.ITEM_NOT_FOUND
        elif self.policy.require_certificate and not self._certificate_proves(originating):
            error = StanzaErrorCondition.POLICY_VIOLATION
        elif not self.policy.is_peer_allowed(originating):
            error = StanzaErrorCondition.FORBIDDEN
        elif (
            len(self._pending) >= MAX_PENDING_DIALBACK
            or len(self.pairs) >= MAX_DOMAIN_PAIRS
            or (originating, receiving) in self._pending
        ):
            error = StanzaErrorCondition.RESOURCE_CONSTRAINT
        if error is not None:
            return [Send(_db_result_error(receiving, originating, error))]
        if (originating, receiving) in self.pairs or self._certificate_proves(originating):
            # XEP-0344: a certificate valid for the domain proves it; no need to dial back.
            self.pairs.add((originating, receiving))
            valid = _db_element("result", {"from": receiving, "to": originating, "type": "valid"})
            return [Send(valid), PeerAuthenticated(originating, receiving, "dialback+PKIX")]
        key = el.text.strip()
        self._pending[(originating, receiving)] = key
        return [VerifyKey(originating, receiving, self.stream_id, key)]

    def _certificate_proves(self, domain: str) -> bool:
        certificate = self.peer_certificate
        return self.is_secure and certificate is not None and certificate(domain)

    def _on_db_verify(self, el: Element) -> list[S2SAction]:
        """XEP-0220 §2.3: we are the authoritative server; is this key one of ours?"""
        receiving = el.get("from") or ""
        originating = el.get("to") or ""
        stream_id = el.get("id") or ""
        if not receiving or not originating or not stream_id:
            raise StreamError(StreamErrorCondition.IMPROPER_ADDRESSING, "db:verify addressing")
        if el.get("type") is not None:
            raise StreamError(StreamErrorCondition.UNSUPPORTED_STANZA_TYPE, "db:verify answer")
        if not self.is_secure and self.policy.require_encryption:
            raise StreamError(StreamErrorCondition.POLICY_VIOLATION, "use TLS first")
        # As bytes: compare_digest refuses str with non-ASCII characters (a TypeError).
        is_valid = self.policy.is_local_host(originating) and hmac.compare_digest(
            dialback_key(self.policy.dialback_secret, receiving, originating, stream_id).encode(),
            el.text.strip().encode(),
        )
        attrs = {
            "from": originating,
            "to": receiving,
            "id": stream_id,
            "type": "valid" if is_valid else "invalid",
        }
        return [Send(_db_element("verify", attrs))]

    def _on_stanza(self, el: Element) -> list[S2SAction]:
        """RFC 6120 §8.1.1.2, §8.1.2.2, §13.9.2: both addresses, from an authenticated domain,
        to a hosted domain."""
        if not self.pairs:
            raise StreamError(StreamErrorCondition.NOT_AUTHORIZED, "authenticate first")
        from_text, to_text = el.get("from"), el.get("to")
        if not from_text or not to_text:
            raise StreamError(StreamErrorCondition.IMPROPER_ADDRESSING, "from and to required")
        sender = parse_jid(from_text)
        if sender is None or sender.domain not in self.remote_domains:
            raise StreamError(StreamErrorCondition.INVALID_FROM, "not an authenticated domain")
        to = parse_jid(to_text)
        if to is None:
            raise StreamError(StreamErrorCondition.IMPROPER_ADDRESSING, "malformed 'to'")
        if not self.policy.is_local_host(to.domain):
            raise StreamError(StreamErrorCondition.HOST_UNKNOWN, "this server does not serve it")
        if (sender.domain, to.domain) not in self.pairs:
            raise StreamError(StreamErrorCondition.INVALID_FROM, "domain pair not authenticated")
        to_client_namespace(el, NS_SERVER)
        return [RemoteStanzaReceived(el, sender, to)]


# ---------------------------------------------------------------------- outbound
class S2SOutState(Enum):
    HEADER = "header"  # our header is out; waiting for the peer's
    FEATURES = "features"  # waiting for <stream:features/>
    STARTTLS = "starttls"  # <starttls/> sent, waiting for <proceed/>
    TLS = "tls"  # the handshake is running
    SASL = "sasl"  # <auth mechanism='EXTERNAL'/> sent
    READY = "ready"  # negotiated: dialback requests and stanzas may flow
    CLOSED = "closed"


@dataclass(slots=True)
class S2SOutPolicy:
    """What the server decides for every outgoing server-to-server stream."""

    dialback_secret: bytes
    can_starttls: bool = True
    require_encryption: bool = True
    require_certificate: bool = False  # the peer's certificate must validate
    can_external: bool = True  # we present a certificate for our domains
    limits: S2SLimits = field(default_factory=S2SLimits)


class S2SOutStream(_S2SStream):
    """The initiating side of one server-to-server connection to ``remote``."""

    __slots__ = (
        "_dialback_offered",
        "_external_done",
        "_external_failed",
        "_queued_verifies",
        "authorized",
        "has_dialback_errors",
        "local",
        "peer_certificate",
        "peer_stream_id",
        "pending",
        "policy",
        "remote",
        "state",
        "wanted",
    )

    def __init__(
        self, local: str, remote: str, policy: S2SOutPolicy, *, is_secure: bool = False
    ) -> None:
        super().__init__(policy.limits, is_secure)
        self.local = local  # the domain named in our stream header
        self.remote = remote
        self.policy = policy
        self.state = S2SOutState.HEADER
        self.peer_stream_id = ""
        self.peer_certificate: PeerCertificate | None = None
        self.authorized: set[str] = set()  # our domains the peer accepted
        self.pending: set[str] = set()  # our domains whose db:result is out
        self.wanted: list[str] = [local]  # our domains to authenticate once ready
        self.has_dialback_errors = False
        self._dialback_offered = False
        self._external_done = False
        self._external_failed = False
        self._queued_verifies: list[bytes] = []

    @property
    def is_ready(self) -> bool:
        return self.state is S2SOutState.READY

    @property
    def can_piggyback(self) -> bool:
        """Whether another local domain may be authenticated over this stream (XEP-0220
        §2.6 requires the peer to support dialback errors)."""
        return not self.closed and self.has_dialback_errors and self._dialback_offered

    # ------------------------------------------------------------ inputs from the shell
    def start(self) -> list[S2SAction]:
        """The TCP (or direct TLS) connection is up: open the stream."""
        return [Send(self._header(None))]

    def tls_established(self, peer_certificate: PeerCertificate | None) -> list[S2SAction]:
        """The handshake finished (after <proceed/>, or direct TLS before ``start``)."""
        self.is_secure = True
        self.peer_certificate = peer_certificate
        if self.state is S2SOutState.TLS:
            self._restart()
            self.state = S2SOutState.HEADER
            return [Send(self._header(None))]
        return []

    def authorize(self, local: str) -> list[S2SAction]:
        """Authenticate ``local`` too (piggy-backing), now or once the stream is ready."""
        if self.closed or local in self.authorized or local in self.pending:
            return []
        if local not in self.wanted:
            self.wanted.append(local)
        return self._dialback(local) if self.is_ready else []

    def verify_key(self, receiving: str, stream_id: str, key: str) -> list[S2SAction]:
        """Send a db:verify for a key the peer's domain presented to ``receiving``."""
        if self.closed:
            return []
        attrs = {"from": receiving, "to": self.remote, "id": stream_id}
        request = _db_element("verify", attrs, key)
        if self.is_ready:
            return [Send(request)]
        if len(self._queued_verifies) >= MAX_PENDING_DIALBACK:
            return [KeyVerified(self.remote, receiving, stream_id, False)]
        self._queued_verifies.append(request)
        return []

    def send_stanza(self, stanza: Element) -> list[S2SAction]:
        """A ``jabber:client`` stanza, written as content of this ``jabber:server`` stream."""
        return [Send(serialize(stanza, NS_CLIENT))]

    def _set_closed(self) -> None:
        self.closed = True
        self.state = S2SOutState.CLOSED

    # ------------------------------------------------------------ header and features
    def _is_waiting_for_tls(self) -> bool:
        return self.state is S2SOutState.TLS

    def _header(self, stream_id: str | None) -> bytes:
        return self._header_bytes(self.local, self.remote, None)

    def _on_header(self, header: StreamOpened) -> list[S2SAction]:
        if self.state is not S2SOutState.HEADER:
            raise StreamError(StreamErrorCondition.BAD_FORMAT, "unexpected stream header")
        if header.ns != NS_STREAM or header.default_ns != NS_SERVER:
            raise StreamError(StreamErrorCondition.INVALID_NAMESPACE, "not a server stream")
        if header.tag != "stream":
            raise StreamError(StreamErrorCondition.BAD_FORMAT, "the root element is not stream")
        if not _version_supported(header.attrs.get("version", "0.0")):
            raise StreamError(StreamErrorCondition.UNSUPPORTED_VERSION, "XMPP 1.0 only")
        self.peer_stream_id = header.attrs.get("id", "")
        self.state = S2SOutState.FEATURES
        return []

    def _on_element(self, el: Element) -> list[S2SAction]:
        state = self.state
        if state is S2SOutState.FEATURES:
            if el.ns == NS_STREAM and el.tag == "features":
                return self._on_features(el)
            raise StreamError(StreamErrorCondition.BAD_FORMAT, "expected stream features")
        if state is S2SOutState.SASL and el.ns == NS_SASL:
            return self._on_sasl_outcome(el)
        if state is S2SOutState.READY and el.ns == NS_DIALBACK:
            if el.tag == "result":
                return self._on_db_result(el)
            if el.tag == "verify":
                return self._on_db_verify(el)
        if state is S2SOutState.STARTTLS and el.ns == NS_TLS:
            if el.tag == "proceed":
                self.state = S2SOutState.TLS
                return [StartTls()]
            raise StreamError(StreamErrorCondition.UNDEFINED_CONDITION, "the peer refused TLS")
        raise StreamError(
            StreamErrorCondition.UNSUPPORTED_STANZA_TYPE,
            f"<{el.tag}/> in {el.ns or 'no namespace'} on an outgoing stream",
        )

    def _on_features(self, features: Element) -> list[S2SAction]:
        if not self.is_secure:
            if features.find("starttls", NS_TLS) is not None and self.policy.can_starttls:
                self.state = S2SOutState.STARTTLS
                return [Send(serialize(Element("starttls", NS_TLS), NS_SERVER))]
            if self.policy.require_encryption:
                return self._give_up("the peer offers no TLS")
        elif self.policy.require_certificate and not self._peer_proven():
            return self._give_up(f"the certificate of {self.remote} does not validate")
        dialback = features.find("dialback", NS_DIALBACK_FEATURES)
        self._dialback_offered = dialback is not None
        self.has_dialback_errors = (
            dialback is not None and dialback.find("errors", NS_DIALBACK_FEATURES) is not None
        )
        if self._external_done:
            self.authorized.add(self.local)
            return [DomainAuthorized(self.local), *self._become_ready()]
        mechanisms = features.find("mechanisms", NS_SASL)
        if (
            self.is_secure
            and self.policy.can_external
            and not self._external_failed
            and mechanisms is not None
            and any(m.text.strip() == "EXTERNAL" for m in mechanisms.find_all("mechanism"))
        ):
            self.state = S2SOutState.SASL
            auth = Element("auth", NS_SASL, {"mechanism": "EXTERNAL"})
            auth.text = base64.b64encode(self.local.encode()).decode()
            return [Send(serialize(auth, NS_SERVER))]
        return self._become_ready()

    def _peer_proven(self) -> bool:
        return self.peer_certificate is not None and self.peer_certificate(self.remote)

    def _become_ready(self) -> list[S2SAction]:
        self.state = S2SOutState.READY
        actions: list[S2SAction] = []
        queued, self._queued_verifies = self._queued_verifies, []
        actions.extend(Send(request) for request in queued)
        for local in list(self.wanted):
            if local not in self.authorized and local not in self.pending:
                actions.extend(self._dialback(local))
        return actions

    def _give_up(self, text: str) -> list[S2SAction]:
        refusals: list[S2SAction] = [
            DomainRefused(local, StanzaErrorCondition.REMOTE_SERVER_TIMEOUT, text)
            for local in self.wanted
            if local not in self.authorized
        ]
        return refusals + self.close(StreamErrorCondition.POLICY_VIOLATION, text)

    def _on_sasl_outcome(self, el: Element) -> list[S2SAction]:
        if el.tag == "success":
            self._external_done = True
            self._restart()
            self.state = S2SOutState.HEADER
            return [Send(self._header(None))]
        # <failure/>: fall back to dialback when the peer offered it.
        self._external_failed = True
        return self._become_ready()

    # ------------------------------------------------------------ dialback
    def _dialback(self, local: str) -> list[S2SAction]:
        if local in self.authorized or local in self.pending:
            return []
        if not self._dialback_offered or not self.peer_stream_id:
            return [
                DomainRefused(
                    local,
                    StanzaErrorCondition.REMOTE_SERVER_TIMEOUT,
                    f"{self.remote} accepts neither our certificate nor dialback",
                )
            ]
        if local != self.local and not self.has_dialback_errors:
            return [DomainRefused(local, StanzaErrorCondition.REMOTE_SERVER_TIMEOUT, None)]
        self.pending.add(local)
        key = dialback_key(self.policy.dialback_secret, self.remote, local, self.peer_stream_id)
        return [Send(_db_element("result", {"from": local, "to": self.remote}, key))]

    def _on_db_result(self, el: Element) -> list[S2SAction]:
        local = domain_or_none(el.get("to") or "")
        from_ = domain_or_none(el.get("from") or "")
        if local is None or local not in self.pending or from_ != self.remote:
            raise StreamError(StreamErrorCondition.INVALID_FROM, "unexpected db:result")
        self.pending.discard(local)
        result = el.get("type")
        if result == "valid":
            self.authorized.add(local)
            return [DomainAuthorized(local)]
        condition = StanzaErrorCondition.REMOTE_SERVER_TIMEOUT
        text = f"{self.remote} refused dialback for {local}"
        if result == "error":
            cause = _error_condition(el)
            if cause:
                text = f"{text}: {cause}"
        actions: list[S2SAction] = [DomainRefused(local, condition, text)]
        if result == "invalid" and not self.authorized:
            # XEP-0220 §2.4: an invalid key ends the stream unless it carries other domains.
            actions.extend(self.close())
        return actions

    def _on_db_verify(self, el: Element) -> list[S2SAction]:
        originating = domain_or_none(el.get("from") or "") or ""
        receiving = domain_or_none(el.get("to") or "") or ""
        stream_id = el.get("id") or ""
        return [KeyVerified(originating, receiving, stream_id, el.get("type") == "valid")]

    def _peer_error(self, error: Element | None) -> list[S2SAction]:
        cause = "the stream was closed"
        if error is not None:
            cause = next((c.tag for c in error.elements() if c.tag != "text"), "stream error")
        return [
            DomainRefused(
                local, StanzaErrorCondition.REMOTE_SERVER_TIMEOUT, f"{self.remote}: {cause}"
            )
            for local in self.wanted
            if local not in self.authorized
        ]


# ---------------------------------------------------------------------- helpers


def _version_supported(version: str) -> bool:
    major, _, _minor = version.partition(".")
    return major == "1"


def _db_element(tag: str, attrs: dict[str, str], text: str | None = None) -> bytes:
    """A dialback element written with the customary ``db:`` prefix (declared on our stream
    header), as every server writes it."""
    parts = [f"<db:{tag}"]
    for name, value in attrs.items():
        parts.append(f" {name}='{escape_attr(value)}'")
    if text:
        parts.append(f">{escape_text(text)}</db:{tag}>")
    else:
        parts.append("/>")
    return "".join(parts).encode()


def _db_result_error(receiving: str, originating: str, condition: StanzaErrorCondition) -> bytes:
    """XEP-0220 §2.4: a dialback error, carrying a stanza error condition."""
    error_type = "auth" if condition is StanzaErrorCondition.FORBIDDEN else "cancel"
    if condition is StanzaErrorCondition.REMOTE_SERVER_TIMEOUT:
        error_type = "wait"
    inner = f"<error type='{error_type}'><{condition.value} xmlns='{NS_STANZAS}'/></error>"
    head = _db_element("result", {"from": receiving, "to": originating, "type": "error"})
    return head[:-2] + b">" + inner.encode() + b"</db:result>"


def _error_condition(el: Element) -> str | None:
    for error in el.elements():
        if error.tag == "error":
            for child in error.elements():
                if child.ns == NS_STANZAS and child.tag != "text":
                    return child.tag
    return None


def _sasl_failure(condition: str) -> bytes:
    failure = Element("failure", NS_SASL)
    failure.add(condition, NS_SASL)
    return serialize(failure, NS_SERVER)


def _decode_authzid(text: str) -> str | None:
    """The authorization identity of an EXTERNAL <auth/>: '' when absent or '=', None when
    not base64 or not UTF-8."""
    text = text.strip()
    if not text or text == "=":
        return ""
    try:
        return base64.b64decode(text, validate=True).decode()
    except ValueError:  # binascii.Error, UnicodeDecodeError, and text that is not ASCII
        return None
