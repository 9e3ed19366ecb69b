"""Room nicknames: the PRECIS Nickname profile (RFC 8266), as XEP-0045 §7.2 asks.

``enforce`` gives the nick the room shows (it may differ from the one asked for, then the
occupant hears status 210); ``key`` is the case-folded form two nicks conflict on.
"""

from __future__ import annotations

from precis_i18n import get_profile

from salon.errors import StanzaError, StanzaErrorCondition

_NICKNAME = get_profile("NicknameCasePreserved")  # RFC 8266 §2, case kept for display
_NICKNAME_KEY = get_profile("NicknameCaseMapped")


def enforce(nick: str, max_length: int) -> str:
    """The nickname as the room uses it; ``jid-malformed`` if PRECIS refuses it,
    ``policy-violation`` if it is longer than ``max_length`` characters."""
    try:
        enforced: str = _NICKNAME.enforce(nick)
    except UnicodeError:
        raise StanzaError(
            StanzaErrorCondition.JID_MALFORMED, "the nickname is not a valid PRECIS nickname"
        ) from None
    if len(enforced) > max_length:
        raise StanzaError(
            StanzaErrorCondition.POLICY_VIOLATION,
            f"nicknames are at most {max_length} characters",
            "modify",
        )
    return enforced


def key(nick: str) -> str:
    """The form two nicknames are compared in (case-mapped, normalised)."""
    try:
        folded: str = _NICKNAME_KEY.enforce(nick)
    except UnicodeError:
        return nick
    return folded
