"""Roles, affiliations and who may do what (XEP-0045 §5, §8, §9, §10): pure functions.

A rule answers None when the action is allowed, else the error condition XEP-0045 names.
"""

from __future__ import annotations

from enum import StrEnum

from salon.errors import StanzaErrorCondition
from salon.modules.muc.config import RoomConfig

__all__ = [
    "RANK",
    "Affiliation",
    "Role",
    "can_change_subject",
    "can_invite",
    "can_send_pm",
    "default_role",
    "may_see_jids",
    "set_affiliation_error",
    "set_role_error",
]


class Role(StrEnum):
    MODERATOR = "moderator"
    PARTICIPANT = "participant"
    VISITOR = "visitor"
    NONE = "none"


class Affiliation(StrEnum):
    OWNER = "owner"
    ADMIN = "admin"
    MEMBER = "member"
    NONE = "none"
    OUTCAST = "outcast"


RANK = {
    Affiliation.OUTCAST: 0,
    Affiliation.NONE: 1,
    Affiliation.MEMBER: 2,
    Affiliation.ADMIN: 3,
    Affiliation.OWNER: 4,
}
_PRIVILEGED = (Affiliation.ADMIN, Affiliation.OWNER)


def default_role(affiliation: Affiliation, config: RoomConfig) -> Role:
    """The role an occupant gets on entry (§5.1.2)."""
    if affiliation in _PRIVILEGED:
        return Role.MODERATOR
    if affiliation is Affiliation.OUTCAST:
        return Role.NONE
    if config.moderated and affiliation is Affiliation.NONE:
        return Role.VISITOR
    return Role.PARTICIPANT


def may_see_jids(config: RoomConfig, viewer: Role) -> bool:
    """Whether ``viewer`` learns occupants' real JIDs (§4.2 whois: non-anonymous rooms show
    them to all, semi-anonymous rooms to moderators)."""
    return config.non_anonymous or viewer is Role.MODERATOR


def can_change_subject(config: RoomConfig, role: Role) -> bool:
    """§8.1: moderators always; participants when the room allows it."""
    return role is Role.MODERATOR or (config.change_subject and role is Role.PARTICIPANT)


def can_send_pm(config: RoomConfig, role: Role) -> bool:
    """muc#roomconfig_allowpm: who may send private messages."""
    if config.allow_pm == "anyone":
        return True
    if config.allow_pm == "participants":
        return role in (Role.PARTICIPANT, Role.MODERATOR)
    if config.allow_pm == "moderators":
        return role is Role.MODERATOR
    return False


def can_invite(config: RoomConfig, affiliation: Affiliation, role: Role) -> bool:
    """§7.8: in a members-only room only admins and owners invite unless the room allows
    occupants to; in an open room any occupant with voice may."""
    if affiliation in _PRIVILEGED or config.allow_invites:
        return True
    return not config.members_only and role in (Role.PARTICIPANT, Role.MODERATOR)


def set_role_error(
    actor_role: Role,
    actor_affiliation: Affiliation,
    target_affiliation: Affiliation,
    target_role: Role,
    new_role: Role,
) -> StanzaErrorCondition | None:
    """May a moderator give ``new_role`` to an occupant (§8.2 kick, §8.3-8.4 voice,
    §9.6-9.7 moderator status)?"""
    if actor_role is not Role.MODERATOR:
        return StanzaErrorCondition.FORBIDDEN
    if Role.MODERATOR in (new_role, target_role) and actor_affiliation not in _PRIVILEGED:
        return StanzaErrorCondition.NOT_ALLOWED  # only admins and owners handle moderators
    if target_affiliation in _PRIVILEGED and new_role is not Role.MODERATOR:
        return StanzaErrorCondition.NOT_ALLOWED  # §8.2: admins and owners cannot be kicked
    if RANK[target_affiliation] > RANK[actor_affiliation]:
        return StanzaErrorCondition.NOT_ALLOWED
    return None


def set_affiliation_error(
    actor_affiliation: Affiliation, target_affiliation: Affiliation, new_affiliation: Affiliation
) -> StanzaErrorCondition | None:
    """May ``actor_affiliation`` change an affiliation (§9.1-9.5 admins, §10.3-10.7 owners)?
    Admins handle members and outcasts of lower standing; owners handle everyone."""
    if actor_affiliation not in _PRIVILEGED:
        return StanzaErrorCondition.FORBIDDEN
    if actor_affiliation is Affiliation.OWNER:
        return None
    if new_affiliation in _PRIVILEGED or target_affiliation in _PRIVILEGED:
        return StanzaErrorCondition.NOT_ALLOWED
    return None
