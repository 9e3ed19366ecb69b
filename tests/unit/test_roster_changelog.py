"""The roster module's change log answers versioned roster gets (RFC 6121 §2.6.3) only when
it holds every change since the client's version."""

from __future__ import annotations

from salon.jid import JID
from salon.modules.roster import Change, ChangeLog
from salon.storage.interfaces import RosterItem

ROMEO = JID.parse("romeo@example.net")
JULIET = JID.parse("juliet@example.com")


def change(version: int, jid: str = "nurse@example.com") -> Change:
    return Change(version, jid, RosterItem(jid))


def test_changes_since_a_known_version() -> None:
    log = ChangeLog(per_user=10, users=10)
    for version in (1, 2, 3):
        log.record(ROMEO, change(version))
    assert [c.version for c in log.since(ROMEO, 1, 3) or []] == [2, 3]
    assert [c.version for c in log.since(ROMEO, 0, 3) or []] == [1, 2, 3]


def test_unknown_when_the_log_does_not_reach_back_or_forward() -> None:
    log = ChangeLog(per_user=2, users=10)
    for version in (1, 2, 3, 4):
        log.record(ROMEO, change(version))
    assert log.since(ROMEO, 1, 4) is None  # version 2 was dropped: the log holds 3 and 4
    assert [c.version for c in log.since(ROMEO, 2, 4) or []] == [3, 4]
    assert log.since(ROMEO, 3, 5) is None  # a change this server did not see
    assert log.since(ROMEO, 4, 4) is None  # nothing to send: the caller answers "current"
    assert log.since(JULIET, 0, 1) is None


def test_a_gap_starts_the_log_afresh() -> None:
    log = ChangeLog(per_user=10, users=10)
    log.record(ROMEO, change(1))
    log.record(ROMEO, change(3))  # version 2 happened elsewhere
    assert log.since(ROMEO, 1, 3) is None
    assert [c.version for c in log.since(ROMEO, 2, 3) or []] == [3]


def test_the_least_recently_changed_user_is_forgotten_first() -> None:
    log = ChangeLog(per_user=10, users=1)
    log.record(ROMEO, change(1))
    log.record(JULIET, change(1))
    assert log.since(ROMEO, 0, 1) is None
    assert log.since(JULIET, 0, 1) is not None


def test_a_log_of_size_zero_remembers_nothing() -> None:
    log = ChangeLog(per_user=0, users=10)
    log.record(ROMEO, change(1))
    assert log.since(ROMEO, 0, 1) is None
