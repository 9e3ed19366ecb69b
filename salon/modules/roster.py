"""RFC 6121 §2: the roster (``jabber:iq:roster``): get, set, remove, pushes, versioning.

A resource that fetches the roster becomes an "interested resource" (§2.1.6) and from then
on receives a roster push for every change to an item, whoever made it: a roster set from
any resource, or a subscription state change (the presence module fires ``RosterChanged``
after storing an item; this module pushes every ``RosterChanged``).

Choices, with the text they follow:

* Roster set (§2.3.3): exactly one ``<item/>``, else ``bad-request``; a duplicate
  ``<group/>`` is ``bad-request``; an empty group, or a name or group longer than the
  configured limit, is ``not-acceptable``. A ``jid`` that is no JID is ``jid-malformed``; a
  full JID (with a resource) is ``bad-request``, since roster items are accounts. Any
  ``subscription`` other than "remove" is ignored (§2.1.2.5), as are ``ask`` and
  ``approved``: those change only through presence subscriptions (§2.1.2.1, §2.1.2.2).
* A roster get or set addressed to another account is ``forbidden`` (§2.3.3: "not authorized
  to update the roster"). A roster push sent by anyone but the server (an iq-set of
  ``jabber:iq:roster`` to a client's full JID) is ``forbidden`` too, so a client never sees
  a forged push.
* A roster holds at most ``max_items`` items; a set that would add one more is
  ``not-allowed`` (the RFC names no condition; not-allowed is RFC 6120's "the server does not
  allow the action", type cancel: retrying will not help).
* Removing an item (§2.5.2) also ends the subscriptions with the contact: "unsubscribe" when
  the user has or asked for one, "unsubscribed" when the contact has one or asked for one
  (preceded by unavailable presence from each available resource when the contact was
  subscribed, §3.2.2). A pending request from the contact is forgotten.
* Versioning (§2.6): the version is the store's counter. A client that sends the current
  version gets an empty result. One that sends an older version gets an empty result and
  then the changes since as pushes, when this server saw every one of them (a bounded
  in-memory log per user); otherwise, and for an unknown version, the whole roster.

Every read and write of a roster goes through the host's roster cache
(:mod:`salon.modules._roster_cache`), which keeps the rosters of online users in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass

from pydantic import Field

from salon.core.events import IqToFull, RosterChanged, RosterRequested
from salon.core.hooks import Priority
from salon.core.iq import IqRequest, Target
from salon.core.items import STREAM_FEATURE
from salon.core.module import Module, ModuleOptions, Spec
from salon.core.roster_cache import RosterCache, RosterLimit
from salon.core.session import C2SSession, SessionSlot
from salon.errors import StanzaError, StanzaErrorCondition
from salon.jid import JID, parse_jid
from salon.modules._subscription import SubState
from salon.namespaces import NS_CLIENT, NS_ROSTER, NS_ROSTER_VER
from salon.storage.interfaces import RosterItem
from salon.xml.element import Element

INTERESTED = SessionSlot[bool]("roster.interested", shared=True)  # the session fetched the roster


def item_element(item: RosterItem) -> Element:
    """An ``<item/>`` as the server sends it in results and pushes (§2.1.2)."""
    attrs = {"jid": item.jid, "subscription": item.subscription}
    if item.name:
        attrs["name"] = item.name
    if item.ask:
        attrs["ask"] = "subscribe"
    if item.approved:
        attrs["approved"] = "true"
    element = Element("item", NS_ROSTER, attrs)
    for group in item.groups:
        element.add("group", text=group)
    return element


def removed_element(jid: str) -> Element:
    return Element("item", NS_ROSTER, {"jid": jid, "subscription": "remove"})


@dataclass(frozen=True, slots=True)
class Change:
    version: int
    jid: str
    item: RosterItem | None  # None: removed


class ChangeLog:
    """The latest roster changes of recently active users, without gaps (§2.6.3 deltas)."""

    def __init__(self, per_user: int, users: int) -> None:
        self.per_user = per_user
        self.users = users
        self._logs: OrderedDict[JID, list[Change]] = OrderedDict()

    def record(self, user: JID, change: Change) -> None:
        if self.per_user <= 0:
            return
        log = self._logs.pop(user, [])
        if log and log[-1].version != change.version - 1:
            log = []  # a change we did not see: what came before cannot make a delta
        log.append(change)
        self._logs[user] = log[-self.per_user :]
        while len(self._logs) > self.users:
            self._logs.popitem(last=False)

    def since(self, user: JID, known: int, current: int) -> list[Change] | None:
        """Every change after version ``known`` up to ``current``, or None when unknown."""
        log = self._logs.get(user)
        if not log or log[-1].version != current or not log[0].version - 1 <= known < current:
            return None
        return [change for change in log if change.version > known]


class RosterOptions(ModuleOptions):
    max_items: int = Field(1000, ge=1, description="Most items one roster may hold.")
    max_name_length: int = Field(1023, ge=1, description="Longest item name, in characters.")
    max_group_length: int = Field(1023, ge=1, description="Longest group name, in characters.")
    versioning: bool = Field(True, description="Offer roster versioning (RFC 6121 §2.6).")
    change_log: int = Field(
        100, ge=0, description="Changes remembered per user to answer versioned gets."
    )


class Roster(Module[RosterOptions]):
    name = "roster"
    specs = (Spec("RFC 6121 §2", "", "roster get/set/remove, pushes, versioning"),)

    def setup(self) -> None:
        self.opts = self.options
        self.changes = ChangeLog(self.opts.change_log, users=10_000)
        self.rosters = self.require(RosterCache)  # every read and write of a roster goes through it
        self.add_account_feature(NS_ROSTER)
        self.provide(RosterLimit, RosterLimit(self.opts.max_items))
        if self.opts.versioning:
            self.add_item(STREAM_FEATURE, Element("ver", NS_ROSTER_VER))
        self.on_iq("get", NS_ROSTER, "query", self.get, to=Target.SELF)
        self.on_iq("set", NS_ROSTER, "query", self.set, to=Target.SELF)
        self.on_iq("get", NS_ROSTER, "query", self.forbidden, to=Target.BARE)
        self.on_iq("set", NS_ROSTER, "query", self.forbidden, to=Target.BARE)
        self.hook(RosterChanged, self.push)
        self.hook(IqToFull, self.refuse_forged_push, Priority.GUARD)

    # ------------------------------------------------------------------ get
    async def get(self, request: IqRequest) -> Element:
        user = request.sender.bare
        roster = await self.rosters.roster(user)
        origin = request.origin
        if origin is not None:
            origin.set(INTERESTED, True)
            await self.host.hooks.fire(RosterRequested(origin))
        known = request.payload.get("ver") if self.opts.versioning else None
        if known is not None and known == str(roster.version):
            return request.result()  # §2.6.3: nothing changed, nothing to send
        if known is not None and known.isascii() and known.isdigit() and origin is not None:
            changes = self.changes.since(user, int(known), roster.version)
            if changes is not None:
                # The empty result goes first (the router sends it when we return), then the
                # changes as pushes (§2.6.3).
                asyncio.get_running_loop().call_soon(self._replay, origin, changes)
                return request.result()
        query = Element("query", NS_ROSTER)
        if self.opts.versioning:
            query.set("ver", str(roster.version))
        for jid in sorted(roster.items):
            query.append(item_element(roster.items[jid]))
        return request.result(query)

    def _replay(self, session: C2SSession, changes: list[Change]) -> None:
        for change in changes:
            session.send(self._push_iq(session, change))

    def forbidden(self, request: IqRequest) -> None:
        raise StanzaError(StanzaErrorCondition.FORBIDDEN, "that roster is not yours")

    # ------------------------------------------------------------------ set and remove
    @contextlib.asynccontextmanager
    async def _writing(self, user: JID) -> AsyncIterator[None]:
        """Hold the user's roster lock shared with the presence module, if it is loaded, so a
        roster set and a subscription change never overwrite each other's item."""
        async with self.rosters.locks.hold(user):
            yield

    async def set(self, request: IqRequest) -> None:
        query = request.payload
        children = list(query.elements())
        if len(children) != 1 or children[0].tag != "item" or children[0].ns != NS_ROSTER:
            raise StanzaError(StanzaErrorCondition.BAD_REQUEST, "a roster set has one <item/>")
        element = children[0]
        contact = _item_jid(element)
        user = request.sender.bare
        if element.get("subscription") == "remove":
            await self._remove(request, user, contact)
            return
        name, groups = self._check_item(element)
        async with self._writing(user):  # pushes go out in version order, under the lock
            item, version = await self._update(user, str(contact), name, groups)
            await self.host.hooks.fire(RosterChanged(user, item.jid, item, version))

    async def _update(
        self, user: JID, jid: str, name: str | None, groups: tuple[str, ...]
    ) -> tuple[RosterItem, int]:
        """Store the item with the new name and groups, keeping its subscription state."""
        existing = await self.rosters.item(user, jid)
        if existing is None:
            if await self.rosters.count(user) >= self.opts.max_items:
                raise StanzaError(StanzaErrorCondition.NOT_ALLOWED, "the roster is full")
            existing = RosterItem(jid=jid)
        item = RosterItem(
            jid=jid,
            name=name,
            subscription=existing.subscription,
            ask=existing.ask,
            approved=existing.approved,
            groups=groups,
        )
        return item, await self.rosters.put_item(user, item)

    def _check_item(self, element: Element) -> tuple[str | None, tuple[str, ...]]:
        """The name and groups of a roster set's item, checked as §2.3.3 says."""
        name = element.get("name") or None
        if name is not None and len(name) > self.opts.max_name_length:
            raise StanzaError(StanzaErrorCondition.NOT_ACCEPTABLE, "the name is too long")
        groups: list[str] = []
        for group in element.find_all("group", NS_ROSTER):
            text = group.text
            if not text:
                raise StanzaError(StanzaErrorCondition.NOT_ACCEPTABLE, "empty group name")
            if len(text) > self.opts.max_group_length:
                raise StanzaError(StanzaErrorCondition.NOT_ACCEPTABLE, "group name too long")
            if text in groups:
                raise StanzaError(StanzaErrorCondition.BAD_REQUEST, f"group {text!r} twice")
            groups.append(text)
        return name, tuple(groups)

    async def _remove(self, request: IqRequest, user: JID, contact: JID) -> None:
        jid = str(contact)
        async with self._writing(user):
            existing = await self.rosters.item(user, jid)
            if existing is None:
                raise StanzaError(StanzaErrorCondition.ITEM_NOT_FOUND, "no such roster item")
            had_request = await self.rosters.remove_pending(user, jid)
            version = await self.rosters.remove_item(user, jid)
            if version is not None:
                await self.host.hooks.fire(RosterChanged(user, jid, None, version))
        # §2.5.2: end the subscriptions both ways, as the contact's records would show them.
        state = SubState.of(existing, pending_in=had_request)
        if state.to or state.pending_out:
            await self._send_presence(request, user, contact, "unsubscribe")
        if state.from_:
            for session in self.sessions.available(user):
                unavailable = Element("presence", NS_CLIENT, {"type": "unavailable"})
                unavailable.set("from", str(session.jid))
                unavailable.set("to", jid)
                await self.router.route(unavailable, session, session.jid, contact)
        if state.from_ or state.pending_in:
            await self._send_presence(request, user, contact, "unsubscribed")

    async def _send_presence(self, request: IqRequest, user: JID, contact: JID, stype: str) -> None:
        stanza = Element("presence", NS_CLIENT, {"type": stype, "from": str(user)})
        stanza.set("to", str(contact))
        await self.router.route(stanza, request.origin, user, contact)

    # ------------------------------------------------------------------ pushes
    def push(self, event: RosterChanged) -> None:
        """§2.1.6: every change goes to every interested resource of the user."""
        change = Change(event.version, event.jid, event.item)
        self.changes.record(event.user, change)
        for session in self.sessions.resources(event.user):
            if session.get(INTERESTED):
                session.send(self._push_iq(session, change))

    def _push_iq(self, session: C2SSession, change: Change) -> Element:
        iq = Element("iq", NS_CLIENT, {"type": "set", "id": self.pending_iqs.new_id()})
        iq.set("to", str(session.jid))
        query = iq.add("query", NS_ROSTER)
        if self.opts.versioning:
            query.set("ver", str(change.version))
        if change.item is None:
            query.append(removed_element(change.jid))
        else:
            query.append(item_element(change.item))
        return iq

    def refuse_forged_push(self, event: IqToFull) -> None:
        """Roster pushes come from the user's server only (§2.1.6)."""
        payload = event.stanza.first_child
        if (
            event.stanza.get("type") == "set"
            and payload is not None
            and (payload.ns, payload.tag) == (NS_ROSTER, "query")
        ):
            raise StanzaError(StanzaErrorCondition.FORBIDDEN, "only the server pushes rosters")


def _item_jid(element: Element) -> JID:
    text = element.get("jid")
    if text is None:
        raise StanzaError(StanzaErrorCondition.BAD_REQUEST, "the item has no jid")
    jid = parse_jid(text)
    if jid is None:
        raise StanzaError(StanzaErrorCondition.JID_MALFORMED, "the item's jid is not valid")
    if jid.resource is not None:
        raise StanzaError(StanzaErrorCondition.BAD_REQUEST, "a roster item is a bare JID")
    return jid
