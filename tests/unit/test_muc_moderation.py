"""XEP-0425 moderation, sans IO: the request, the announcement, the tombstone; and the
history's lookup and replacement by stanza-id."""

from __future__ import annotations

import pytest

from salon.errors import StanzaError, StanzaErrorCondition
from salon.modules.muc.history import History, stanza_id_of
from salon.modules.muc.moderation import (
    Moderation,
    parse_moderate,
    retraction_message,
    tombstone,
)
from salon.namespaces import (
    NS_CLIENT,
    NS_DELAY,
    NS_HINTS,
    NS_MODERATE,
    NS_OCCUPANT_ID,
    NS_RETRACT,
    NS_SID,
)
from salon.xml.element import Element
from salon.xml.fragment import parse_element

ROOM = "coven@conference.example"


def request(inner: str, attrs: str = " id='sid-1'") -> Element:
    return parse_element(f"<moderate xmlns='{NS_MODERATE}'{attrs}>{inner}</moderate>")


def message(body: str, sid: str) -> Element:
    msg = Element("message", NS_CLIENT, {"type": "groupchat", "from": f"{ROOM}/hag", "id": "m"})
    msg.add("body", text=body)
    msg.add("occupant-id", NS_OCCUPANT_ID, {"id": "oid-hag"})
    msg.add("stanza-id", NS_SID, {"id": sid, "by": ROOM})
    return msg


def test_parse_moderate() -> None:
    parsed = parse_moderate(request(f"<retract xmlns='{NS_RETRACT}'/><reason>spam</reason>"))
    assert parsed == Moderation("sid-1", "spam")
    assert parse_moderate(request(f"<retract xmlns='{NS_RETRACT}'/>")).reason == ""


@pytest.mark.parametrize(
    ("inner", "attrs"),
    [
        (f"<retract xmlns='{NS_RETRACT}'/>", ""),  # no id
        ("", " id='sid-1'"),  # no action
        ("<retract xmlns='urn:xmpp:message-retract:0'/>", " id='sid-1'"),  # old namespace
    ],
)
def test_malformed_moderate_is_bad_request(inner: str, attrs: str) -> None:
    with pytest.raises(StanzaError) as err:
        parse_moderate(request(inner, attrs))
    assert err.value.condition is StanzaErrorCondition.BAD_REQUEST


def test_retraction_message_names_target_moderator_and_reason() -> None:
    msg = retraction_message(ROOM, "r1", Moderation("sid-1", "spam"), f"{ROOM}/mod", "oid-mod")
    assert (msg.get("from"), msg.get("type"), msg.get("id"), msg.get("to")) == (
        ROOM,
        "groupchat",
        "r1",
        None,
    )
    retract = msg.find("retract", NS_RETRACT)
    assert retract is not None and retract.get("id") == "sid-1"
    moderated = retract.find("moderated", NS_MODERATE)
    assert moderated is not None and moderated.get("by") == f"{ROOM}/mod"
    oid = moderated.find("occupant-id", NS_OCCUPANT_ID)
    assert oid is not None and oid.get("id") == "oid-mod"
    assert retract.find_text("reason", NS_RETRACT) == "spam"
    assert msg.find("store", NS_HINTS) is not None


def test_tombstone_keeps_envelope_ids_drops_content() -> None:
    original = message("buy potions", "sid-1")
    original.add("x", "jabber:x:oob").add("url", text="http://spam.example")
    stone = tombstone(
        original, Moderation("sid-1", ""), f"{ROOM}/mod", None, "2024-01-01T00:00:00Z"
    )
    assert stone.attrs == original.attrs
    assert stone.find("body") is None and stone.find("x", "jabber:x:oob") is None
    assert stone.find("occupant-id", NS_OCCUPANT_ID) is not None
    assert stanza_id_of(stone, ROOM) == "sid-1"
    retracted = stone.find("retracted", NS_RETRACT)
    assert retracted is not None and retracted.get("stamp") == "2024-01-01T00:00:00Z"
    moderated = retracted.find("moderated", NS_MODERATE)
    assert moderated is not None and moderated.find("occupant-id", NS_OCCUPANT_ID) is None
    assert retracted.find("reason", NS_RETRACT) is None


def test_history_find_and_replace_by_stanza_id() -> None:
    history = History(ROOM, 5)
    history.add(message("one", "s1"), 100.0)
    history.add(message("two", "s2"), 200.0)
    found = history.find("s2")
    assert found is not None and found.find_text("body") == "two"
    assert found.find("delay", NS_DELAY) is not None
    assert history.find("nope") is None
    stone = tombstone(message("two", "s2"), Moderation("s2", ""), f"{ROOM}/mod", None, "x")
    assert history.replace("s2", stone) is True
    assert history.replace("nope", stone) is False
    entries = list(history)
    assert [e.sent for e in entries] == [100.0, 200.0]
    assert entries[1].stanza.find("body") is None
    assert entries[1].stanza.find("retracted", NS_RETRACT) is not None
    assert entries[1].stanza.find("delay", NS_DELAY) is not None
    assert entries[1].stanza_id == "s2"
