"""XEP-0425 Moderated Message Retraction (0.3.0, ``urn:xmpp:message-moderate:1``), sans IO.

A moderator asks the room to retract an occupant's message by the stanza-id the room gave
it::

    <iq type='set' to='room@service'>
      <moderate xmlns='urn:xmpp:message-moderate:1' id='STANZA-ID'>
        <retract xmlns='urn:xmpp:message-retract:1'/>
        <reason>spam</reason>
      </moderate>
    </iq>

The room tells every occupant with a XEP-0424 ``<retract/>`` from the room's own JID, naming
the moderator in ``<moderated by='room@service/nick'/>``, and the archive (and the history
replayed on join) keeps a tombstone in the message's place: the message's envelope and
occupant id, its content replaced by ``<retracted/>``.
"""

from __future__ import annotations

from dataclasses import dataclass

from salon.errors import StanzaError, StanzaErrorCondition
from salon.namespaces import (
    NS_CLIENT,
    NS_HINTS,
    NS_MODERATE,
    NS_OCCUPANT_ID,
    NS_RETRACT,
    NS_SID,
)
from salon.xml.element import Element

__all__ = ["Moderation", "parse_moderate", "retraction_message", "tombstone"]

_KEPT = ((NS_OCCUPANT_ID, "occupant-id"), (NS_SID, "stanza-id"))
"""What a tombstone keeps of the message besides its attributes."""


@dataclass(frozen=True, slots=True)
class Moderation:
    stanza_id: str
    reason: str


def parse_moderate(payload: Element) -> Moderation:
    """Read ``<moderate/>``: it needs the stanza-id and a ``<retract/>`` (the only action
    XEP-0425 defines); ``bad-request`` otherwise."""
    stanza_id = payload.get("id") or ""
    if not stanza_id:
        raise StanzaError(StanzaErrorCondition.BAD_REQUEST, "which message? (id)")
    if payload.find("retract", NS_RETRACT) is None:
        raise StanzaError(StanzaErrorCondition.BAD_REQUEST, "only retraction is supported")
    return Moderation(stanza_id, payload.find_text("reason", NS_MODERATE) or "")


def _moderated(moderator: str, moderator_occupant_id: str | None) -> Element:
    moderated = Element("moderated", NS_MODERATE, {"by": moderator})
    if moderator_occupant_id:
        moderated.add("occupant-id", NS_OCCUPANT_ID, {"id": moderator_occupant_id})
    return moderated


def retraction_message(
    room: str,
    message_id: str,
    moderation: Moderation,
    moderator: str,
    moderator_occupant_id: str | None,
) -> Element:
    """The room's announcement to every occupant (XEP-0425 §4.1), without ``to``."""
    message = Element("message", NS_CLIENT, {"type": "groupchat", "from": room, "id": message_id})
    retract = message.add("retract", NS_RETRACT, {"id": moderation.stanza_id})
    retract.append(_moderated(moderator, moderator_occupant_id))
    if moderation.reason:
        retract.add("reason", NS_RETRACT, text=moderation.reason)
    message.add("store", NS_HINTS)
    return message


def tombstone(
    original: Element,
    moderation: Moderation,
    moderator: str,
    moderator_occupant_id: str | None,
    stamp: str,
) -> Element:
    """``original`` with its content replaced by a ``<retracted/>`` tombstone (XEP-0425 §5):
    its attributes, occupant id and stanza-id stay; body, subject and every other payload go."""
    result = Element(original.tag, original.ns, dict(original.attrs))
    for child in original.elements():
        if (child.ns, child.tag) in _KEPT:
            result.append(child)
    retracted = result.add("retracted", NS_RETRACT, {"stamp": stamp})
    retracted.append(_moderated(moderator, moderator_occupant_id))
    if moderation.reason:
        retracted.add("reason", NS_RETRACT, text=moderation.reason)
    return result
