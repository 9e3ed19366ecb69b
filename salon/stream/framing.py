"""How one client stream is framed on its transport: bytes in, parser events out, and the
wire form of the stream's opening, elements and closing.

``C2SStream`` speaks to one of these and is otherwise the same state machine everywhere, so a
WebSocket or BOSH session is an ordinary client session.

* :class:`TcpFraming`: RFC 6120 §4, one long XML document per connection.
* :class:`WebSocketFraming`: RFC 7395, one complete element per WebSocket message; the stream
  opens and closes with ``<open/>`` and ``<close/>`` in the framing namespace, and every
  element carries its own namespace declarations.
* :class:`BoshFraming`: XEP-0206, elements travel inside XEP-0124 ``<body/>`` wrappers, which
  the BOSH shell parses with :func:`parse_body`; the session-creation and restart bodies take
  the place of stream headers (:func:`body_events`).

Pure: no sockets, no clock.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from salon.errors import StreamError, StreamErrorCondition
from salon.namespaces import NS_CLIENT, NS_FRAMING, NS_HTTPBIND, NS_STREAM, NS_XBOSH, NS_XML
from salon.xml.element import Element
from salon.xml.parser import ParserEvent, StreamClosed, StreamOpened, XmlStreamParser
from salon.xml.serializer import STREAM_CLOSE, escape_attr, serialize, stream_header

XML_LANG = f"{{{NS_XML}}}lang"
_STREAM_PREFIX_DECL = f" xmlns:stream='{NS_STREAM}'".encode()


class Framing(Protocol):
    """What ``C2SStream`` needs from a transport's framing."""

    @property
    def can_starttls(self) -> bool:
        """Whether the transport can be upgraded in place (only raw TCP can)."""
        ...

    def parse(self, data: bytes) -> list[ParserEvent]:
        """Parser events for the next chunk of input; raises ``StreamError``."""
        ...

    def restart(self) -> None:
        """The stream restarts (after TLS or SASL): forget the old document."""
        ...

    def open(self, *, from_: str, to: str | None, stream_id: str, lang: str) -> bytes:
        """The server's stream opening."""
        ...

    def element(self, el: Element) -> bytes:
        """One top-level element (a stanza, features, a SASL element, a stream error)."""
        ...

    def close(self) -> bytes:
        """The server's stream closing."""
        ...

    def batch(self, units: Iterable[bytes]) -> list[bytes]:
        """Group wire units into writes (TCP joins them; a WebSocket needs one per message)."""
        ...


class TcpFraming:
    """RFC 6120: ``<stream:stream>`` opens one XML document that lasts the connection."""

    __slots__ = ("_parser",)

    can_starttls = True

    def __init__(self, *, max_stanza_bytes: int = 262144, max_depth: int = 32) -> None:
        self._parser = XmlStreamParser(max_stanza_bytes=max_stanza_bytes, max_depth=max_depth)

    def parse(self, data: bytes) -> list[ParserEvent]:
        return self._parser.feed(data)

    def restart(self) -> None:
        self._parser.reset()

    def hibernate(self) -> bool:
        """Free the parser's memory while the stream is idle between stanzas."""
        return self._parser.hibernate()

    def open(self, *, from_: str, to: str | None, stream_id: str, lang: str) -> bytes:
        return stream_header(NS_CLIENT, from_=from_, to=to, stream_id=stream_id, lang=lang)

    def element(self, el: Element) -> bytes:
        return serialize(el, NS_CLIENT)

    def close(self) -> bytes:
        return STREAM_CLOSE

    def batch(self, units: Iterable[bytes]) -> list[bytes]:
        data = b"".join(units)
        return [data] if data else []


def standalone(el: Element) -> bytes:
    """``el`` as a document of its own: its namespace declared, and the ``stream:`` prefix too
    when it is a stream-level element (RFC 7395 §3.3.3)."""
    data = serialize(el, "")
    if el.ns == NS_STREAM:
        cut = len("<stream:") + len(el.tag)
        data = data[:cut] + _STREAM_PREFIX_DECL + data[cut:]
    return data


class WebSocketFraming:
    """RFC 7395: every WebSocket message is one complete element."""

    __slots__ = ("_parser",)

    can_starttls = False

    def __init__(self, *, max_stanza_bytes: int = 262144, max_depth: int = 32) -> None:
        self._parser = XmlStreamParser(max_stanza_bytes=max_stanza_bytes, max_depth=max_depth)

    def parse(self, data: bytes) -> list[ParserEvent]:
        """One WebSocket message: exactly one element, or nothing but whitespace."""
        if data.startswith(b"<?xml"):
            # COMPAT(clients sending a declaration per message): harmless, so skip it.
            end = data.find(b"?>")
            data = data[end + 2 :] if end >= 0 else data
        parser = self._parser
        parser.reset()
        # A wrapper root without a default namespace: each element must declare its own.
        events = parser.feed(b"<frame>" + data)
        if any(isinstance(event, StreamClosed) for event in events):
            raise StreamError(StreamErrorCondition.NOT_WELL_FORMED, "unbalanced end tag")
        events += parser.feed(b"</frame>")
        elements = [event for event in events if isinstance(event, Element)]
        if not any(isinstance(event, StreamClosed) for event in events):
            raise StreamError(StreamErrorCondition.NOT_WELL_FORMED, "incomplete element")
        if not elements:
            return []  # whitespace only
        if len(elements) > 1:
            raise StreamError(
                StreamErrorCondition.BAD_FORMAT, "one element per WebSocket message (RFC 7395)"
            )
        el = elements[0]
        if el.ns == NS_FRAMING and el.tag == "open":
            return [StreamOpened("stream", NS_STREAM, el.attrs, NS_CLIENT)]
        if el.ns == NS_FRAMING and el.tag == "close":
            return [StreamClosed()]
        return [el]

    def restart(self) -> None:
        pass  # every message is a document of its own already

    def open(self, *, from_: str, to: str | None, stream_id: str, lang: str) -> bytes:
        attrs = {"from": from_, "id": stream_id, "version": "1.0", XML_LANG: lang}
        if to:
            attrs["to"] = to
        return serialize(Element("open", NS_FRAMING, attrs))

    def element(self, el: Element) -> bytes:
        return standalone(el)

    def close(self) -> bytes:
        return serialize(Element("close", NS_FRAMING))

    def batch(self, units: Iterable[bytes]) -> list[bytes]:
        return [unit for unit in units if unit]


def websocket_redirect(uri: str) -> bytes:
    """The ``<close/>`` that sends a client to another endpoint (RFC 7395 §3.6.1)."""
    return serialize(Element("close", NS_FRAMING, {"see-other-uri": uri}))


# --------------------------------------------------------------------------- BOSH
class BoshFraming:
    """XEP-0206: elements inside ``<body/>`` wrappers; no stream header or footer on the wire.

    Output units are the payload of the next ``<body/>``; the stream's opening and closing are
    carried by the wrapper's attributes, so they are empty here.
    """

    __slots__ = ()

    can_starttls = False

    def parse(self, data: bytes) -> list[ParserEvent]:
        raise StreamError(StreamErrorCondition.INTERNAL_SERVER_ERROR, "BOSH input is events")

    def restart(self) -> None:
        pass

    def open(self, *, from_: str, to: str | None, stream_id: str, lang: str) -> bytes:
        return b""

    def element(self, el: Element) -> bytes:
        return serialize(el, "")  # inside <body xmlns:stream=…>: the stream prefix is bound

    def close(self) -> bytes:
        return b""

    def batch(self, units: Iterable[bytes]) -> list[bytes]:
        return [unit for unit in units if unit]


class BoshError(Exception):
    """A terminal binding condition of XEP-0124 §17.2 (``item-not-found``, ...)."""

    def __init__(self, condition: str, text: str = "") -> None:
        super().__init__(text or condition)
        self.condition = condition


@dataclass(slots=True)
class Body:
    """One parsed ``<body/>`` request: its attributes (Clark names) and its child elements."""

    attrs: dict[str, str]
    children: list[Element] = field(default_factory=list)

    def get(self, name: str) -> str | None:
        return self.attrs.get(name)

    def int_attr(self, name: str) -> int | None:
        """A non-negative whole-number attribute; ``BoshError('bad-request')`` when malformed."""
        value = self.attrs.get(name)
        if value is None:
            return None
        # ASCII digits only (xs:unsignedLong): str.isdigit() also accepts "²" and "٣".
        if not (value.isascii() and value.isdigit()) or len(value) > 19:
            raise BoshError("bad-request", f"{name} is not a whole number")
        return int(value)

    @property
    def is_restart(self) -> bool:
        return self.attrs.get(f"{{{NS_XBOSH}}}restart") in ("true", "1")

    @property
    def is_terminate(self) -> bool:
        return self.attrs.get("type") == "terminate"


def parse_body(data: bytes, *, max_stanza_bytes: int, max_depth: int) -> Body:
    """Parse one HTTP request body; ``BoshError('bad-request')`` unless it is one complete
    ``<body xmlns='http://jabber.org/protocol/httpbind'/>`` within the limits."""
    parser = XmlStreamParser(max_stanza_bytes=max_stanza_bytes, max_depth=max_depth)
    try:
        events = parser.feed(data)
    except StreamError as exc:
        raise BoshError("bad-request", exc.text or exc.condition.value) from None
    if not events or not isinstance(events[0], StreamOpened):
        raise BoshError("bad-request", "no <body/>")
    root = events[0]
    if root.tag != "body" or root.ns != NS_HTTPBIND:
        raise BoshError("bad-request", "the root element is not an httpbind <body/>")
    if not isinstance(events[-1], StreamClosed):
        raise BoshError("bad-request", "the <body/> is incomplete")
    children = [_client_ns(event) for event in events[1:-1] if isinstance(event, Element)]
    return Body(dict(root.attrs), children)


def _client_ns(el: Element) -> Element:
    # COMPAT(older BOSH clients): XEP-0206 §2 notes stanzas sent without a namespace, which
    # then inherit httpbind's; they mean jabber:client.
    if el.ns == NS_HTTPBIND:
        el.ns = NS_CLIENT
        for child in el.elements():
            _client_ns(child)
    return el


def stream_header_event(
    attrs: dict[str, str], defaults: dict[str, str] | None = None
) -> StreamOpened:
    """The stream header a session-creation or restart ``<body/>`` stands for (XEP-0206 §3);
    a restart leaves out what the creation request said (``defaults``)."""
    attrs = {**(defaults or {}), **attrs}
    header: dict[str, str] = {}
    if "to" in attrs:
        header["to"] = attrs["to"]
    version = attrs.get(f"{{{NS_XBOSH}}}version")
    if version is not None:
        header["version"] = version
    if XML_LANG in attrs:
        header[XML_LANG] = attrs[XML_LANG]
    return StreamOpened("stream", NS_STREAM, header, NS_CLIENT)


def body_events(
    body: Body, *, opens_stream: bool, defaults: dict[str, str] | None = None
) -> list[ParserEvent]:
    """The stream events one in-order ``<body/>`` carries: a header when it creates the
    session or restarts the stream, its elements, and the stream's end when it terminates."""
    events: list[ParserEvent] = []
    if opens_stream:
        events.append(stream_header_event(body.attrs, defaults))
    events.extend(body.children)
    if body.is_terminate:
        events.append(StreamClosed())
    return events


def body_bytes(attrs: dict[str, str], payload: bytes = b"") -> bytes:
    """A response ``<body/>`` with ``attrs`` (plain or ``xmpp:``/``xml:`` Clark names) around
    ``payload`` (elements from :meth:`BoshFraming.element`)."""
    parts = [f"<body xmlns='{NS_HTTPBIND}' xmlns:stream='{NS_STREAM}'"]
    if any(name.startswith(f"{{{NS_XBOSH}}}") for name in attrs):
        parts.append(f" xmlns:xmpp='{NS_XBOSH}'")
    for name, value in attrs.items():
        if name.startswith(f"{{{NS_XBOSH}}}"):
            name = "xmpp:" + name.split("}", 1)[1]
        elif name == XML_LANG:
            name = "xml:lang"
        parts.append(f" {name}='{escape_attr(value)}'")
    if not payload:
        parts.append("/>")
        return "".join(parts).encode()
    parts.append(">")
    return "".join(parts).encode() + payload + b"</body>"
