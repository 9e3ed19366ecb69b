"""Sans-IO tests for iqs before authentication (XEP-0077 registration) in salon.stream.c2s.

The policy opens namespaces per host; only those iqs leave the stream as ``PreAuthIq``, one
at a time, and only once the stream is encrypted (or encryption is optional).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

import pytest

from salon.errors import StreamErrorCondition
from salon.namespaces import NS_BIND, NS_CLIENT, NS_SASL, NS_STANZAS, NS_STREAM, NS_TLS
from salon.stream.c2s import C2SState
from salon.stream.events import LookupAccount, PreAuthIq, Send, StanzaReceived
from salon.xml.element import Element
from tests.unit.test_c2s_stream import (
    Client,
    Turn,
    account,
    assert_stream_error,
    bound_client,
    header,
    plain_auth,
    q,
)

NS_REGISTER = "jabber:iq:register"
NS_FEATURE = "http://jabber.org/features/iq-register"
REGISTER_GET = f"<iq type='get' id='r1'><query xmlns='{NS_REGISTER}'/></iq>"


def preauth_client(
    *, is_secure: bool = True, hosts: tuple[str, ...] = ("localhost",), **policy: Any
) -> Client:
    """A client whose policy opens jabber:iq:register (and its feature) on ``hosts``."""
    return Client(
        is_secure=is_secure,
        preauth_iq_namespaces=lambda host: (NS_REGISTER,) if host in hosts else (),
        preauth_features=lambda host: [Element("register", NS_FEATURE)] if host in hosts else [],
        **policy,
    )


def answer(client: Client, reply: Element) -> Turn:
    return client._turn(client.stream.preauth_result(reply))


def result_for(iq_id: str) -> Element:
    return Element("iq", NS_CLIENT, {"type": "result", "id": iq_id})


def error_condition(element: ET.Element) -> str:
    error = element.find(q(NS_CLIENT, "error"))
    assert error is not None, ET.tostring(element)
    return error[0].tag.removeprefix(f"{{{NS_STANZAS}}}")


# ------------------------------------------------------------------ features
def test_secure_stream_offers_the_preauth_feature_beside_the_mechanisms() -> None:
    features = preauth_client().open()
    assert features.find(q(NS_SASL, "mechanisms")) is not None
    assert features.find(q(NS_FEATURE, "register")) is not None


def test_feature_waits_for_tls_when_encryption_is_required() -> None:
    features = preauth_client(is_secure=False).open()
    assert features.find(q(NS_TLS, "starttls")) is not None
    assert features.find(q(NS_FEATURE, "register")) is None


def test_feature_is_offered_in_the_clear_when_encryption_is_optional() -> None:
    features = preauth_client(is_secure=False, require_encryption=False).open()
    assert features.find(q(NS_FEATURE, "register")) is not None


def test_feature_is_per_host() -> None:
    client = preauth_client(hosts=("example.test",))
    assert client.open("localhost").find(q(NS_FEATURE, "register")) is None
    other = preauth_client(hosts=("example.test",))
    assert other.open("example.test").find(q(NS_FEATURE, "register")) is not None


def test_feature_is_not_offered_after_authentication() -> None:
    client = preauth_client()
    client.open()
    client.send(plain_auth())
    client.account_loaded(account())
    features = client.open()
    assert features.find(q(NS_BIND, "bind")) is not None
    assert features.find(q(NS_FEATURE, "register")) is None


# ------------------------------------------------------------------ the iq round trip
def test_iq_in_an_open_namespace_goes_to_the_shell_and_its_answer_is_written() -> None:
    client = preauth_client()
    client.open()
    turn = client.send(REGISTER_GET)
    assert turn.kinds == [PreAuthIq] and not turn.elements
    action = turn.actions[0]
    assert isinstance(action, PreAuthIq)
    assert action.stanza.get("id") == "r1"
    assert action.stanza.first_child is not None and action.stanza.first_child.ns == NS_REGISTER
    assert client.state is C2SState.NEGOTIATING
    written = answer(client, result_for("r1"))
    assert written.kinds == [Send]
    reply = written.only()
    assert reply.tag == q(NS_CLIENT, "iq") and reply.get("type") == "result"
    assert reply.get("id") == "r1"


def test_authentication_works_after_a_preauth_exchange() -> None:
    client = preauth_client()
    client.open()
    client.send(REGISTER_GET)
    answer(client, result_for("r1"))
    assert client.send(plain_auth("newbie")).actions == [LookupAccount("newbie")]


def test_a_second_iq_while_one_waits_gets_resource_constraint() -> None:
    client = preauth_client()
    client.open()
    assert client.send(REGISTER_GET).kinds == [PreAuthIq]
    busy = client.send(REGISTER_GET.replace("r1", "r2"))
    assert busy.kinds == [Send]
    assert busy.only().get("id") == "r2" and error_condition(busy.only()) == "resource-constraint"
    answer(client, result_for("r1"))
    assert client.send(REGISTER_GET.replace("r1", "r3")).kinds == [PreAuthIq]


@pytest.mark.parametrize(
    "data",
    [
        f"<iq type='get'><query xmlns='{NS_REGISTER}'/></iq>",  # no id
        f"<iq type='fetch' id='x'><query xmlns='{NS_REGISTER}'/></iq>",  # unknown type
        f"<iq type='set' id='x'><query xmlns='{NS_REGISTER}'/><query xmlns='{NS_REGISTER}'/></iq>",
    ],
)
def test_a_malformed_preauth_iq_gets_bad_request(data: str) -> None:
    client = preauth_client()
    client.open()
    turn = client.send(data)
    assert turn.kinds == [Send]
    assert error_condition(turn.only()) == "bad-request"
    assert client.state is C2SState.NEGOTIATING


@pytest.mark.parametrize("iq_type", ["result", "error"])
def test_a_preauth_result_or_error_is_ignored(iq_type: str) -> None:
    client = preauth_client()
    client.open()
    assert (
        client.send(f"<iq type='{iq_type}' id='x'><query xmlns='{NS_REGISTER}'/></iq>").actions
        == []
    )
    assert client.state is C2SState.NEGOTIATING


def test_an_answer_without_a_request_or_after_close_writes_nothing() -> None:
    client = preauth_client()
    client.open()
    assert answer(client, result_for("r1")).actions == []
    client.send(REGISTER_GET)
    client.close()
    assert answer(client, result_for("r1")).actions == []


# ------------------------------------------------------------------ what stays closed
def test_iq_in_another_namespace_before_auth_gets_not_authorized() -> None:
    client = preauth_client()
    client.open()
    turn = client.send("<iq type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>")
    assert_stream_error(client, turn, StreamErrorCondition.NOT_AUTHORIZED)


def test_preauth_iq_before_tls_gets_not_authorized_when_encryption_is_required() -> None:
    client = preauth_client(is_secure=False)
    client.open()
    assert_stream_error(client, client.send(REGISTER_GET), StreamErrorCondition.NOT_AUTHORIZED)


def test_preauth_iq_on_a_host_that_did_not_open_it_gets_not_authorized() -> None:
    client = preauth_client(hosts=("example.test",))
    client.open("localhost")
    assert_stream_error(client, client.send(REGISTER_GET), StreamErrorCondition.NOT_AUTHORIZED)


def test_without_policy_namespaces_nothing_is_open() -> None:
    client = Client(is_secure=True)
    client.open()
    assert_stream_error(client, client.send(REGISTER_GET), StreamErrorCondition.NOT_AUTHORIZED)


def test_after_binding_the_namespace_is_an_ordinary_stanza() -> None:
    client = bound_client(preauth_iq_namespaces=lambda host: (NS_REGISTER,))
    assert client.send(REGISTER_GET).kinds == [StanzaReceived]


def test_during_sasl_a_preauth_iq_gets_not_authorized() -> None:
    client = preauth_client()
    client.open()
    client.send(plain_auth())  # waiting for the account lookup
    assert_stream_error(client, client.send(REGISTER_GET), StreamErrorCondition.NOT_AUTHORIZED)


def test_header_still_comes_first() -> None:
    client = preauth_client()
    turn = client.send(header() + REGISTER_GET.encode())
    assert [type(a) for a in turn.actions] == [Send, PreAuthIq]
    assert turn.elements[0].tag == q(NS_STREAM, "features")
