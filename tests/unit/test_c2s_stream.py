"""Sans-IO tests for salon.stream.c2s: bytes in, actions out, no sockets.

Every byte the stream writes (``Send`` and ``DelayedSend``) is read back with the standard
library's ``XMLPullParser``, a different parser from Salon's own, so a serializer bug cannot
hide behind a parser bug (STYLE.md 6.7).
"""

from __future__ import annotations

import base64
import functools
import itertools
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scramp import ScramClient

from salon.auth.credentials import make_credentials, verify_password
from salon.errors import StanzaError, StanzaErrorCondition, StreamErrorCondition
from salon.jid import JID
from salon.namespaces import (
    NS_BIND,
    NS_CLIENT,
    NS_SASL,
    NS_SASL_CB,
    NS_SERVER,
    NS_SESSION,
    NS_STANZAS,
    NS_STREAM,
    NS_STREAMS,
    NS_TLS,
    NS_XML,
)
from salon.storage.interfaces import Account
from salon.stream.c2s import C2SPolicy, C2SState, C2SStream
from salon.stream.events import (
    Authenticated,
    BindRequested,
    CloseConnection,
    DelayedSend,
    LookupAccount,
    NonzaReceived,
    Send,
    StanzaAnswered,
    StanzaReceived,
    StartTls,
    StreamAction,
    VerifyPassword,
)
from salon.xml.element import Element

C = StreamErrorCondition
S = C2SState
LOCAL_HOSTS = frozenset({"localhost", "example.test"})
PASSWORD = "pencil"
XML_LANG = f"{{{NS_XML}}}lang"
NS_NONZA = "urn:example:nonza"
_CREDENTIALS = {c.hash_name: c for c in make_credentials(PASSWORD)}


def q(ns: str, tag: str) -> str:
    """Clark name, as ElementTree spells tags."""
    return f"{{{ns}}}{tag}"


def account(username: str = "user", host: str = "localhost") -> Account:
    return Account(host, username, dict(_CREDENTIALS), datetime.now(UTC))


def make_policy(**overrides: Any) -> C2SPolicy:
    ids = itertools.count(1)
    options: dict[str, Any] = {
        "is_local_host": LOCAL_HOSTS.__contains__,
        "default_host": "localhost",
        "new_id": lambda: f"id{next(ids)}",
    }
    options.update(overrides)
    return C2SPolicy(**options)


def header(
    to: str | None = "localhost",
    *,
    stream_ns: str = NS_STREAM,
    content_ns: str = NS_CLIENT,
    version: str | None = "1.0",
    root: str = "stream",
    extra: str = "",
) -> bytes:
    attrs = "" if to is None else f" to='{to}'"
    if version is not None:
        attrs += f" version='{version}'"
    return (
        f"<?xml version='1.0'?><stream:{root} xmlns='{content_ns}'"
        f" xmlns:stream='{stream_ns}'{attrs}{extra}>"
    ).encode()


def plain_auth(username: str = "user", password: str = PASSWORD) -> bytes:
    payload = base64.b64encode(f"\0{username}\0{password}".encode()).decode()
    return f"<auth xmlns='{NS_SASL}' mechanism='PLAIN'>{payload}</auth>".encode()


def sasl(tag: str, data: bytes | str = "", **attrs: str) -> bytes:
    text = base64.b64encode(data).decode() if isinstance(data, bytes) else data
    attr_text = "".join(f" {k}='{v}'" for k, v in attrs.items())
    return f"<{tag} xmlns='{NS_SASL}'{attr_text}>{text}</{tag}>".encode()


def bind_iq(resource: str | None = "phone", iq_id: str = "b1", iq_type: str = "set") -> bytes:
    inner = "" if resource is None else f"<resource>{resource}</resource>"
    return f"<iq type='{iq_type}' id='{iq_id}'><bind xmlns='{NS_BIND}'>{inner}</bind></iq>".encode()


# ------------------------------------------------------------------ reading the server
class ServerReader:
    """The server's output as a client sees it, parsed by the stdlib (not by salon.xml)."""

    def __init__(self) -> None:
        self._parser: ET.XMLPullParser[ET.Element] | None = None
        self._depth = 0
        self.root_tag = ""
        self.header: dict[str, str] = {}
        self.closed = False

    def feed(self, data: bytes) -> list[ET.Element]:
        if data.startswith(b"<?xml"):  # a new stream header: the stream (re)starts
            self._parser = ET.XMLPullParser(events=("start", "end"))
            self._depth = 0
            self.header = {}
            self.closed = False
        assert self._parser is not None, f"server wrote {data!r} before a stream header"
        self._parser.feed(data)
        top: list[ET.Element] = []
        for item in self._parser.read_events():
            event, el = item[0], item[-1]  # only start/end events were asked for
            assert isinstance(el, ET.Element)
            if event == "start":
                if self._depth == 0:
                    self.root_tag = el.tag
                    self.header = dict(el.attrib)
                self._depth += 1
            else:
                self._depth -= 1
                if self._depth == 1:
                    top.append(el)
                elif self._depth == 0:
                    self.closed = True
        return top


@dataclass
class Turn:
    """What one input produced: the actions, and the top-level elements written."""

    actions: list[StreamAction]
    elements: list[ET.Element] = field(default_factory=list)

    @property
    def kinds(self) -> list[type]:
        return [type(a) for a in self.actions]

    def only(self) -> ET.Element:
        assert len(self.elements) == 1, self.elements
        return self.elements[0]


class Client:
    """Plays the client: feeds the stream and reads back everything it writes."""

    def __init__(self, *, is_secure: bool = False, **policy: Any) -> None:
        self.stream = C2SStream(make_policy(**policy), is_secure=is_secure)
        self.reader = ServerReader()

    @property
    def state(self) -> C2SState:
        return self.stream.state

    def _turn(self, actions: list[StreamAction]) -> Turn:
        turn = Turn(actions)
        for action in actions:
            if isinstance(action, Send | DelayedSend):
                turn.elements.extend(self.reader.feed(action.data))
        return turn

    def send(self, data: bytes | str) -> Turn:
        raw = data.encode() if isinstance(data, str) else data
        return self._turn(self.stream.receive_data(raw))

    def tls_established(self, bindings: Mapping[str, bytes] | None = None) -> Turn:
        return self._turn(self.stream.tls_established(bindings or {}))

    def account_loaded(self, acct: Account | None) -> Turn:
        """The account, then (as the shell does, in its password pool) the answer to any
        VerifyPassword the stream asks for."""
        return self._turn(self._check_passwords(self.stream.account_loaded(acct)))

    def _check_passwords(self, actions: list[StreamAction]) -> list[StreamAction]:
        done: list[StreamAction] = []
        for action in actions:
            if isinstance(action, VerifyPassword):
                matches = verify_password(action.password, action.credential)
                done.extend(self._check_passwords(self.stream.password_checked(matches)))
            else:
                done.append(action)
        return done

    def bind_result(self, iq_id: str, jid: JID | None, error: StanzaError | None = None) -> Turn:
        return self._turn(self.stream.bind_result(iq_id, jid, error))

    def close(self, condition: StreamErrorCondition | None = None, text: str | None = None) -> Turn:
        return self._turn(self.stream.close(condition, text))

    # the usual ways forward -------------------------------------------------
    def open(self, to: str = "localhost") -> ET.Element:
        turn = self.send(header(to))
        assert turn.kinds == [Send], turn.actions
        features = turn.only()
        assert features.tag == q(NS_STREAM, "features")
        return features

    def login(self, username: str = "user") -> None:
        """From a fresh secure stream to the restarted stream awaiting bind (PLAIN)."""
        self.open()
        assert self.send(plain_auth(username)).actions == [LookupAccount(username)]
        turn = self.account_loaded(account(username))
        assert turn.kinds == [Send, Authenticated]
        features = self.open()
        assert features.find(q(NS_BIND, "bind")) is not None
        assert self.state is S.BIND

    def bind(self, resource: str = "phone") -> None:
        assert self.send(bind_iq(resource)).actions == [BindRequested("b1", resource)]
        jid = JID.parse(f"user@localhost/{resource}")
        assert self.bind_result("b1", jid).kinds == [Send]
        assert self.state is S.BOUND


def bound_client(**policy: Any) -> Client:
    client = Client(is_secure=True, **policy)
    client.login()
    client.bind()
    return client


def mechanisms(features: ET.Element) -> list[str]:
    mechs = features.find(q(NS_SASL, "mechanisms"))
    assert mechs is not None
    return [m.text or "" for m in mechs.findall(q(NS_SASL, "mechanism"))]


def assert_stream_error(client: Client, turn: Turn, condition: StreamErrorCondition) -> None:
    """The stream wrote <stream:error><condition/></stream:error></stream:stream> and closes."""
    assert turn.kinds == [Send, CloseConnection], turn.actions
    assert turn.actions[-1] == CloseConnection(condition)
    error = turn.elements[-1]
    assert error.tag == q(NS_STREAM, "error")
    assert error[0].tag == q(NS_STREAMS, condition.value)
    assert client.reader.closed
    assert client.state is S.CLOSED


def assert_sasl_failure(element: ET.Element, condition: str) -> None:
    assert element.tag == q(NS_SASL, "failure")
    assert element[0].tag == q(NS_SASL, condition)


# ------------------------------------------------------------------ stream header
def test_header_is_answered_with_header_and_features_requiring_starttls() -> None:
    client = Client()
    assert client.state is S.HEADER
    features = client.open()
    assert client.reader.root_tag == q(NS_STREAM, "stream")
    assert client.reader.header["from"] == "localhost"
    assert client.reader.header["id"] == "id1"
    assert client.reader.header["version"] == "1.0"
    assert client.reader.header[XML_LANG] == "en"
    starttls = features.find(q(NS_TLS, "starttls"))
    assert starttls is not None
    assert starttls.find(q(NS_TLS, "required")) is not None
    assert features.find(q(NS_SASL, "mechanisms")) is None  # not before TLS
    assert client.state is S.NEGOTIATING


def test_header_from_and_lang_are_echoed() -> None:
    client = Client()
    client.send(header(extra=" from='user@localhost' xml:lang='fr'"))
    assert client.reader.header["to"] == "user@localhost"
    assert client.reader.header[XML_LANG] == "fr"


def test_header_without_to_gets_the_default_host() -> None:
    client = Client()
    assert client.send(header(None)).kinds == [Send]
    assert client.reader.header["from"] == "localhost"
    assert client.stream.host == "localhost"


def test_header_to_another_local_host_is_served_case_insensitively() -> None:
    client = Client()
    client.open("Example.TEST")
    assert client.reader.header["from"] == "example.test"
    assert client.stream.host == "example.test"


def test_secure_stream_offers_mechanisms_and_no_starttls() -> None:
    features = Client(is_secure=True).open()
    assert features.find(q(NS_TLS, "starttls")) is None
    offered = mechanisms(features)
    assert "PLAIN" in offered
    assert "SCRAM-SHA-256" in offered
    assert not [m for m in offered if m.endswith("-PLUS")]  # no channel binding data
    assert features.find(q(NS_SASL_CB, "sasl-channel-binding")) is None


def test_optional_encryption_offers_starttls_and_mechanisms_without_plain() -> None:
    features = Client(require_encryption=False).open()
    starttls = features.find(q(NS_TLS, "starttls"))
    assert starttls is not None
    assert starttls.find(q(NS_TLS, "required")) is None
    offered = mechanisms(features)
    assert "SCRAM-SHA-256" in offered
    assert "PLAIN" not in offered  # never in the clear


def test_host_without_tls_offers_no_starttls() -> None:
    features = Client(require_encryption=False, can_starttls=lambda host: False).open()
    assert features.find(q(NS_TLS, "starttls")) is None
    assert mechanisms(features)


def test_disallowed_plain_is_not_offered() -> None:
    assert "PLAIN" not in mechanisms(Client(is_secure=True, allow_plain=False).open())


@pytest.mark.parametrize(
    ("data", "condition"),
    [
        pytest.param(header(stream_ns="urn:example:streams"), C.INVALID_NAMESPACE, id="stream-ns"),
        pytest.param(header(content_ns=NS_SERVER), C.INVALID_NAMESPACE, id="content-ns"),
        pytest.param(header(content_ns=""), C.INVALID_NAMESPACE, id="no-content-ns"),
        pytest.param(header("elsewhere.example"), C.HOST_UNKNOWN, id="host-unknown"),
        pytest.param(header(version="2.0"), C.UNSUPPORTED_VERSION, id="version-2.0"),
        pytest.param(header(version=None), C.UNSUPPORTED_VERSION, id="no-version"),
        pytest.param(header(root="features"), C.BAD_FORMAT, id="root-not-stream"),
    ],
)
def test_bad_header_gets_header_then_stream_error(data: bytes, condition: C) -> None:
    client = Client()
    turn = client.send(data)
    assert_stream_error(client, turn, condition)
    assert client.reader.root_tag == q(NS_STREAM, "stream")
    assert client.reader.header["from"] == "localhost"  # never an unknown host's name
    assert len(turn.elements) == 1  # no features


def test_higher_minor_version_is_accepted() -> None:
    client = Client()
    assert client.send(header(version="1.5")).kinds == [Send]
    assert client.state is S.NEGOTIATING


def test_malformed_xml_gets_not_well_formed() -> None:
    client = Client()
    client.open()
    assert_stream_error(client, client.send(b"<message><body></message>"), C.NOT_WELL_FORMED)


def test_nothing_is_processed_after_the_stream_is_closed() -> None:
    client = Client()
    client.open()
    client.send(b"<message/>")
    assert client.state is S.CLOSED
    assert client.send(b"<presence/>").actions == []
    assert client.close(C.CONFLICT).actions == []


# ------------------------------------------------------------------ STARTTLS
def test_starttls_is_answered_with_proceed_and_start_tls() -> None:
    client = Client()
    client.open()
    turn = client.send(f"<starttls xmlns='{NS_TLS}'/>")
    assert turn.kinds == [Send, StartTls]
    assert turn.only().tag == q(NS_TLS, "proceed")
    assert client.state is S.TLS


def test_nothing_is_processed_between_proceed_and_tls_established() -> None:
    client = Client()
    client.open()
    turn = client.send(f"<starttls xmlns='{NS_TLS}'/><message/>")
    assert turn.kinds == [Send, StartTls]  # the pipelined <message/> is ignored
    assert client.send(b"<presence/>").actions == []
    assert client.send(plain_auth()).actions == []
    assert client.state is S.TLS


def test_tls_established_restarts_the_stream_with_mechanisms() -> None:
    client = Client()
    client.open()
    client.send(f"<starttls xmlns='{NS_TLS}'/>")
    assert client.tls_established().actions == []
    assert client.state is S.HEADER
    assert client.stream.is_secure
    features = client.open()
    assert client.reader.header["id"] == "id2"  # a new stream, a new id
    assert features.find(q(NS_TLS, "starttls")) is None
    assert "PLAIN" in mechanisms(features)


def test_channel_bindings_after_tls_offer_plus_mechanisms() -> None:
    client = Client()
    client.open()
    client.send(f"<starttls xmlns='{NS_TLS}'/>")
    client.tls_established({"tls-exporter": b"\x01" * 32})
    features = client.open()
    assert "SCRAM-SHA-256-PLUS" in mechanisms(features)
    cb = features.find(q(NS_SASL_CB, "sasl-channel-binding"))
    assert cb is not None
    assert [el.get("type") for el in cb] == ["tls-exporter"]


def test_starttls_on_a_secure_stream_fails_and_closes() -> None:
    client = Client(is_secure=True)
    client.open()
    turn = client.send(f"<starttls xmlns='{NS_TLS}'/>")
    assert turn.kinds == [Send, CloseConnection]
    assert turn.actions[-1] == CloseConnection(None)
    assert turn.only().tag == q(NS_TLS, "failure")
    assert client.reader.closed
    assert client.state is S.CLOSED


# ------------------------------------------------------------------ SASL
@pytest.mark.parametrize("matches", [True, False])
def test_plain_asks_the_shell_to_verify_the_password(matches: bool) -> None:
    """PBKDF2 is the shell's job (off the event loop): the stream only asks for it."""
    client = Client(is_secure=True)
    client.open()
    assert client.send(plain_auth()).actions == [LookupAccount("user")]
    actions = client.stream.account_loaded(account())
    assert [type(a) for a in actions] == [VerifyPassword]
    check = actions[0]
    assert isinstance(check, VerifyPassword) and check.password == PASSWORD
    assert PASSWORD not in repr(check)
    assert client.state is S.LOOKUP
    turn = client._turn(client.stream.password_checked(matches))
    if matches:
        assert turn.kinds == [Send, Authenticated]
    else:
        assert turn.kinds == [DelayedSend]
        assert turn.only().tag == q(NS_SASL, "failure")
        assert client.state is S.NEGOTIATING


def test_password_checked_without_a_request_does_nothing() -> None:
    client = Client(is_secure=True)
    client.open()
    assert client.stream.password_checked(True) == []
    assert client.state is S.NEGOTIATING


def test_full_session_starttls_plain_bind_and_stanzas() -> None:
    client = Client()
    client.open()
    client.send(f"<starttls xmlns='{NS_TLS}'/>")
    client.tls_established()
    client.open()

    assert client.send(plain_auth()).actions == [LookupAccount("user")]
    assert client.state is S.LOOKUP
    turn = client.account_loaded(account())
    assert turn.kinds == [Send, Authenticated]
    assert turn.actions[1] == Authenticated("user", "PLAIN")
    success = turn.only()
    assert success.tag == q(NS_SASL, "success")
    assert not (success.text or "").strip()  # PLAIN has no additional data
    assert client.state is S.HEADER

    features = client.open()
    assert features.find(q(NS_BIND, "bind")) is not None
    session = features.find(q(NS_SESSION, "session"))
    assert session is not None
    assert session.find(q(NS_SESSION, "optional")) is not None
    assert features.find(q(NS_SASL, "mechanisms")) is None
    assert features.find(q(NS_TLS, "starttls")) is None

    assert client.send(bind_iq("phone")).actions == [BindRequested("b1", "phone")]
    result = client.bind_result("b1", JID.parse("user@localhost/phone")).only()
    assert result.tag == q(NS_CLIENT, "iq")
    assert result.get("type") == "result"
    assert result.get("id") == "b1"
    assert result.findtext(f"{q(NS_BIND, 'bind')}/{q(NS_BIND, 'jid')}") == "user@localhost/phone"
    assert client.state is S.BOUND

    turn = client.send(b"<message to='other@localhost' id='m1'><body>hi</body></message>")
    assert turn.kinds == [StanzaReceived]


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-1", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_scram_exchange_with_scramp_client(mechanism: str) -> None:
    client = Client(is_secure=True)
    assert mechanism in mechanisms(client.open())
    scram = ScramClient([mechanism], "user", PASSWORD)
    turn = client.send(sasl("auth", scram.get_client_first().encode(), mechanism=mechanism))
    assert turn.actions == [LookupAccount("user")]
    challenge = client.account_loaded(account()).only()
    assert challenge.tag == q(NS_SASL, "challenge")
    scram.set_server_first(base64.b64decode(challenge.text or "").decode())
    assert client.state is S.SASL

    turn = client.send(sasl("response", scram.get_client_final().encode()))
    assert turn.kinds == [Send, Authenticated]
    assert turn.actions[1] == Authenticated("user", mechanism)
    success = turn.only()
    assert success.tag == q(NS_SASL, "success")
    scram.set_server_final(base64.b64decode(success.text or "").decode())  # server proved itself
    assert client.state is S.HEADER


def test_scram_plus_binds_to_the_tls_channel() -> None:
    cb_data = b"\x42" * 32
    client = Client()
    client.open()
    client.send(f"<starttls xmlns='{NS_TLS}'/>")
    client.tls_established({"tls-server-end-point": cb_data})
    assert "SCRAM-SHA-256-PLUS" in mechanisms(client.open())
    scram = ScramClient(
        ["SCRAM-SHA-256-PLUS"], "user", PASSWORD, channel_binding=("tls-server-end-point", cb_data)
    )
    client.send(sasl("auth", scram.get_client_first().encode(), mechanism="SCRAM-SHA-256-PLUS"))
    challenge = client.account_loaded(account()).only()
    scram.set_server_first(base64.b64decode(challenge.text or "").decode())
    turn = client.send(sasl("response", scram.get_client_final().encode()))
    assert turn.kinds == [Send, Authenticated]


def test_scram_with_a_wrong_password_fails_after_the_proof() -> None:
    client = Client(is_secure=True)
    client.open()
    scram = ScramClient(["SCRAM-SHA-256"], "user", "not the password")
    client.send(sasl("auth", scram.get_client_first().encode(), mechanism="SCRAM-SHA-256"))
    challenge = client.account_loaded(account()).only()
    scram.set_server_first(base64.b64decode(challenge.text or "").decode())
    turn = client.send(sasl("response", scram.get_client_final().encode()))
    assert turn.kinds == [DelayedSend]
    assert_sasl_failure(turn.only(), "not-authorized")
    assert client.state is S.NEGOTIATING


def test_failed_auth_is_delayed_and_may_be_retried() -> None:
    client = Client(is_secure=True)
    client.open()
    client.send(plain_auth(password="wrong"))
    turn = client.account_loaded(account())
    assert turn.kinds == [DelayedSend]
    assert isinstance(turn.actions[0], DelayedSend)
    assert turn.actions[0].attempt == 1
    assert_sasl_failure(turn.only(), "not-authorized")
    assert client.state is S.NEGOTIATING

    assert client.send(plain_auth()).actions == [LookupAccount("user")]
    assert client.account_loaded(account()).kinds == [Send, Authenticated]


def test_unknown_account_fails_like_a_wrong_password() -> None:
    client = Client(is_secure=True)
    client.open()
    client.send(plain_auth("nobody"))
    turn = client.account_loaded(None)
    assert turn.kinds == [DelayedSend]
    assert_sasl_failure(turn.only(), "not-authorized")


def test_too_many_failures_end_the_stream_with_policy_violation() -> None:
    client = Client(is_secure=True, max_auth_attempts=3)
    client.open()
    for attempt in (1, 2):
        client.send(plain_auth(password="wrong"))
        first = client.account_loaded(account()).actions[0]
        assert isinstance(first, DelayedSend)
        assert first.attempt == attempt
        assert client.state is S.NEGOTIATING
    client.send(plain_auth(password="wrong"))
    turn = client.account_loaded(account())
    assert turn.kinds == [DelayedSend, DelayedSend, CloseConnection]
    assert turn.actions[-1] == CloseConnection(C.POLICY_VIOLATION)
    failure, error = turn.elements
    assert_sasl_failure(failure, "not-authorized")
    assert error.tag == q(NS_STREAM, "error")
    assert error[0].tag == q(NS_STREAMS, "policy-violation")
    assert client.reader.closed
    assert client.state is S.CLOSED


def test_abort_ends_the_exchange_without_counting_a_failure() -> None:
    client = Client(is_secure=True, max_auth_attempts=1)
    client.open()
    turn = client.send(sasl("auth", mechanism="SCRAM-SHA-256"))  # no initial response
    challenge = turn.only()
    assert challenge.tag == q(NS_SASL, "challenge")
    assert not (challenge.text or "").strip()
    assert client.state is S.SASL

    turn = client.send(sasl("abort"))
    assert turn.kinds == [Send]  # not delayed, not counted
    assert_sasl_failure(turn.only(), "aborted")
    assert client.state is S.NEGOTIATING
    assert client.send(plain_auth()).actions == [LookupAccount("user")]


@pytest.mark.parametrize("step", ["auth", "response"])
def test_payload_that_is_not_base64_gets_incorrect_encoding(step: str) -> None:
    client = Client(is_secure=True)
    client.open()
    if step == "response":
        client.send(sasl("auth", mechanism="PLAIN"))
        assert client.state is S.SASL
        turn = client.send(sasl("response", "not*base64!"))
    else:
        turn = client.send(sasl("auth", "not*base64!", mechanism="PLAIN"))
    assert turn.kinds == [DelayedSend]
    assert_sasl_failure(turn.only(), "incorrect-encoding")
    assert client.state is S.NEGOTIATING


def test_auth_before_tls_gets_encryption_required() -> None:
    client = Client()
    client.open()
    turn = client.send(plain_auth())
    assert turn.kinds == [Send]
    assert_sasl_failure(turn.only(), "encryption-required")
    assert client.state is S.NEGOTIATING


def test_mechanism_not_offered_gets_invalid_mechanism() -> None:
    client = Client(require_encryption=False)
    client.open()
    for mechanism in ("SCRAM-SHA-256-PLUS", "X-UNKNOWN", ""):
        turn = client.send(sasl("auth", mechanism=mechanism))
        assert turn.kinds == [Send]
        assert_sasl_failure(turn.only(), "invalid-mechanism")
    assert client.state is S.NEGOTIATING


def test_plain_in_the_clear_gets_encryption_required() -> None:
    client = Client(require_encryption=False)
    client.open()
    turn = client.send(plain_auth())
    assert turn.kinds == [Send]
    assert_sasl_failure(turn.only(), "encryption-required")
    assert client.state is S.NEGOTIATING


def test_disallowed_plain_gets_invalid_mechanism() -> None:
    client = Client(is_secure=True, allow_plain=False)
    client.open()
    assert_sasl_failure(client.send(plain_auth()).only(), "invalid-mechanism")


def test_response_without_an_exchange_gets_malformed_request() -> None:
    client = Client(is_secure=True)
    client.open()
    assert_sasl_failure(client.send(sasl("response", b"x")).only(), "malformed-request")


def test_second_auth_during_an_exchange_gets_malformed_request() -> None:
    client = Client(is_secure=True)
    client.open()
    client.send(plain_auth())
    assert client.state is S.LOOKUP
    assert_sasl_failure(client.send(plain_auth()).only(), "malformed-request")
    assert client.state is S.NEGOTIATING
    assert client.account_loaded(account()).actions == []  # the old lookup is void


def test_account_loaded_without_a_lookup_does_nothing() -> None:
    client = Client(is_secure=True)
    client.open()
    assert client.account_loaded(account()).actions == []
    assert client.state is S.NEGOTIATING


@pytest.mark.parametrize("secure", [False, True])
def test_stanza_before_auth_gets_not_authorized(secure: bool) -> None:
    client = Client(is_secure=secure)
    client.open()
    assert_stream_error(client, client.send(b"<message to='a@localhost'/>"), C.NOT_AUTHORIZED)


def test_stanza_during_account_lookup_gets_not_authorized() -> None:
    client = Client(is_secure=True)
    client.open()
    client.send(plain_auth())
    assert_stream_error(client, client.send(b"<presence/>"), C.NOT_AUTHORIZED)


def test_stream_error_from_the_client_closes_orderly() -> None:
    client = Client()
    client.open()
    turn = client.send(f"<stream:error><not-well-formed xmlns='{NS_STREAMS}'/></stream:error>")
    assert turn.actions[-1] == CloseConnection(None)
    assert client.reader.closed
    assert client.state is S.CLOSED


# ------------------------------------------------------------------ bind
def test_restart_to_another_host_after_auth_gets_host_unknown() -> None:
    client = Client(is_secure=True)
    client.open()
    client.send(plain_auth())
    client.account_loaded(account())
    assert_stream_error(client, client.send(header("example.test")), C.HOST_UNKNOWN)


def test_features_after_auth_include_extra_features() -> None:
    extra = Element("sm", NS_NONZA)
    client = Client(is_secure=True, extra_features=lambda: [extra])
    client.open()
    client.send(plain_auth())
    client.account_loaded(account())
    features = client.open()
    assert features.find(q(NS_NONZA, "sm")) is not None
    assert features.find(q(NS_BIND, "bind")) is not None


@pytest.mark.parametrize(
    ("data", "resource"),
    [
        (bind_iq("phone"), "phone"),
        (bind_iq(None), None),
        (bind_iq(""), None),
        (bind_iq("  "), None),
        (bind_iq("Balcony Phone"), "Balcony Phone"),
    ],
)
def test_bind_request_asks_the_shell(data: bytes, resource: str | None) -> None:
    client = Client(is_secure=True)
    client.login()
    assert client.send(data).actions == [BindRequested("b1", resource)]
    assert client.state is S.BIND


def test_bind_error_is_an_iq_error_and_bind_may_be_retried() -> None:
    client = Client(is_secure=True)
    client.login()
    client.send(bind_iq("phone"))
    turn = client.bind_result("b1", None, StanzaError(StanzaErrorCondition.CONFLICT))
    reply = turn.only()
    assert reply.tag == q(NS_CLIENT, "iq")
    assert reply.get("type") == "error"
    assert reply.get("id") == "b1"
    error = reply.find(q(NS_CLIENT, "error"))
    assert error is not None
    assert error.get("type") == "cancel"
    assert error.find(q(NS_STANZAS, "conflict")) is not None
    assert client.state is S.BIND
    client.bind("tablet")


def test_bind_result_without_a_request_does_nothing() -> None:
    client = Client(is_secure=True)
    client.login()
    assert client.bind_result("b1", JID.parse("user@localhost/x")).actions == []
    assert client.state is S.BIND


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(bind_iq("phone", iq_type="get"), id="type-get"),
        pytest.param(bind_iq("phone", iq_id=""), id="no-id"),
        pytest.param(bind_iq("&#x7f;"), id="unpreparable-resource"),
    ],
)
def test_bad_bind_request_gets_bad_request(data: bytes) -> None:
    client = Client(is_secure=True)
    client.login()
    reply = client.send(data).only()
    assert reply.get("type") == "error"
    assert reply.find(f"{q(NS_CLIENT, 'error')}/{q(NS_STANZAS, 'bad-request')}") is not None
    assert client.state is S.BIND


def test_second_bind_while_one_is_pending_gets_bad_request() -> None:
    client = Client(is_secure=True)
    client.login()
    client.send(bind_iq("phone"))
    reply = client.send(bind_iq("tablet", iq_id="b2")).only()
    assert reply.get("id") == "b2"
    assert reply.get("type") == "error"


def test_stanza_before_bind_gets_not_authorized() -> None:
    client = Client(is_secure=True)
    client.login()
    assert_stream_error(client, client.send(b"<presence/>"), C.NOT_AUTHORIZED)


# ------------------------------------------------------------------ bound
@pytest.mark.parametrize(
    "data",
    [
        b"<message to='other@localhost' type='chat' id='m1'><body>hi</body></message>",
        b"<presence/>",
        b"<iq type='get' id='p1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>",
    ],
)
def test_stanzas_after_bind_are_received(data: bytes) -> None:
    client = bound_client()
    (action,) = client.send(data).actions
    assert isinstance(action, StanzaReceived)
    stanza = action.stanza
    expected = ET.fromstring(data)
    assert stanza.ns == NS_CLIENT
    assert stanza.tag == expected.tag
    assert stanza.attrs == dict(expected.attrib)


def test_several_stanzas_in_one_chunk_arrive_in_order() -> None:
    client = bound_client()
    turn = client.send(b"<presence/><message id='a'/><message id='b'/>")
    assert turn.kinds == [StanzaReceived] * 3
    ids = [a.stanza.get("id") for a in turn.actions if isinstance(a, StanzaReceived)]
    assert ids == [None, "a", "b"]


def test_session_iq_gets_an_empty_result() -> None:
    client = bound_client()
    turn = client.send(f"<iq type='set' id='s1'><session xmlns='{NS_SESSION}'/></iq>")
    reply = turn.only()
    assert reply.tag == q(NS_CLIENT, "iq")
    assert reply.get("type") == "result"
    assert reply.get("id") == "s1"
    assert len(reply) == 0


def test_bind_after_bind_gets_not_allowed() -> None:
    client = bound_client()
    reply = client.send(bind_iq("again", iq_id="b9")).only()
    assert reply.get("id") == "b9"
    assert reply.find(f"{q(NS_CLIENT, 'error')}/{q(NS_STANZAS, 'not-allowed')}") is not None
    assert client.state is S.BOUND


def test_unknown_element_gets_unsupported_stanza_type() -> None:
    client = bound_client()
    assert_stream_error(
        client, client.send(b"<foo xmlns='urn:example:foo'/>"), C.UNSUPPORTED_STANZA_TYPE
    )


def test_element_in_an_accepted_namespace_is_a_nonza() -> None:
    client = bound_client(nonza_namespaces=lambda host: {NS_NONZA})
    turn = client.send(f"<enable xmlns='{NS_NONZA}'/>")
    assert turn.actions == [NonzaReceived(Element("enable", NS_NONZA))]


def test_stream_close_is_answered_with_close() -> None:
    client = bound_client()
    turn = client.send(b"</stream:stream>")
    assert turn.actions == [Send(b"</stream:stream>"), CloseConnection(None)]
    assert client.reader.closed
    assert client.state is S.CLOSED


def test_stream_error_from_a_bound_client_closes_orderly() -> None:
    client = bound_client()
    turn = client.send(f"<stream:error><conflict xmlns='{NS_STREAMS}'/></stream:error>")
    assert turn.actions[-1] == CloseConnection(None)
    assert client.reader.closed


# ------------------------------------------------------------------ close()
def test_close_before_the_header_writes_header_and_error() -> None:
    client = Client()
    turn = client.close(C.SYSTEM_SHUTDOWN, "bye")
    assert turn.kinds == [Send, CloseConnection]
    assert turn.actions[-1] == CloseConnection(C.SYSTEM_SHUTDOWN)
    assert client.reader.header["from"] == "localhost"
    error = turn.only()
    assert error.tag == q(NS_STREAM, "error")
    assert error[0].tag == q(NS_STREAMS, "system-shutdown")
    assert error.findtext(q(NS_STREAMS, "text")) == "bye"
    assert client.reader.closed
    assert client.state is S.CLOSED


def test_orderly_close_after_the_header_writes_only_the_close_tag() -> None:
    client = Client()
    client.open()
    turn = client.close()
    assert turn.actions == [Send(b"</stream:stream>"), CloseConnection(None)]
    assert client.reader.closed


def test_close_after_a_restart_opens_the_new_stream_first() -> None:
    client = Client(is_secure=True)
    client.open()
    client.send(plain_auth())
    client.account_loaded(account())  # the stream restarts: the old header no longer counts
    turn = client.close(C.SYSTEM_SHUTDOWN)
    assert turn.actions[-1] == CloseConnection(C.SYSTEM_SHUTDOWN)
    assert client.reader.header["from"] == "localhost"
    assert turn.only()[0].tag == q(NS_STREAMS, "system-shutdown")


# ------------------------------------------------------------------ properties
_FRAGMENTS = [
    b"<",
    b">",
    b"/>",
    b"</",
    b"'",
    b" ",
    b"<message>",
    b"</message>",
    b"<presence/>",
    b"<iq type='set' id='x'>",
    b"</iq>",
    bind_iq("r"),
    plain_auth(),
    sasl("auth", mechanism="SCRAM-SHA-1"),
    sasl("response", b"n,,n=user,r=abc"),
    sasl("abort"),
    f"<starttls xmlns='{NS_TLS}'/>".encode(),
    header(),
    b"</stream:stream>",
    b"<stream:error/>",
    b"<stream:stream>",
    b"&amp;",
    b"&undefined;",
    b"&#0;",
    b"<!--c-->",
    b"<?pi x?>",
    b"<!DOCTYPE x>",
    b"<!ENTITY e 'x'>",
    b"<x:y>",
    b"xmlns:x='urn:x'",
    b"<a xmlns=''>",
    "é𝄞".encode(),
    b"\xff",
    b"\xc3",
    b"\x00",
]

_xmlish = st.text(alphabet="<>/='\" &;#:xmlnsabiqde\n", max_size=24).map(str.encode)
_inputs = st.lists(
    st.one_of(st.sampled_from(_FRAGMENTS), _xmlish, st.binary(max_size=40)),
    min_size=1,
    max_size=12,
)


def _answer(client: Client, actions: Iterable[StreamAction]) -> list[Turn]:
    """Do what a shell would: answer lookups, bind requests and TLS upgrades at once."""
    turns: list[Turn] = []
    for action in actions:
        if isinstance(action, LookupAccount):
            turns.append(client.account_loaded(account(action.username)))
        elif isinstance(action, BindRequested):
            jid = JID.parse("user@localhost").with_resource(action.resource or "auto")
            turns.append(client.bind_result(action.iq_id, jid))
        elif isinstance(action, StartTls):
            turns.append(client.tls_established())
    return turns


def _check_turn(client: Client, turn: Turn, was_closed: bool) -> bool:
    """Invariants of one turn; returns whether the stream is closed now."""
    closes = [a for a in turn.actions if isinstance(a, CloseConnection)]
    if was_closed:
        assert turn.actions == []
        return True
    assert len(closes) <= 1
    if not closes:
        assert client.state is not S.CLOSED
        return False
    close = turn.actions[-1]
    assert isinstance(close, CloseConnection), "CloseConnection must be the last action"
    assert client.state is S.CLOSED
    assert client.reader.closed, "the stream close tag must have been written"
    if close.error is not None:
        error = turn.elements[-1]
        assert error.tag == q(NS_STREAM, "error")
        assert error[0].tag == q(NS_STREAMS, close.error.value)
    return True


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(start=st.sampled_from(["insecure", "secure", "bound"]), chunks=_inputs)
def test_arbitrary_bytes_after_a_header_never_escape(start: str, chunks: list[bytes]) -> None:
    """Whatever follows a valid header, receive_data returns: the stream goes on, or it ends
    with CloseConnection after a well-formed stream error (or close tag)."""
    if start == "bound":
        client = bound_client()
    else:
        client = Client(is_secure=start == "secure")
        client.open()
    closed = False
    for chunk in chunks:
        turn = client.send(chunk)  # must not raise; everything written must be well-formed
        closed = _check_turn(client, turn, closed)
        for answer in _answer(client, turn.actions):
            closed = _check_turn(client, answer, closed)


_BODY = "Grüße 🎉 &amp; &lt;3"
SESSION_PHASES: tuple[bytes, ...] = (
    header(extra=" from='user@localhost'") + plain_auth(),
    header() + bind_iq("phone"),
    (
        f"<presence/><iq type='set' id='s1'><session xmlns='{NS_SESSION}'/></iq>"
        f"<message to='other@example.test' type='chat' id='m1'><body>{_BODY}</body></message>"
        "\n <iq type='get' id='v1'><query xmlns='jabber:iq:version'/></iq>"
        "</stream:stream>"
    ).encode(),
)


def _run_session(cuts: tuple[frozenset[int], ...]) -> tuple[list[StreamAction], C2SState]:
    """Run the session phases, each cut at the given offsets; answer the shell's requests."""
    client = Client(is_secure=True)
    actions: list[StreamAction] = []
    for phase, phase_cuts in zip(SESSION_PHASES, cuts, strict=True):
        bounds = [0, *sorted(phase_cuts), len(phase)]
        for start, end in itertools.pairwise(bounds):
            turn = client.send(phase[start:end])
            actions.extend(turn.actions)
            for answer in _answer(client, turn.actions):
                actions.extend(answer.actions)
    return actions, client.state


@functools.cache
def _whole_session() -> tuple[list[StreamAction], C2SState]:
    return _run_session(tuple(frozenset() for _ in SESSION_PHASES))


def test_whole_session_runs_to_the_end() -> None:
    actions, state = _whole_session()
    kinds = [type(a) for a in actions]
    assert kinds == [
        Send,  # header + features
        LookupAccount,
        Send,  # success
        Authenticated,
        Send,  # header + features
        BindRequested,
        Send,  # bind result
        StanzaReceived,  # presence
        Send,  # session result
        StanzaAnswered,  # counted as handled (XEP-0198)
        StanzaReceived,  # message
        StanzaReceived,  # version iq
        Send,  # </stream:stream>
        CloseConnection,
    ]
    message = actions[10]
    assert isinstance(message, StanzaReceived)
    assert message.stanza.find_text("body") == "Grüße 🎉 & <3"
    assert state is S.CLOSED


def test_session_fed_one_byte_at_a_time_gives_the_same_actions() -> None:
    cuts = tuple(frozenset(range(1, len(phase))) for phase in SESSION_PHASES)
    assert _run_session(cuts) == _whole_session()


def _phase_cuts(phase: bytes) -> st.SearchStrategy[frozenset[int]]:
    return st.frozensets(st.integers(1, len(phase) - 1), max_size=24)


@settings(max_examples=150, deadline=None)
@given(cuts=st.tuples(*(_phase_cuts(p) for p in SESSION_PHASES)))
def test_session_cut_anywhere_gives_the_same_actions(
    cuts: tuple[frozenset[int], ...],
) -> None:
    assert _run_session(cuts) == _whole_session()
