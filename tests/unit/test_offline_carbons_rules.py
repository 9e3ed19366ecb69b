"""The pure parts of the offline and carbons modules: stamping, the stored round trip,
which messages are stored or copied."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from salon.modules.carbons import is_eligible
from salon.modules.offline import announced_priority, delay_stamp, is_chat_state_only, stamped
from salon.namespaces import NS_CARBONS, NS_CHATSTATES, NS_CLIENT, NS_DELAY, NS_HINTS
from salon.xml.element import Element
from salon.xml.fragment import parse_element
from salon.xml.serializer import serialize_str


def message(*children: Element, body: str | None = "hi", **attrs: str) -> Element:
    msg = Element("message", NS_CLIENT, dict(attrs))
    if body is not None:
        msg.add("body", text=body)
    for child in children:
        msg.append(child)
    return msg


def test_delay_stamp_is_utc_with_milliseconds() -> None:
    moment = datetime(2024, 2, 29, 23, 59, 58, 123456, tzinfo=timezone(timedelta(hours=2)))
    assert delay_stamp(moment) == "2024-02-29T21:59:58.123Z"


def test_stamped_copy_carries_delay_and_leaves_the_original_alone() -> None:
    original = message(to="juliet@localhost", type="chat")
    copy = stamped(original, "localhost", datetime(2024, 1, 1, tzinfo=UTC))
    delay = copy.find("delay", NS_DELAY)
    assert delay is not None and delay.get("from") == "localhost"
    assert delay.get("stamp") == "2024-01-01T00:00:00.000Z"
    assert original.find("delay", NS_DELAY) is None


def test_stored_text_parses_back_to_the_same_stanza() -> None:
    original = message(
        Element("x", "urn:example:x", {"{urn:example:a}attr": "v & 'q'"}),
        body="<tricky> & \r\n text",
        to="juliet@localhost",
        type="chat",
    )
    original.set("from", "romeo@localhost/desk")
    assert parse_element(serialize_str(original)) == original


def test_unreadable_stored_text_is_a_value_error() -> None:
    for text in ("<message", "<a/><b/>", "not xml"):
        try:
            parse_element(text)
        except ValueError:
            continue
        raise AssertionError(f"{text!r} parsed")


def test_chat_state_only() -> None:
    composing = Element("composing", NS_CHATSTATES)
    assert is_chat_state_only(message(composing, body=None))
    thread = Element("thread", NS_CLIENT, children=["t1"])
    assert is_chat_state_only(message(Element("active", NS_CHATSTATES), thread, body=None))
    assert not is_chat_state_only(message(composing))
    assert not is_chat_state_only(message(body=None))


def test_announced_priority() -> None:
    presence = Element("presence", NS_CLIENT)
    assert announced_priority(presence) == 0
    presence.add("priority", text=" -3 ")
    assert announced_priority(presence) == -3
    for bad in ("x", "128", "-129"):
        presence.find("priority", NS_CLIENT).text = bad  # type: ignore[union-attr]
        assert announced_priority(presence) is None


def test_carbons_eligibility() -> None:
    assert is_eligible(message(type="chat"), "chat")
    assert is_eligible(message(body=None), "chat")
    assert is_eligible(message(), "normal")
    assert not is_eligible(message(body=None), "normal")
    for stype in ("headline", "groupchat", "error"):
        assert not is_eligible(message(), stype)
    for ns, tag in (
        (NS_CARBONS, "private"),
        (NS_CARBONS, "sent"),
        (NS_CARBONS, "received"),
        (NS_HINTS, "no-copy"),
        ("http://jabber.org/protocol/muc#user", "x"),
    ):
        assert not is_eligible(message(Element(tag, ns)), "chat")
