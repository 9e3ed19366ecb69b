"""The XEP-0114 component stream as a sans-IO machine: bytes in, actions out, no sockets."""

from __future__ import annotations

import pytest

from salon.errors import StreamErrorCondition
from salon.namespaces import NS_CLIENT
from salon.stream.component import (
    ComponentAction,
    ComponentAuthenticated,
    ComponentPolicy,
    ComponentStanzaReceived,
    ComponentState,
    ComponentStream,
    handshake_digest,
)
from salon.stream.events import CloseConnection, Send

DOMAIN = "gw.example.org"
SECRET = "sesame"
HEADER = (
    "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' "
    "xmlns:stream='http://etherx.jabber.org/streams' to='{to}'>"
)


def make(connected: bool = False) -> ComponentStream:
    policy = ComponentPolicy(
        secret_for={DOMAIN: SECRET}.get,
        is_connected=lambda domain: connected,
        new_id=lambda: "3BF96D32",
    )
    return ComponentStream(policy)


def sent(actions: list[ComponentAction]) -> bytes:
    return b"".join(a.data for a in actions if isinstance(a, Send))


def closed_with(actions: list[ComponentAction]) -> StreamErrorCondition | None:
    closes = [a for a in actions if isinstance(a, CloseConnection)]
    assert closes, actions
    return closes[0].error


def ready() -> ComponentStream:
    stream = make()
    stream.receive_data(HEADER.format(to=DOMAIN).encode())
    digest = handshake_digest("3BF96D32", SECRET)
    stream.receive_data(f"<handshake>{digest}</handshake>".encode())
    assert stream.is_ready
    return stream


def test_handshake_digest_is_lowercase_hex_sha1_of_id_and_secret() -> None:
    assert handshake_digest("3BF96D32", "sesame") == "7a98dc4c9e92493d7fd66a25364c862637789c45"


def test_header_is_answered_with_id_and_from() -> None:
    stream = make()
    out = sent(stream.receive_data(HEADER.format(to=DOMAIN).encode()))
    assert b"id='3BF96D32'" in out and f"from='{DOMAIN}'".encode() in out
    assert b"xmlns='jabber:component:accept'" in out
    assert b" version=" not in out.split(b"?>", 1)[1]  # no stream features here
    assert stream.state is ComponentState.HANDSHAKE


def test_handshake_in_one_byte_chunks() -> None:
    stream = make()
    data = HEADER.format(to=DOMAIN) + f"<handshake>{handshake_digest('3BF96D32', SECRET)}"
    data += "</handshake>"
    actions: list[ComponentAction] = []
    for byte in data.encode():
        actions.extend(stream.receive_data(bytes([byte])))
    assert ComponentAuthenticated(DOMAIN) in actions
    assert sent(actions).endswith(b"<handshake/>")


def test_uppercase_digest_is_accepted() -> None:
    stream = make()
    stream.receive_data(HEADER.format(to=DOMAIN).encode())
    digest = handshake_digest("3BF96D32", SECRET).upper()
    actions = stream.receive_data(f"<handshake> {digest} </handshake>".encode())
    assert ComponentAuthenticated(DOMAIN) in actions


@pytest.mark.parametrize(
    ("data", "condition"),
    [
        (HEADER.format(to="other.example.org"), StreamErrorCondition.HOST_UNKNOWN),
        (
            HEADER.format(to=DOMAIN).replace("jabber:component:accept", "jabber:client"),
            StreamErrorCondition.INVALID_NAMESPACE,
        ),
        (
            HEADER.format(to=DOMAIN) + "<handshake>00</handshake>",
            StreamErrorCondition.NOT_AUTHORIZED,
        ),
        (
            HEADER.format(to=DOMAIN) + f"<message from='{DOMAIN}' to='a@b'/>",
            StreamErrorCondition.NOT_AUTHORIZED,
        ),
        (
            HEADER.format(to=DOMAIN) + "<handshake><x/></handshake>",
            StreamErrorCondition.NOT_AUTHORIZED,
        ),
    ],
)
def test_stream_errors_before_ready(data: str, condition: StreamErrorCondition) -> None:
    stream = make()
    actions = stream.receive_data(data.encode())
    assert closed_with(actions) is condition
    assert f"<{condition.value} ".encode() in sent(actions)
    assert stream.closed


def test_host_unknown_header_does_not_claim_the_domain() -> None:
    actions = make().receive_data(HEADER.format(to="other.example.org").encode())
    assert b" from=" not in sent(actions)


def test_conflict_when_the_domain_is_connected() -> None:
    stream = make(connected=True)
    stream.receive_data(HEADER.format(to=DOMAIN).encode())
    digest = handshake_digest("3BF96D32", SECRET)
    actions = stream.receive_data(f"<handshake>{digest}</handshake>".encode())
    assert closed_with(actions) is StreamErrorCondition.CONFLICT
    assert b"<handshake/>" not in sent(actions)
    assert not any(isinstance(a, ComponentAuthenticated) for a in actions)


def test_stanza_is_moved_to_client_namespace() -> None:
    stream = ready()
    actions = stream.receive_data(
        f"<message from='bot@{DOMAIN}/r' to='juliet@example.org'><body>hi</body></message>".encode()
    )
    (received,) = [a for a in actions if isinstance(a, ComponentStanzaReceived)]
    assert received.stanza.ns == NS_CLIENT
    assert received.stanza.find("body", NS_CLIENT) is not None
    assert str(received.sender) == f"bot@{DOMAIN}/r"
    assert str(received.to) == "juliet@example.org"
    # and it goes out again without a jabber:client declaration
    assert stream.stanza(received.stanza).startswith(b"<message from=")
    assert b"xmlns" not in stream.stanza(received.stanza)


@pytest.mark.parametrize(
    ("stanza", "condition"),
    [
        ("<message from='juliet@example.org' to='a@b'/>", StreamErrorCondition.INVALID_FROM),
        ("<message from='sub.gw.example.org' to='a@b'/>", StreamErrorCondition.INVALID_FROM),
        ("<message to='a@b'/>", StreamErrorCondition.IMPROPER_ADDRESSING),
        (f"<message from='{DOMAIN}'/>", StreamErrorCondition.IMPROPER_ADDRESSING),
        (f"<message from='{DOMAIN}' to='a@@b'/>", StreamErrorCondition.IMPROPER_ADDRESSING),
        ("<foo xmlns='urn:x'/>", StreamErrorCondition.UNSUPPORTED_STANZA_TYPE),
    ],
)
def test_stream_errors_when_ready(stanza: str, condition: StreamErrorCondition) -> None:
    stream = ready()
    actions = stream.receive_data(stanza.encode())
    assert closed_with(actions) is condition
    assert not any(isinstance(a, ComponentStanzaReceived) for a in actions)


def test_peer_closing_is_answered_in_kind() -> None:
    stream = ready()
    actions = stream.receive_data(b"</stream:stream>")
    assert sent(actions) == b"</stream:stream>"
    assert closed_with(actions) is None
