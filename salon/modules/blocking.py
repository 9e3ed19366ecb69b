"""XEP-0191: Blocking Command, enforced both ways.

A user keeps a list of blocked JIDs: full, bare, ``domain/resource`` or a whole domain,
matched as XEP-0191 §6 says. The list is read, extended and shrunk with ``<blocklist/>``,
``<block/>`` and ``<unblock/>``; every change is pushed to the user's resources that fetched
the list (§3.3, §3.4, §3.5). A list holds at most ``max_items`` JIDs; a block that would
pass it is refused with ``<resource-constraint/>``. An item without a valid ``jid`` gets
``<jid-malformed/>``, a block without items ``<bad-request/>`` (§3.3).

Enforcement, with the text it follows (§3.3):

* Inbound (``InboundStanza`` at GUARD priority): nothing from a blocked JID reaches the
  user. Presence of every kind is dropped without an answer; a message and an iq get/set are
  answered with ``<service-unavailable/>``, so the user looks offline; iq result/error are
  dropped.
* Outbound (``PreStanza`` at GUARD priority): a message, presence or iq from the user to a
  blocked JID is not routed; the sender gets ``<not-acceptable/>`` with
  ``<blocked xmlns='urn:xmpp:blocking:errors'/>``. Presence the server routes on the user's
  behalf (broadcast to contacts, probes, unavailable to directed recipients) is dropped when
  it reaches a blocked local contact (``InboundStanza``) or is about to leave for a blocked
  remote one (``OutboundRemoteStanza``).
* A user's own resources are never blocked from one another (§5, note), and a stanza to the
  user's own server domain is never refused, so blocking that domain cannot cut the user off
  from the server.

Presence on change: blocking sends unavailable presence from each available resource to the
blocked JIDs that may see the user's presence (RFC 6121: subscription "from"/"both", or
directed presence), and unavailable presence from a blocked local contact's resources to the
user's resources when the user could see them. Unblocking sends the current presence again to
subscribers, and a local contact's current presence to the user when subscribed to it. A
remote contact's presence is not replayed: this server does not know it.

The blocklists of users in use are cached in memory (bounded, least recently used first out;
every change goes through this module, which updates the copy): the hot path reads no database.
A list stays after its user's last resource goes, so logging in again, or a probe or message to
a user who is offline, does not read it again either.

XEP-0377 reports: an ``<item/>`` of a block may carry a ``<report/>``. The block is done as
if it had none; once it succeeded, each report is handed on as a :class:`BlockReported` event
(the ``spam_reports`` module logs and counts them).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import Field

from salon.core.events import (
    AccountDeleted,
    InboundStanza,
    OutboundRemoteStanza,
    PeerDataChanged,
    PreStanza,
    RoutedStanza,
)
from salon.core.hooks import HANDLED, Notification, Priority
from salon.core.iq import IqRequest, Target
from salon.core.locks import UserLocks
from salon.core.module import Module, ModuleOptions, Spec
from salon.core.roster_cache import RosterCache
from salon.core.session import C2SSession, SessionSlot
from salon.errors import StanzaError, StanzaErrorCondition
from salon.jid import JID, parse_jid
from salon.namespaces import NS_BLOCKING, NS_BLOCKING_ERRORS, NS_CLIENT, NS_REPORTING
from salon.xml.element import Element
from salon.xml.stanza import error_reply

INTERESTED = SessionSlot[bool](
    "blocking.interested", shared=True
)  # fetched the blocklist: gets pushes
_SUBSCRIBED_FROM = frozenset(("from", "both"))  # the contact may see the user's presence
_SUBSCRIBED_TO = frozenset(("to", "both"))  # the user sees the contact's presence


@dataclass(slots=True)
class BlockReported(Notification):
    """XEP-0377: ``reporter`` blocked ``jid`` with a ``<report/>`` (the element as sent)."""

    reporter: JID
    jid: JID
    report: Element


def is_blocked(blocked: frozenset[JID], jid: JID) -> bool:
    """XEP-0191 §6: a full JID item matches that JID only, a bare JID any of its resources,
    ``domain/resource`` that address only, a domain everything at that domain."""
    if not blocked:
        return False
    return jid in blocked or jid.bare in blocked or JID(None, jid.domain, None) in blocked


class BlocklistCache:
    """Blocklists by user, least recently used first out. Concurrent reads of one list share
    one query; a read that overlapped a write of that user's list is returned but not kept, so
    a stale list never replaces a newer one."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._lists: OrderedDict[JID, frozenset[JID]] = OrderedDict()
        self._loading: dict[JID, asyncio.Task[frozenset[JID]]] = {}

    def __len__(self) -> int:
        return len(self._lists)

    def get(self, user: JID) -> frozenset[JID] | None:
        blocked = self._lists.get(user)
        if blocked is not None:
            self._lists.move_to_end(user)
        return blocked

    async def load(
        self, user: JID, read: Callable[[], Coroutine[Any, Any, frozenset[JID]]]
    ) -> frozenset[JID]:
        """The list ``read`` returns, from a read of ``user``'s list in flight if there is."""
        task = self._loading.get(user)
        if task is None:
            task = asyncio.get_running_loop().create_task(read())
            self._loading[user] = task
            task.add_done_callback(lambda done: self._loaded(user, done))
        return await asyncio.shield(task)

    def _loaded(self, user: JID, task: asyncio.Task[frozenset[JID]]) -> None:
        if self._loading.get(user) is not task:
            return  # a write came since the read started
        del self._loading[user]
        if not task.cancelled() and task.exception() is None:
            self._store(user, task.result())

    def written(self, user: JID, blocked: frozenset[JID]) -> None:
        self._loading.pop(user, None)
        self._store(user, blocked)

    def drop(self, user: JID) -> None:
        self._loading.pop(user, None)
        self._lists.pop(user, None)

    def _store(self, user: JID, blocked: frozenset[JID]) -> None:
        self._lists[user] = blocked
        self._lists.move_to_end(user)
        while len(self._lists) > self.size:
            self._lists.popitem(last=False)


class BlockingOptions(ModuleOptions):
    max_items: int = Field(1000, ge=1, description="Most JIDs one user may block")
    cache_size: int = Field(
        10000, ge=1, description="Blocklists kept in memory (least recently used go first)"
    )


class Blocking(Module[BlockingOptions]):
    name = "blocking"
    specs = (Spec("XEP-0191", "1.3"),)

    def setup(self) -> None:
        self.max_items = self.options.max_items
        self.cache = BlocklistCache(self.options.cache_size)
        self.rosters = self.require(RosterCache)
        self.locks = UserLocks()  # one blocklist change per user at a time
        self.provide(Blocking, self)  # other hosts' blocking modules check their senders here
        self.add_feature(NS_BLOCKING)  # §3.1 asks the server
        self.add_account_feature(NS_BLOCKING)
        self.on_iq("get", NS_BLOCKING, "blocklist", self.get_blocklist, to=Target.SELF)
        self.on_iq("set", NS_BLOCKING, "block", self.block, to=Target.SELF)
        self.on_iq("set", NS_BLOCKING, "unblock", self.unblock, to=Target.SELF)
        self.hook(InboundStanza, self.inbound, Priority.GUARD)
        self.hook(PreStanza, self.outbound, Priority.GUARD)
        self.hook(OutboundRemoteStanza, self.outbound_remote, Priority.GUARD)
        self.hook(AccountDeleted, self.account_deleted)
        self.hook(PeerDataChanged, self.peer_changed)

    # ------------------------------------------------------------------ the list
    async def blocklist(self, user: JID) -> frozenset[JID]:
        """The JIDs ``user`` (a local bare JID of this host) blocks."""
        blocked = self.cache.get(user)
        if blocked is not None:
            return blocked
        return await self.cache.load(user, lambda: self._read(user))

    async def _read(self, user: JID) -> frozenset[JID]:
        stored = await self.storage.blocklist.get(self.domain, user.local or "")
        return frozenset(jid for jid in map(parse_jid, stored) if jid is not None)

    async def get_blocklist(self, request: IqRequest) -> Element:
        if request.origin is not None:
            request.origin.set(INTERESTED, True)
        result = Element("blocklist", NS_BLOCKING)
        for jid in sorted(map(str, await self.blocklist(request.sender.bare))):
            result.add("item", attrs={"jid": jid})
        return request.result(result)

    async def block(self, request: IqRequest) -> None:
        items = _parse_items(request.payload)
        if not items:
            raise StanzaError(StanzaErrorCondition.BAD_REQUEST, "block at least one JID")
        user = request.sender.bare
        async with self.locks.hold(user):
            current = await self.blocklist(user)
            added = [jid for jid in dict.fromkeys(items) if jid not in current]
            if len(current) + len(added) > self.max_items:
                raise StanzaError(
                    StanzaErrorCondition.RESOURCE_CONSTRAINT,
                    f"a blocklist holds at most {self.max_items} JIDs",
                )
            if added:
                await self.storage.blocklist.add(
                    self.domain, user.local or "", list(map(str, added))
                )
            self.cache.written(user, current | frozenset(added))
            self.host.peers.changed("blocklist", user)  # other cluster nodes check it too
        if added:
            await self._presence_on_block(user, frozenset(added))
        self._push_later(user, "block", items)
        for child in request.payload.find_all("item", NS_BLOCKING):
            report = child.find("report", NS_REPORTING)
            jid = parse_jid(child.get("jid") or "")
            if report is not None and jid is not None:
                await self.host.hooks.fire(BlockReported(request.sender, jid, report))

    async def unblock(self, request: IqRequest) -> None:
        items = _parse_items(request.payload)
        user = request.sender.bare
        async with self.locks.hold(user):
            current = await self.blocklist(user)
            removed = current if not items else current & frozenset(items)
            if removed:
                # An empty list unblocks everything (§3.5).
                jids = [] if not items else list(map(str, removed))
                await self.storage.blocklist.remove(self.domain, user.local or "", jids)
            self.cache.written(user, current - removed)
            self.host.peers.changed("blocklist", user)
        if removed:
            await self._presence_on_unblock(user, removed)
        self._push_later(user, "unblock", items)

    def _push_later(self, user: JID, tag: str, items: Iterable[JID]) -> None:
        """Push the change to interested resources once the router has answered the request
        (it does so as soon as the handler returns, before the loop runs callbacks)."""
        payload = Element(tag, NS_BLOCKING)
        for jid in dict.fromkeys(items):
            payload.add("item", attrs={"jid": str(jid)})
        asyncio.get_running_loop().call_soon(self._push, user, payload)

    def _push(self, user: JID, payload: Element) -> None:
        for session in self.sessions.resources(user):
            if session.get(INTERESTED):
                push = Element(
                    "iq",
                    NS_CLIENT,
                    {"type": "set", "id": self.pending_iqs.new_id(), "to": str(session.jid)},
                )
                push.append(payload)
                session.send(push)

    # ------------------------------------------------------------------ enforcement
    def inbound(self, event: InboundStanza) -> Verdict:
        """Decided from the lists in memory, without a coroutine (every presence of a login
        storm passes here); a list not in memory is read first, and the bus awaits that."""
        recipient = event.to.bare
        sender = event.sender
        if sender.bare == recipient:
            return None
        blocked = self.cache.get(recipient)
        if blocked is None:
            return self._inbound_after_read(event)
        if is_blocked(blocked, sender):
            return _refuse_inbound(event.stanza)
        return self._presence_on_behalf_blocked(event)

    async def _inbound_after_read(self, event: InboundStanza) -> bool | None:
        if is_blocked(await self.blocklist(event.to.bare), event.sender):
            return _refuse_inbound(event.stanza)
        verdict = self._presence_on_behalf_blocked(event)
        return await verdict if isinstance(verdict, Coroutine) else verdict

    def outbound_remote(self, event: OutboundRemoteStanza) -> Verdict:
        return self._presence_on_behalf_blocked(event)

    def _presence_on_behalf_blocked(self, event: RoutedStanza) -> Verdict:
        """Presence the server routes for a local session without PreStanza (broadcast to
        contacts, probes, unavailable to directed recipients) stops at the sender's own list
        too. Messages and iqs from a session always pass PreStanza first; what the server
        sends with no origin session (block-time unavailable, probe answers) is not checked."""
        origin = event.origin
        if event.stanza.tag != "presence" or origin is None:
            return None
        user = event.sender.bare
        if origin.jid.bare != user:
            return None
        guard = self._guard_for(origin.host)
        if guard is None:
            return None
        blocked = guard.cache.get(user)
        if blocked is None:
            return _blocks_after_read(guard, user, event.to)
        return HANDLED if is_blocked(blocked, event.to) else None

    async def outbound(self, event: PreStanza) -> bool | None:
        to = event.to
        user = event.origin.jid.bare
        if to is None or to.bare == user or (to.is_domain and to.domain == event.origin.host):
            return None
        if not is_blocked(await self.blocklist(user), to):
            return None
        _reject_outbound(event.origin, event.stanza)
        return HANDLED

    def _guard_for(self, domain: str) -> Blocking | None:
        """This module on the sender's host (another virtual host may be the sender's)."""
        if domain == self.domain:
            return self
        host = self.host.host(domain)
        return host.services.find(Blocking) if host is not None else None

    # ------------------------------------------------------------------ presence on change
    async def _presence_on_block(self, user: JID, added: frozenset[JID]) -> None:
        """§3.3: unavailable presence to blocked JIDs allowed to see the user's presence, and
        from blocked local contacts the user could see."""
        roster = await self._roster(user)
        mine = self.sessions.available(user)
        subscribers = self._presence_targets(roster, added, _SUBSCRIBED_FROM)
        for session in mine:
            targets = set(subscribers)
            if session.directed:
                directed = {jid for jid in session.directed if is_blocked(added, jid)}
                session.directed -= directed
                targets.update(directed)
            for target in targets:
                self._route_presence(_unavailable(session.jid, target), session.jid, target)
        for contact in self._visible_contacts(user, roster, added):
            for session in mine:
                session.send(_unavailable(contact.jid, session.jid))

    async def _presence_on_unblock(self, user: JID, removed: frozenset[JID]) -> None:
        """§3.4: the current presence again to unblocked subscribers, and the unblocked local
        contacts' presence to the user when the user is subscribed to it."""
        roster = await self._roster(user)
        mine = self.sessions.available(user)
        targets = self._presence_targets(roster, removed, _SUBSCRIBED_FROM)
        for session in mine:
            if session.presence is None:
                continue
            for target in targets:
                presence = session.presence.shallow_copy()
                presence.set("from", str(session.jid))
                presence.set("to", str(target))
                self._route_presence(presence, session.jid, target)
        for contact in self._visible_contacts(user, roster, removed):
            if contact.presence is None:
                continue
            for session in mine:
                presence = contact.presence.shallow_copy()
                presence.set("from", str(contact.jid))
                presence.set("to", str(session.jid))
                session.send(presence)

    async def _roster(self, user: JID) -> dict[JID, str]:
        """The user's contacts and their subscription states."""
        roster = await self.rosters.roster(user)
        contacts: dict[JID, str] = {}
        for item in roster.items.values():
            jid = parse_jid(item.jid)
            if jid is not None:
                contacts[jid] = item.subscription
        return contacts

    @staticmethod
    def _presence_targets(
        roster: dict[JID, str], items: frozenset[JID], states: frozenset[str]
    ) -> set[JID]:
        """Where presence to the blocked ``items`` goes: each item whose contact has one of
        ``states`` (the item itself, so a full-JID block reaches that resource only), or every
        such contact at a blocked domain."""
        targets: set[JID] = set()
        for item in items:
            if item.local is None and item.resource is None:
                targets.update(
                    jid
                    for jid, state in roster.items()
                    if jid.domain == item.domain and state in states
                )
            elif item.local is not None and roster.get(item.bare) in states:
                targets.add(item)
        return targets

    def _visible_contacts(
        self, user: JID, roster: dict[JID, str], items: frozenset[JID]
    ) -> list[C2SSession]:
        """Available sessions of local contacts matching ``items`` whose presence the user
        receives (subscription "to"/"both", or directed presence to the user)."""
        contacts: list[C2SSession] = []
        for item in items:
            if item.local is None or not self.host.is_local(item.domain):
                continue
            subscribed = roster.get(item.bare) in _SUBSCRIBED_TO
            for session in self.sessions.available(item.bare):
                if session.jid != item and item.resource is not None:
                    continue
                directed = session.directed or ()
                if subscribed or any(jid.bare == user for jid in directed):
                    contacts.append(session)
        return contacts

    def _route_presence(self, presence: Element, sender: JID, to: JID) -> None:
        # Generated by the server for the user (origin None): the user's own block does not
        # stop it, the contact's blocklist still does.
        self.spawn(self.router.route(presence, None, sender, to))

    # ------------------------------------------------------------------ cache upkeep
    def account_deleted(self, event: AccountDeleted) -> None:
        self.cache.drop(event.jid.bare)

    def peer_changed(self, event: PeerDataChanged) -> None:
        if event.kind == "blocklist":
            self.cache.drop(event.user)


# ---------------------------------------------------------------------- helpers
def _parse_items(payload: Element) -> list[JID]:
    """The ``<item jid=.../>`` children; ``jid-malformed`` for a missing or invalid JID."""
    items: list[JID] = []
    for child in payload.find_all("item", NS_BLOCKING):
        jid = parse_jid(child.get("jid") or "")
        if jid is None:
            raise StanzaError(StanzaErrorCondition.JID_MALFORMED, "not a valid JID")
        items.append(jid)
    return items


Verdict = bool | None | Coroutine[Any, Any, bool | None]
"""What a guard answers: at once, or (when a list has to be read first) as a coroutine."""


async def _blocks_after_read(guard: Blocking, user: JID, to: JID) -> bool | None:
    return HANDLED if is_blocked(await guard.blocklist(user), to) else None


def _refuse_inbound(stanza: Element) -> bool:
    """§3.3: presence and iq result/error vanish; message and iq get/set get an error."""
    if stanza.tag == "message" or (stanza.tag == "iq" and stanza.get("type") in ("get", "set")):
        raise StanzaError(StanzaErrorCondition.SERVICE_UNAVAILABLE)
    return HANDLED


def _reject_outbound(origin: C2SSession, stanza: Element) -> None:
    """§3.3: <not-acceptable/> with <blocked/>; never an error answering an error or a result."""
    if stanza.get("type") == "error" or (stanza.tag == "iq" and stanza.get("type") == "result"):
        return
    err = StanzaError(StanzaErrorCondition.NOT_ACCEPTABLE, error_type="cancel")
    reply = error_reply(stanza, err)
    error = reply.find("error", stanza.ns)
    if error is not None:
        error.add("blocked", NS_BLOCKING_ERRORS)
    origin.send(reply)


def _unavailable(sender: JID, to: JID) -> Element:
    return Element(
        "presence", NS_CLIENT, {"type": "unavailable", "from": str(sender), "to": str(to)}
    )
