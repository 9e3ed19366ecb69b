"""XEP-0357 rules without a server: parsing enable/disable, what is worth a push, the
summary form, the publish, how an answer is read, and the back-off schedule."""

from __future__ import annotations

import pytest

from salon.errors import StanzaError, StanzaErrorCondition
from salon.jid import JID
from salon.modules.push import (
    Outcome,
    Registration,
    Summary,
    backoff,
    classify,
    decode_registrations,
    encode_registrations,
    outcome_of,
    parse_disable,
    parse_enable,
    publish_iq,
    summary_form,
)
from salon.namespaces import NS_PUBSUB, NS_PUSH
from salon.xml.dataforms import parse_form
from salon.xml.element import Element
from salon.xml.fragment import parse_element
from salon.xml.serializer import serialize_str

OPTIONS = (
    "<x xmlns='jabber:x:data' type='submit'>"
    "<field var='FORM_TYPE'><value>http://jabber.org/protocol/pubsub#publish-options</value>"
    "</field><field var='secret'><value>s</value></field></x>"
)


def enable(attrs: str, inner: str = "") -> str:
    return f"<enable xmlns='{NS_PUSH}' {attrs}>{inner}</enable>"


def test_enable_reads_jid_node_and_publish_options() -> None:
    reg = parse_enable(parse_element(enable("jid='Push.Example' node='n'", OPTIONS)))
    assert reg.jid == "push.example"  # normalised
    assert reg.node == "n"
    assert reg.options is not None
    assert parse_form(reg.options).value("secret") == "s"


def test_enable_without_form_has_no_options() -> None:
    assert parse_enable(parse_element(enable("jid='p.example' node='n'"))).options is None


@pytest.mark.parametrize(
    ("xml", "condition"),
    [
        (enable("node='n'"), StanzaErrorCondition.BAD_REQUEST),
        (enable("jid='p.example'"), StanzaErrorCondition.BAD_REQUEST),
        (enable("jid='p.example' node=''"), StanzaErrorCondition.BAD_REQUEST),
        (enable("jid='@bad' node='n'"), StanzaErrorCondition.JID_MALFORMED),
        (enable("jid='p.example' node='n'", OPTIONS + OPTIONS), StanzaErrorCondition.BAD_REQUEST),
        (
            enable("jid='p.example' node='n'", OPTIONS.replace("submit", "form")),
            StanzaErrorCondition.BAD_REQUEST,
        ),
        (
            enable("jid='p.example' node='n'", "<x xmlns='jabber:x:data' type='bogus'/>"),
            StanzaErrorCondition.BAD_REQUEST,
        ),
    ],
)
def test_invalid_enable(xml: str, condition: StanzaErrorCondition) -> None:
    with pytest.raises(StanzaError) as info:
        parse_enable(parse_element(xml))
    assert info.value.condition is condition


def test_disable_with_and_without_node() -> None:
    el = parse_element(f"<disable xmlns='{NS_PUSH}' jid='p.example' node='n'/>")
    assert parse_disable(el) == ("p.example", "n")
    el = parse_element(f"<disable xmlns='{NS_PUSH}' jid='p.example'/>")
    assert parse_disable(el) == ("p.example", None)


def test_registrations_round_trip_through_storage_text() -> None:
    regs = (
        Registration("p.example", "a", parse_element(OPTIONS)),
        Registration("q.example", "b", None),
    )
    back = decode_registrations(encode_registrations(regs))
    assert back == regs
    assert back[0].options is not None and serialize_str(back[0].options) == serialize_str(
        parse_element(OPTIONS)
    )
    assert back[1].options is None
    assert decode_registrations(None) == ()


BODY = "<message xmlns='jabber:client'><body>x</body></message>"
STATE = (
    "<message xmlns='jabber:client'>"
    "<composing xmlns='http://jabber.org/protocol/chatstates'/></message>"
)
SUB = "<presence xmlns='jabber:client' type='subscribe'/>"
SUBD = "<presence xmlns='jabber:client' type='subscribed'/>"


@pytest.mark.parametrize(
    ("xml", "stype", "full", "exists", "groupchat", "expected"),
    [
        (BODY, "chat", False, False, False, "message"),
        (BODY, "normal", False, False, False, "message"),
        # A normal message to an absent resource is bounced, not stored.
        (BODY, "normal", True, False, False, None),
        (BODY, "normal", True, True, False, "message"),
        (BODY, "chat", True, False, False, "message"),
        (BODY, "headline", False, False, False, None),
        (BODY, "error", False, False, False, None),
        (BODY, "groupchat", True, True, False, None),
        (BODY, "groupchat", True, True, True, "message"),
        (BODY, "groupchat", False, False, True, None),
        (STATE, "chat", False, False, False, None),
        (SUB, "subscribe", False, False, False, "subscription"),
        (SUBD, "subscribed", False, False, False, None),
        ("<presence xmlns='jabber:client'/>", "", False, False, False, None),
    ],
)  # fmt: skip
def test_classify(
    xml: str, stype: str, full: bool, exists: bool, groupchat: bool, expected: str | None
) -> None:
    got = classify(
        parse_element(xml), stype, to_full=full, session_exists=exists, groupchat=groupchat
    )
    assert got == expected


def fields(form_xml: Element) -> dict[str, str | None]:
    form = parse_form(form_xml)
    return {f.var or "": f.value for f in form.fields}


def test_summary_counts_and_keeps_the_last_message() -> None:
    s = Summary()
    s.add("message", "a@x/1", "one")
    s.add("subscription", "b@x", None)
    s.add("message", "c@x/2", "two")
    assert (s.message_count, s.subscription_count, s.last_sender, s.last_body) == (
        2,
        1,
        "c@x/2",
        "two",
    )


def test_summary_form_includes_sender_and_body_only_when_allowed() -> None:
    s = Summary(3, 0, "juliet@capulet.example/balcony", "Wherefore art thou, Romeo?")
    bare = fields(summary_form(s, include_sender=False, include_body=False, max_body_length=9))
    assert bare == {"FORM_TYPE": "urn:xmpp:push:summary", "message-count": "3"}
    full = fields(summary_form(s, include_sender=True, include_body=True, max_body_length=9))
    assert full["last-message-sender"] == "juliet@capulet.example/balcony"
    assert full["last-message-body"] == "Wherefore"
    assert "pending-subscription-count" not in full
    subs = fields(
        summary_form(Summary(0, 2), include_sender=True, include_body=True, max_body_length=9)
    )
    assert subs == {
        "FORM_TYPE": "urn:xmpp:push:summary",
        "message-count": "0",
        "pending-subscription-count": "2",
    }


def test_publish_iq_shape() -> None:
    reg = Registration("p.example", "node7", parse_element(OPTIONS))
    form = summary_form(Summary(1), include_sender=False, include_body=False, max_body_length=1)
    iq = publish_iq("id1", JID.parse("romeo@montague.example"), reg, form)
    assert (iq.get("type"), iq.get("to"), iq.get("from"), iq.get("id")) == (
        "set",
        "p.example",
        "romeo@montague.example",
        "id1",
    )
    pubsub = iq.find("pubsub", NS_PUBSUB)
    assert pubsub is not None
    publish = pubsub.find("publish", NS_PUBSUB)
    assert publish is not None and publish.get("node") == "node7"
    item = publish.find("item", NS_PUBSUB)
    assert item is not None and item.find("notification", NS_PUSH) is not None
    options = pubsub.find("publish-options", NS_PUBSUB)
    assert options is not None and options.first_child is not None
    assert options.first_child is not reg.options  # a copy: the stored one is not shared


@pytest.mark.parametrize(
    ("reply", "outcome"),
    [
        (None, Outcome.RETRY),
        ("<iq xmlns='jabber:client' type='result'/>", Outcome.DELIVERED),
        (
            "<iq xmlns='jabber:client' type='error'><error type='wait'><resource-constraint "
            "xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>",
            Outcome.RETRY,
        ),
        (
            "<iq xmlns='jabber:client' type='error'><error type='cancel'><item-not-found "
            "xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>",
            Outcome.DISABLE,
        ),
        (
            "<iq xmlns='jabber:client' type='error'><error type='auth'><forbidden "
            "xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>",
            Outcome.DISABLE,
        ),
    ],
)
def test_outcome_of_answers(reply: str | None, outcome: Outcome) -> None:
    assert outcome_of(None if reply is None else parse_element(reply)) is outcome


def test_backoff_doubles_up_to_the_cap() -> None:
    assert [backoff(n, 5.0, 30.0) for n in range(1, 6)] == [5.0, 10.0, 20.0, 30.0, 30.0]
