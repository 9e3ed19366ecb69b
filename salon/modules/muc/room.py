"""One chat room (XEP-0045), sans-IO: its state, and what each request makes it send.

Every operation takes the sender's real JID and the request, changes the room, and returns
the stanzas to deliver as ``(real JID, stanza)`` pairs with ``from`` and ``to`` set; or it
raises the ``StanzaError`` XEP-0045 names. Time comes in as an argument. The module around
it (``salon.modules.muc.service``) routes the stanzas and keeps persistent rooms in storage.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import TypeVar

from salon.errors import StanzaError, StanzaErrorCondition
from salon.jid import JID
from salon.modules.muc import nick as nicks
from salon.modules.muc.config import RoomConfig, parse_config_form
from salon.modules.muc.history import History, HistoryRequest
from salon.modules.muc.rules import (
    RANK,
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
from salon.namespaces import (
    NS_CLIENT,
    NS_DATA_FORMS,
    NS_MUC,
    NS_MUC_ADMIN,
    NS_MUC_USER,
    NS_OCCUPANT_ID,
    NS_SID,
)
from salon.xml.broadcast import Broadcast
from salon.xml.element import Element

_E = TypeVar("_E", Role, Affiliation)

__all__ = ["Delivery", "Limits", "Occupant", "Room", "TokenBucket"]

Delivery = tuple[JID, Element]
"""A stanza for a real JID, ``from`` and ``to`` already set."""

# Status codes (§15.6.2)
S_NON_ANONYMOUS = "100"
S_AFFILIATION_CHANGED = "101"
S_CONFIG_CHANGED = "104"
S_SELF = "110"
S_LOGGING = "170"
S_NOW_NON_ANONYMOUS = "172"
S_NOW_SEMI_ANONYMOUS = "173"
S_CREATED = "201"
S_NICK_MODIFIED = "210"
S_BANNED = "301"
S_NEW_NICK = "303"
S_KICKED = "307"
S_AFFILIATION_REMOVED = "321"
S_MEMBERS_ONLY = "322"
S_SHUTDOWN = "332"

_STRIP = ((NS_MUC, "x"), (NS_MUC_USER, "x"), (NS_OCCUPANT_ID, "occupant-id"))


@dataclass(frozen=True, slots=True)
class Limits:
    """What the service allows every room (module options)."""

    max_users: int = 200
    max_history: int = 50
    max_nick_length: int = 64
    max_subject_length: int = 1024
    message_rate: float = 5.0  # groupchat messages per second per occupant, sustained
    message_burst: int = 10
    occupant_id_secret: bytes = b""


class TokenBucket:
    """``rate`` tokens a second up to ``burst``; each message takes one."""

    __slots__ = ("burst", "last", "rate", "tokens")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.last = now

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = max(self.last, now)
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


@dataclass(slots=True)
class Occupant:
    nick: str
    bare: JID
    role: Role
    occupant_id: str
    bucket: TokenBucket
    sessions: dict[JID, Element] = field(default_factory=dict)  # full JID -> its presence

    @property
    def presence(self) -> Element:
        """The presence of the session that spoke last."""
        return next(reversed(self.sessions.values()))

    @property
    def jid(self) -> JID:
        return next(reversed(self.sessions))


class Room:
    def __init__(
        self,
        jid: JID,
        limits: Limits,
        config: RoomConfig | None = None,
        *,
        affiliations: dict[JID, Affiliation] | None = None,
        subject: str = "",
        subject_nick: str = "",
        locked: bool = False,
    ) -> None:
        self.jid = jid
        self.limits = limits
        self.config = config or RoomConfig()
        self.affiliations: dict[JID, Affiliation] = dict(affiliations or {})
        self.subject = subject
        self.subject_nick = subject_nick
        self.locked = locked
        self.history = History(str(jid), min(self.config.history_length, limits.max_history))
        self.occupants: dict[str, Occupant] = {}  # nick key -> occupant
        self._by_session: dict[JID, Occupant] = {}
        self.dirty = False  # persistent state (config, affiliations, subject) changed
        self.destroyed = False

    # ------------------------------------------------------------------ lookups
    def affiliation(self, jid: JID) -> Affiliation:
        return self.affiliations.get(jid.bare, Affiliation.NONE)

    def occupant(self, real: JID) -> Occupant | None:
        return self._by_session.get(real)

    def by_nick(self, nick: str) -> Occupant | None:
        return self.occupants.get(nicks.key(nick))

    def __len__(self) -> int:
        return len(self.occupants)

    @property
    def is_empty(self) -> bool:
        return not self.occupants

    def sessions(self) -> Iterator[tuple[Occupant, JID]]:
        for occ in self.occupants.values():
            for session in occ.sessions:
                yield occ, session

    def occupant_jid(self, nick: str) -> JID:
        return JID(self.jid.local, self.jid.domain, nick)

    def _occupant_id(self, bare: JID) -> str:
        digest = hashlib.sha256(
            self.limits.occupant_id_secret + f"\0{self.jid}\0{bare}".encode()
        ).digest()
        return base64.urlsafe_b64encode(digest[:18]).decode()

    # ------------------------------------------------------------------ stanzas
    def _presence(
        self,
        occ: Occupant,
        to: JID,
        viewer: Role,
        *,
        statuses: Iterable[str] = (),
        unavailable: bool = False,
        source: Element | None = None,
        item_extra: Iterable[Element] = (),
        x_extra: Iterable[Element] = (),
        nick: str | None = None,
        affiliation: Affiliation | None = None,
        role: Role | None = None,
    ) -> Element:
        """The presence of ``occ`` as ``to`` sees it (§7.2.3): the client's own presence
        with the room's ``<x/>`` (affiliation, role, real JID if ``viewer`` may see it,
        status codes) and the occupant id."""
        pres = Element("presence", NS_CLIENT)
        src = source if source is not None else occ.presence
        for child in src.children:
            if isinstance(child, Element) and (child.ns, child.tag) in _STRIP:
                continue
            if unavailable and isinstance(child, Element) and child.tag != "status":
                continue
            pres.append(child)
        if unavailable:
            pres.set("type", "unavailable")
        pres.set("from", str(self.occupant_jid(nick or occ.nick)))
        pres.set("to", str(to))
        x = pres.add("x", NS_MUC_USER)
        aff = affiliation or self.affiliation(occ.bare)
        attrs = {"affiliation": str(aff), "role": str(role or occ.role)}
        is_self = to in occ.sessions
        if is_self or may_see_jids(self.config, viewer):
            attrs["jid"] = str(to if is_self else occ.jid)
        item = x.add("item", attrs=attrs)
        for extra in item_extra:
            item.append(extra)
        for extra in x_extra:
            x.append(extra)
        for code in statuses:
            x.add("status", attrs={"code": code})
        pres.add("occupant-id", NS_OCCUPANT_ID, {"id": occ.occupant_id})
        return pres

    def _broadcast_presence(
        self,
        occ: Occupant,
        *,
        self_statuses: Iterable[str] = (),
        statuses: Iterable[str] = (),
        skip: JID | None = None,
        **kwargs: object,
    ) -> list[Delivery]:
        """``occ``'s presence to every session in the room (its own with 110)."""
        out: list[Delivery] = []
        own = [S_SELF, *self_statuses, *statuses]
        others: list[tuple[Occupant, JID]] = []
        for viewer, session in self.sessions():
            if session == skip:
                continue
            if viewer is occ:
                stanza = self._presence(occ, session, viewer.role, statuses=own, **kwargs)  # type: ignore[arg-type]
                out.append((session, stanza))
            else:
                others.append((viewer, session))
        out += self._to_others(occ, others, statuses=list(statuses), **kwargs)
        return out

    def _to_others(
        self, occ: Occupant, viewers: Iterable[tuple[Occupant, JID]], **kwargs: object
    ) -> list[Delivery]:
        """``occ``'s presence to other occupants' sessions. It differs only by whether the
        viewer may see real JIDs: one stanza per kind of viewer, serialized once."""
        shared: dict[bool, Broadcast] = {}
        out: list[Delivery] = []
        for viewer, session in viewers:
            sees = may_see_jids(self.config, viewer.role)
            broadcast = shared.get(sees)
            if broadcast is None:
                stanza = self._presence(occ, session, viewer.role, **kwargs)  # type: ignore[arg-type]
                broadcast = shared[sees] = Broadcast(stanza)
            out.append((session, broadcast.to(str(session))))
        return out

    def _to_all(self, stanza: Element) -> list[Delivery]:
        """``stanza`` to every session in the room; the copies are serialized once."""
        shared = Broadcast(stanza)
        return [(session, shared.to(str(session))) for _occ, session in self.sessions()]

    def _status_message(self, *codes: str) -> list[Delivery]:
        message = Element("message", NS_CLIENT, {"type": "groupchat", "from": str(self.jid)})
        x = message.add("x", NS_MUC_USER)
        for code in codes:
            x.add("status", attrs={"code": code})
        return self._to_all(message)

    def subject_message(self, to: JID) -> Element:
        sender = self.occupant_jid(self.subject_nick) if self.subject_nick else self.jid
        message = Element("message", NS_CLIENT, {"type": "groupchat"})
        message.set("from", str(sender))
        message.set("to", str(to))
        message.add("subject", text=self.subject)
        return message

    # ------------------------------------------------------------------ presence
    def join(
        self,
        real: JID,
        requested_nick: str,
        stanza: Element,
        now: float,
        *,
        created: bool = False,
    ) -> list[Delivery]:
        """Enter the room (§7.2): the checks in the order of §7.2, then the presence of the
        others, the occupant's own presence, the history and the subject."""
        nick = nicks.enforce(requested_nick, self.limits.max_nick_length)
        aff = self.affiliation(real)
        x = stanza.find("x", NS_MUC)
        if self.locked and aff is not Affiliation.OWNER:
            raise StanzaError(StanzaErrorCondition.ITEM_NOT_FOUND, "the room is locked")
        if aff is Affiliation.OUTCAST:
            raise StanzaError(StanzaErrorCondition.FORBIDDEN, "you are banned from this room")
        if self.config.members_only and RANK[aff] < RANK[Affiliation.MEMBER]:
            raise StanzaError(StanzaErrorCondition.REGISTRATION_REQUIRED, "members only")
        if self.config.password:
            given = x.find_text("password", NS_MUC) if x is not None else None
            if given != self.config.password:
                raise StanzaError(StanzaErrorCondition.NOT_AUTHORIZED, "a password is required")
        existing = self.by_nick(nick)
        if existing is not None and existing.bare != real.bare:
            raise StanzaError(StanzaErrorCondition.CONFLICT, "that nickname is taken")
        if existing is None:
            cap = self.limits.max_users
            if self.config.max_users:
                cap = min(cap, self.config.max_users)
            if len(self.occupants) >= cap and aff not in (Affiliation.ADMIN, Affiliation.OWNER):
                raise StanzaError(StanzaErrorCondition.SERVICE_UNAVAILABLE, "the room is full")
        presence = stanza.shallow_copy()
        out: list[Delivery] = []
        if existing is not None:  # another session of the same user, same nick
            occ = existing
            occ.sessions[real] = presence
        else:
            occ = Occupant(
                nick,
                real.bare,
                default_role(aff, self.config),
                self._occupant_id(real.bare),
                TokenBucket(self.limits.message_rate, self.limits.message_burst, now),
                {real: presence},
            )
            self.occupants[nicks.key(nick)] = occ
        self._by_session[real] = occ
        for other in self.occupants.values():
            if other is not occ:
                out.append((real, self._presence(other, real, occ.role)))
        own: list[str] = []
        if self.config.non_anonymous:
            own.append(S_NON_ANONYMOUS)
        if created:
            own.append(S_CREATED)
        if nick != requested_nick:
            own.append(S_NICK_MODIFIED)
        others: list[tuple[Occupant, JID]] = []
        for viewer, session in self.sessions():
            if session == real:
                continue
            if viewer is occ:  # the user's other sessions, already in the room
                out.append((session, self._presence(occ, session, viewer.role, statuses=[S_SELF])))
            else:
                others.append((viewer, session))
        out += self._to_others(occ, others)
        out.append((real, self._presence(occ, real, occ.role, statuses=[S_SELF, *own])))
        request = HistoryRequest.parse(x.find("history", NS_MUC) if x is not None else None)
        for message in self.history.select(request, now):
            copy = message.shallow_copy()
            copy.set("to", str(real))
            out.append((real, copy))
        out.append((real, self.subject_message(real)))  # §7.2.15: even when empty
        return out

    def presence(self, real: JID, nick: str, stanza: Element, now: float) -> list[Delivery]:
        """Available presence from an occupant: a status change or a nick change (§7.6)."""
        occ = self._by_session[real]
        if nicks.key(nick) == nicks.key(occ.nick) and nick == occ.nick:
            occ.sessions[real] = stanza.shallow_copy()
            occ.sessions[real] = occ.sessions.pop(real)  # most recent last
            return self._broadcast_presence(occ)
        return self.change_nick(real, nick, stanza)

    def change_nick(self, real: JID, requested: str, stanza: Element) -> list[Delivery]:
        """§7.6: unavailable with 303 from the old nick, then presence from the new one."""
        occ = self._by_session[real]
        new = nicks.enforce(requested, self.limits.max_nick_length)
        holder = self.by_nick(new)
        if holder is not None and holder is not occ:
            raise StanzaError(StanzaErrorCondition.CONFLICT, "that nickname is taken")
        out = self._broadcast_presence(
            occ,
            statuses=[S_NEW_NICK],
            unavailable=True,
            item_extra=[],
            source=Element("presence", NS_CLIENT),
        )
        for _session, pres in out:  # §7.6.3: the new nick in the item
            item = pres.find("x", NS_MUC_USER).find("item")  # type: ignore[union-attr]
            item.set("nick", new)  # type: ignore[union-attr]
        del self.occupants[nicks.key(occ.nick)]
        occ.nick = new
        self.occupants[nicks.key(new)] = occ
        occ.sessions[real] = stanza.shallow_copy()
        occ.sessions[real] = occ.sessions.pop(real)
        codes = [S_NICK_MODIFIED] if new != requested else []
        out += self._broadcast_presence(occ, self_statuses=codes)
        return out

    def leave(self, real: JID, stanza: Element | None) -> list[Delivery]:
        """§7.14: unavailable presence from an occupant (or its session went away)."""
        occ = self._by_session.pop(real, None)
        if occ is None:
            return []
        source = stanza if stanza is not None else Element("presence", NS_CLIENT)
        last = len(occ.sessions) == 1
        role = Role.NONE if last else occ.role
        own = self._presence(
            occ, real, occ.role, statuses=[S_SELF], unavailable=True, source=source, role=role
        )
        out: list[Delivery] = [(real, own)]
        if not last:  # the user's other sessions stay in the room
            del occ.sessions[real]
            return out
        viewers = [(v, session) for v, session in self.sessions() if session != real]
        out += self._to_others(occ, viewers, unavailable=True, source=source, role=Role.NONE)
        del self.occupants[nicks.key(occ.nick)]
        return out

    def _remove(
        self,
        occ: Occupant,
        codes: list[str],
        *,
        actor: str | None = None,
        reason: str | None = None,
        affiliation: Affiliation | None = None,
    ) -> list[Delivery]:
        """Take ``occ`` out of the room, everyone told why (§8.2 kick, §9.1 ban, §9.4)."""
        extra: list[Element] = []
        if actor is not None:
            extra.append(Element("actor", NS_MUC_USER, {"nick": actor}))
        if reason:
            r = Element("reason", NS_MUC_USER)
            r.text = reason
            extra.append(r)
        out = self._broadcast_presence(
            occ,
            statuses=codes,
            unavailable=True,
            source=Element("presence", NS_CLIENT),
            item_extra=extra,
            role=Role.NONE,
            affiliation=affiliation,
        )
        for session in occ.sessions:
            self._by_session.pop(session, None)
        del self.occupants[nicks.key(occ.nick)]
        return out

    def shutdown(self) -> list[Delivery]:
        """The service stops: every occupant is taken out, each told with status 332
        (removed because the service is shutting down, XEP-0045 §15.6.2)."""
        out: list[Delivery] = []
        for occ in list(self.occupants.values()):
            out += self._remove(occ, [S_SHUTDOWN])
        return out

    # ------------------------------------------------------------------ messages
    def groupchat(
        self, real: JID, stanza: Element, now: float, stanza_id: str | None = None
    ) -> list[Delivery]:
        """§7.4 a message to all occupants; §8.1 a subject change."""
        return self._to_all(self.accept_groupchat(real, stanza, now, stanza_id))

    def accept_groupchat(
        self, real: JID, stanza: Element, now: float, stanza_id: str | None = None
    ) -> Element:
        """Check a groupchat message (§7.4, §8.1) and give the message the room broadcasts,
        without ``to``. A message with a body gets ``stanza_id`` as the room's XEP-0359
        stanza-id (any the sender claimed for the room is dropped) and goes into the history."""
        occ = self._by_session.get(real)
        if occ is None:
            raise StanzaError(StanzaErrorCondition.NOT_ACCEPTABLE, "you are not in the room")
        subject = stanza.find("subject")
        body = stanza.find("body")
        if occ.role is Role.VISITOR and (body is not None or subject is not None):
            raise StanzaError(StanzaErrorCondition.FORBIDDEN, "visitors have no voice here")
        if not occ.bucket.take(now):
            raise StanzaError(
                StanzaErrorCondition.RESOURCE_CONSTRAINT, "too many messages, slow down", "wait"
            )
        if subject is not None and body is None:
            if not can_change_subject(self.config, occ.role):
                raise StanzaError(StanzaErrorCondition.FORBIDDEN, "you may not change the subject")
            if len(subject.text) > self.limits.max_subject_length:
                raise StanzaError(
                    StanzaErrorCondition.POLICY_VIOLATION,
                    f"subjects are at most {self.limits.max_subject_length} characters",
                    "modify",
                )
            self.subject = subject.text
            self.subject_nick = occ.nick
            self.dirty = True
        room = str(self.jid)
        message = Element("message", NS_CLIENT, dict(stanza.attrs))
        for child in stanza.children:
            if isinstance(child, Element) and (
                (child.ns, child.tag) in _STRIP
                or (child.ns == NS_SID and child.tag == "stanza-id" and child.get("by") == room)
            ):
                continue
            message.append(child)
        message.set("from", str(self.occupant_jid(occ.nick)))
        message.set("to", None)
        message.add("occupant-id", NS_OCCUPANT_ID, {"id": occ.occupant_id})
        if body is not None:
            if stanza_id is not None:
                message.add("stanza-id", NS_SID, {"id": stanza_id, "by": room})
            self.history.add(message, now)
        return message

    def fan_out(self, message: Element) -> list[Delivery]:
        """``message`` (from the room, without ``to``) to every occupant's every session."""
        return self._to_all(message)

    def require_moderator(self, real: JID) -> Occupant:
        """The occupant ``real`` is, if it is a moderator; ``forbidden`` otherwise."""
        occ = self._by_session.get(real)
        if occ is None or occ.role is not Role.MODERATOR:
            raise StanzaError(StanzaErrorCondition.FORBIDDEN, "moderators only")
        return occ

    def private(self, real: JID, nick: str, stanza: Element) -> list[Delivery]:
        """§7.5: a private message to another occupant, marked with muc#user <x/>."""
        occ = self._by_session.get(real)
        if occ is None:
            raise StanzaError(StanzaErrorCondition.NOT_ACCEPTABLE, "you are not in the room")
        target = self.by_nick(nick)
        if target is None:
            raise StanzaError(StanzaErrorCondition.ITEM_NOT_FOUND, "no such occupant")
        if not can_send_pm(self.config, occ.role):
            raise StanzaError(StanzaErrorCondition.FORBIDDEN, "private messages are not allowed")
        message = Element("message", NS_CLIENT, dict(stanza.attrs))
        for child in stanza.children:
            if isinstance(child, Element) and (child.ns, child.tag) in _STRIP:
                continue
            message.append(child)
        message.set("from", str(self.occupant_jid(occ.nick)))
        message.add("x", NS_MUC_USER)
        message.add("occupant-id", NS_OCCUPANT_ID, {"id": occ.occupant_id})
        out: list[Delivery] = []
        for session in target.sessions:
            copy = message.shallow_copy()
            copy.set("to", str(session))
            out.append((session, copy))
        return out

    def invite(self, real: JID, x: Element, stanza: Element) -> list[Delivery]:
        """§7.8.2 mediated invitations; §7.8.2 declines (the invitee answers the room)."""
        out: list[Delivery] = []
        for decline in x.find_all("decline"):
            to = _jid_attr(decline, "to")
            message = Element("message", NS_CLIENT, {"from": str(self.jid), "to": str(to)})
            ux = message.add("x", NS_MUC_USER)
            forwarded = ux.add("decline", attrs={"from": str(real.bare)})
            reason = decline.find_text("reason")
            if reason:
                forwarded.add("reason", text=reason)
            out.append((to, message))
        invites = x.find_all("invite")
        if not invites:
            return out
        occ = self._by_session.get(real)
        if occ is None:
            raise StanzaError(StanzaErrorCondition.NOT_ACCEPTABLE, "you are not in the room")
        aff = self.affiliation(real)
        if not can_invite(self.config, aff, occ.role):
            raise StanzaError(StanzaErrorCondition.FORBIDDEN, "you may not invite to this room")
        for invite in invites:
            to = _jid_attr(invite, "to")
            if self.config.members_only and self.affiliation(to) is Affiliation.NONE:
                self.affiliations[to.bare] = Affiliation.MEMBER  # §7.8: invitee becomes member
                self.dirty = True
            message = Element("message", NS_CLIENT, {"from": str(self.jid), "to": str(to)})
            if stanza.get("id"):
                message.set("id", stanza.get("id"))
            ux = message.add("x", NS_MUC_USER)
            forwarded = ux.add("invite", attrs={"from": str(real)})
            reason = invite.find_text("reason")
            if reason:
                forwarded.add("reason", text=reason)
            if self.config.password:
                ux.add("password", text=self.config.password)
            out.append((to, message))
        return out

    # ------------------------------------------------------------------ muc#admin
    def admin_get(self, real: JID, item: Element) -> Element:
        """§9.5, §10.5, §10.8, §8.5: a list by affiliation or by role."""
        actor_aff = self.affiliation(real)
        query = Element("query", NS_MUC_ADMIN)
        if item.get("affiliation") is not None:
            wanted = _enum(Affiliation, item.get("affiliation"))
            if actor_aff not in (Affiliation.ADMIN, Affiliation.OWNER):
                raise StanzaError(StanzaErrorCondition.FORBIDDEN, "admins and owners only")
            for jid, aff in sorted(self.affiliations.items(), key=lambda kv: str(kv[0])):
                if aff is wanted:
                    query.add("item", attrs={"affiliation": str(aff), "jid": str(jid)})
            return query
        if item.get("role") is not None:
            wanted_role = _enum(Role, item.get("role"))
            occ = self._by_session.get(real)
            if occ is None or occ.role is not Role.MODERATOR:
                raise StanzaError(StanzaErrorCondition.FORBIDDEN, "moderators only")
            for other in self.occupants.values():
                if other.role is wanted_role:
                    attrs = {
                        "affiliation": str(self.affiliation(other.bare)),
                        "role": str(other.role),
                        "nick": other.nick,
                        "jid": str(other.jid),
                    }
                    query.add("item", attrs=attrs)
            return query
        raise StanzaError(StanzaErrorCondition.BAD_REQUEST, "an item needs affiliation or role")

    def admin_set(self, real: JID, items: list[Element]) -> list[Delivery]:
        """§8-§10: role changes by nick, affiliation changes by JID; all or none."""
        actor = self._by_session.get(real)
        actor_aff = self.affiliation(real)
        actor_role = actor.role if actor is not None else Role.NONE
        roles: list[tuple[Occupant, Role, str]] = []
        affs: dict[JID, tuple[Affiliation, str]] = {}
        for item in items:
            reason = item.find_text("reason") or ""
            if item.get("role") is not None and item.get("nick") is not None:
                new_role = _enum(Role, item.get("role"))
                target = self.by_nick(item.get("nick") or "")
                if target is None:
                    raise StanzaError(StanzaErrorCondition.ITEM_NOT_FOUND, "no such occupant")
                condition = set_role_error(
                    actor_role, actor_aff, self.affiliation(target.bare), target.role, new_role
                )
                if condition is not None:
                    raise StanzaError(condition)
                roles.append((target, new_role, reason))
            elif item.get("affiliation") is not None and item.get("jid") is not None:
                new_aff = _enum(Affiliation, item.get("affiliation"))
                jid = _jid_attr(item, "jid").bare
                condition = set_affiliation_error(actor_aff, self.affiliation(jid), new_aff)
                if condition is not None:
                    raise StanzaError(condition)
                affs[jid] = (new_aff, reason)
            else:
                raise StanzaError(StanzaErrorCondition.BAD_REQUEST, "nick+role or jid+affiliation")
        if affs:
            owners = {j for j, a in self.affiliations.items() if a is Affiliation.OWNER}
            for jid, (aff, _) in affs.items():
                if aff is Affiliation.OWNER:
                    owners.add(jid)
                else:
                    owners.discard(jid)
            if not owners:
                raise StanzaError(StanzaErrorCondition.CONFLICT, "a room needs an owner")
        actor_nick = actor.nick if actor is not None else None
        out: list[Delivery] = []
        for target, new_role, reason in roles:
            if target.nick not in (o.nick for o in self.occupants.values()):
                continue
            if new_role is Role.NONE:
                out += self._remove(target, [S_KICKED], actor=actor_nick, reason=reason)
            else:
                target.role = new_role
                out += self._broadcast_presence(target, item_extra=_reason(reason))
        for jid, (aff, reason) in affs.items():
            out += self._set_affiliation(jid, aff, reason, actor_nick)
        return out

    def _set_affiliation(
        self, jid: JID, aff: Affiliation, reason: str, actor: str | None
    ) -> list[Delivery]:
        if aff is Affiliation.NONE:
            self.affiliations.pop(jid, None)
        else:
            self.affiliations[jid] = aff
        self.dirty = True
        out: list[Delivery] = []
        for occ in [o for o in self.occupants.values() if o.bare == jid]:
            if aff is Affiliation.OUTCAST:
                out += self._remove(
                    occ, [S_BANNED], actor=actor, reason=reason, affiliation=Affiliation.OUTCAST
                )
            elif self.config.members_only and aff is Affiliation.NONE:
                out += self._remove(occ, [S_AFFILIATION_REMOVED], actor=actor, reason=reason)
            else:
                occ.role = default_role(aff, self.config)
                out += self._broadcast_presence(occ, item_extra=_reason(reason))
        return out

    # ------------------------------------------------------------------ muc#owner
    def require_owner(self, real: JID) -> None:
        if self.affiliation(real) is not Affiliation.OWNER:
            raise StanzaError(StanzaErrorCondition.FORBIDDEN, "owners only")

    def configure(self, real: JID, form: Element) -> list[Delivery]:
        """§10.2: an owner submits the configuration form (an empty one: instant room)."""
        self.require_owner(real)
        if form.get("type") == "cancel":
            return []
        if form.get("type") != "submit":
            raise StanzaError(StanzaErrorCondition.BAD_REQUEST, "submit or cancel the form")
        old = self.config
        new = parse_config_form(form, old, self.limits.max_history, self.limits.max_users)
        return self.apply_config(new)

    def apply_config(self, new: RoomConfig) -> list[Delivery]:
        old = self.config
        self.config = new
        self.history.resize(min(new.history_length, self.limits.max_history))
        was_locked, self.locked = self.locked, False
        self.dirty = True
        out: list[Delivery] = []
        if was_locked:
            return out
        codes: list[str] = []
        if new.non_anonymous != old.non_anonymous:
            codes.append(S_NOW_NON_ANONYMOUS if new.non_anonymous else S_NOW_SEMI_ANONYMOUS)
        if replace(new, whois=old.whois) != old:
            codes.append(S_CONFIG_CHANGED)
        if new.members_only and not old.members_only:
            for occ in list(self.occupants.values()):
                if RANK[self.affiliation(occ.bare)] < RANK[Affiliation.MEMBER]:
                    out += self._remove(occ, [S_MEMBERS_ONLY])
        if new.moderated != old.moderated:
            for occ in self.occupants.values():
                role = default_role(self.affiliation(occ.bare), new)
                if role is not occ.role and occ.role is not Role.MODERATOR:
                    occ.role = role
                    out += self._broadcast_presence(occ)
        if codes:
            out += self._status_message(*codes)
        return out

    def destroy(self, reason: str, alternate: str | None, password: str | None) -> list[Delivery]:
        """§10.9: every occupant leaves with the destroy notice."""
        destroy = Element("destroy", NS_MUC_USER)
        if alternate:
            destroy.set("jid", alternate)
        if reason:
            destroy.add("reason", text=reason)
        if password:
            destroy.add("password", text=password)
        out: list[Delivery] = []
        for occ, session in list(self.sessions()):
            pres = self._presence(
                occ,
                session,
                occ.role,
                unavailable=True,
                source=Element("presence", NS_CLIENT),
                x_extra=[destroy],
                affiliation=Affiliation.NONE,
                role=Role.NONE,
            )
            item = pres.find("x", NS_MUC_USER).find("item")  # type: ignore[union-attr]
            item.set("jid", None)  # type: ignore[union-attr]
            out.append((session, pres))
        self.occupants.clear()
        self._by_session.clear()
        self.destroyed = True
        return out

    # ------------------------------------------------------------------ self-ping
    def is_occupant_jid(self, real: JID, nick: str) -> bool:
        """XEP-0410: is ``room/nick`` the occupant JID of ``real``?"""
        occ = self._by_session.get(real)
        return occ is not None and nicks.key(occ.nick) == nicks.key(nick)

    def form_values(self) -> dict[str, list[str]]:
        """The muc#roomconfig form as var -> values (for tests and diagnostics)."""
        from salon.modules.muc.config import config_form

        form = config_form(self.config, self.limits.max_history, self.limits.max_users)
        return {
            f.get("var") or "": [v.text for v in f.find_all("value", NS_DATA_FORMS)]
            for f in form.find_all("field", NS_DATA_FORMS)
        }


def _jid_attr(element: Element, name: str) -> JID:
    from salon.jid import parse_jid

    jid = parse_jid(element.get(name) or "")
    if jid is None:
        raise StanzaError(StanzaErrorCondition.JID_MALFORMED, f"bad '{name}' JID")
    return jid


def _enum(kind: type[_E], value: str | None) -> _E:
    try:
        return kind(value or "")
    except ValueError:
        raise StanzaError(StanzaErrorCondition.BAD_REQUEST, f"unknown {value!r}") from None


def _reason(reason: str) -> list[Element]:
    if not reason:
        return []
    element = Element("reason", NS_MUC_USER)
    element.text = reason
    return [element]
