"""One room, sans-IO (XEP-0045): what each request makes it send, with given times."""

from __future__ import annotations

import pytest

from salon.errors import StanzaError, StanzaErrorCondition
from salon.jid import JID
from salon.modules.muc.config import RoomConfig, config_form, parse_config_form
from salon.modules.muc.room import Delivery, Limits, Room, TokenBucket
from salon.modules.muc.rules import Affiliation, Role
from salon.namespaces import NS_CLIENT, NS_DATA_FORMS, NS_MUC, NS_MUC_USER, NS_OCCUPANT_ID
from salon.xml.element import Element

ROOM = JID.parse("coven@chat.shakespeare.lit")
CRONE = JID.parse("crone1@shakespeare.lit/desktop")
WITCH = JID.parse("wiccarocks@shakespeare.lit/laptop")
HAG = JID.parse("hag66@shakespeare.lit/pda")
HAG2 = JID.parse("hag66@shakespeare.lit/phone")
T0 = 1_700_000_000.0


def presence(x: Element | None = None) -> Element:
    pres = Element("presence", NS_CLIENT)
    pres.append(x if x is not None else Element("x", NS_MUC))
    return pres


def groupchat(body: str | None = None, subject: str | None = None) -> Element:
    msg = Element("message", NS_CLIENT, {"type": "groupchat", "id": "m"})
    if body is not None:
        msg.add("body", text=body)
    if subject is not None:
        msg.add("subject", text=subject)
    return msg


def codes(stanza: Element) -> set[str]:
    x = stanza.find("x", NS_MUC_USER)
    return {s.get("code") or "" for s in x.find_all("status")} if x is not None else set()


def item(stanza: Element) -> Element:
    x = stanza.find("x", NS_MUC_USER)
    assert x is not None
    found = x.find("item")
    assert found is not None
    return found


def to(out: list[Delivery], jid: JID) -> list[Element]:
    return [stanza for target, stanza in out if target == jid]


def condition(excinfo: pytest.ExceptionInfo[StanzaError]) -> StanzaErrorCondition:
    return excinfo.value.condition


def open_room(limits: Limits | None = None, **config: object) -> Room:
    room = Room(ROOM, limits or Limits(), affiliations={CRONE.bare: Affiliation.OWNER}, locked=True)
    room.join(CRONE, "firstwitch", presence(), T0, created=True)
    room.apply_config(RoomConfig(**config))  # type: ignore[arg-type]
    return room


# --------------------------------------------------------------------------- entering
def test_creation_gives_201_110_owner_moderator() -> None:
    room = Room(ROOM, Limits(), affiliations={CRONE.bare: Affiliation.OWNER}, locked=True)
    out = room.join(CRONE, "firstwitch", presence(), T0, created=True)
    own = to(out, CRONE)[0]
    assert own.get("from") == f"{ROOM}/firstwitch"
    assert codes(own) == {"110", "201"}
    assert (item(own).get("affiliation"), item(own).get("role")) == ("owner", "moderator")
    assert own.find("occupant-id", NS_OCCUPANT_ID) is not None
    subject = to(out, CRONE)[-1]
    assert subject.find("subject") is not None and subject.find_text("subject") == ""


def test_locked_room_refuses_others_item_not_found() -> None:
    room = Room(ROOM, Limits(), affiliations={CRONE.bare: Affiliation.OWNER}, locked=True)
    room.join(CRONE, "firstwitch", presence(), T0, created=True)
    with pytest.raises(StanzaError) as excinfo:
        room.join(WITCH, "second", presence(), T0)
    assert condition(excinfo) is StanzaErrorCondition.ITEM_NOT_FOUND


def test_join_order_others_first_then_self_then_subject() -> None:
    room = open_room()
    out = room.join(WITCH, "second", presence(), T0)
    mine = to(out, WITCH)
    assert [s.get("from") for s in mine[:2]] == [f"{ROOM}/firstwitch", f"{ROOM}/second"]
    assert codes(mine[0]) == set() and codes(mine[1]) == {"110"}
    assert mine[-1].find("subject") is not None
    told = to(out, CRONE)
    assert len(told) == 1 and told[0].get("from") == f"{ROOM}/second"
    assert item(told[0]).get("jid") == str(WITCH)  # the owner is a moderator: semi-anonymous
    assert item(mine[0]).get("jid") is None  # a participant does not see real JIDs


def test_non_anonymous_room_adds_100_and_shows_jids() -> None:
    room = open_room(whois="anyone")
    out = room.join(WITCH, "second", presence(), T0)
    mine = to(out, WITCH)
    assert codes(mine[1]) == {"100", "110"}
    assert item(mine[0]).get("jid") == str(CRONE)


@pytest.mark.parametrize(
    ("config", "affiliation", "x", "expected"),
    [
        ({"members_only": True}, None, None, StanzaErrorCondition.REGISTRATION_REQUIRED),
        ({"password": "pw"}, None, None, StanzaErrorCondition.NOT_AUTHORIZED),
        ({}, Affiliation.OUTCAST, None, StanzaErrorCondition.FORBIDDEN),
        ({"max_users": 1}, None, None, StanzaErrorCondition.SERVICE_UNAVAILABLE),
    ],
)
def test_entry_refusals(
    config: dict[str, object],
    affiliation: Affiliation | None,
    x: Element | None,
    expected: StanzaErrorCondition,
) -> None:
    room = open_room(**config)
    if affiliation is not None:
        room.affiliations[WITCH.bare] = affiliation
    with pytest.raises(StanzaError) as excinfo:
        room.join(WITCH, "second", presence(x), T0)
    assert condition(excinfo) is expected
    assert room.occupant(WITCH) is None


def test_password_accepted() -> None:
    room = open_room(password="pw")
    x = Element("x", NS_MUC)
    x.add("password", text="pw")
    room.join(WITCH, "second", presence(x), T0)
    assert room.occupant(WITCH) is not None


def test_nick_conflict_is_case_insensitive_but_same_user_shares_it() -> None:
    room = open_room()
    room.join(HAG, "Hag", presence(), T0)
    with pytest.raises(StanzaError) as excinfo:
        room.join(WITCH, "hag", presence(), T0)
    assert condition(excinfo) is StanzaErrorCondition.CONFLICT
    out = room.join(HAG2, "Hag", presence(), T0)  # multi-session nick
    assert {"110"} <= codes(to(out, HAG2)[1])
    assert len(room) == 2
    occupant = room.occupant(HAG2)
    assert occupant is room.occupant(HAG)
    assert occupant is not None and set(occupant.sessions) == {HAG, HAG2}


def test_nick_modified_210() -> None:
    room = open_room()
    out = room.join(WITCH, "second\u2163", presence(), T0)
    own = to(out, WITCH)[1]
    assert own.get("from") == f"{ROOM}/secondIV" and "210" in codes(own)


# --------------------------------------------------------------------------- presence
def test_leave_last_session_tells_everyone() -> None:
    room = open_room()
    room.join(WITCH, "second", presence(), T0)
    out = room.leave(WITCH, None)
    mine, theirs = to(out, WITCH), to(out, CRONE)
    assert mine[0].get("type") == "unavailable" and codes(mine[0]) == {"110"}
    assert theirs[0].get("type") == "unavailable" and item(theirs[0]).get("role") == "none"
    assert room.occupant(WITCH) is None and len(room) == 1


def test_leave_one_of_two_sessions_keeps_the_occupant() -> None:
    room = open_room()
    room.join(HAG, "hag", presence(), T0)
    room.join(HAG2, "hag", presence(), T0)
    out = room.leave(HAG, None)
    assert [t for t, _ in out] == [HAG]
    assert room.by_nick("hag") is not None


def test_nick_change_303_then_new_presence() -> None:
    room = open_room()
    room.join(WITCH, "second", presence(), T0)
    out = room.presence(WITCH, "oldhag", Element("presence", NS_CLIENT), T0)
    seen = to(out, CRONE)
    assert seen[0].get("type") == "unavailable" and codes(seen[0]) == {"303"}
    assert item(seen[0]).get("nick") == "oldhag"
    assert seen[1].get("from") == f"{ROOM}/oldhag" and seen[1].get("type") is None
    own = to(out, WITCH)
    assert codes(own[0]) == {"303", "110"} and codes(own[1]) == {"110"}
    with pytest.raises(StanzaError) as excinfo:
        room.presence(WITCH, "FirstWitch", Element("presence", NS_CLIENT), T0)
    assert condition(excinfo) is StanzaErrorCondition.CONFLICT


# --------------------------------------------------------------------------- messages
def test_groupchat_to_every_session_with_occupant_id_and_history() -> None:
    room = open_room()
    room.join(HAG, "hag", presence(), T0)
    room.join(HAG2, "hag", presence(), T0)
    forged = groupchat("hi")
    forged.add("occupant-id", NS_OCCUPANT_ID, {"id": "forged"})
    out = room.groupchat(CRONE, forged, T0)
    assert sorted(str(t) for t, _ in out) == sorted(str(j) for j in (CRONE, HAG, HAG2))
    for _, msg in out:
        assert msg.get("from") == f"{ROOM}/firstwitch"
        ids = msg.find_all("occupant-id", NS_OCCUPANT_ID)
        assert len(ids) == 1 and ids[0].get("id") != "forged"
    assert len(room.history) == 1


def test_groupchat_refusals() -> None:
    room = open_room(moderated=True)
    with pytest.raises(StanzaError) as excinfo:
        room.groupchat(WITCH, groupchat("hi"), T0)
    assert condition(excinfo) is StanzaErrorCondition.NOT_ACCEPTABLE
    room.join(WITCH, "second", presence(), T0)
    assert room.occupant(WITCH).role is Role.VISITOR  # type: ignore[union-attr]
    with pytest.raises(StanzaError) as excinfo:
        room.groupchat(WITCH, groupchat("hi"), T0)
    assert condition(excinfo) is StanzaErrorCondition.FORBIDDEN


def test_rate_limit_with_given_time() -> None:
    room = open_room(Limits(message_rate=1.0, message_burst=2))
    room.groupchat(CRONE, groupchat("1"), T0)
    room.groupchat(CRONE, groupchat("2"), T0)
    with pytest.raises(StanzaError) as excinfo:
        room.groupchat(CRONE, groupchat("3"), T0)
    assert condition(excinfo) is StanzaErrorCondition.RESOURCE_CONSTRAINT
    assert excinfo.value.error_type == "wait"
    room.groupchat(CRONE, groupchat("3"), T0 + 1.0)  # one more token a second later


def test_token_bucket_refills_up_to_burst() -> None:
    bucket = TokenBucket(2.0, 3, T0)
    assert [bucket.take(T0) for _ in range(4)] == [True, True, True, False]
    assert bucket.take(T0 + 0.5) and not bucket.take(T0 + 0.5)
    assert [bucket.take(T0 + 100) for _ in range(4)] == [True, True, True, False]


def test_subject_rules_and_length() -> None:
    room = open_room(Limits(max_subject_length=5))
    room.join(WITCH, "second", presence(), T0)
    with pytest.raises(StanzaError) as excinfo:
        room.groupchat(WITCH, groupchat(subject="mine"), T0)
    assert condition(excinfo) is StanzaErrorCondition.FORBIDDEN
    with pytest.raises(StanzaError) as excinfo:
        room.groupchat(CRONE, groupchat(subject="too long"), T0)
    assert condition(excinfo) is StanzaErrorCondition.POLICY_VIOLATION
    room.groupchat(CRONE, groupchat(subject="Fire"), T0)
    assert (room.subject, room.subject_nick, room.dirty) == ("Fire", "firstwitch", True)
    out = room.join(HAG, "hag", presence(), T0)
    last = to(out, HAG)[-1]
    assert last.find_text("subject") == "Fire" and last.get("from") == f"{ROOM}/firstwitch"


def test_private_message() -> None:
    room = open_room(allow_pm="moderators")
    room.join(WITCH, "second", presence(), T0)
    msg = Element("message", NS_CLIENT, {"type": "chat"})
    msg.add("body", text="psst")
    out = room.private(CRONE, "second", msg)
    assert out[0][0] == WITCH and out[0][1].find("x", NS_MUC_USER) is not None
    with pytest.raises(StanzaError) as excinfo:
        room.private(WITCH, "firstwitch", msg)
    assert condition(excinfo) is StanzaErrorCondition.FORBIDDEN
    with pytest.raises(StanzaError) as excinfo:
        room.private(CRONE, "nobody", msg)
    assert condition(excinfo) is StanzaErrorCondition.ITEM_NOT_FOUND


def test_invite_in_members_only_room_makes_a_member() -> None:
    room = open_room(members_only=True, password="pw")
    x = Element("x", NS_MUC_USER)
    x.add("invite", attrs={"to": str(HAG.bare)}).add("reason", text="come")
    out = room.invite(CRONE, x, Element("message", NS_CLIENT))
    ((target, msg),) = out
    assert target == HAG.bare and msg.get("from") == str(ROOM)
    ux = msg.find("x", NS_MUC_USER)
    assert ux is not None and ux.find_text("password") == "pw"
    assert ux.find("invite").get("from") == str(CRONE)  # type: ignore[union-attr]
    assert room.affiliation(HAG) is Affiliation.MEMBER


# --------------------------------------------------------------------------- admin
def admin_item(**attrs: str) -> Element:
    return Element("item", "http://jabber.org/protocol/muc#admin", attrs)


def test_kick_and_ban_status_codes() -> None:
    room = open_room()
    room.join(WITCH, "second", presence(), T0)
    room.join(HAG, "hag", presence(), T0)
    out = room.admin_set(CRONE, [admin_item(nick="second", role="none")])
    assert codes(to(out, WITCH)[0]) == {"110", "307"}
    assert codes(to(out, HAG)[0]) == {"307"}
    out = room.admin_set(CRONE, [admin_item(jid=str(HAG.bare), affiliation="outcast")])
    gone = to(out, HAG)[0]
    assert codes(gone) == {"110", "301"} and item(gone).get("affiliation") == "outcast"
    assert room.affiliation(HAG) is Affiliation.OUTCAST and room.dirty
    assert len(room) == 1


def test_admin_lists_and_rights() -> None:
    room = open_room()
    room.join(WITCH, "second", presence(), T0)
    with pytest.raises(StanzaError) as excinfo:
        room.admin_get(WITCH, admin_item(affiliation="owner"))
    assert condition(excinfo) is StanzaErrorCondition.FORBIDDEN
    owners = room.admin_get(CRONE, admin_item(affiliation="owner"))
    assert [i.get("jid") for i in owners.find_all("item")] == [str(CRONE.bare)]
    with pytest.raises(StanzaError) as excinfo:
        room.admin_set(CRONE, [admin_item(jid=str(CRONE.bare), affiliation="admin")])
    assert condition(excinfo) is StanzaErrorCondition.CONFLICT


def test_revoking_membership_in_members_only_room_removes_321() -> None:
    room = open_room(members_only=True)
    room.affiliations[WITCH.bare] = Affiliation.MEMBER
    room.join(WITCH, "second", presence(), T0)
    out = room.admin_set(CRONE, [admin_item(jid=str(WITCH.bare), affiliation="none")])
    assert "321" in codes(to(out, WITCH)[0])


# --------------------------------------------------------------------------- owner
def test_config_form_round_trip_and_bad_values() -> None:
    form = config_form(RoomConfig(name="Coven", max_users=30), 50, 200)
    form.set("type", "submit")
    assert parse_config_form(form, RoomConfig(), 50, 200) == RoomConfig(name="Coven", max_users=30)
    bad = Element("x", NS_DATA_FORMS, {"type": "submit"})
    bad.add("field", attrs={"var": "muc#roomconfig_whois"}).add("value", text="everyone")
    with pytest.raises(StanzaError) as excinfo:
        parse_config_form(bad, RoomConfig(), 50, 200)
    assert condition(excinfo) is StanzaErrorCondition.NOT_ACCEPTABLE


def test_config_changes_send_172_173_104_and_322() -> None:
    room = open_room()
    room.join(WITCH, "second", presence(), T0)
    out = room.apply_config(RoomConfig(whois="anyone"))
    assert codes(to(out, WITCH)[0]) == {"172"}
    out = room.apply_config(RoomConfig(whois="moderators", name="x"))
    assert codes(to(out, WITCH)[0]) == {"173", "104"}
    out = room.apply_config(RoomConfig(members_only=True))
    assert "322" in codes(to(out, WITCH)[0]) and room.occupant(WITCH) is None


def test_destroy_notifies_with_alternate_venue() -> None:
    room = open_room()
    room.join(WITCH, "second", presence(), T0)
    out = room.destroy("gone", "refuge@chat.shakespeare.lit", None)
    pres = to(out, WITCH)[0]
    destroy = pres.find("x", NS_MUC_USER).find("destroy")  # type: ignore[union-attr]
    assert destroy is not None and destroy.get("jid") == "refuge@chat.shakespeare.lit"
    assert destroy.find_text("reason") == "gone"
    assert room.destroyed and room.is_empty


def test_only_owners_configure() -> None:
    room = open_room()
    room.join(WITCH, "second", presence(), T0)
    with pytest.raises(StanzaError) as excinfo:
        room.configure(WITCH, Element("x", NS_DATA_FORMS, {"type": "submit"}))
    assert condition(excinfo) is StanzaErrorCondition.FORBIDDEN


def test_occupant_ids_differ_per_user_and_room() -> None:
    room = open_room(Limits(occupant_id_secret=b"s"))
    room.join(WITCH, "second", presence(), T0)
    a = room.occupant(CRONE).occupant_id  # type: ignore[union-attr]
    b = room.occupant(WITCH).occupant_id  # type: ignore[union-attr]
    other = Room(JID.parse("other@chat.shakespeare.lit"), Limits(occupant_id_secret=b"s"))
    other.join(CRONE, "x", presence(), T0)
    assert a != b and a != other.occupant(CRONE).occupant_id  # type: ignore[union-attr]
    assert str(CRONE.bare) not in a


def test_self_ping_rule() -> None:
    room = open_room()
    assert room.is_occupant_jid(CRONE, "FirstWitch")
    assert not room.is_occupant_jid(WITCH, "firstwitch")
