"""Archiving preferences (XEP-0441, the ``<prefs/>`` of XEP-0313 before 0.7), sans IO.

A user chooses a default (``always``, ``never`` or ``roster``: archive only conversations
with contacts in the roster) and two lists of JIDs that override it. A bare JID in a list
matches every resource of it; a full JID matches only itself. A JID in both lists is not
archived: ``never`` wins, the choice that keeps the user's wish for privacy.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from salon.errors import StanzaError, StanzaErrorCondition
from salon.jid import JID, parse_jid
from salon.namespaces import NS_MAM
from salon.xml.element import Element

__all__ = ["DEFAULTS", "Prefs", "decide", "dumps", "loads", "parse_prefs", "prefs_element"]

DEFAULTS = ("always", "never", "roster")
MAX_LIST = 1000


@dataclass(frozen=True, slots=True)
class Prefs:
    default: str = "always"
    always: frozenset[str] = frozenset()
    never: frozenset[str] = frozenset()


def decide(prefs: Prefs, peer: JID, in_roster: bool | None) -> bool | None:
    """Whether a message with ``peer`` is archived; None when the default is ``roster``
    and ``in_roster`` was not given (the caller looks the contact up and asks again)."""
    full, bare = str(peer), str(peer.bare)
    if full in prefs.never or bare in prefs.never:
        return False
    if full in prefs.always or bare in prefs.always:
        return True
    if prefs.default == "roster":
        return in_roster
    return prefs.default == "always"


def parse_prefs(element: Element) -> Prefs:
    """Read a ``<prefs/>`` set; bad-request for an unknown default, jid-malformed for an
    invalid JID."""
    default = element.get("default")
    if default not in DEFAULTS:
        raise StanzaError(
            StanzaErrorCondition.BAD_REQUEST, "default must be always, never or roster"
        )
    lists: dict[str, frozenset[str]] = {}
    for name in ("always", "never"):
        jids: set[str] = set()
        holder = element.find(name, NS_MAM)
        for jid_el in [] if holder is None else holder.find_all("jid", NS_MAM):
            jid = parse_jid(jid_el.text.strip())
            if jid is None:
                raise StanzaError(StanzaErrorCondition.JID_MALFORMED, f"invalid JID in <{name}/>")
            jids.add(str(jid))
        if len(jids) > MAX_LIST:
            raise StanzaError(
                StanzaErrorCondition.NOT_ACCEPTABLE, f"at most {MAX_LIST} JIDs per list"
            )
        lists[name] = frozenset(jids)
    return Prefs(default, lists["always"], lists["never"])


def prefs_element(prefs: Prefs) -> Element:
    prefs_el = Element("prefs", NS_MAM, {"default": prefs.default})
    for name, jids in (("always", prefs.always), ("never", prefs.never)):
        holder = prefs_el.add(name)
        for jid in sorted(jids):
            holder.add("jid", text=jid)
    return prefs_el


def dumps(prefs: Prefs) -> str:
    return json.dumps(
        {"default": prefs.default, "always": sorted(prefs.always), "never": sorted(prefs.never)}
    )


def loads(text: str) -> Prefs:
    data = json.loads(text)
    return Prefs(data["default"], frozenset(data["always"]), frozenset(data["never"]))
