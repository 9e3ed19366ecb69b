"""Server-to-server streams in memory: an S2SOutStream wired to an S2SInStream (h11's
ConnectionPair idea), no sockets. TLS is simulated: both sides are told the handshake finished
and what the peer's certificate proves."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from salon.errors import StanzaErrorCondition, StreamErrorCondition
from salon.namespaces import NS_CLIENT
from salon.stream.events import CloseConnection, Send, StartTls
from salon.stream.s2s import (
    DomainAuthorized,
    DomainRefused,
    KeyVerified,
    PeerAuthenticated,
    RemoteStanzaReceived,
    S2SAction,
    S2SInPolicy,
    S2SInStream,
    S2SOutPolicy,
    S2SOutState,
    S2SOutStream,
    VerifyKey,
    dialback_key,
)
from salon.xml.element import Element

CAPULET = "capulet.example"
MONTAGUE = "montague.example"
VERONA = "verona.example"  # a second domain hosted with capulet.example
SECRETS = {CAPULET: b"capulet secret", MONTAGUE: b"montague secret", VERONA: b"capulet secret"}
SERVERS = {CAPULET: {CAPULET, VERONA}, MONTAGUE: {MONTAGUE}}


def covers(*domains: str) -> Callable[[str], bool]:
    return lambda domain: domain in domains


def in_policy(server: str, **options: object) -> S2SInPolicy:
    return S2SInPolicy(
        is_local_host=SERVERS[server].__contains__,
        default_host=server,
        dialback_secret=SECRETS[server],
        **options,  # type: ignore[arg-type]
    )


def out_policy(server: str, **options: object) -> S2SOutPolicy:
    return S2SOutPolicy(dialback_secret=SECRETS[server], **options)  # type: ignore[arg-type]


@dataclass
class Link:
    """One TCP connection: ``out`` (initiating server) → ``inn`` (receiving server)."""

    out: S2SOutStream
    inn: S2SInStream
    out_sees: Callable[[str], bool] | None = None  # what the receiver's certificate proves
    in_sees: Callable[[str], bool] | None = None  # what the initiator's certificate proves
    out_events: list[S2SAction] = field(default_factory=list)
    in_events: list[S2SAction] = field(default_factory=list)
    wire_to_in: list[bytes] = field(default_factory=list)
    wire_to_out: list[bytes] = field(default_factory=list)
    closed: list[str] = field(default_factory=list)
    byte_by_byte: bool = False

    def start(self) -> Link:
        self.run(out=self.out.start())
        return self

    def run(self, out: list[S2SAction] = (), inn: list[S2SAction] = ()) -> None:  # type: ignore[assignment]
        pending = deque([("out", a) for a in out] + [("in", a) for a in inn])
        while pending:
            side, action = pending.popleft()
            if isinstance(action, Send):
                if side == "out":
                    self.wire_to_in.append(action.data)
                    pending.extend(("in", a) for a in self._feed(self.inn, action.data))
                else:
                    self.wire_to_out.append(action.data)
                    pending.extend(("out", a) for a in self._feed(self.out, action.data))
            elif isinstance(action, StartTls):
                if side == "out":  # the initiator starts the handshake after <proceed/>
                    pending.extend(("in", a) for a in self.inn.tls_established(self.in_sees))
                    pending.extend(("out", a) for a in self.out.tls_established(self.out_sees))
            elif isinstance(action, CloseConnection):
                self.closed.append(side)
            elif side == "out":
                self.out_events.append(action)
            else:
                self.in_events.append(action)

    def _feed(self, stream: S2SInStream | S2SOutStream, data: bytes) -> list[S2SAction]:
        if not self.byte_by_byte:
            return stream.receive_data(data)
        actions: list[S2SAction] = []
        for i in range(len(data)):
            actions.extend(stream.receive_data(data[i : i + 1]))
        return actions

    def take(self, side: str, kind: type) -> list:  # type: ignore[type-arg]
        events = self.out_events if side == "out" else self.in_events
        found = [e for e in events if isinstance(e, kind)]
        for e in found:
            events.remove(e)
        return found


def link(
    local: str = CAPULET,
    remote: str = MONTAGUE,
    *,
    initiator_cert: tuple[str, ...] = (),
    receiver_cert: tuple[str, ...] = (),
    out_options: dict[str, object] | None = None,
    in_options: dict[str, object] | None = None,
    byte_by_byte: bool = False,
) -> Link:
    out_server = next(s for s, hosted in SERVERS.items() if local in hosted)
    in_server = next(s for s, hosted in SERVERS.items() if remote in hosted)
    return Link(
        S2SOutStream(local, remote, out_policy(out_server, **(out_options or {}))),
        S2SInStream(in_policy(in_server, **(in_options or {}))),
        out_sees=covers(*receiver_cert) if receiver_cert else None,
        in_sees=covers(*initiator_cert) if initiator_cert else None,
        byte_by_byte=byte_by_byte,
    ).start()


def answer_verify(request: VerifyKey, authoritative_in: S2SInStream) -> bool:
    """Run the receiving server's db:verify over a reverse link to the authoritative server."""
    reverse = link(request.receiving, request.originating)
    reverse.run(out=reverse.out.verify_key(request.receiving, request.stream_id, request.key))
    (verified,) = reverse.take("out", KeyVerified)
    assert (verified.originating, verified.receiving) == (request.originating, request.receiving)
    assert verified.stream_id == request.stream_id
    return verified.is_valid


def parse(data: bytes) -> ET.Element:
    """Parse a top-level element with the standard library (a different parser)."""
    wrapped = (
        b"<w xmlns='jabber:server' xmlns:db='jabber:server:dialback' "
        b"xmlns:stream='http://etherx.jabber.org/streams'>" + data + b"</w>"
    )
    return ET.fromstring(wrapped)[0]


def message(from_: str, to: str, body: str = "hi") -> Element:
    msg = Element("message", NS_CLIENT, {"from": from_, "to": to, "type": "chat"})
    msg.add("body", text=body)
    return msg


def stream_error_of(link_: Link, side: str) -> str | None:
    """The stream error condition ``side`` sent, if any."""
    wire = link_.wire_to_in if side == "out" else link_.wire_to_out
    for chunk in wire:
        if b"<stream:error>" in chunk:
            start = chunk.index(b"<stream:error>") + len(b"<stream:error><")
            return chunk[start:].split(b" ", 1)[0].decode()
    return None


# ---------------------------------------------------------------------- XEP-0185
def test_dialback_key_matches_the_xep_0185_example() -> None:
    key = dialback_key(b"s3cr3tf0rd14lb4ck", "xmpp.example.com", "example.org", "D60000229F")
    assert key == "37c69b1cf07a3f67c04a5ef5902fa5114f2c76fe4a2686482ba5b89323075643"


def test_dialback_key_depends_on_every_input() -> None:
    base = dialback_key(b"s", "a.example", "b.example", "id1")
    assert dialback_key(b"t", "a.example", "b.example", "id1") != base
    assert dialback_key(b"s", "b.example", "a.example", "id1") != base
    assert dialback_key(b"s", "a.example", "b.example", "id2") != base


# ---------------------------------------------------------------------- negotiation
def test_header_and_features_are_a_server_stream_with_dialback_prefix() -> None:
    pair = link()
    header = pair.wire_to_in[0]
    assert b"xmlns='jabber:server'" in header and b"xmlns:db='jabber:server:dialback'" in header
    assert b"from='capulet.example'" in header and b"to='montague.example'" in header
    features = parse(pair.wire_to_out[0].split(b">", 2)[2])
    assert features.find("{urn:ietf:params:xml:ns:xmpp-tls}starttls/") is not None
    # Before TLS nothing but STARTTLS is offered (require_encryption).
    assert features.find("{urn:xmpp:features:dialback}dialback") is None


def test_sasl_external_when_both_certificates_validate() -> None:
    pair = link(initiator_cert=(CAPULET,), receiver_cert=(MONTAGUE,))
    assert pair.take("out", DomainAuthorized) == [DomainAuthorized(CAPULET)]
    (auth,) = pair.take("in", PeerAuthenticated)
    assert (auth.remote, auth.local, auth.mechanism) == (CAPULET, MONTAGUE, "EXTERNAL")
    assert any(b"mechanism='EXTERNAL'" in chunk for chunk in pair.wire_to_in)
    assert not any(b"db:result" in chunk for chunk in pair.wire_to_in)
    assert pair.out.is_ready and pair.inn.pairs == {(CAPULET, MONTAGUE)}


def test_external_not_offered_when_the_certificate_names_another_domain() -> None:
    pair = link(initiator_cert=("other.example",))
    assert not any(b"EXTERNAL" in chunk for chunk in pair.wire_to_out)
    assert pair.take("in", VerifyKey)  # dialback instead


def test_dialback_round_trip_through_the_authoritative_server() -> None:
    pair = link()
    (request,) = pair.take("in", VerifyKey)
    assert (request.originating, request.receiving) == (CAPULET, MONTAGUE)
    assert request.stream_id == pair.inn.stream_id
    assert request.key == dialback_key(SECRETS[CAPULET], MONTAGUE, CAPULET, pair.inn.stream_id)
    assert pair.take("out", DomainAuthorized) == []  # nothing before the answer
    valid = answer_verify(request, pair.inn)
    assert valid
    pair.run(inn=pair.inn.key_verified(request.originating, request.receiving, valid))
    assert pair.take("out", DomainAuthorized) == [DomainAuthorized(CAPULET)]
    (auth,) = pair.take("in", PeerAuthenticated)
    assert auth.mechanism == "dialback"


def test_authoritative_server_says_invalid_for_a_forged_key() -> None:
    authoritative = link(MONTAGUE, CAPULET)
    authoritative.run(out=authoritative.out.verify_key(MONTAGUE, "some-stream", "0" * 64))
    (verified,) = authoritative.take("out", KeyVerified)
    assert not verified.is_valid


def test_invalid_key_refuses_the_domain_and_ends_the_stream() -> None:
    pair = link()
    (request,) = pair.take("in", VerifyKey)
    pair.run(inn=pair.inn.key_verified(request.originating, request.receiving, False))
    (refused,) = pair.take("out", DomainRefused)
    assert refused.local == CAPULET
    assert refused.condition is StanzaErrorCondition.REMOTE_SERVER_TIMEOUT
    assert "out" in pair.closed
    assert pair.inn.pairs == set()


def test_unreachable_authoritative_server_is_a_dialback_error() -> None:
    pair = link()
    (request,) = pair.take("in", VerifyKey)
    error = StanzaErrorCondition.REMOTE_SERVER_NOT_FOUND
    pair.run(inn=pair.inn.key_verified(request.originating, request.receiving, False, error))
    (refused,) = pair.take("out", DomainRefused)
    assert "remote-server-not-found" in (refused.text or "")


def test_certificate_valid_for_the_domain_skips_the_dial_back() -> None:
    # The peer's certificate validates but EXTERNAL is not used (initiator opted out).
    pair = link(initiator_cert=(CAPULET,), out_options={"can_external": False})
    assert pair.take("in", VerifyKey) == []
    assert pair.take("out", DomainAuthorized) == [DomainAuthorized(CAPULET)]
    (auth,) = pair.take("in", PeerAuthenticated)
    assert auth.mechanism == "dialback+PKIX"


def test_piggybacking_a_second_local_domain() -> None:
    pair = link(initiator_cert=(CAPULET,), receiver_cert=(MONTAGUE,))
    assert pair.take("out", DomainAuthorized) == [DomainAuthorized(CAPULET)]
    assert pair.out.can_piggyback
    pair.run(out=pair.out.authorize(VERONA))
    (request,) = pair.take("in", VerifyKey)  # the certificate does not cover verona.example
    assert request.originating == VERONA
    pair.run(inn=pair.inn.key_verified(VERONA, MONTAGUE, answer_verify(request, pair.inn)))
    assert pair.take("out", DomainAuthorized) == [DomainAuthorized(VERONA)]
    assert pair.inn.pairs == {(CAPULET, MONTAGUE), (VERONA, MONTAGUE)}
    pair.run(out=pair.out.send_stanza(message(f"nurse@{VERONA}", f"romeo@{MONTAGUE}")))
    (got,) = pair.take("in", RemoteStanzaReceived)
    assert str(got.sender) == f"nurse@{VERONA}"


def test_negotiation_survives_byte_by_byte_delivery() -> None:
    pair = link(initiator_cert=(CAPULET,), receiver_cert=(MONTAGUE,), byte_by_byte=True)
    assert pair.take("out", DomainAuthorized) == [DomainAuthorized(CAPULET)]


def test_verify_requests_wait_until_the_stream_is_ready() -> None:
    out = S2SOutStream(MONTAGUE, CAPULET, out_policy(MONTAGUE))
    assert out.verify_key(MONTAGUE, "sid", "key") == []  # not even connected yet
    pair = Link(out, S2SInStream(in_policy(CAPULET))).start()
    (verified,) = pair.take("out", KeyVerified)
    assert not verified.is_valid and verified.stream_id == "sid"


# ---------------------------------------------------------------------- policies
def test_require_certificate_offers_no_dialback_and_refuses_db_result() -> None:
    pair = link(in_options={"require_certificate": True})
    assert not any(b"urn:xmpp:features:dialback" in chunk for chunk in pair.wire_to_out)
    (refused,) = pair.take("out", DomainRefused)
    assert refused.local == CAPULET
    assert pair.take("in", PeerAuthenticated) == []


def test_require_certificate_still_accepts_external() -> None:
    pair = link(
        initiator_cert=(CAPULET,),
        receiver_cert=(MONTAGUE,),
        in_options={"require_certificate": True},
    )
    assert pair.take("out", DomainAuthorized) == [DomainAuthorized(CAPULET)]


def test_denied_domain_gets_a_forbidden_dialback_error() -> None:
    pair = link(in_options={"is_peer_allowed": lambda domain: domain != CAPULET})
    assert pair.take("in", VerifyKey) == []
    assert any(b"<forbidden" in chunk for chunk in pair.wire_to_out)
    (refused,) = pair.take("out", DomainRefused)
    assert "forbidden" in (refused.text or "")


def test_db_result_for_a_domain_not_hosted_is_item_not_found() -> None:
    out = S2SOutStream(CAPULET, "elsewhere.example", out_policy(CAPULET))
    pair = Link(out, S2SInStream(in_policy(MONTAGUE))).start()
    assert stream_error_of(pair, "in") == "host-unknown"  # the header already names it


def test_outgoing_side_requires_tls_unless_told_otherwise() -> None:
    pair = link(in_options={"can_starttls": lambda host: False})
    (refused,) = pair.take("out", DomainRefused)
    assert "TLS" in (refused.text or "")
    assert stream_error_of(pair, "out") == "policy-violation"


def test_outgoing_side_requires_the_peer_certificate_when_told() -> None:
    pair = link(out_options={"require_certificate": True})
    (refused,) = pair.take("out", DomainRefused)
    assert "does not validate" in (refused.text or "")


def test_plaintext_federation_when_both_sides_allow_it() -> None:
    pair = link(
        out_options={"require_encryption": False, "can_starttls": False},
        in_options={"require_encryption": False, "can_starttls": lambda host: False},
    )
    assert len(pair.take("in", VerifyKey)) == 1
    pair.run(inn=pair.inn.key_verified(CAPULET, MONTAGUE, True))
    assert pair.take("out", DomainAuthorized) == [DomainAuthorized(CAPULET)]


# ---------------------------------------------------------------------- stanzas
def authenticated_link() -> Link:
    pair = link(initiator_cert=(CAPULET,), receiver_cert=(MONTAGUE,))
    assert pair.take("out", DomainAuthorized)
    pair.take("in", PeerAuthenticated)
    return pair


def test_stanza_arrives_in_the_client_namespace() -> None:
    pair = authenticated_link()
    pair.run(out=pair.out.send_stanza(message(f"juliet@{CAPULET}/balcony", f"romeo@{MONTAGUE}")))
    assert b"xmlns" not in pair.wire_to_in[-1]  # jabber:server is the stream's default
    (got,) = pair.take("in", RemoteStanzaReceived)
    assert got.stanza.ns == NS_CLIENT
    assert got.stanza.find("body", NS_CLIENT) is not None
    assert str(got.sender) == f"juliet@{CAPULET}/balcony" and str(got.to) == f"romeo@{MONTAGUE}"


@pytest.mark.parametrize(
    ("stanza", "condition"),
    [
        (f"<message from='eve@evil.example' to='romeo@{MONTAGUE}'/>", "invalid-from"),
        (f"<message from='nurse@{VERONA}' to='romeo@{MONTAGUE}'/>", "invalid-from"),
        (f"<message from='juliet@{CAPULET}' to='x@elsewhere.example'/>", "host-unknown"),
        (f"<message to='romeo@{MONTAGUE}'/>", "improper-addressing"),
        (f"<message from='juliet@{CAPULET}'/>", "improper-addressing"),
        ("<foo xmlns='urn:example'/>", "unsupported-stanza-type"),
    ],
)
def test_bad_stanzas_end_the_stream(stanza: str, condition: str) -> None:
    pair = authenticated_link()
    pair.run(out=[Send(stanza.encode())])
    assert stream_error_of(pair, "in") == condition
    assert pair.take("in", RemoteStanzaReceived) == []
    assert "in" in pair.closed


def test_stanza_before_authentication_is_not_authorized() -> None:
    pair = link()
    pair.take("in", VerifyKey)
    pair.run(out=[Send(f"<message from='juliet@{CAPULET}' to='romeo@{MONTAGUE}'/>".encode())])
    assert stream_error_of(pair, "in") == "not-authorized"


def test_stream_error_from_the_peer_refuses_pending_domains() -> None:
    out = S2SOutStream(CAPULET, MONTAGUE, out_policy(CAPULET))
    out.start()
    actions = out.receive_data(
        b"<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams'"
        b" id='x' version='1.0'><stream:error><host-unknown"
        b" xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>"
    )
    refused = [a for a in actions if isinstance(a, DomainRefused)]
    assert refused and "host-unknown" in (refused[0].text or "")
    assert out.state is S2SOutState.CLOSED
    assert any(isinstance(a, CloseConnection) for a in actions)


def test_close_sends_a_stream_error() -> None:
    pair = authenticated_link()
    pair.run(inn=pair.inn.close(StreamErrorCondition.SYSTEM_SHUTDOWN))
    assert stream_error_of(pair, "in") == "system-shutdown"
    assert pair.out.closed
