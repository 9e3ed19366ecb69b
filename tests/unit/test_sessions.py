"""Tests for salon.core.sessions: resources per account, conflicts, limits (RFC 6120 §7)."""

from __future__ import annotations

import itertools

import pytest

from salon.core.session import C2SSession
from salon.core.sessions import SessionRegistry
from salon.errors import StanzaError, StanzaErrorCondition, StreamErrorCondition
from salon.jid import JID
from salon.xml.element import Element

ALICE = JID.parse("alice@localhost")
BOB = JID.parse("bob@localhost")


class FakeConnection:
    """Stands in for the transport (salon.net), which these tests never open."""

    def __init__(self) -> None:
        self.sent: list[Element] = []
        self.closed: list[tuple[StreamErrorCondition | None, str | None]] = []

    def send_stanza(self, stanza: Element) -> None:
        self.sent.append(stanza)

    def close_stream(
        self, condition: StreamErrorCondition | None = None, text: str | None = None
    ) -> None:
        self.closed.append((condition, text))

    @property
    def peer(self) -> str:
        return "127.0.0.1:5222"


def session(full: str, *, available: bool = False) -> C2SSession:
    s = C2SSession(JID.parse(full), FakeConnection())
    s.is_available = available
    return s


def test_empty_registry_knows_nobody() -> None:
    registry = SessionRegistry()
    assert len(registry) == 0
    assert registry.get(ALICE.with_resource("phone")) is None
    assert registry.resources(ALICE) == []
    assert registry.available(ALICE) == []
    assert not registry.is_online(ALICE)
    assert registry.all_sessions() == []


def test_added_session_is_found_by_full_and_bare_jid() -> None:
    registry = SessionRegistry()
    phone = session("alice@localhost/phone")
    registry.add(phone)
    assert registry.get(JID.parse("alice@localhost/phone")) is phone
    assert registry.get(JID.parse("alice@localhost/other")) is None
    assert registry.get(ALICE) is None  # a bare JID names no session
    assert registry.resources(ALICE) == [phone]
    assert registry.is_online(ALICE)
    assert not registry.is_online(BOB)
    assert len(registry) == 1


def test_lookups_use_prepared_jids() -> None:
    registry = SessionRegistry()
    phone = session("Alice@LocalHost/phone")
    registry.add(phone)
    assert registry.get(JID.parse("alice@localhost/phone")) is phone
    assert registry.is_online(JID.parse("ALICE@localhost"))


def test_resources_of_several_accounts_are_kept_apart() -> None:
    registry = SessionRegistry()
    sessions = [
        session("alice@localhost/a"),
        session("alice@localhost/b"),
        session("bob@localhost/a"),
    ]
    for s in sessions:
        registry.add(s)
    assert len(registry) == 3
    assert registry.resources(ALICE) == sessions[:2]
    assert registry.resources(BOB) == sessions[2:]
    assert set(registry.all_sessions()) == set(sessions)


def test_available_lists_only_sessions_that_sent_presence() -> None:
    registry = SessionRegistry()
    quiet = session("alice@localhost/quiet")
    online = session("alice@localhost/online", available=True)
    registry.add(quiet)
    registry.add(online)
    assert registry.available(ALICE) == [online]
    quiet.is_available = True
    assert set(registry.available(ALICE)) == {quiet, online}
    online.is_available = False
    assert registry.available(ALICE) == [quiet]


# ------------------------------------------------------------------ pick_resource
def test_free_requested_resource_is_granted() -> None:
    registry = SessionRegistry()
    registry.add(session("alice@localhost/phone"))
    assert registry.pick_resource(ALICE, "tablet") == ("tablet", None)


def test_no_requested_resource_gets_a_fresh_one() -> None:
    registry = SessionRegistry()
    first, replaced = registry.pick_resource(ALICE, None)
    assert first
    assert replaced is None
    registry.add(session(f"alice@localhost/{first}"))
    second, _ = registry.pick_resource(ALICE, None)
    assert second != first


def test_generated_resource_never_collides(monkeypatch: pytest.MonkeyPatch) -> None:
    registry = SessionRegistry()
    registry.add(session("alice@localhost/taken"))
    names = itertools.chain(["taken", "taken"], itertools.repeat("fresh"))

    class PredictableSecrets:
        @staticmethod
        def token_hex(nbytes: int) -> str:
            return next(names)

    monkeypatch.setattr("salon.core.sessions.secrets", PredictableSecrets)
    assert registry.pick_resource(ALICE, None) == ("fresh", None)


def test_requested_resource_in_use_returns_the_session_it_replaces() -> None:
    """RFC 6120 §7.7.2.2: the new session wins; the caller closes the old with <conflict/>."""
    registry = SessionRegistry()
    old = session("alice@localhost/phone")
    registry.add(old)
    assert registry.pick_resource(ALICE, "phone") == ("phone", old)

    new = session("alice@localhost/phone")
    registry.add(new)
    assert registry.get(JID.parse("alice@localhost/phone")) is new
    assert len(registry) == 1
    assert registry.remove(old) is False  # the replaced session no longer unregisters anyone
    assert registry.get(JID.parse("alice@localhost/phone")) is new


def test_too_many_resources_is_resource_constraint() -> None:
    registry = SessionRegistry(max_resources=2)
    registry.add(session("alice@localhost/a"))
    registry.add(session("alice@localhost/b"))
    for requested in ("c", None):
        with pytest.raises(StanzaError) as info:
            registry.pick_resource(ALICE, requested)
        assert info.value.condition is StanzaErrorCondition.RESOURCE_CONSTRAINT
        assert info.value.error_type == "wait"


def test_replacing_a_resource_at_the_limit_is_allowed() -> None:
    registry = SessionRegistry(max_resources=2)
    a = session("alice@localhost/a")
    registry.add(a)
    registry.add(session("alice@localhost/b"))
    assert registry.pick_resource(ALICE, "a") == ("a", a)


def test_the_limit_is_per_account() -> None:
    registry = SessionRegistry(max_resources=1)
    registry.add(session("alice@localhost/a"))
    assert registry.pick_resource(BOB, "a") == ("a", None)


# ------------------------------------------------------------------ remove
def test_removing_the_last_resource_takes_the_account_offline() -> None:
    registry = SessionRegistry()
    phone = session("alice@localhost/phone")
    tablet = session("alice@localhost/tablet")
    registry.add(phone)
    registry.add(tablet)
    assert registry.remove(phone) is True
    assert registry.resources(ALICE) == [tablet]
    assert registry.is_online(ALICE)
    assert registry.remove(tablet) is True
    assert not registry.is_online(ALICE)
    assert len(registry) == 0


def test_removing_twice_or_unknown_returns_false() -> None:
    registry = SessionRegistry()
    phone = session("alice@localhost/phone")
    assert registry.remove(phone) is False
    registry.add(phone)
    assert registry.remove(phone) is True
    assert registry.remove(phone) is False


def test_removed_resource_can_be_bound_again() -> None:
    registry = SessionRegistry(max_resources=1)
    phone = session("alice@localhost/phone")
    registry.add(phone)
    registry.remove(phone)
    assert registry.pick_resource(ALICE, "other") == ("other", None)
