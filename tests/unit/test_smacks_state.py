"""XEP-0198 counting, pure: sequence numbers, acks, wraparound at 2^32, the queue."""

from __future__ import annotations

import pytest

from salon.modules.smacks.state import MODULUS, AckTooHigh, SmState, parse_h
from salon.xml.element import Element


def msg(n: int) -> Element:
    return Element("message", "jabber:client", {"id": f"m{n}"})


def ids(stanzas: list[Element]) -> list[str | None]:
    return [s.get("id") for s in stanzas]


def test_h_counts_stanzas_handled_since_enable() -> None:
    state = SmState(inbound_base=7)  # the session had taken 7 stanzas before <enable/>
    assert state.handled(7) == 0
    assert state.handled(10) == 3


def test_inbound_h_wraps_at_2_to_the_32() -> None:
    state = SmState(inbound_base=0)
    assert state.handled(MODULUS - 1) == MODULUS - 1
    assert state.handled(MODULUS) == 0
    assert state.handled(MODULUS + 4) == 4


def test_ack_releases_exactly_the_acknowledged_stanzas() -> None:
    state = SmState()
    for n in range(1, 6):
        state.record(msg(n))
    assert state.sent == 5
    assert ids(state.ack(2)) == ["m1", "m2"]
    assert ids(list(state.unacked)) == ["m3", "m4", "m5"]
    assert state.ack(2) == []  # the same h again acknowledges nothing new
    assert ids(state.ack(5)) == ["m3", "m4", "m5"]
    assert not state.unacked


def test_ack_of_more_than_was_sent_is_refused_and_changes_nothing() -> None:
    state = SmState()
    state.record(msg(1))
    with pytest.raises(AckTooHigh) as exc:
        state.ack(2)
    assert (exc.value.h, exc.value.send_count) == (2, 1)
    assert len(state.unacked) == 1 and state.acked == 0


def test_ack_going_back_is_refused() -> None:
    state = SmState()
    for n in range(3):
        state.record(msg(n))
    state.ack(3)
    with pytest.raises(AckTooHigh):
        state.ack(1)


def test_outbound_sequence_wraps_at_2_to_the_32() -> None:
    state = SmState()
    state.sent = state.acked = MODULUS - 2  # as after 2^32 - 2 stanzas, all acknowledged
    for n in range(4):
        state.record(msg(n))
    assert state.sent == 2  # MODULUS - 1, 0, 1, 2
    assert ids(state.ack(MODULUS - 1)) == ["m0"]
    assert ids(state.ack(0)) == ["m1"]
    assert ids(state.ack(2)) == ["m2", "m3"]
    with pytest.raises(AckTooHigh):
        state.ack(3)


def test_an_ack_is_requested_after_enough_unacknowledged_stanzas_once() -> None:
    state = SmState(request_after=3)
    state.record(msg(1))
    state.record(msg(2))
    assert not state.wants_ack()
    state.record(msg(3))
    assert state.wants_ack()
    state.requested = True
    state.record(msg(4))
    assert not state.wants_ack()  # one request at a time
    state.ack(4)
    assert not state.requested


def test_take_unacked_empties_the_queue_in_order() -> None:
    state = SmState()
    for n in range(3):
        state.record(msg(n))
    state.ack(1)
    assert ids(state.take_unacked()) == ["m1", "m2"]
    assert not state.unacked


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0", 0),
        ("42", 42),
        (str(MODULUS - 1), MODULUS - 1),
        (str(MODULUS), None),
        ("-1", None),
        ("", None),
        ("x", None),
        ("1.5", None),
        (None, None),
        ("٣", None),
    ],
)
def test_h_is_an_unsigned_32_bit_integer(text: str | None, value: int | None) -> None:
    assert parse_h(text) == value
