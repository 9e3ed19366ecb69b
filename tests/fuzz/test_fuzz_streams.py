"""Fuzz the sans-IO stream state machines (c2s, s2s both ways, component) the way a hostile
peer would: whatever arrives, in whatever pieces, the machine returns actions and never
raises; what it writes is well-formed XML whose errors name RFC 6120 conditions; a connection
it closes is closed with an RFC 6120 stream error condition (or none); after closing it stays
silent. The shell's side of each exchange (account lookup, password check, bind, dialback
verification, TLS) is played by the test, with answers hypothesis picks."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime

from hypothesis import given, note

from salon.auth.credentials import make_credentials
from salon.errors import StanzaError, StanzaErrorCondition
from salon.jid import JID
from salon.namespaces import NS_REGISTER, NS_SM
from salon.storage.interfaces import Account
from salon.stream.c2s import C2SPolicy, C2SStream
from salon.stream.component import ComponentPolicy, ComponentStream, handshake_digest
from salon.stream.events import (
    BindRequested,
    CloseConnection,
    DelayedSend,
    LookupAccount,
    NonzaReceived,
    PreAuthIq,
    Send,
    StartTls,
    VerifyPassword,
)
from salon.stream.s2s import (
    S2SInPolicy,
    S2SInStream,
    S2SLimits,
    S2SOutPolicy,
    S2SOutStream,
    VerifyKey,
)
from salon.xml.element import Element
from tests.fuzz.oracle import FED, FUZZ, REACHED, STREAM_CONDITIONS, OutputReader, input_seeds
from tests.fuzz.strategies import (
    C2S_HEADER,
    C2S_SCRIPT,
    C2S_SCRIPT_TLS,
    C2S_VALID,
    CLOSE,
    COMPONENT_HEADER,
    COMPONENT_VALID,
    PASSWORD,
    S2S_HEADER,
    S2S_SCRIPT,
    S2S_VALID,
    SEEDS,
    build_stream,
)

MAX_STANZA = 65536
ACCOUNT = Account(
    "localhost", "user", {c.hash_name: c for c in make_credentials(PASSWORD)}, datetime.now(UTC)
)
COMPONENT_ID = "3BF96D32"
COMPONENT_PIECES = [
    *COMPONENT_VALID,
    f"<handshake>{handshake_digest(COMPONENT_ID, 'sesame')}</handshake>".encode(),
]
# What the receiving server of our outgoing stream says.
S2S_OUT_PIECES = [
    S2S_HEADER.replace(
        b"from='montague.example' to='capulet.example'", b"from='montague.example' id='s1'"
    ),
    b"<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
    b"<dialback xmlns='urn:xmpp:features:dialback'/></stream:features>",
    b"<stream:features><dialback xmlns='urn:xmpp:features:dialback'/></stream:features>",
    b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>",
    b"<db:result from='montague.example' to='capulet.example' type='valid'/>",
    b"<db:result from='montague.example' to='capulet.example' type='invalid'/>",
    b"<db:verify from='montague.example' to='capulet.example' id='s1' type='valid'/>",
    b"<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>",
    b"<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/></failure>",
    *S2S_VALID,
]

S2S_OUT_SCRIPT = [S2S_OUT_PIECES[0], S2S_OUT_PIECES[2], S2S_OUT_PIECES[4], *S2S_VALID[7:10], CLOSE]
COMPONENT_SCRIPT = [COMPONENT_HEADER, COMPONENT_PIECES[-1], *COMPONENT_VALID[3:]]


class Peer:
    """Checks every action a stream machine returns, and feeds the output to the oracle."""

    def __init__(self) -> None:
        self.out = OutputReader()
        self.closed = False

    def check(self, actions: list[object]) -> None:
        for action in actions:
            if isinstance(action, Send | DelayedSend):
                assert not self.closed, "the stream wrote after it closed the connection"
                self.out.feed(action.data)
            elif isinstance(action, CloseConnection):
                assert not self.closed, "the connection was closed twice"
                self.closed = True
                if action.error is not None:
                    assert action.error.value in STREAM_CONDITIONS


@FUZZ
@given(SEEDS)
def test_c2s_stream(seed: int) -> None:
    for one in input_seeds(seed):
        note(f"input seed {one}")
        c2s_input(random.Random(one))


def c2s_input(rng: random.Random) -> None:
    FED["c2s"] += 1
    has_account, secure = rng.random() < 0.8, rng.random() < 0.5
    bind = rng.choice(["bound", "bound", "conflict", "error"])
    script = C2S_SCRIPT if secure else C2S_SCRIPT_TLS
    chunks = build_stream(rng, C2S_VALID, C2S_HEADER, script)
    ids = itertools.count()
    policy = C2SPolicy(
        is_local_host={"localhost"}.__contains__,
        default_host="localhost",
        max_stanza_size=MAX_STANZA,
        nonza_namespaces=lambda host: {NS_SM},
        preauth_iq_namespaces=lambda host: {NS_REGISTER},
        new_id=lambda: f"id{next(ids)}",
    )
    stream = C2SStream(policy, is_secure=secure)
    peer = Peer()
    for chunk in chunks:
        pending: list[object] = list(stream.receive_data(chunk))
        rounds = 0
        while pending and rounds < 20:  # the shell's answers, which may produce more
            rounds += 1
            peer.check(pending)
            answers: list[object] = []
            for action in pending:
                if isinstance(action, StartTls):
                    answers.extend(stream.tls_established({"tls-exporter": b"x" * 32}))
                elif isinstance(action, LookupAccount):
                    answers.extend(stream.account_loaded(ACCOUNT if has_account else None))
                elif isinstance(action, VerifyPassword):
                    answers.extend(stream.password_checked(action.password == PASSWORD))
                elif isinstance(action, BindRequested):
                    if bind == "bound":
                        jid = JID.make("user", "localhost", action.resource or "r")
                        answers.extend(stream.bind_result(action.iq_id, jid))
                    else:
                        err = StanzaError(
                            StanzaErrorCondition(
                                bind if bind == "conflict" else "internal-server-error"
                            )
                        )
                        answers.extend(stream.bind_result(action.iq_id, None, err))
                elif isinstance(action, NonzaReceived):
                    answers.extend(stream.prebind_nonza_done(False))
                elif isinstance(action, PreAuthIq):
                    reply = Element(
                        "iq",
                        "jabber:client",
                        {"type": "result", "id": action.stanza.get("id") or ""},
                    )
                    answers.extend(stream.preauth_result(reply))
            pending = answers
        REACHED[f"c2s {stream.state.name}"] += 1
        if peer.closed:
            assert stream.receive_data(b"<presence/>") == []
            return
    peer.check(list(stream.close()))


def s2s_limits() -> S2SLimits:
    ids = itertools.count()
    return S2SLimits(max_stanza_size=MAX_STANZA, new_id=lambda: f"s{next(ids)}")


@FUZZ
@given(SEEDS)
def test_s2s_incoming_stream(seed: int) -> None:
    for one in input_seeds(seed):
        note(f"input seed {one}")
        s2s_in_input(random.Random(one))


def s2s_in_input(rng: random.Random) -> None:
    FED["s2s-in"] += 1
    secure, valid = rng.random() < 0.5, rng.random() < 0.7
    chunks = build_stream(rng, S2S_VALID, S2S_HEADER, S2S_SCRIPT)
    policy = S2SInPolicy(
        is_local_host={"capulet.example"}.__contains__,
        default_host="capulet.example",
        dialback_secret=b"secret",
        require_encryption=not secure,
        limits=s2s_limits(),
    )
    stream = S2SInStream(policy, is_secure=secure)
    peer = Peer()
    for chunk in chunks:
        actions = stream.receive_data(chunk)
        peer.check(list(actions))
        for action in actions:
            if isinstance(action, StartTls):
                peer.check(list(stream.tls_established(None)))
            elif isinstance(action, VerifyKey):
                peer.check(list(stream.key_verified(action.originating, action.receiving, valid)))
        REACHED[f"s2s-in {stream.state.name}{' authenticated' if stream.pairs else ''}"] += 1
        if peer.closed:
            assert stream.receive_data(b"<presence/>") == []
            return
    peer.check(list(stream.close()))


@FUZZ
@given(SEEDS)
def test_s2s_outgoing_stream(seed: int) -> None:
    for one in input_seeds(seed):
        note(f"input seed {one}")
        s2s_out_input(random.Random(one))


def s2s_out_input(rng: random.Random) -> None:
    FED["s2s-out"] += 1
    secure = rng.random() < 0.7
    chunks = build_stream(rng, S2S_OUT_PIECES, S2S_OUT_PIECES[0], S2S_OUT_SCRIPT)
    policy = S2SOutPolicy(dialback_secret=b"secret", limits=s2s_limits())
    stream = S2SOutStream("capulet.example", "montague.example", policy, is_secure=secure)
    peer = Peer()
    peer.check(list(stream.start()))
    peer.check(list(stream.authorize("capulet.example")))
    for chunk in chunks:
        actions = stream.receive_data(chunk)
        peer.check(list(actions))
        for action in actions:
            if isinstance(action, StartTls):
                peer.check(list(stream.tls_established(None)))
        REACHED[f"s2s-out {stream.state.name}"] += 1
        if peer.closed:
            assert stream.receive_data(b"<presence/>") == []
            return
    peer.check(list(stream.close()))


@FUZZ
@given(SEEDS)
def test_component_stream(seed: int) -> None:
    for one in input_seeds(seed):
        note(f"input seed {one}")
        component_input(random.Random(one))


def component_input(rng: random.Random) -> None:
    FED["component"] += 1
    connected = rng.random() < 0.2
    chunks = build_stream(rng, COMPONENT_PIECES, COMPONENT_HEADER, COMPONENT_SCRIPT)
    policy = ComponentPolicy(
        secret_for={"gw.example.org": "sesame"}.get,
        is_connected=lambda domain: connected,
        max_stanza_size=MAX_STANZA,
        new_id=lambda: COMPONENT_ID,
    )
    stream = ComponentStream(policy)
    peer = Peer()
    for chunk in chunks:
        peer.check(list(stream.receive_data(chunk)))
        REACHED[f"component {stream.state.name}"] += 1
        if peer.closed:
            assert stream.receive_data(b"<presence/>") == []
            return
    peer.check(list(stream.close()))


# Found by `make fuzz` (each raised out of receive_data instead of ending the stream).
def test_non_ascii_handshake_is_not_authorized() -> None:
    """hmac.compare_digest raised TypeError on a <handshake/> with non-ASCII text."""
    stream = ComponentStream(
        ComponentPolicy(secret_for={"gw.example.org": "sesame"}.get, new_id=lambda: "x")
    )
    peer = Peer()
    peer.check(list(stream.receive_data(COMPONENT_HEADER)))
    peer.check(list(stream.receive_data("<handshake>0123\u04dafdef</handshake>".encode())))
    assert peer.closed and peer.out.stream_errors == ["not-authorized"]


def _s2s_in() -> tuple[S2SInStream, Peer]:
    policy = S2SInPolicy(
        is_local_host={"capulet.example"}.__contains__,
        default_host="capulet.example",
        dialback_secret=b"secret",
        limits=s2s_limits(),
    )
    stream = S2SInStream(policy, is_secure=True)
    peer = Peer()
    peer.check(list(stream.receive_data(S2S_HEADER)))
    return stream, peer


def test_non_ascii_external_authzid_is_incorrect_encoding() -> None:
    """base64.b64decode raised ValueError on an EXTERNAL authzid with non-ASCII text."""
    stream, peer = _s2s_in()
    auth = (
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>bW9u\u06e7ZQ==</auth>"
    )
    actions = stream.receive_data(auth.encode())
    peer.check(list(actions))
    sent = b"".join(a.data for a in actions if isinstance(a, Send))
    assert b"<incorrect-encoding/>" in sent and not peer.closed


def test_non_ascii_dialback_key_is_invalid() -> None:
    """hmac.compare_digest raised TypeError on a db:verify key with non-ASCII text."""
    stream, peer = _s2s_in()
    verify = "<db:verify from='montague.example' to='capulet.example' id='s1'>k\u00e9y</db:verify>"
    actions = stream.receive_data(verify.encode())
    peer.check(list(actions))
    sent = b"".join(a.data for a in actions if isinstance(a, Send))
    assert b"type='invalid'" in sent or b'type="invalid"' in sent, sent
