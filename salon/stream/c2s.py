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
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum

from salon.auth.sasl import (
    Challenge,
    CheckPassword,
    Failure,
    NeedAccount,
    SaslCondition,
    SaslServer,
    SaslStep,
    Success,
    offered_mechanisms,
)
from salon.errors import StanzaError, StanzaErrorCondition, StreamError, StreamErrorCondition
from salon.jid import JID, JIDError, prepare_domain, prepare_resourcepart
from salon.namespaces import (
    NS_BIND,
    NS_CLIENT,
    NS_SASL,
    NS_SASL_CB,
    NS_SESSION,
    NS_STREAM,
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
    PreAuthIq,
    Send,
    StanzaAnswered,
    StanzaReceived,
    StartTls,
    StreamAction,
    VerifyPassword,
)
from salon.stream.framing import Framing, TcpFraming
from salon.stream.stream_errors import stream_error_element
from salon.xml.element import Element
from salon.xml.parser import ParserEvent, StreamClosed, StreamOpened
from salon.xml.stanza import error_element

STANZA_TAGS = frozenset(("message", "presence", "iq"))
MAX_HELD_STANZAS = 32
NS_XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"


class C2SState(Enum):
    HEADER = "header"  # waiting for the (re)started stream header
    NEGOTIATING = "negotiating"  # features sent, TLS / SASL may start
    TLS = "tls"  # <proceed/> sent, waiting for the handshake
    SASL = "sasl"  # an exchange is in progress
    LOOKUP = "lookup"  # waiting for the account lookup or the password check
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
    # Per host: namespaces of stream-level elements (nonzas) modules take, e.g. XEP-0198
    # stream management; accepted once bound, and between authentication and bind (resume).
    nonza_namespaces: Callable[[str], Collection[str]] = lambda host: ()
    extra_features: Callable[[], Sequence[Element]] = lambda: ()
    # Per host: iq payload namespaces accepted before authentication (XEP-0077), and the
    # features advertising them; both only once encryption is no longer required.
    preauth_iq_namespaces: Callable[[str], Collection[str]] = lambda host: ()
    preauth_features: Callable[[str], Sequence[Element]] = lambda host: ()
    # Per host: features offered after authentication (roster versioning, pre-approval).
    postauth_features: Callable[[str], Sequence[Element]] = lambda host: ()
    new_id: Callable[[], str] = field(default=lambda: secrets.token_urlsafe(12))


class C2SStream:
    """One client connection's stream negotiation and stanza framing."""

    __slots__ = (
        "_auth_failures",
        "_bind_pending",
        "_header_sent",
        "_held",
        "_lang",
        "_nonza_pending",
        "_preauth_pending",
        "_sasl",
        "_sasl_mechanism",
        "channel_bindings",
        "framing",
        "host",
        "is_secure",
        "peer_closed",
        "policy",
        "state",
        "stream_id",
        "username",
    )

    def __init__(
        self, policy: C2SPolicy, *, is_secure: bool = False, framing: Framing | None = None
    ) -> None:
        self.policy = policy
        self.is_secure = is_secure
        self.channel_bindings: Mapping[str, bytes] = {}
        self.state = C2SState.HEADER
        self.host: str | None = None
        self.username: str | None = None
        self.stream_id = ""
        # TCP by default; WebSocket and BOSH shells pass theirs (salon/stream/framing.py).
        self.framing: Framing = framing or TcpFraming(
            max_stanza_bytes=policy.max_stanza_size, max_depth=policy.max_depth
        )
        self._header_sent = False
        self._lang = "en"
        self._sasl: SaslServer | None = None
        self._sasl_mechanism = ""
        self._auth_failures = 0
        self._bind_pending = False
        self._held: list[Element] = []  # stanzas pipelined behind the bind request
        self._preauth_pending = False  # a PreAuthIq waits for its answer
        self._nonza_pending = False  # a nonza before bind (XEP-0198 resume) waits for its answer
        self.peer_closed = False  # the client ended the stream itself (</stream> or an error)

    # ------------------------------------------------------------------ inputs
    def receive_data(self, data: bytes) -> list[StreamAction]:
        if self.state is C2SState.CLOSED:
            return []
        try:
            events = self.framing.parse(data)
        except StreamError as exc:
            return self.close(exc.condition, exc.text)
        return self.receive_events(events)

    @property
    def sasl_mechanism(self) -> str:
        """The SASL mechanism the client chose last ("" before any <auth/>)."""
        return self._sasl_mechanism

    def receive_events(self, events: Iterable[ParserEvent]) -> list[StreamAction]:
        """Input already parsed by the shell (the elements of a BOSH ``<body/>``)."""
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

    def hibernate(self) -> bool:
        """Release parser memory of an idle stream (TCP framing only); True when done."""
        hibernate = getattr(self.framing, "hibernate", None)
        return bool(hibernate()) if hibernate is not None else False

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

    def password_checked(self, matches: bool) -> list[StreamAction]:
        """The shell's answer to VerifyPassword: whether the password matched."""
        if self.state is not C2SState.LOOKUP or self._sasl is None:
            return []
        self.state = C2SState.SASL
        return self._sasl_step(self._sasl.password_checked(matches))

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
            iq.append(error_element(err))
            return self._send(iq)
        self.state = C2SState.BOUND
        iq = Element("iq", NS_CLIENT, {"type": "result", "id": iq_id})
        iq.add("bind", NS_BIND).add("jid", NS_BIND, text=str(jid))
        actions = self._send(iq)
        held, self._held = self._held, []
        for stanza in held:
            actions.extend(self._on_element(stanza))
        return actions

    def prebind_nonza_done(self, resumed: bool) -> list[StreamAction]:
        """The shell's answer to a NonzaReceived before bind: ``resumed`` when it resumed an
        earlier session on this stream (XEP-0198), which is then bound; else bind is still due."""
        if self.state is not C2SState.BIND or not self._nonza_pending:
            return []
        self._nonza_pending = False
        if resumed:
            self.state = C2SState.BOUND
        actions: list[StreamAction] = []
        held, self._held = self._held, []
        for element in held:
            actions.extend(self._on_element(element))
        return actions

    def close(
        self,
        condition: StreamErrorCondition | None = None,
        text: str | None = None,
        extra: Element | None = None,
    ) -> list[StreamAction]:
        """End the stream: with a stream error when ``condition`` is given (``extra``: an
        application-specific condition element, RFC 6120 §4.9.4), else orderly."""
        if self.state is C2SState.CLOSED:
            return []
        out: list[bytes] = []
        if not self._header_sent:
            out.append(self._header_bytes(self.host or self.policy.default_host, None))
        if condition is not None:
            out.append(self.framing.element(stream_error_element(condition, text, extra)))
        out.append(self.framing.close())
        self.state = C2SState.CLOSED
        actions: list[StreamAction] = [Send(data) for data in self.framing.batch(out)]
        actions.append(CloseConnection(condition))
        return actions

    # ------------------------------------------------------------- header
    def _on_header(self, header: StreamOpened) -> list[StreamAction]:
        if self.state is not C2SState.HEADER:
            raise StreamError(StreamErrorCondition.BAD_FORMAT, "unexpected stream header")
        to = header.attrs.get("to")
        host = self.policy.default_host if not to else _stream_host(to)
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
        features = self.framing.element(self._features())
        return [Send(data) for data in self.framing.batch((reply, features))]

    def _header_bytes(self, host: str, peer: str | None) -> bytes:
        self._header_sent = True
        return self.framing.open(
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
            for extra in self.policy.postauth_features(self.host):
                features.append(extra)
            return features
        tls_offered = (
            not self.is_secure and self.framing.can_starttls and self.policy.can_starttls(self.host)
        )
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
            for extra in self.policy.preauth_features(self.host):
                features.append(extra)
        return features

    def _restart(self) -> None:
        self.framing.restart()
        self._header_sent = False
        self.state = C2SState.HEADER

    def _on_stream_closed(self) -> list[StreamAction]:
        self.state = C2SState.CLOSED
        self.peer_closed = True
        return [*self._send(close=True), CloseConnection(None)]

    def _send(self, *elements: Element, close: bool = False) -> list[StreamAction]:
        """Write ``elements`` (then the stream's closing), framed for the transport."""
        units = [self.framing.element(el) for el in elements]
        if close:
            units.append(self.framing.close())
        return [Send(data) for data in self.framing.batch(units)]

    # ------------------------------------------------------------- elements
    def _on_element(self, el: Element) -> list[StreamAction]:
        state = self.state
        if el.ns == NS_STREAM and el.tag == "error":
            # The peer ended the stream (RFC 6120 §4.9): close our side, in every state, and
            # never answer an error with an error.
            self.state = C2SState.CLOSED
            self.peer_closed = True
            return [*self._send(close=True), CloseConnection(None)]
        if state is C2SState.BOUND:
            if el.ns == NS_CLIENT and el.tag in STANZA_TAGS:
                # Answered here, yet handled stanzas all the same (XEP-0198 counts them).
                if el.tag == "iq" and el.get("type") == "set" and _first_ns(el) == NS_SESSION:
                    return [*self._send(_empty_result(el)), StanzaAnswered()]
                if el.tag == "iq" and _first_ns(el) == NS_BIND:
                    reply = _iq_error(el, StanzaErrorCondition.NOT_ALLOWED)
                    return [*self._send(reply), StanzaAnswered()]
                return [StanzaReceived(el)]
            return self._on_nonza(el)
        if state is C2SState.NEGOTIATING:
            if el.ns == NS_TLS and el.tag == "starttls":
                return self._on_starttls()
            if el.ns == NS_SASL:
                return self._on_sasl_element(el)
            if self._is_preauth_iq(el):
                return self._on_preauth_iq(el)
            raise StreamError(StreamErrorCondition.NOT_AUTHORIZED, "authenticate first")
        if state is C2SState.SASL or state is C2SState.LOOKUP:
            if el.ns == NS_SASL:
                return self._on_sasl_element(el)
            raise StreamError(StreamErrorCondition.NOT_AUTHORIZED, "authenticate first")
        if state is C2SState.BIND:
            pending = self._bind_pending or self._nonza_pending
            is_bind = el.ns == NS_CLIENT and el.tag == "iq" and _first_ns(el) == NS_BIND
            if is_bind and not self._nonza_pending:
                return self._on_bind(el)
            if not pending and self._accepts_nonza(el):
                # Between authentication and bind: an XEP-0198 <resume/> (or an early
                # <enable/>, which the module refuses). One at a time; what follows waits.
                self._nonza_pending = True
                return [NonzaReceived(el)]
            if pending and len(self._held) < MAX_HELD_STANZAS:
                # Pipelined behind the bind (or resume) request: handled once it is answered.
                self._held.append(el)
                return []
            raise StreamError(StreamErrorCondition.NOT_AUTHORIZED, "bind a resource first")
        raise StreamError(StreamErrorCondition.BAD_FORMAT)

    def _accepts_nonza(self, el: Element) -> bool:
        return self.host is not None and el.ns in self.policy.nonza_namespaces(self.host)

    def _on_nonza(self, el: Element) -> list[StreamAction]:
        if self._accepts_nonza(el):
            return [NonzaReceived(el)]
        raise StreamError(
            StreamErrorCondition.UNSUPPORTED_STANZA_TYPE,
            f"<{el.tag}/> in {el.ns or 'no namespace'}",
        )

    # ------------------------------------------------------------- TLS
    def _on_starttls(self) -> list[StreamAction]:
        assert self.host is not None
        if (
            self.is_secure
            or not self.framing.can_starttls
            or not self.policy.can_starttls(self.host)
        ):
            self.state = C2SState.CLOSED
            return [*self._send(Element("failure", NS_TLS), close=True), CloseConnection(None)]
        self.state = C2SState.TLS
        return [*self._send(Element("proceed", NS_TLS)), StartTls()]

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
            return self._send(_sasl_element("challenge", step.data))
        if isinstance(step, NeedAccount):
            self.state = C2SState.LOOKUP
            return [LookupAccount(step.username)]
        if isinstance(step, CheckPassword):
            self.state = C2SState.LOOKUP
            return [VerifyPassword(step.password, step.credential)]
        if isinstance(step, Success):
            self._sasl = None
            self.username = step.username
            self._restart()
            return [
                *self._send(_sasl_element("success", step.data)),
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
        if not counts:
            return self._send(failure)
        self._auth_failures += 1
        data = self.framing.element(failure)
        actions: list[StreamAction] = [DelayedSend(data, self._auth_failures)]
        if self._auth_failures >= self.policy.max_auth_attempts:
            # RFC 6120 §6.4.5: too many retries end the stream with <policy-violation/>.
            self.state = C2SState.CLOSED
            error = stream_error_element(
                StreamErrorCondition.POLICY_VIOLATION, "too many authentication failures"
            )
            units = (self.framing.element(error), self.framing.close())
            actions.extend(DelayedSend(data, 0) for data in self.framing.batch(units))
            actions.append(CloseConnection(StreamErrorCondition.POLICY_VIOLATION))
        return actions

    # ------------------------------------------------------------- pre-auth iq
    def _is_preauth_iq(self, el: Element) -> bool:
        if el.ns != NS_CLIENT or el.tag != "iq" or self.host is None:
            return False
        if not self.is_secure and self.policy.require_encryption:
            return False
        return _first_ns(el) in self.policy.preauth_iq_namespaces(self.host)

    def _on_preauth_iq(self, iq: Element) -> list[StreamAction]:
        """One at a time: a second while the first waits gets resource-constraint."""
        iq_type = iq.get("type")
        if iq_type in ("result", "error"):
            return []  # never answered (RFC 6120 §8.2.3); nothing was asked before auth
        if iq_type not in ("get", "set") or not iq.get("id") or len(list(iq.elements())) != 1:
            return self._send(_iq_error(iq, StanzaErrorCondition.BAD_REQUEST))
        if self._preauth_pending:
            return self._send(_iq_error(iq, StanzaErrorCondition.RESOURCE_CONSTRAINT))
        self._preauth_pending = True
        return [PreAuthIq(iq)]

    def preauth_result(self, reply: Element) -> list[StreamAction]:
        """The shell's answer to PreAuthIq: the reply stanza to write."""
        if self.state is C2SState.CLOSED or not self._preauth_pending:
            return []
        self._preauth_pending = False
        return self._send(reply)

    # ------------------------------------------------------------- bind
    def _on_bind(self, iq: Element) -> list[StreamAction]:
        iq_id = iq.get("id")
        if iq.get("type") != "set" or not iq_id or self._bind_pending:
            return self._send(_iq_error(iq, StanzaErrorCondition.BAD_REQUEST))
        bind = iq.first_child
        assert bind is not None
        resource_el = bind.find("resource", NS_BIND)
        resource: str | None = None
        if resource_el is not None and resource_el.text.strip():
            try:
                resource = prepare_resourcepart(resource_el.text)
            except JIDError:
                return self._send(_iq_error(iq, StanzaErrorCondition.BAD_REQUEST))
        self._bind_pending = True
        return [BindRequested(iq_id, resource)]


# ---------------------------------------------------------------- helpers
def _version_supported(version: str) -> bool:
    major, _, _minor = version.partition(".")
    return major == "1"


def _stream_host(to: str) -> str:
    """The header's ``to`` as a domainpart: case and one trailing dot do not matter (RFC 7622
    §3.2). Left as given when it is no valid domain, so it matches no hosted one."""
    try:
        return prepare_domain(to)
    except JIDError:
        return to


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


def _sasl_element(tag: str, data: bytes | None) -> Element:
    el = Element(tag, NS_SASL)
    if data:
        el.text = base64.b64encode(data).decode()
    elif data is not None and tag == "success":
        el.text = "="
    return el


def _iq_error(iq: Element, condition: StanzaErrorCondition) -> Element:
    reply = Element("iq", NS_CLIENT, {"type": "error"})
    if iq.get("id") is not None:
        reply.set("id", iq.get("id"))
    reply.append(error_element(StanzaError(condition)))
    return reply


def _empty_result(iq: Element) -> Element:
    reply = Element("iq", NS_CLIENT, {"type": "result"})
    reply.set("id", iq.get("id"))
    return reply
