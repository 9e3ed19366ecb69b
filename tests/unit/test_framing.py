"""Sans-IO tests for salon.stream.framing and ``C2SStream`` over the web framings.

The server's output is read back with the standard library's ElementTree; for WebSocket each
``Send`` must be a complete document of its own (RFC 7395 §3.3).
"""

from __future__ import annotations

import base64
import itertools
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from typing import Any

import pytest

from salon.auth.credentials import make_credentials, verify_password
from salon.errors import StreamError, StreamErrorCondition
from salon.namespaces import (
    NS_BIND,
    NS_CLIENT,
    NS_FRAMING,
    NS_HTTPBIND,
    NS_SASL,
    NS_STREAM,
    NS_STREAMS,
    NS_TLS,
    NS_XBOSH,
)
from salon.storage.interfaces import Account
from salon.stream.c2s import C2SPolicy, C2SState, C2SStream
from salon.stream.events import (
    Authenticated,
    CloseConnection,
    LookupAccount,
    Send,
    StanzaReceived,
    StreamAction,
    VerifyPassword,
)
from salon.stream.framing import (
    BoshError,
    BoshFraming,
    TcpFraming,
    WebSocketFraming,
    body_bytes,
    body_events,
    parse_body,
    standalone,
    websocket_redirect,
)
from salon.xml.element import Element
from salon.xml.parser import StreamClosed, StreamOpened

PASSWORD = "pencil"
OPEN = f"<open xmlns='{NS_FRAMING}' to='localhost' version='1.0'/>".encode()


def q(ns: str, tag: str) -> str:
    return f"{{{ns}}}{tag}"


def policy() -> C2SPolicy:
    ids = itertools.count(1)
    return C2SPolicy(
        is_local_host={"localhost"}.__contains__,
        default_host="localhost",
        new_id=lambda: f"id{next(ids)}",
    )


def account() -> Account:
    creds = {c.hash_name: c for c in make_credentials(PASSWORD)}
    return Account("localhost", "user", creds, datetime.now(UTC))


def logged_in(stream: C2SStream) -> list[Any]:
    """The account, then the password check the shell runs off the loop."""
    [check] = stream.account_loaded(account())
    assert isinstance(check, VerifyPassword)
    return stream.password_checked(verify_password(check.password, check.credential))


def sent(actions: list[StreamAction]) -> list[bytes]:
    return [a.data for a in actions if isinstance(a, Send)]


def plain_auth() -> bytes:
    payload = base64.b64encode(f"\0user\0{PASSWORD}".encode()).decode()
    return f"<auth xmlns='{NS_SASL}' mechanism='PLAIN'>{payload}</auth>".encode()


# --------------------------------------------------------------------------- WebSocket
def test_websocket_open_and_close_become_stream_events() -> None:
    framing = WebSocketFraming()
    [opened] = framing.parse(OPEN)
    assert opened == StreamOpened(
        "stream", NS_STREAM, {"to": "localhost", "version": "1.0"}, NS_CLIENT
    )
    assert framing.parse(f"<close xmlns='{NS_FRAMING}'/>".encode()) == [StreamClosed()]
    assert framing.parse(b"  \n") == []


def test_websocket_elements_keep_their_own_namespace() -> None:
    framing = WebSocketFraming()
    [stanza] = framing.parse(b"<message xmlns='jabber:client' to='a@b'><body>hi</body></message>")
    assert isinstance(stanza, Element) and stanza.ns == NS_CLIENT
    [bare] = framing.parse(b"<message to='a@b'/>")  # no namespace: not jabber:client
    assert isinstance(bare, Element) and bare.ns == ""


@pytest.mark.parametrize(
    ("data", "condition"),
    [
        (b"<message xmlns='jabber:client'>", StreamErrorCondition.NOT_WELL_FORMED),
        (b"</frame><message xmlns='jabber:client'/>", StreamErrorCondition.NOT_WELL_FORMED),
        (b"<a xmlns='x'/><b xmlns='x'/>", StreamErrorCondition.BAD_FORMAT),
        (b"text", StreamErrorCondition.BAD_FORMAT),
        (b"<!-- c --><a xmlns='x'/>", StreamErrorCondition.RESTRICTED_XML),
    ],
)
def test_websocket_message_must_be_one_element(
    data: bytes, condition: StreamErrorCondition
) -> None:
    with pytest.raises(StreamError) as raised:
        WebSocketFraming().parse(data)
    assert raised.value.condition is condition


def test_websocket_message_size_is_bounded() -> None:
    framing = WebSocketFraming(max_stanza_bytes=100)
    with pytest.raises(StreamError) as raised:
        framing.parse(b"<message xmlns='jabber:client'><body>" + b"x" * 200 + b"</body></message>")
    assert raised.value.condition is StreamErrorCondition.POLICY_VIOLATION


def test_standalone_declares_the_stream_prefix() -> None:
    error = Element("error", NS_STREAM)
    error.add("conflict", NS_STREAMS)
    parsed = ET.fromstring(standalone(error))
    assert parsed.tag == q(NS_STREAM, "error")
    assert parsed[0].tag == q(NS_STREAMS, "conflict")
    message = ET.fromstring(standalone(Element("message", NS_CLIENT)))
    assert message.tag == q(NS_CLIENT, "message")


def test_websocket_redirect() -> None:
    close = ET.fromstring(websocket_redirect("wss://other.example/ws"))
    assert close.tag == q(NS_FRAMING, "close")
    assert close.get("see-other-uri") == "wss://other.example/ws"


def test_c2s_over_websocket_sends_one_document_per_message() -> None:
    stream = C2SStream(policy(), is_secure=True, framing=WebSocketFraming())
    frames = sent(stream.receive_data(OPEN))
    assert len(frames) == 2
    opened, features = (ET.fromstring(frame) for frame in frames)
    assert opened.tag == q(NS_FRAMING, "open") and opened.get("from") == "localhost"
    assert opened.get("id") == "id1" and opened.get("version") == "1.0"
    assert features.tag == q(NS_STREAM, "features")
    assert features.find(q(NS_TLS, "starttls")) is None
    actions = stream.receive_data(plain_auth())
    assert actions == [LookupAccount("user")]
    [success] = sent(logged_in(stream))
    assert ET.fromstring(success).tag == q(NS_SASL, "success")
    assert stream.state is C2SState.HEADER
    opened, features = (ET.fromstring(frame) for frame in sent(stream.receive_data(OPEN)))
    assert features.find(q(NS_BIND, "bind")) is not None
    stanza = b"<message xmlns='jabber:client' to='a@localhost'/>"
    stream.state = C2SState.BOUND
    [received] = stream.receive_data(stanza)
    assert isinstance(received, StanzaReceived)


def test_c2s_over_websocket_refuses_starttls_and_frames_stream_errors() -> None:
    stream = C2SStream(policy(), framing=WebSocketFraming())
    stream.receive_data(OPEN)
    actions = stream.receive_data(f"<starttls xmlns='{NS_TLS}'/>".encode())
    frames = [ET.fromstring(frame) for frame in sent(actions)]
    assert [f.tag for f in frames] == [q(NS_TLS, "failure"), q(NS_FRAMING, "close")]
    assert actions[-1] == CloseConnection(None)

    stream = C2SStream(policy(), framing=WebSocketFraming())
    actions = stream.receive_data(b"<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='x.y'/>")
    tags = [ET.fromstring(frame).tag for frame in sent(actions)]
    assert tags == [q(NS_FRAMING, "open"), q(NS_STREAM, "error"), q(NS_FRAMING, "close")]
    assert actions[-1] == CloseConnection(StreamErrorCondition.HOST_UNKNOWN)


def test_tcp_framing_is_unchanged() -> None:
    stream = C2SStream(policy(), is_secure=True)
    assert isinstance(stream.framing, TcpFraming)
    header = (
        b"<?xml version='1.0'?><stream:stream to='localhost' version='1.0' "
        b"xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
    )
    [data] = sent(stream.receive_data(header))
    assert data.startswith(b"<?xml version='1.0'?><stream:stream from='localhost'")
    assert b"<stream:features>" in data


# --------------------------------------------------------------------------- BOSH
def body(inner: str = "", **attrs: str) -> bytes:
    text = "".join(f" {k.replace('_', ':', 1)}='{v}'" for k, v in attrs.items())
    return f"<body xmlns='{NS_HTTPBIND}' xmlns:xmpp='{NS_XBOSH}'{text}>{inner}</body>".encode()


def parse(data: bytes, **limits: Any) -> Any:
    return parse_body(data, **({"max_stanza_bytes": 10000, "max_depth": 16} | limits))


def test_parse_body_reads_attributes_and_children() -> None:
    parsed = parse(
        body("<message xmlns='jabber:client'/><presence/>", rid="7", xmpp_restart="true")
    )
    assert parsed.int_attr("rid") == 7
    assert parsed.is_restart and not parsed.is_terminate
    message, presence = parsed.children
    assert message.ns == NS_CLIENT
    assert presence.ns == NS_CLIENT  # COMPAT: unqualified stanzas inherit httpbind's namespace


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"<body",
        b"<foo/>",
        b"<body xmlns='urn:other'/>",
        b"<body xmlns='" + NS_HTTPBIND.encode() + b"'>",
    ],
)
def test_parse_body_rejects_what_is_not_one_body(data: bytes) -> None:
    with pytest.raises(BoshError) as raised:
        parse(data)
    assert raised.value.condition == "bad-request"


def test_parse_body_enforces_the_stanza_limit() -> None:
    with pytest.raises(BoshError):
        parse(
            body("<message xmlns='jabber:client'>" + "x" * 500 + "</message>"), max_stanza_bytes=100
        )


def test_int_attr_rejects_non_numbers() -> None:
    with pytest.raises(BoshError):
        parse(body(rid="-1")).int_attr("rid")


def test_body_events_open_the_stream_with_the_creation_attributes() -> None:
    creation = parse(body(rid="1", to="localhost", xmpp_version="1.0", xml_lang="de"))
    [header] = body_events(creation, opens_stream=True)
    assert isinstance(header, StreamOpened)
    assert header.attrs == {
        "to": "localhost",
        "version": "1.0",
        "{http://www.w3.org/XML/1998/namespace}lang": "de",
    }
    restart = parse(body(rid="2", xmpp_restart="true"))
    [again] = body_events(restart, opens_stream=True, defaults=creation.attrs)
    assert isinstance(again, StreamOpened) and again.attrs["version"] == "1.0"
    terminate = parse(
        body("<presence xmlns='jabber:client' type='unavailable'/>", type="terminate")
    )
    events = body_events(terminate, opens_stream=False)
    assert isinstance(events[0], Element) and events[-1] == StreamClosed()


def test_body_bytes_is_one_document() -> None:
    features = Element("features", NS_STREAM)
    features.add("bind", NS_BIND)
    data = body_bytes(
        {"sid": "s1", f"{{{NS_XBOSH}}}version": "1.0"}, BoshFraming().element(features)
    )
    parsed = ET.fromstring(data)
    assert parsed.tag == q(NS_HTTPBIND, "body")
    assert parsed.get("sid") == "s1" and parsed.get(q(NS_XBOSH, "version")) == "1.0"
    assert parsed[0].tag == q(NS_STREAM, "features")
    assert ET.fromstring(body_bytes({"type": "terminate"})).get("type") == "terminate"


def test_c2s_over_bosh_writes_only_elements() -> None:
    stream = C2SStream(policy(), is_secure=True, framing=BoshFraming())
    creation = parse(body(rid="1", to="localhost", xmpp_version="1.0"))
    [features] = sent(stream.receive_events(body_events(creation, opens_stream=True)))
    assert features.startswith(b"<stream:features>")
    assert stream.stream_id == "id1"
    auth = parse(body(plain_auth().decode(), rid="2"))
    assert stream.receive_events(auth.children) == [LookupAccount("user")]
    actions = logged_in(stream)
    assert isinstance(actions[-1], Authenticated)
    closed = stream.receive_events([StreamClosed()])
    assert closed == [CloseConnection(None)]  # no </stream:stream> inside a <body/>
