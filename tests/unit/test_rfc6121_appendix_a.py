"""RFC 6121 Appendix A, row by row, against salon.modules._subscription.

The tables below are Appendix A.2 (outbound: "route?") and A.3 (inbound: "deliver?") as the
RFC prints them; the module implements the prose of §3, so agreeing with the tables is a real
check. Then the actions the prose adds to the tables: auto-replies, presence sent to the
contact, pending requests kept and dropped, roster pushes, pre-approval (§3.4).
"""

from __future__ import annotations

import pytest

from salon.modules._subscription import Outcome, SubState, inbound, outbound
from salon.storage.interfaces import RosterItem

NONE = "None"
N_OUT = "None + Pending Out"
N_IN = "None + Pending In"
N_OUT_IN = "None + Pending Out+In"
TO = "To"
TO_IN = "To + Pending In"
FROM = "From"
FROM_OUT = "From + Pending Out"
BOTH = "Both"
SAME = "no state change"
STATES = (NONE, N_OUT, N_IN, N_OUT_IN, TO, TO_IN, FROM, FROM_OUT, BOTH)

# (existing state, routed or delivered, new state)
Table = tuple[tuple[str, bool, str], ...]

OUTBOUND: dict[str, Table] = {
    # A.2.1
    "subscribe": (
        (NONE, True, N_OUT),
        (N_OUT, True, SAME),
        (N_IN, True, N_OUT_IN),
        (N_OUT_IN, True, SAME),
        (TO, True, SAME),
        (TO_IN, True, SAME),
        (FROM, True, FROM_OUT),
        (FROM_OUT, True, SAME),
        (BOTH, True, SAME),
    ),
    # A.2.2
    "subscribed": (
        (NONE, False, SAME),
        (N_OUT, False, SAME),
        (N_IN, True, FROM),
        (N_OUT_IN, True, FROM_OUT),
        (TO, False, SAME),
        (TO_IN, True, BOTH),
        (FROM, False, SAME),
        (FROM_OUT, False, SAME),
        (BOTH, False, SAME),
    ),
    # A.2.3
    "unsubscribe": (
        (NONE, True, SAME),
        (N_OUT, True, NONE),
        (N_IN, True, SAME),
        (N_OUT_IN, True, N_IN),
        (TO, True, NONE),
        (TO_IN, True, N_IN),
        (FROM, True, SAME),
        (FROM_OUT, True, FROM),
        (BOTH, True, FROM),
    ),
    # A.2.4
    "unsubscribed": (
        (NONE, False, SAME),
        (N_OUT, False, SAME),
        (N_IN, True, NONE),
        (N_OUT_IN, True, N_OUT),
        (TO, False, SAME),
        (TO_IN, True, TO),
        (FROM, True, NONE),
        (FROM_OUT, True, N_OUT),
        (BOTH, True, TO),
    ),
}

INBOUND: dict[str, Table] = {
    # A.3.1
    "subscribe": (
        (NONE, True, N_IN),
        (N_OUT, True, N_OUT_IN),
        (N_IN, False, SAME),
        (N_OUT_IN, False, SAME),
        (TO, True, TO_IN),
        (TO_IN, False, SAME),
        (FROM, False, SAME),
        (FROM_OUT, False, SAME),
        (BOTH, False, SAME),
    ),
    # A.3.2
    "subscribed": (
        (NONE, False, SAME),
        (N_OUT, True, TO),
        (N_IN, False, SAME),
        (N_OUT_IN, True, TO_IN),
        (TO, False, SAME),
        (TO_IN, False, SAME),
        (FROM, False, SAME),
        (FROM_OUT, True, BOTH),
        (BOTH, False, SAME),
    ),
    # A.3.3
    "unsubscribe": (
        (NONE, False, SAME),
        (N_OUT, False, SAME),
        (N_IN, True, NONE),
        (N_OUT_IN, True, N_OUT),
        (TO, False, SAME),
        (TO_IN, True, TO),
        (FROM, True, NONE),
        (FROM_OUT, True, N_OUT),
        (BOTH, True, TO),
    ),
    # A.3.4
    "unsubscribed": (
        (NONE, False, SAME),
        (N_OUT, True, NONE),
        (N_IN, False, SAME),
        (N_OUT_IN, True, N_IN),
        (TO, True, NONE),
        (TO_IN, True, N_IN),
        (FROM, False, SAME),
        (FROM_OUT, True, FROM),
        (BOTH, True, FROM),
    ),
}


def _rows(tables: dict[str, Table]) -> list[tuple[str, str, bool, str]]:
    return [(stype, *row) for stype, table in tables.items() for row in table]


def test_the_tables_cover_every_state_for_every_type() -> None:
    for tables in (OUTBOUND, INBOUND):
        assert set(tables) == {"subscribe", "subscribed", "unsubscribe", "unsubscribed"}
        for table in tables.values():
            assert tuple(row[0] for row in table) == STATES


@pytest.mark.parametrize("name", STATES)
def test_state_names_round_trip(name: str) -> None:
    assert SubState.named(name).name == name


@pytest.mark.parametrize(("stype", "existing", "routed", "new"), _rows(OUTBOUND))
def test_appendix_a2_outbound(stype: str, existing: str, routed: bool, new: str) -> None:
    outcome = outbound(SubState.named(existing), stype)
    assert outcome.forward is routed
    assert outcome.after.name == (existing if new == SAME else new)
    assert outcome.reply is None  # the user's own stanza is never answered by the server


@pytest.mark.parametrize(("stype", "existing", "delivered", "new"), _rows(INBOUND))
def test_appendix_a3_inbound(stype: str, existing: str, delivered: bool, new: str) -> None:
    outcome = inbound(SubState.named(existing), stype)
    assert outcome.forward is delivered
    assert outcome.after.name == (existing if new == SAME else new)


# ---------------------------------------------------------------------- what the prose adds
@pytest.mark.parametrize("existing", [FROM, FROM_OUT, BOTH])
def test_subscribe_from_a_subscribed_contact_is_approved_by_the_server(existing: str) -> None:
    """§3.1.3: the contact's server auto-replies "subscribed" (A.3.1, the starred rows)."""
    outcome = inbound(SubState.named(existing), "subscribe")
    assert outcome.reply == "subscribed"
    assert outcome.presence == "available"
    assert not outcome.item_changed


@pytest.mark.parametrize("existing", [NONE, N_OUT, N_IN, N_OUT_IN, TO, TO_IN])
def test_subscribe_from_an_unsubscribed_contact_gets_no_auto_reply(existing: str) -> None:
    assert inbound(SubState.named(existing), "subscribe").reply is None


@pytest.mark.parametrize(("existing", "new"), [(NONE, N_IN), (N_OUT, N_OUT_IN), (TO, TO_IN)])
def test_a_new_inbound_request_is_kept_until_answered(existing: str, new: str) -> None:
    """§3.1.3: kept and redelivered; never a roster item before the user approves."""
    outcome = inbound(SubState.named(existing), "subscribe")
    assert outcome.store_pending and not outcome.drop_pending
    assert not outcome.item_changed


@pytest.mark.parametrize(
    ("direction", "stype", "existing"),
    [
        ("out", "subscribed", N_IN),  # approved
        ("out", "subscribed", N_OUT_IN),
        ("out", "subscribed", TO_IN),
        ("out", "unsubscribed", N_IN),  # denied
        ("out", "unsubscribed", N_OUT_IN),
        ("out", "unsubscribed", TO_IN),
        ("in", "unsubscribe", N_IN),  # withdrawn by the requester
        ("in", "unsubscribe", N_OUT_IN),
        ("in", "unsubscribe", TO_IN),
    ],
)
def test_an_answered_or_withdrawn_request_stops_waiting(
    direction: str, stype: str, existing: str
) -> None:
    step = outbound if direction == "out" else inbound
    outcome = step(SubState.named(existing), stype)
    assert outcome.drop_pending and not outcome.after.pending_in


@pytest.mark.parametrize(
    ("existing", "presence"),
    [(N_IN, "available"), (N_OUT_IN, "available"), (TO_IN, "available")],
)
def test_approving_sends_the_users_presence(existing: str, presence: str) -> None:
    """§3.1.5: after routing "subscribed", the user's current presence goes to the contact."""
    assert outbound(SubState.named(existing), "subscribed").presence == presence


@pytest.mark.parametrize(
    ("existing", "presence"),
    [(FROM, "unavailable"), (FROM_OUT, "unavailable"), (BOTH, "unavailable"), (N_IN, None)],
)
def test_cancelling_sends_unavailable_only_to_a_contact_that_had_presence(
    existing: str, presence: str | None
) -> None:
    """§3.2.2: unavailable from every available resource before "unsubscribed" is routed."""
    assert outbound(SubState.named(existing), "unsubscribed").presence == presence


@pytest.mark.parametrize(
    ("existing", "presence"),
    [(FROM, "unavailable"), (FROM_OUT, "unavailable"), (BOTH, "unavailable"), (N_IN, None)],
)
def test_inbound_unsubscribe_sends_unavailable_to_a_contact_that_had_presence(
    existing: str, presence: str | None
) -> None:
    """§3.3.3: the contact's server sends unavailable from each available resource."""
    assert inbound(SubState.named(existing), "unsubscribe").presence == presence


def test_roster_push_exactly_when_the_item_changes() -> None:
    """§2.1.6: every change to an item is pushed; pending-in alone is not part of the item."""
    for tables, step in ((OUTBOUND, outbound), (INBOUND, inbound)):
        for stype, table in tables.items():
            for existing, _forward, _new in table:
                outcome: Outcome = step(SubState.named(existing), stype)
                before, after = outcome.before, outcome.after
                visible = (after.subscription, after.pending_out, after.approved)
                expected = visible != (before.subscription, before.pending_out, before.approved)
                assert outcome.item_changed is expected, (stype, existing)


# ---------------------------------------------------------------------- pre-approval (§3.4)
@pytest.mark.parametrize("existing", [NONE, N_OUT, TO])
def test_subscribed_without_a_request_pre_approves_and_is_not_routed(existing: str) -> None:
    outcome = outbound(SubState.named(existing), "subscribed")
    assert outcome.after == SubState.named(existing, approved=True)
    assert not outcome.forward and outcome.item_changed


@pytest.mark.parametrize(("existing", "new"), [(NONE, FROM), (N_OUT, FROM_OUT), (TO, BOTH)])
def test_a_pre_approved_request_is_approved_by_the_server(existing: str, new: str) -> None:
    outcome = inbound(SubState.named(existing, approved=True), "subscribe")
    assert outcome.after == SubState.named(new)  # and the flag is spent
    assert outcome.reply == "subscribed" and outcome.presence == "available"
    assert not outcome.forward and not outcome.store_pending and outcome.item_changed


@pytest.mark.parametrize("existing", [NONE, N_OUT, TO])
def test_unsubscribed_withdraws_a_pre_approval(existing: str) -> None:
    outcome = outbound(SubState.named(existing, approved=True), "unsubscribed")
    assert outcome.after == SubState.named(existing)
    assert not outcome.forward and outcome.item_changed


@pytest.mark.parametrize("existing", [FROM, FROM_OUT, BOTH])
def test_subscribed_to_an_already_subscribed_contact_is_ignored(existing: str) -> None:
    outcome = outbound(SubState.named(existing), "subscribed")
    assert outcome.after == outcome.before and not outcome.forward and not outcome.item_changed


# ---------------------------------------------------------------------- roster items
def test_state_from_a_roster_item_and_back() -> None:
    item = RosterItem("juliet@example.com", "Juliet", "from", True, False, ("Friends",))
    state = SubState.of(item, pending_in=False)
    assert state.name == FROM_OUT
    assert state.item(item.jid, item) == item
    approved = SubState.of(None, pending_in=True)
    assert approved.name == N_IN
    new = outbound(approved, "subscribed").after.item("romeo@example.net", None)
    assert new == RosterItem("romeo@example.net", subscription="from")


def test_unknown_types_are_refused() -> None:
    with pytest.raises(ValueError):
        outbound(SubState(), "probe")
    with pytest.raises(ValueError):
        inbound(SubState(), "available")
