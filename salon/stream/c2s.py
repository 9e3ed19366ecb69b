"""The client-to-server stream as a sans-IO state machine (RFC 6120 §4 to §9).

Feed it bytes and results of lookups; it returns the actions its IO shell must carry out.
No sockets, no clock, no storage: the shell owns those.

    HEADER ──header──► (features) ──starttls──► TLS ──tls_established──► HEADER
       │                    │
       │                    └──auth──► SASL ──success──► HEADER (restart) ──► BIND ──bind──► BOUND
       └── any error ──► CLOSED (stream error sent, connection closed)
"""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum

from salon.auth.sasl import (
    Challenge,
    Failure,
    NeedAccount,
    SaslCondition,
    SaslServer,
    SaslStep,
    Success,
    offered_mechanisms,
)
from salon.errors import StanzaError, StanzaErrorCondition, StreamError, StreamErrorCondition
from salon.jid import JID, JIDError, prepare_resourcepart
from salon.namespaces import (
    NS_BIND,
    NS_CLIENT,
    NS_SASL,
    NS_SASL_CB,
    NS_SESSION,
    NS_STANZAS,
    NS_STREAM,
    NS_STREAMS,
    NS_TLS,
)
from salon.storage.interfaces import Account
from salon.stream.events import (
    Authenticated,
    BindRequested,
    CloseConnection,
    DelayedSend,
    LookupAccount,
    NonzaReceived,
    Send,
    StanzaReceived,
    StartTls,
    StreamAction,
)
from salon.xml.element import Element
from salon.xml.parser import StreamClosed, StreamOpened, XmlStreamParser
from salon.xml.serializer import STREAM_CLOSE, serialize, stream_header

STANZA_TAGS = frozenset(("message", "presence", "iq"))
MAX_HELD_STANZAS = 32
NS_XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"


class C2SState(Enum):
    HEADER = "header"  # waiting for the (re)started stream header
    NEGOTIATING = "negotiating"  # features sent, TLS / SASL may start
    TLS = "tls"  # <proceed/> sent, waiting for the handshake
    SASL = "sasl"  # an exchange is in progress
    LOOKUP = "lookup"  # waiting for the account lookup
    BIND = "bind"  # authenticated, waiting for resource binding
    BOUND = "bound"  # stanzas flow
    CLOSED = "closed"


@dataclass(slots=True)
class C2SPolicy:
    """What the server decides for every client stream."""

    is_local_host: Callable[[str], bool]
    default_host: str
    can_starttls: Callable[[str], bool] = lambda host: True
    require_encryption: bool = True
    allow_plain: bool = True
    max_stanza_size: int = 262144
    max_depth: int = 32
    max_auth_attempts: int = 3
    nonza_namespaces: frozenset[str] = frozenset()
    extra_features: Callable[[], Sequence[Element]] = lambda: ()
    new_id: Callable[[], str] = field(default=lambda: secrets.token_urlsafe(12))


class C2SStream:
    """One client connection's stream negotiation and stanza framing."""

    __slots__ = (
        "_auth_failures",
        "_bind_pending",
        "_header_sent",
        "_held",
        "_lang",
        "_parser",
        "_sasl",
        "_sasl_mechanism",
        "channel_bindings",
        "host",
        "is_secure",
        "policy",
        "state",
        "stream_id",
        "username",
    )

    def __init__(self, policy: C2SPolicy, *, is_secure: bool = False) -> None:
        self.policy = policy
        self.is_secure = is_secure
        self.channel_bindings: Mapping[str, bytes] = {}
        self.state = C2SState.HEADER
        self.host: str | None = None
        self.username: str | None = None
        self.stream_id = ""
        self._parser = XmlStreamParser(
            max_stanza_bytes=policy.max_stanza_size, max_depth=policy.max_depth
        )
        self._header_sent = False
        self._lang = "en"
        self._sasl: SaslServer | None = None
        self._sasl_mechanism = ""
        self._auth_failures = 0
        self._bind_pending = False
        self._held: list[Element] = []  # stanzas pipelined behind the bind request

    # ------------------------------------------------------------------ inputs
    def receive_data(self, data: bytes) -> list[StreamAction]:
        if self.state is C2SState.CLOSED:
            return []
        try:
            events = self._parser.feed(data)
        except StreamError as exc:
            return self.close(exc.condition, exc.text)
        actions: list[StreamAction] = []
        for event in events:
            if self.state is C2SState.CLOSED or self.state is C2SState.TLS:
                break  # nothing may follow <starttls/> before the handshake
            try:
                if isinstance(event, Element):
                    actions.extend(self._on_element(event))
                elif isinstance(event, StreamOpened):
                    actions.extend(self._on_header(event))
                elif isinstance(event, StreamClosed):
                    actions.extend(self._on_stream_closed())
            except StreamError as exc:
                actions.extend(self.close(exc.condition, exc.text))
        return actions

    def tls_established(self, channel_bindings: Mapping[str, bytes]) -> list[StreamAction]:
        """The TLS handshake after <proceed/> completed; the client restarts the stream."""
        self.is_secure = True
        self.channel_bindings = channel_bindings
        self._restart()
        return []

    def account_loaded(self, account: Account | None) -> list[StreamAction]:
        if self.state is not C2SState.LOOKUP or self._sasl is None:
            return []
        self.state = C2SState.SASL
        return self._sasl_step(self._sasl.account(account))

    def bind_result(
        self, iq_id: str, jid: JID | None, error: StanzaError | None = None
    ) -> list[StreamAction]:
        """The shell's answer to BindRequested: the bound full JID, or why not."""
        if self.state is not C2SState.BIND or not self._bind_pending:
            return []
        self._bind_pending = False
        if jid is None:
            err = error or StanzaError(StanzaErrorCondition.INTERNAL_SERVER_ERROR)
            iq = Element("iq", NS_CLIENT, {"type": "error", "id": iq_id})
            iq.add("bind", NS_BIND)
            iq.append(stanza_error_element(err))
            return [Send(serialize(iq, NS_CLIENT))]
        self.state = C2SState.BOUND
        iq = Element("iq", NS_CLIENT, {"type": "result", "id": iq_id})
        iq.add("bind", NS_BIND).add("jid", NS_BIND, text=str(jid))
        actions: list[StreamAction] = [Send(serialize(iq, NS_CLIENT))]
        held, self._held = self._held, []
        for stanza in held:
            actions.extend(self._on_element(stanza))
        return actions

    def close(
        self, condition: StreamErrorCondition | None = None, text: str | None = None
    ) -> list[StreamAction]:
        """End the stream: with a stream error when ``condition`` is given, else orderly."""
        if self.state is C2SState.CLOSED:
            return []
        out: list[bytes] = []
        if not self._header_sent:
            out.append(self._header_bytes(self.host or self.policy.default_host, None))
        if condition is not None:
            out.append(serialize(stream_error_element(condition, text), NS_CLIENT))
        out.append(STREAM_CLOSE)
        self.state = C2SState.CLOSED
        return [Send(b"".join(out)), CloseConnection(condition)]

    # ------------------------------------------------------------- header
    def _on_header(self, header: StreamOpened) -> list[StreamAction]:
        if self.state is not C2SState.HEADER:
            raise StreamError(StreamErrorCondition.BAD_FORMAT, "unexpected stream header")
        to = header.attrs.get("to")
        host = self.policy.default_host if not to else to.lower()
        self._lang = header.attrs.get(NS_XML_LANG, self._lang) or self._lang
        if self.host is None:
            self.host = host if self.policy.is_local_host(host) else self.policy.default_host
        if header.ns != NS_STREAM:
            raise StreamError(StreamErrorCondition.INVALID_NAMESPACE, "wrong stream namespace")
        if header.tag != "stream":
            raise StreamError(StreamErrorCondition.BAD_FORMAT, "the root element is not stream")
        if header.default_ns != NS_CLIENT:
            raise StreamError(StreamErrorCondition.INVALID_NAMESPACE, "content namespace")
        if not self.policy.is_local_host(host) or host != self.host:
            raise StreamError(StreamErrorCondition.HOST_UNKNOWN, "this server does not serve it")
        version = header.attrs.get("version", "0.0")
        if not _version_supported(version):
            raise StreamError(StreamErrorCondition.UNSUPPORTED_VERSION, "XMPP 1.0 only")
        self.stream_id = self.policy.new_id()
        self._header_sent = True
        self.state = C2SState.NEGOTIATING if self.username is None else C2SState.BIND
        reply = self._header_bytes(self.host, header.attrs.get("from"))
        return [Send(reply + serialize(self._features(), NS_CLIENT))]

    def _header_bytes(self, host: str, peer: str | None) -> bytes:
        self._header_sent = True
        return stream_header(
            NS_CLIENT,
            from_=host,
            to=peer,
            stream_id=self.stream_id or self.policy.new_id(),
            lang=self._lang,
        )

    def _features(self) -> Element:
        features = Element("features", NS_STREAM)
        assert self.host is not None
        if self.username is not None:
            features.add("bind", NS_BIND)
            features.add("session", NS_SESSION).add("optional", NS_SESSION)
            for extra in self.policy.extra_features():
                features.append(extra)
            return features
        tls_offered = not self.is_secure and self.policy.can_starttls(self.host)
        if tls_offered:
            starttls = features.add("starttls", NS_TLS)
            if self.policy.require_encryption:
                starttls.add("required", NS_TLS)
        if self.is_secure or not self.policy.require_encryption:
            mechanisms = features.add("mechanisms", NS_SASL)
            for name in offered_mechanisms(
                is_secure=self.is_secure,
                channel_bindings=list(self.channel_bindings),
                allow_plain=self.policy.allow_plain,
            ):
                mechanisms.add("mechanism", NS_SASL, text=name)
            if self.channel_bindings:
                cb = features.add("sasl-channel-binding", NS_SASL_CB)
                for cb_type in self.channel_bindings:
                    cb.add("channel-binding", NS_SASL_CB, {"type": cb_type})
        return features

    def _restart(self) -> None:
        self._parser.reset()
        self._header_sent = False
        self.state = C2SState.HEADER

    def _on_stream_closed(self) -> list[StreamAction]:
        self.state = C2SState.CLOSED
        return [Send(STREAM_CLOSE), CloseConnection(None)]

    # ------------------------------------------------------------- elements
    def _on_element(self, el: Element) -> list[StreamAction]:
        state = self.state
        if el.ns == NS_STREAM and el.tag == "error":
            # The peer ended the stream (RFC 6120 §4.9): close our side, in every state, and
            # never answer an error with an error.
            self.state = C2SState.CLOSED
            return [Send(STREAM_CLOSE), CloseConnection(None)]
        if state is C2SState.BOUND:
            if el.ns == NS_CLIENT and el.tag in STANZA_TAGS:
                if el.tag == "iq" and el.get("type") == "set" and _first_ns(el) == NS_SESSION:
                    return [Send(_empty_result(el))]
                if el.tag == "iq" and _first_ns(el) == NS_BIND:
                    return [Send(_iq_error(el, StanzaErrorCondition.NOT_ALLOWED))]
                return [StanzaReceived(el)]
            return self._on_nonza(el)
        if state is C2SState.NEGOTIATING:
            if el.ns == NS_TLS and el.tag == "starttls":
                return self._on_starttls()
            if el.ns == NS_SASL:
                return self._on_sasl_element(el)
            raise StreamError(StreamErrorCondition.NOT_AUTHORIZED, "authenticate first")
        if state is C2SState.SASL or state is C2SState.LOOKUP:
            if el.ns == NS_SASL:
                return self._on_sasl_element(el)
            raise StreamError(StreamErrorCondition.NOT_AUTHORIZED, "authenticate first")
        if state is C2SState.BIND:
            if el.ns == NS_CLIENT and el.tag == "iq" and _first_ns(el) == NS_BIND:
                return self._on_bind(el)
            if self._bind_pending and len(self._held) < MAX_HELD_STANZAS:
                # Pipelined behind the bind request: handled once the resource is bound.
                self._held.append(el)
                return []
            raise StreamError(StreamErrorCondition.NOT_AUTHORIZED, "bind a resource first")
        raise StreamError(StreamErrorCondition.BAD_FORMAT)

    def _on_nonza(self, el: Element) -> list[StreamAction]:
        if el.ns in self.policy.nonza_namespaces:
            return [NonzaReceived(el)]
        raise StreamError(
            StreamErrorCondition.UNSUPPORTED_STANZA_TYPE,
            f"<{el.tag}/> in {el.ns or 'no namespace'}",
        )

    # ------------------------------------------------------------- TLS
    def _on_starttls(self) -> list[StreamAction]:
        assert self.host is not None
        if self.is_secure or not self.policy.can_starttls(self.host):
            failure = serialize(Element("failure", NS_TLS), NS_CLIENT)
            self.state = C2SState.CLOSED
            return [Send(failure + STREAM_CLOSE), CloseConnection(None)]
        self.state = C2SState.TLS
        return [Send(serialize(Element("proceed", NS_TLS), NS_CLIENT)), StartTls()]

    # ------------------------------------------------------------- SASL
    def _on_sasl_element(self, el: Element) -> list[StreamAction]:
        if el.tag == "auth":
            if self.state is not C2SState.NEGOTIATING:
                return self._sasl_failure(SaslCondition.MALFORMED_REQUEST, counts=False)
            if not self.is_secure and self.policy.require_encryption:
                return self._sasl_failure(SaslCondition.ENCRYPTION_REQUIRED, counts=False)
            mechanism = el.get("mechanism") or ""
            if mechanism == "PLAIN" and self.policy.allow_plain and not self.is_secure:
                # RFC 6120 §6.5.4: usable, but only on a protected stream.
                return self._sasl_failure(SaslCondition.ENCRYPTION_REQUIRED, counts=False)
            if mechanism not in offered_mechanisms(
                is_secure=self.is_secure,
                channel_bindings=list(self.channel_bindings),
                allow_plain=self.policy.allow_plain,
            ):
                return self._sasl_failure(SaslCondition.INVALID_MECHANISM, counts=False)
            assert self.host is not None
            self._sasl = SaslServer(
                mechanism,
                domain=self.host,
                is_secure=self.is_secure,
                channel_bindings=self.channel_bindings,
            )
            self._sasl_mechanism = mechanism
            self.state = C2SState.SASL
            try:
                data = _decode_sasl_payload(el.text)
            except ValueError:
                return self._sasl_failure(SaslCondition.INCORRECT_ENCODING)
            return self._sasl_step(self._sasl.start(data))
        if el.tag == "response":
            if self._sasl is None or self.state is not C2SState.SASL:
                return self._sasl_failure(SaslCondition.MALFORMED_REQUEST, counts=False)
            try:
                data = _decode_sasl_payload(el.text)
            except ValueError:
                return self._sasl_failure(SaslCondition.INCORRECT_ENCODING)
            return self._sasl_step(self._sasl.respond(data or b""))
        if el.tag == "abort":
            return self._sasl_failure(SaslCondition.ABORTED, counts=False)
        return self._sasl_failure(SaslCondition.MALFORMED_REQUEST)

    def _sasl_step(self, step: SaslStep) -> list[StreamAction]:
        if isinstance(step, Challenge):
            return [Send(_sasl_element("challenge", step.data))]
        if isinstance(step, NeedAccount):
            self.state = C2SState.LOOKUP
            return [LookupAccount(step.username)]
        if isinstance(step, Success):
            self._sasl = None
            self.username = step.username
            self._restart()
            return [
                Send(_sasl_element("success", step.data)),
                Authenticated(step.username, self._sasl_mechanism),
            ]
        assert isinstance(step, Failure)
        return self._sasl_failure(step.condition, step.text)

    def _sasl_failure(
        self, condition: SaslCondition, text: str | None = None, *, counts: bool = True
    ) -> list[StreamAction]:
        self._sasl = None
        self.state = C2SState.NEGOTIATING
        failure = Element("failure", NS_SASL)
        failure.add(condition.value, NS_SASL)
        if text:
            failure.add("text", NS_SASL, text=text)
        data = serialize(failure, NS_CLIENT)
        if not counts:
            return [Send(data)]
        self._auth_failures += 1
        actions: list[StreamAction] = [DelayedSend(data, self._auth_failures)]
        if self._auth_failures >= self.policy.max_auth_attempts:
            # RFC 6120 §6.4.5: too many retries end the stream with <policy-violation/>.
            self.state = C2SState.CLOSED
            error = stream_error_element(
                StreamErrorCondition.POLICY_VIOLATION, "too many authentication failures"
            )
            actions.append(DelayedSend(serialize(error, NS_CLIENT) + STREAM_CLOSE, 0))
            actions.append(CloseConnection(StreamErrorCondition.POLICY_VIOLATION))
        return actions

    # ------------------------------------------------------------- bind
    def _on_bind(self, iq: Element) -> list[StreamAction]:
        iq_id = iq.get("id")
        if iq.get("type") != "set" or not iq_id or self._bind_pending:
            return [Send(_iq_error(iq, StanzaErrorCondition.BAD_REQUEST))]
        bind = iq.first_child
        assert bind is not None
        resource_el = bind.find("resource", NS_BIND)
        resource: str | None = None
        if resource_el is not None and resource_el.text.strip():
            try:
                resource = prepare_resourcepart(resource_el.text)
            except JIDError:
                return [Send(_iq_error(iq, StanzaErrorCondition.BAD_REQUEST))]
        self._bind_pending = True
        return [BindRequested(iq_id, resource)]


# ---------------------------------------------------------------- helpers
def _version_supported(version: str) -> bool:
    major, _, _minor = version.partition(".")
    return major == "1"


def _first_ns(el: Element) -> str | None:
    child = el.first_child
    return None if child is None else child.ns


def _decode_sasl_payload(text: str) -> bytes | None:
    """RFC 6120 §6.4.2: no text = no data, '=' = empty data; ValueError when not base64."""
    text = text.strip()
    if not text:
        return None
    if text == "=":
        return b""
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error as exc:  # a ValueError subclass
        raise ValueError(str(exc)) from None


def _sasl_element(tag: str, data: bytes | None) -> bytes:
    el = Element(tag, NS_SASL)
    if data:
        el.text = base64.b64encode(data).decode()
    elif data is not None and tag == "success":
        el.text = "="
    return serialize(el, NS_CLIENT)


def stream_error_element(condition: StreamErrorCondition, text: str | None = None) -> Element:
    error = Element("error", NS_STREAM)
    error.add(condition.value, NS_STREAMS)
    if text:
        error.add("text", NS_STREAMS, text=text)
    return error


def stanza_error_element(err: StanzaError) -> Element:
    error = Element("error", NS_CLIENT, {"type": err.error_type})
    error.add(err.condition.value, NS_STANZAS)
    if err.text:
        error.add("text", NS_STANZAS, text=err.text)
    return error


def _iq_error(iq: Element, condition: StanzaErrorCondition) -> bytes:
    reply = Element("iq", NS_CLIENT, {"type": "error"})
    if iq.get("id") is not None:
        reply.set("id", iq.get("id"))
    reply.append(stanza_error_element(StanzaError(condition)))
    return serialize(reply, NS_CLIENT)


def _empty_result(iq: Element) -> bytes:
    reply = Element("iq", NS_CLIENT, {"type": "result"})
    reply.set("id", iq.get("id"))
    return serialize(reply, NS_CLIENT)
