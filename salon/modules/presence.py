"""Presence for local accounts (RFC 6121 §3, §4): availability and priority, broadcast to the
user's own resources and to subscribed contacts, probes, directed presence, and presence
subscriptions run through the rules of :mod:`salon.modules._subscription`.

Everything addressed to a contact goes through the router: a contact may live on another
server. Reading a local user's own roster is fine; a contact's roster is never read. Rosters
are read and written through the host's roster cache (:mod:`salon.modules._roster_cache`):
broadcasts and probes for online users read no database, and a probe to a user without a
session reads one roster item.

Choices, with the text they follow:

* Initial presence (§4.2.2) goes to the user's available resources, to every contact with a
  ``from``/``both`` subscription, and a probe goes from the user's bare JID to every contact
  with ``to``/``both`` (§4.3.1). The new resource also gets the presence of the user's other
  available resources: a user is subscribed to its own presence.
* Each resource gets each presence once per change (§4.2 and §4.3 intend no more). A probe to a
  remote contact goes from the bare JID, and the answers reach every available resource as
  §8.5.2.1.1 says; a probe to a local contact goes from the new resource's full JID, so its
  answers reach that resource alone and not the user's other resources, which already have
  them. Every local available presence is numbered in order: a probe brings the contact's
  presences numbered up to the moment the asking resource became available, broadcasts bring
  the later ones, so a login that crosses a contact's broadcast gets the presence once.
* A probe (§4.3.2) from an entity without ``from``/``both``, or for an account that does not
  exist (§8.5.1), is answered ``unsubscribed``. A subscribed prober gets the last presence of
  each available resource; when there is none, the last unavailable presence this server saw,
  if it still remembers one (a bounded memory), else nothing.
* Unavailable presence (§4.5), explicit or because the connection ended, goes to the user's
  other resources, to ``from``/``both`` contacts when the resource was available, and to every
  entity it sent directed presence to (§4.6) that the broadcast does not already reach.
* Inbound presence (§8.5.2.1, §8.5.3): to the bare JID, every available resource; to a full
  JID, that resource, silently dropped when it is not connected. Subscription stanzas to a
  full JID count as sent to the bare JID (§3.1.3).
* A subscription request waiting for the user is stored, delivered to every available
  resource, and delivered again to each resource that becomes available until the user
  answers (§3.1.3). At most ``max_pending`` requests wait per user; one more is refused with
  ``resource-constraint``. A request to an account that does not exist is answered
  ``unsubscribed`` (§8.5.1); other subscription stanzas to one are dropped.
* Directed presence to at most ``max_directed`` entities is remembered per resource; one more
  is refused with ``resource-constraint``, since its unavailable could not be sent.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from collections.abc import Coroutine
from typing import Any

from pydantic import Field

from salon.core.events import (
    AvailablePresence,
    PresenceBroadcast,
    PresenceToBare,
    PresenceToFull,
    PreStanza,
    ResourceUnbound,
    RosterChanged,
    RoutedStanza,
)
from salon.core.hooks import HANDLED, Priority
from salon.core.items import STREAM_FEATURE
from salon.core.module import Module, ModuleOptions, Spec
from salon.core.roster_cache import RosterCache, RosterLimit
from salon.core.session import C2SSession, SessionSlot
from salon.errors import StanzaError, StanzaErrorCondition
from salon.jid import JID, parse_jid
from salon.modules._subscription import SUBSCRIPTION_TYPES, Outcome, SubState, inbound, outbound
from salon.namespaces import NS_CLIENT, NS_PRE_APPROVAL
from salon.storage.interfaces import PendingSubscription, Roster, RosterItem
from salon.xml.broadcast import Broadcast
from salon.xml.element import Element
from salon.xml.fragment import parse_element
from salon.xml.serializer import serialize_str

_FROM = ("from", "both")  # the contact receives the user's presence
_TO = ("to", "both")  # the user receives the contact's presence

# Every available presence a local resource sends is one change, numbered in the order the
# changes happen, across all hosts of the process. A resource remembers the number of its
# current presence and the number at which it became available: the local contacts'
# presences numbered up to then reach it as probe answers, the later ones as broadcasts.
_changes = itertools.count(1)
CHANGE = SessionSlot[int]("presence.change")
"""The number of the session's current available presence."""
SINCE = SessionSlot[int]("presence.since")
"""The number of the change that made the session available."""
_broadcasts: dict[int, int] = {}
"""id() of a broadcast copy being routed -> the number of the change it carries."""
SHARED_PRESENCES = 4096
"""Resources whose current presence is kept serialized for the copies still to come (probe
answers): in a login storm each is asked for by many contacts within seconds."""


def parse_priority(stanza: Element) -> int:
    """RFC 6121 §4.7.2.3: an integer in -128..127; absent means 0."""
    text = stanza.find_text("priority", NS_CLIENT)
    if text is None:
        return 0
    try:
        value = int(text.strip())
    except ValueError:
        raise StanzaError(StanzaErrorCondition.BAD_REQUEST, "priority is not a number") from None
    if not -128 <= value <= 127:
        raise StanzaError(StanzaErrorCondition.BAD_REQUEST, "priority out of range")
    return value


def contacts_both_ways(roster: Roster, user: JID) -> tuple[list[JID], list[JID]]:
    """In one pass: the contacts that receive the user's presence (subscription "from" or
    "both") and those whose presence the user receives ("to" or "both"); the user itself
    left out."""
    receivers: list[JID] = []
    senders: list[JID] = []
    for item in roster.items.values():
        subscription = item.subscription
        if subscription == "none":
            continue
        jid = parse_jid(item.jid)
        if jid is None or jid == user:
            continue
        if subscription in _FROM:
            receivers.append(jid)
        if subscription in _TO:
            senders.append(jid)
    return receivers, senders


def _presence(stype: str, sender: JID, to: JID) -> Element:
    return Element("presence", NS_CLIENT, {"type": stype, "from": str(sender), "to": str(to)})


class PresenceOptions(ModuleOptions):
    max_pending: int = Field(
        1000, ge=1, description="Most subscription requests waiting for one user."
    )
    max_directed: int = Field(
        1000, ge=1, description="Most entities one resource may send directed presence to."
    )
    remembered_unavailable: int = Field(
        10_000, ge=0, description="Accounts whose last unavailable presence answers probes."
    )


class Presence(Module[PresenceOptions]):
    name = "presence"
    specs = (
        Spec("RFC 6121 §3", "", "presence subscriptions, with pre-approval (§3.4)"),
        Spec("RFC 6121 §4", "", "presence broadcast, probes, directed presence"),
    )

    def setup(self) -> None:
        self.opts = self.options
        self.last_unavailable: OrderedDict[JID, Element] = OrderedDict()
        # Current presences of resources, each serialized once for all its copies; bounded
        # (the least recently used go first), and checked against the session's presence.
        self.shared: OrderedDict[JID, Broadcast] = OrderedDict()
        # read and written through it: online users cost no query; one writer per user's
        # roster at a time through its locks (the roster module takes the same ones)
        self.rosters = self.require(RosterCache)
        self.locks = self.rosters.locks
        self.add_item(STREAM_FEATURE, Element("sub", NS_PRE_APPROVAL))
        self.hook(PresenceBroadcast, self.broadcast, Priority.DELIVER)
        self.hook(PreStanza, self.outbound, Priority.DELIVER)
        self.hook(PresenceToFull, self.inbound, Priority.DELIVER)
        self.hook(PresenceToBare, self.inbound, Priority.DELIVER)
        self.hook(AvailablePresence, self.redeliver_requests)
        self.hook(ResourceUnbound, self.session_ended)

    # ------------------------------------------------------------------ broadcast
    async def broadcast(self, event: PresenceBroadcast) -> bool:
        stype = event.stanza.get("type")
        if stype is None:
            await self._available(event.origin, event.stanza)
        elif stype == "unavailable":
            await self._unavailable(event.origin, event.stanza)
        return HANDLED  # any other type needs an addressee: without one there is nothing to do

    async def _available(self, session: C2SSession, stanza: Element) -> None:
        session.priority = parse_priority(stanza)
        is_initial = not session.is_available
        change = next(_changes)
        # From here to the first await, nothing else runs: the user's other resources get
        # this presence, and a new resource theirs, each exactly once.
        session.is_available = True
        session.presence = stanza
        session.set(CHANGE, change)
        if is_initial:
            session.set(SINCE, change)
        session.changed()  # a cluster's other nodes learn it
        user = session.jid.bare
        self.last_unavailable.pop(user, None)
        mine = self.sessions.available(user)
        for other in mine:
            other.send(stanza)
        for other in mine if is_initial else ():
            if other is not session and other.presence is not None:
                copy = other.presence.shallow_copy()
                copy.set("to", str(session.jid))
                session.send(copy)
        shared = self._share(session.jid, stanza)
        receivers, senders = contacts_both_ways(await self._roster(user), user)
        async with self.host.fanout.turn() as turn:
            for contact in receivers:
                await turn.step()
                await self._route_copy(shared, session, contact, change)
            if not is_initial:
                return
            for contact in senders:
                # §4.3.1: a probe goes from the bare JID, and its answers reach every
                # available resource. A local contact is asked on behalf of the new resource
                # alone: the user's other resources already have the contact's presence.
                if self.host.is_local(contact.domain):
                    if self._nothing_to_answer(contact, user, session.get(SINCE)):
                        continue
                    prober = session.jid
                else:
                    prober = user
                await turn.step()
                probe = _presence("probe", prober, contact)
                await self.router.route(probe, session, prober, contact)
        await self.host.hooks.fire(AvailablePresence(session))

    async def _unavailable(self, session: C2SSession, stanza: Element) -> None:
        was_available = session.is_available
        session.is_available = False
        session.presence = None
        directed, session.directed = session.directed or set(), None
        session.changed()
        user = session.jid.bare
        for other in self.sessions.resources(user):
            if other.is_available or other is session:
                other.send(stanza)
        subscribers = contacts_both_ways(await self._roster(user), user)[0] if was_available else []
        reached = set(subscribers)
        others = [jid for jid in directed if jid not in reached and jid.bare not in reached]
        self.shared.pop(session.jid, None)
        shared = Broadcast(stanza)
        async with self.host.fanout.turn() as turn:
            for jid in subscribers + others:
                await turn.step()
                await self._route_copy(shared, session, jid)
        if self.opts.remembered_unavailable and not self.sessions.available(user):
            last = stanza.shallow_copy()
            last.set("to", None)
            self.last_unavailable[user] = last
            self.last_unavailable.move_to_end(user)
            while len(self.last_unavailable) > self.opts.remembered_unavailable:
                self.last_unavailable.popitem(last=False)

    async def session_ended(self, event: ResourceUnbound) -> None:
        session = event.session
        if session.is_available or session.directed:
            unavailable = Element("presence", NS_CLIENT, {"type": "unavailable"})
            unavailable.set("from", str(session.jid))
            await self._unavailable(session, unavailable)

    def _nothing_to_answer(self, contact: JID, user: JID, since: int | None) -> bool:
        """Whether a probe of the local ``contact`` for a resource of ``user`` available
        since change ``since`` would bring nothing, so it need not go. Its roster (in memory)
        must have ``user`` subscribed: otherwise the answer is "unsubscribed". Then:

        * with no available resource and no remembered unavailable presence, the contact's
          server stays silent (§4.3.2); its broadcast brings its presence when it comes;
        * each available resource whose presence is newer than the asking resource
          (:data:`CHANGE` above ``since``) is left out of the answer (:meth:`_answer_probe`):
          its own broadcast brings it.

        In a login storm almost every probe is of the second kind: the contacts became
        available a moment after the user did, and their broadcasts are on the way."""
        roster = self.rosters.cached(contact)
        if roster is None or since is None:
            return False
        item = roster.items.get(str(user))
        if item is None or item.subscription not in _FROM:
            return False
        available = self.sessions.available(contact)
        if not available:
            return contact not in self.last_unavailable
        for other in available:
            change = other.get(CHANGE)
            if change is None or change <= since:
                return False  # an older presence (or one another node holds): ask
        return True

    def _share(self, resource: JID, presence: Element) -> Broadcast:
        """``presence``, the resource's current one, made ready for copies to many."""
        shared = self.shared.get(resource)
        if shared is not None and shared.stanza is presence:
            self.shared.move_to_end(resource)
            return shared
        shared = self.shared[resource] = Broadcast(presence)
        while len(self.shared) > SHARED_PRESENCES:
            self.shared.popitem(last=False)
        return shared

    async def _route_copy(
        self, shared: Broadcast, session: C2SSession, to: JID, change: int | None = None
    ) -> None:
        copy = shared.to(str(to))
        if change is None:
            await self.router.route(copy, session, session.jid, to)
            return
        key = id(copy)
        _broadcasts[key] = change
        try:
            await self.router.route(copy, session, session.jid, to)
        finally:
            _broadcasts.pop(key, None)

    # ------------------------------------------------------------------ from the user
    async def outbound(self, event: PreStanza) -> bool | None:
        """Presence a client addressed to someone: subscriptions, and directed presence."""
        stanza, to, session = event.stanza, event.to, event.origin
        if stanza.tag != "presence" or to is None:
            return None
        stype = stanza.get("type")
        if stype in SUBSCRIPTION_TYPES:
            await self._outbound_subscription(session, stanza, stype or "", to.bare)
            return HANDLED
        if to.bare == session.jid.bare:
            return None  # the user's own resources hear its unavailable anyway
        if stype is None:
            directed = session.directed if session.directed is not None else set()
            if to not in directed and len(directed) >= self.opts.max_directed:
                raise StanzaError(StanzaErrorCondition.RESOURCE_CONSTRAINT, "too many directed")
            directed.add(to)
            session.directed = directed
        elif stype == "unavailable" and session.directed:
            session.directed.discard(to)
        return None

    async def _outbound_subscription(
        self, session: C2SSession, stanza: Element, stype: str, contact: JID
    ) -> None:
        user = session.jid.bare
        async with self.locks.hold(user):
            item, pending = await self._state(user, contact)
            outcome = outbound(SubState.of(item, _has(pending, contact)), stype)
            if item is None and outcome.item_changed:
                await self._check_roster_room(user)
            await self._record(user, contact, item, outcome, None)
        if outcome.presence == "unavailable":
            await self._send_unavailable(user, contact)  # §3.2.2: before "unsubscribed"
        if outcome.forward:
            copy = stanza.shallow_copy()
            copy.set("from", str(user))  # §3: subscription stanzas come from the bare JID
            copy.set("to", str(contact))
            await self.router.route(copy, session, user, contact)
        if outcome.presence == "available":
            await self._send_current(user, contact)  # §3.1.5: after "subscribed"

    async def _check_roster_room(self, user: JID) -> None:
        limit = self.host.services.find(RosterLimit)
        if limit is not None:
            count = await self.rosters.count(user)
            if count >= limit.max_items:
                raise StanzaError(StanzaErrorCondition.NOT_ALLOWED, "the roster is full")

    # ------------------------------------------------------------------ to the user
    def inbound(self, event: RoutedStanza) -> bool | Coroutine[Any, Any, bool]:
        """Available and unavailable presence is delivered without a coroutine; a probe or a
        subscription stanza needs storage, so the bus awaits the work returned for it."""
        stanza, to = event.stanza, event.to
        stype = stanza.get("type")
        if stype in SUBSCRIPTION_TYPES:
            return _then_handled(self._inbound_subscription(event, stype or ""))
        if stype == "probe":
            return _then_handled(self._answer_probe(to.bare, event.sender))
        if to.resource is not None:
            session = self.sessions.get(to)
            if session is not None:
                session.send(stanza)
        elif stype in (None, "unavailable"):
            change = _broadcasts.get(id(stanza)) if stype is None else None
            for session in self.sessions.available(to):
                since = session.get(SINCE)
                if change is not None and since is not None and change <= since:
                    continue  # older than the resource: its probe brought it (_answer_probe)
                session.send(stanza)
        return HANDLED  # presence is never bounced for a missing resource (§8.5.3.2.2)

    async def _inbound_subscription(self, event: RoutedStanza, stype: str) -> None:
        user, contact = event.to.bare, event.sender.bare
        if not await self._exists(user):
            if stype == "subscribe":
                await self._reply(user, contact, "unsubscribed")
            return
        delivered = event.stanza.shallow_copy()
        delivered.set("from", str(contact))
        delivered.set("to", str(user))
        async with self.locks.hold(user):
            item, pending = await self._state(user, contact)
            outcome = inbound(SubState.of(item, _has(pending, contact)), stype)
            if outcome.store_pending and len(pending) >= self.opts.max_pending:
                raise StanzaError(StanzaErrorCondition.RESOURCE_CONSTRAINT, "too many requests")
            await self._record(user, contact, item, outcome, delivered)
        if outcome.presence == "unavailable":
            await self._send_unavailable(user, contact)  # §3.3.3
        if outcome.forward:
            for session in self.sessions.available(user):
                session.send(delivered)
        if outcome.reply is not None:
            await self._reply(user, contact, outcome.reply)
        if outcome.presence == "available":
            await self._send_current(user, contact)

    async def redeliver_requests(self, event: AvailablePresence) -> None:
        """§3.1.3: a waiting request goes to every resource that becomes available."""
        session = event.session
        user = session.jid.bare
        for request in await self.rosters.pending(user):
            try:
                session.send(parse_element(request.stanza))
            except ValueError:
                self.log.error("stored subscription request from %s is unreadable", request.jid)

    async def _answer_probe(self, user: JID, prober: JID) -> None:
        # An account that does not exist has no roster items (they go with the account), so
        # "no such account" and "not subscribed" both end here, answered alike (§8.5.1).
        item = await self.rosters.item(user, str(prober.bare))
        if item is None or item.subscription not in _FROM:
            await self._reply(user, prober.bare, "unsubscribed")
            return
        sessions = self.sessions.available(user)
        if not sessions:
            last = self.last_unavailable.get(user)
            if last is not None:
                copy = last.shallow_copy()
                copy.set("to", str(prober))
                sender = parse_jid(last.get("from") or "") or user
                await self.router.route(copy, None, sender, prober)
            return
        asking = self.sessions.get(prober) if prober.resource is not None else None
        since = asking.get(SINCE) if asking is not None else None
        for session in sessions:
            change = session.get(CHANGE)
            if since is not None and change is not None and change > since:
                continue  # newer than the asking resource: the broadcast brings it there
            if session.presence is not None:
                copy = self._share(session.jid, session.presence).to(str(prober))
                await self.router.route(copy, None, session.jid, prober)

    # ------------------------------------------------------------------ shared steps
    async def _roster(self, user: JID) -> Roster:
        return await self.rosters.roster(user)

    async def _state(
        self, user: JID, contact: JID
    ) -> tuple[RosterItem | None, list[PendingSubscription]]:
        item = await self.rosters.item(user, str(contact))
        pending = await self.rosters.pending(user)
        return item, pending

    async def _record(
        self,
        user: JID,
        contact: JID,
        item: RosterItem | None,
        outcome: Outcome,
        request: Element | None,
    ) -> None:
        """Store what the outcome changed: the roster item (then pushed) and the request."""
        jid = str(contact)
        if outcome.item_changed:
            new_item = outcome.after.item(jid, item)
            version = await self.rosters.put_item(user, new_item)
            await self.host.hooks.fire(RosterChanged(user, jid, new_item, version))
        if outcome.store_pending and request is not None:
            await self.rosters.add_pending(user, jid, serialize_str(request))
        if outcome.drop_pending:
            await self.rosters.remove_pending(user, jid)

    async def _reply(self, user: JID, contact: JID, stype: str) -> None:
        """A subscription stanza the server sends on the user's behalf."""
        await self.router.route(_presence(stype, user, contact), None, user, contact)

    async def _send_unavailable(self, user: JID, contact: JID) -> None:
        for session in self.sessions.available(user):
            unavailable = _presence("unavailable", session.jid, contact)
            await self.router.route(unavailable, session, session.jid, contact)

    async def _send_current(self, user: JID, contact: JID) -> None:
        for session in self.sessions.available(user):
            if session.presence is not None:
                await self._route_copy(self._share(session.jid, session.presence), session, contact)

    async def _exists(self, user: JID) -> bool:
        if self.sessions.is_online(user):
            return True
        return await self.storage.accounts.get(user.domain, user.local or "") is not None


async def _then_handled(work: Coroutine[Any, Any, None]) -> bool:
    await work
    return HANDLED


def _has(pending: list[PendingSubscription], contact: JID) -> bool:
    jid = str(contact)
    return any(request.jid == jid for request in pending)
