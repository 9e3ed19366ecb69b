"""Who may do what in a room (XEP-0045 §5, §8-§10): the pure permission rules."""

from __future__ import annotations

import pytest

from salon.errors import StanzaErrorCondition
from salon.modules.muc.config import RoomConfig
from salon.modules.muc.rules import (
    Affiliation,
    Role,
    can_change_subject,
    can_invite,
    can_send_pm,
    default_role,
    may_see_jids,
    set_affiliation_error,
    set_role_error,
)

A, R = Affiliation, Role
FORBIDDEN = StanzaErrorCondition.FORBIDDEN
NOT_ALLOWED = StanzaErrorCondition.NOT_ALLOWED
OPEN = RoomConfig()
MODERATED = RoomConfig(moderated=True)


@pytest.mark.parametrize(
    ("affiliation", "config", "role"),
    [
        (A.OWNER, OPEN, R.MODERATOR),
        (A.ADMIN, OPEN, R.MODERATOR),
        (A.MEMBER, OPEN, R.PARTICIPANT),
        (A.NONE, OPEN, R.PARTICIPANT),
        (A.MEMBER, MODERATED, R.PARTICIPANT),
        (A.NONE, MODERATED, R.VISITOR),
        (A.OUTCAST, OPEN, R.NONE),
    ],
)
def test_default_role(affiliation: Affiliation, config: RoomConfig, role: Role) -> None:
    assert default_role(affiliation, config) is role


def test_whois() -> None:
    assert not may_see_jids(OPEN, R.PARTICIPANT)
    assert may_see_jids(OPEN, R.MODERATOR)
    assert may_see_jids(RoomConfig(whois="anyone"), R.VISITOR)


def test_subject_rule() -> None:
    assert can_change_subject(OPEN, R.MODERATOR)
    assert not can_change_subject(OPEN, R.PARTICIPANT)
    allowed = RoomConfig(change_subject=True)
    assert can_change_subject(allowed, R.PARTICIPANT)
    assert not can_change_subject(allowed, R.VISITOR)


@pytest.mark.parametrize(
    ("allow_pm", "role", "allowed"),
    [
        ("anyone", R.VISITOR, True),
        ("participants", R.VISITOR, False),
        ("participants", R.PARTICIPANT, True),
        ("moderators", R.PARTICIPANT, False),
        ("moderators", R.MODERATOR, True),
        ("none", R.MODERATOR, False),
    ],
)
def test_private_messages(allow_pm: str, role: Role, allowed: bool) -> None:
    assert can_send_pm(RoomConfig(allow_pm=allow_pm), role) is allowed


def test_invitations() -> None:
    members_only = RoomConfig(members_only=True)
    assert can_invite(OPEN, A.NONE, R.PARTICIPANT)
    assert not can_invite(OPEN, A.NONE, R.VISITOR)
    assert not can_invite(members_only, A.MEMBER, R.PARTICIPANT)
    assert can_invite(members_only, A.ADMIN, R.MODERATOR)
    assert can_invite(RoomConfig(members_only=True, allow_invites=True), A.MEMBER, R.PARTICIPANT)


@pytest.mark.parametrize(
    ("actor", "target", "new", "error"),
    [
        # (actor role, actor affiliation), (target affiliation, target role), new role
        (
            (R.PARTICIPANT, A.MEMBER),
            (A.NONE, R.PARTICIPANT),
            R.NONE,
            StanzaErrorCondition.FORBIDDEN,
        ),
        ((R.MODERATOR, A.NONE), (A.NONE, R.PARTICIPANT), R.NONE, None),  # kick
        ((R.MODERATOR, A.NONE), (A.NONE, R.PARTICIPANT), R.VISITOR, None),  # revoke voice
        ((R.MODERATOR, A.ADMIN), (A.OWNER, R.MODERATOR), R.NONE, NOT_ALLOWED),
        ((R.MODERATOR, A.OWNER), (A.ADMIN, R.MODERATOR), R.NONE, NOT_ALLOWED),
        (
            (R.MODERATOR, A.MEMBER),
            (A.NONE, R.PARTICIPANT),
            R.MODERATOR,
            StanzaErrorCondition.NOT_ALLOWED,
        ),
        ((R.MODERATOR, A.ADMIN), (A.NONE, R.PARTICIPANT), R.MODERATOR, None),  # §9.6
        ((R.MODERATOR, A.ADMIN), (A.MEMBER, R.MODERATOR), R.PARTICIPANT, None),  # §9.7
        (
            (R.MODERATOR, A.NONE),
            (A.MEMBER, R.PARTICIPANT),
            R.NONE,
            StanzaErrorCondition.NOT_ALLOWED,
        ),
    ],
)
def test_role_changes(
    actor: tuple[Role, Affiliation],
    target: tuple[Affiliation, Role],
    new: Role,
    error: StanzaErrorCondition | None,
) -> None:
    assert set_role_error(actor[0], actor[1], target[0], target[1], new) == error


@pytest.mark.parametrize(
    ("actor", "target", "new", "error"),
    [
        (A.MEMBER, A.NONE, A.OUTCAST, FORBIDDEN),
        (A.ADMIN, A.NONE, A.OUTCAST, None),  # §9.1 ban
        (A.ADMIN, A.NONE, A.MEMBER, None),  # §9.3
        (A.ADMIN, A.NONE, A.ADMIN, NOT_ALLOWED),
        (A.ADMIN, A.OWNER, A.OUTCAST, NOT_ALLOWED),
        (A.ADMIN, A.ADMIN, A.MEMBER, NOT_ALLOWED),
        (A.OWNER, A.ADMIN, A.OUTCAST, None),
        (A.OWNER, A.NONE, A.OWNER, None),  # §10.3
    ],
)
def test_affiliation_changes(
    actor: Affiliation, target: Affiliation, new: Affiliation, error: StanzaErrorCondition | None
) -> None:
    assert set_affiliation_error(actor, target, new) == error
