"""The client stream's nonzas (XEP-0198, XEP-0352), sans-IO: where they are accepted, what
waits behind a pre-bind one (a <resume/>), and the stream error with an extra element."""

from __future__ import annotations

from salon.errors import StreamErrorCondition
from salon.stream.c2s import C2SState
from salon.stream.events import BindRequested, NonzaReceived, Send, StanzaReceived
from salon.xml.element import Element
from tests.unit.test_c2s_stream import NS_STREAMS, Client, bind_iq, bound_client, q

NS_SM = "urn:xmpp:sm:3"


def sm_client() -> Client:
    client = Client(is_secure=True, nonza_namespaces=lambda host: {NS_SM})
    client.login()
    return client


def test_a_nonza_before_bind_is_handed_over_and_what_follows_waits() -> None:
    client = sm_client()
    turn = client.send(f"<resume xmlns='{NS_SM}' previd='x' h='0'/><presence/>")
    assert turn.actions == [NonzaReceived(Element("resume", NS_SM, {"previd": "x", "h": "0"}))]
    assert client.state is C2SState.BIND
    replay = client.stream.prebind_nonza_done(resumed=True)
    assert client.state is C2SState.BOUND
    assert [type(a) for a in replay] == [StanzaReceived]


def test_after_a_failed_resume_the_client_binds() -> None:
    client = sm_client()
    client.send(f"<resume xmlns='{NS_SM}' previd='x' h='0'/>")
    held = client.send(bind_iq("phone"))
    assert held.actions == []  # pipelined behind the resume: waits for its answer
    replay = client.stream.prebind_nonza_done(resumed=False)
    assert replay == [BindRequested("b1", "phone")]
    assert client.state is C2SState.BIND


def test_other_namespaces_before_bind_are_still_refused() -> None:
    client = sm_client()
    turn = client.send("<inactive xmlns='urn:xmpp:csi:0'/>")
    assert client.state is C2SState.CLOSED
    errors = [e for e in turn.elements if e.tag.endswith("}error")]
    assert errors and errors[0][0].tag == q(NS_STREAMS, "not-authorized")


def test_a_nonza_once_bound_is_handed_over() -> None:
    client = bound_client(nonza_namespaces=lambda host: {NS_SM})
    turn = client.send(f"<r xmlns='{NS_SM}'/>")
    assert turn.actions == [NonzaReceived(Element("r", NS_SM))]


def test_client_closing_the_stream_is_remembered() -> None:
    client = bound_client()
    assert not client.stream.peer_closed
    client.send(b"</stream:stream>")
    assert client.stream.peer_closed


def test_server_closing_the_stream_is_not_the_clients_close() -> None:
    client = bound_client()
    client.close(StreamErrorCondition.CONNECTION_TIMEOUT)
    assert not client.stream.peer_closed


def test_stream_error_carries_an_application_condition() -> None:
    client = bound_client()
    extra = Element("handled-count-too-high", NS_SM, {"h": "5", "send-count": "0"})
    actions = client.stream.close(StreamErrorCondition.UNDEFINED_CONDITION, None, extra)
    written = b"".join(a.data for a in actions if isinstance(a, Send))
    error = client.reader.feed(written)[0]
    assert [child.tag for child in error] == [
        q(NS_STREAMS, "undefined-condition"),
        q(NS_SM, "handled-count-too-high"),
    ]
    assert error[1].get("h") == "5" and error[1].get("send-count") == "0"
