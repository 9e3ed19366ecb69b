"""XEP-0114 (Jabber Component Protocol): the accepting side's stream, sans-IO.

An external component (a gateway, a bot framework's service) connects to the server and
opens a stream in ``jabber:component:accept`` whose ``to`` names the domain it serves. The
server answers with its own header carrying a fresh stream id; the component proves that it
knows the domain's shared secret with ``<handshake>`` holding the lowercase hex SHA-1 of
the stream id followed by the secret (XEP-0114 §2). After the server's empty
``<handshake/>`` both sides exchange stanzas.

What this machine decides::

    HEADER ──header (to= a configured domain)──► HANDSHAKE ──<handshake> matches──► READY
      │                                             │                                │
      │ unknown domain: host-unknown                │ wrong digest: not-authorized   │ stanzas
      └─────────────────────────────────────────────┴────────────── any error ───► CLOSED

In READY every stanza must carry ``from`` on the component's domain (``invalid-from``
otherwise) and a ``to`` (``improper-addressing``); it is moved into ``jabber:client``, where
stanzas live inside Salon, and handed to the shell. Whether the domain is already connected
(``conflict``, checked after the secret, before the ``<handshake/>`` reply) is the policy's
answer; the shell registers the route when it sees :class:`ComponentAuthenticated`.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

from salon.errors import StreamError, StreamErrorCondition
from salon.jid import JID, parse_jid
from salon.namespaces import NS_CLIENT, NS_COMPONENT, NS_STREAM
from salon.stream.addressing import domain_or_none, to_client_namespace
from salon.stream.events import CloseConnection, Send
from salon.stream.stream_errors import closing_bytes
from salon.xml.element import Element
from salon.xml.parser import StreamClosed, StreamOpened, XmlStreamParser
from salon.xml.serializer import STREAM_CLOSE, serialize, stream_header

STANZA_TAGS = frozenset(("message", "presence", "iq"))


def handshake_digest(stream_id: str, secret: str) -> str:
    """XEP-0114 §2: SHA-1 over the stream id concatenated with the secret, lowercase hex."""
    return hashlib.sha1((stream_id + secret).encode()).hexdigest()


# ---------------------------------------------------------------------- actions
@dataclass(slots=True)
class ComponentAuthenticated:
    """The component proved the secret of ``domain``; the shell now registers the route."""

    domain: str


@dataclass(slots=True)
class ComponentStanzaReceived:
    """A stanza from the component, in ``jabber:client``, with its checked addresses."""

    stanza: Element
    sender: JID
    to: JID


ComponentAction = Send | CloseConnection | ComponentAuthenticated | ComponentStanzaReceived


# ---------------------------------------------------------------------- policy
@dataclass(slots=True)
class ComponentPolicy:
    """What the server decides for every component stream."""

    secret_for: Callable[[str], str | None]
    """The configured secret of a component domain; None when the domain is not one."""
    is_connected: Callable[[str], bool] = lambda domain: False
    """Whether another connection already serves the domain (``conflict``)."""
    max_stanza_size: int = 262144
    max_depth: int = 32
    new_id: Callable[[], str] = field(default=lambda: secrets.token_hex(16))


class ComponentState(Enum):
    HEADER = "header"  # waiting for the component's stream header
    HANDSHAKE = "handshake"  # header answered, waiting for <handshake/>
    READY = "ready"  # authenticated: stanzas flow both ways
    CLOSED = "closed"


# ---------------------------------------------------------------------- the stream
class ComponentStream:
    """The server side of one component connection."""

    __slots__ = ("_header_sent", "_parser", "domain", "policy", "state", "stream_id")

    def __init__(self, policy: ComponentPolicy) -> None:
        self.policy = policy
        self.state = ComponentState.HEADER
        self.domain: str | None = None  # the component's domain, once its header named it
        self.stream_id = ""
        self._header_sent = False
        self._parser = XmlStreamParser(
            max_stanza_bytes=policy.max_stanza_size, max_depth=policy.max_depth
        )

    @property
    def closed(self) -> bool:
        return self.state is ComponentState.CLOSED

    @property
    def is_ready(self) -> bool:
        return self.state is ComponentState.READY

    # ------------------------------------------------------------ input
    def receive_data(self, data: bytes) -> list[ComponentAction]:
        if self.closed:
            return []
        try:
            events = self._parser.feed(data)
        except StreamError as exc:
            return self.close(exc.condition, exc.text)
        actions: list[ComponentAction] = []
        for event in events:
            if self.closed:
                break
            try:
                if isinstance(event, StreamOpened):
                    actions.extend(self._on_header(event))
                elif isinstance(event, StreamClosed):
                    actions.extend(self._closed_by_peer())
                elif event.ns == NS_STREAM and event.tag == "error":
                    actions.extend(self._closed_by_peer())  # never answer an error in kind
                else:
                    actions.extend(self._on_element(event))
            except StreamError as exc:
                actions.extend(self.close(exc.condition, exc.text))
        return actions

    # ------------------------------------------------------------ output
    def stanza(self, stanza: Element) -> bytes:
        """A ``jabber:client`` stanza as it goes on this stream: its elements inherit the
        stream's default namespace, ``jabber:component:accept``."""
        return serialize(stanza, NS_CLIENT)

    def close(
        self, condition: StreamErrorCondition | None = None, text: str | None = None
    ) -> list[ComponentAction]:
        """End the stream: with a stream error when ``condition`` is given, else orderly."""
        if self.closed:
            return []
        header = None if self._header_sent else self._header()
        self.state = ComponentState.CLOSED
        return [
            Send(closing_bytes(header, condition, text, NS_COMPONENT)),
            CloseConnection(condition),
        ]

    # ------------------------------------------------------------ steps
    def _header(self) -> bytes:
        self._header_sent = True
        return stream_header(
            NS_COMPONENT,
            from_=self.domain,
            stream_id=self.stream_id or self.policy.new_id(),
            version=None,  # XEP-0114 streams predate XMPP 1.0 and carry no features
        )

    def _closed_by_peer(self) -> list[ComponentAction]:
        self.state = ComponentState.CLOSED
        out = b"" if self._header_sent else self._header()
        return [Send(out + STREAM_CLOSE), CloseConnection(None)]

    def _on_header(self, header: StreamOpened) -> list[ComponentAction]:
        if self.state is not ComponentState.HEADER:
            raise StreamError(StreamErrorCondition.BAD_FORMAT, "unexpected stream header")
        self.domain = domain_or_none(header.attrs.get("to") or "")
        if header.ns != NS_STREAM:
            raise StreamError(StreamErrorCondition.INVALID_NAMESPACE, "wrong stream namespace")
        if header.tag != "stream":
            raise StreamError(StreamErrorCondition.BAD_FORMAT, "the root element is not stream")
        if header.default_ns != NS_COMPONENT:
            raise StreamError(StreamErrorCondition.INVALID_NAMESPACE, "content namespace")
        if self.domain is None or self.policy.secret_for(self.domain) is None:
            domain, self.domain = self.domain, None  # our header must not claim it
            raise StreamError(
                StreamErrorCondition.HOST_UNKNOWN, f"no component is configured for {domain}"
            )
        self.stream_id = self.policy.new_id()
        self.state = ComponentState.HANDSHAKE
        return [Send(self._header())]

    def _on_element(self, el: Element) -> list[ComponentAction]:
        if self.state is ComponentState.HANDSHAKE:
            if el.ns == NS_COMPONENT and el.tag == "handshake":
                return self._on_handshake(el)
            raise StreamError(StreamErrorCondition.NOT_AUTHORIZED, "handshake first")
        if self.state is not ComponentState.READY:
            raise StreamError(StreamErrorCondition.BAD_FORMAT)
        if el.ns == NS_COMPONENT and el.tag in STANZA_TAGS:
            return self._on_stanza(el)
        raise StreamError(
            StreamErrorCondition.UNSUPPORTED_STANZA_TYPE,
            f"<{el.tag}/> in {el.ns or 'no namespace'}",
        )

    def _on_handshake(self, el: Element) -> list[ComponentAction]:
        assert self.domain is not None
        secret = self.policy.secret_for(self.domain)
        expected = handshake_digest(self.stream_id, secret or "")
        # As bytes: compare_digest refuses str with non-ASCII characters (a TypeError).
        given = el.text.strip().lower().encode()
        if secret is None or not hmac.compare_digest(expected.encode(), given):
            raise StreamError(StreamErrorCondition.NOT_AUTHORIZED, "wrong secret")
        if self.policy.is_connected(self.domain):
            raise StreamError(StreamErrorCondition.CONFLICT, "the domain is already connected")
        self.state = ComponentState.READY
        reply = serialize(Element("handshake", NS_COMPONENT), NS_COMPONENT)
        return [Send(reply), ComponentAuthenticated(self.domain)]

    def _on_stanza(self, el: Element) -> list[ComponentAction]:
        from_text, to_text = el.get("from"), el.get("to")
        if not from_text:
            raise StreamError(StreamErrorCondition.IMPROPER_ADDRESSING, "from is required")
        sender = parse_jid(from_text)
        if sender is None or sender.domain != self.domain:
            raise StreamError(StreamErrorCondition.INVALID_FROM, f"not on {self.domain}")
        if not to_text:
            raise StreamError(StreamErrorCondition.IMPROPER_ADDRESSING, "to is required")
        to = parse_jid(to_text)
        if to is None:
            raise StreamError(StreamErrorCondition.IMPROPER_ADDRESSING, "malformed 'to'")
        to_client_namespace(el, NS_COMPONENT)
        return [ComponentStanzaReceived(el, sender, to)]
