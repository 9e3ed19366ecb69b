"""XEP-0163: Personal Eventing Protocol: a pubsub service on every account's bare JID.

* Publishing to a node that does not exist creates it (with the publish-options as its
  configuration); publish-options that do not match an existing node answer
  ``conflict`` + ``precondition-not-met`` (XEP-0060 §7.1.5, relied on by XEP-0223 private
  storage and by OMEMO clients publishing with ``access_model=open``).
* Nobody subscribes explicitly (though they may): a resource whose presence reaches the
  account, from the account itself or from a contact the account shares presence with
  (``from``/``both``), is sent notifications of the nodes its entity capabilities ask for
  with ``<node>+notify`` (XEP-0163 §4.3). Capabilities are looked up with disco#info to
  ``node#ver`` once per ver, the answer checked against the hash (XEP-0115 §5.4) and cached.
* When such a resource becomes available, or its caps are learned, it gets the last item
  of each node it wants and may read (send_last_published_item on_sub_and_presence).
* The rules (access models, affiliations, limits, errors) are those of
  :mod:`salon.modules.pubsub.service`; the stanzas those of :mod:`~.pubsub.protocol`.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Coroutine, Mapping
from typing import Any

from pydantic import Field

from salon.core.events import (
    AccountDeleted,
    PepItemPublished,
    PepItemsRemoved,
    PresenceBroadcast,
    PresenceToBare,
    PresenceToFull,
    ResourceUnbound,
    RoutedStanza,
)
from salon.core.iq import IqRequest, Target
from salon.core.module import Module, ModuleOptions, Spec
from salon.core.personal import PepItem, PersonalEventing
from salon.core.roster_cache import RosterCache
from salon.errors import StanzaError, StanzaErrorCondition
from salon.jid import JID, parse_jid
from salon.modules.caps import HASHES, verification_string
from salon.modules.pubsub import protocol
from salon.modules.pubsub.config import NodeConfig
from salon.modules.pubsub.interest import CapsCache, CapsRef, Interests, caps_of, notify_nodes
from salon.modules.pubsub.service import (
    Limits,
    NodeEvent,
    PubSubError,
    PubSubService,
    ServicePolicy,
)
from salon.namespaces import NS_CLIENT, NS_DISCO_INFO, NS_PUBSUB, NS_PUBSUB_OWNER
from salon.storage.interfaces import RosterItem
from salon.xml.broadcast import Broadcast
from salon.xml.element import Element
from salon.xml.fragment import parse_element


class PepOptions(ModuleOptions):
    max_item_bytes: int = Field(128 * 1024, ge=1024, description="Largest item payload, bytes")
    max_items: int = Field(256, ge=1, description="Most items a node keeps ('max')")
    max_nodes: int = Field(256, ge=1, description="Most PEP nodes per account")
    default_max_items: int = Field(1, ge=1, description="max_items of a node made by publish")
    caps_cache_size: int = Field(10_000, ge=1, description="Entity capabilities remembered")
    caps_timeout: float = Field(10.0, gt=0, description="Seconds to wait for a disco#info")
    caps_waiting: int = Field(
        100_000, ge=1, description="(account, resource) pairs kept waiting for a caps lookup"
    )
    resources_per_account: int = Field(
        1000, ge=1, description="Most interested resources tracked per account"
    )


#: A caps answer later than ``caps_timeout`` still counts up to this many timeouts after.
LATE_ANSWER_FACTOR = 6


class _Rosters:
    def __init__(self, cache: RosterCache) -> None:
        self.cache = cache

    async def roster_item(self, owner: JID, contact: JID) -> RosterItem | None:
        return await self.cache.item(owner, str(contact))


class Pep(Module[PepOptions]):
    name = "pep"
    specs = (
        Spec("XEP-0163", "1.2.2"),
        Spec("XEP-0223", "1.1.1", "private storage through publish-options"),
    )
    depends = ("disco", "roster")

    def setup(self) -> None:
        opts = self.options
        self.rosters = _Rosters(self.require(RosterCache))
        self.policy = ServicePolicy(
            limits=Limits(opts.max_item_bytes, opts.max_items, opts.max_nodes),
            defaults=NodeConfig(max_items=min(opts.default_max_items, opts.max_items)),
            auto_create=True,
            instant_nodes=False,
        )
        self.caps = CapsCache(opts.caps_cache_size)
        self.interests = Interests(opts.resources_per_account)
        self._lookups: dict[tuple[str, str], asyncio.Future[frozenset[str] | None]] = {}
        # resources whose caps could not be learned yet (the lookup timed out or failed):
        # they get their interest when any later lookup of the same ver succeeds
        self._unresolved: OrderedDict[tuple[str, str], dict[tuple[JID, JID], CapsRef]] = (
            OrderedDict()
        )
        self._waiting = 0
        for feature in protocol.features(pep=True):
            self.add_account_feature(feature)
        self.add_identity("pubsub", "pep")
        for iq_type in ("get", "set"):
            self.on_iq(iq_type, NS_PUBSUB, "pubsub", self.request, to=Target.ACCOUNT)
            self.on_iq(iq_type, NS_PUBSUB_OWNER, "pubsub", self.request, to=Target.ACCOUNT)
        # observers: they never stop the presence on its way
        self.hook(PresenceToBare, self.inbound_presence, 10)
        self.hook(PresenceToFull, self.inbound_presence, 10)
        self.hook(PresenceBroadcast, self.own_presence, 10)
        self.hook(ResourceUnbound, self.session_ended)
        self.hook(AccountDeleted, self.account_deleted)
        self.provide(PersonalEventing, _Personal(self))

    def service(self, owner: JID, source: str | None = None) -> PubSubService:
        """``owner``'s service; ``source`` names the module acting through it, if any."""

        async def broadcast(event: NodeEvent) -> None:
            await self.broadcast(event, source)

        return PubSubService(
            self.storage.pubsub,
            str(owner),
            self.policy,
            broadcast,
            self.rosters,
            owner=owner,
            now=self.clock.time,
        )

    # ------------------------------------------------------------------ requests
    async def request(self, request: IqRequest) -> Element:
        owner = request.to.bare
        if request.target is Target.BARE and not await self._exists(owner):
            raise StanzaError(StanzaErrorCondition.SERVICE_UNAVAILABLE)
        return await protocol.handle(self.service(owner), request.stanza, request.sender)

    async def _exists(self, user: JID) -> bool:
        if self.sessions.is_online(user):
            return True
        return await self.storage.accounts.get(user.domain, user.local or "") is not None

    # ------------------------------------------------------------------ notifications
    async def broadcast(self, event: NodeEvent, source: str | None = None) -> None:
        owner = event.owner
        assert owner is not None
        await self._deliver(event, owner)
        if not event.last_item:
            await self._announce(event, owner, source)

    async def _announce(self, event: NodeEvent, owner: JID, source: str | None) -> None:
        """Tell the host's modules what changed (bookmarks and avatar conversions)."""
        if event.kind == "items":
            for k, item in enumerate(event.items):
                if k < len(event.payloads):
                    payload = event.payloads[k]  # as published: no need to parse it again
                else:
                    payload = parse_element(item.payload) if item.payload else None
                publisher = parse_jid(item.publisher) or owner
                await self.host.hooks.fire(
                    PepItemPublished(owner, event.node, item.id, payload, publisher, source)
                )
        elif event.kind == "retract":
            await self.host.hooks.fire(
                PepItemsRemoved(owner, event.node, event.retracted, source=source)
            )
        else:  # purge, delete
            await self.host.hooks.fire(
                PepItemsRemoved(owner, event.node, every_item=True, source=source)
            )

    async def _deliver(self, event: NodeEvent, owner: JID) -> None:
        recipients = dict.fromkeys(event.recipients)
        if not event.last_item:
            interested = self.interests.interested(owner, event.node)
            interested += await self._remote_interested(owner, event.node)
            wanting = list(dict.fromkeys(r for r in interested if r not in recipients))
            if wanting:
                service = self.service(owner)
                readers = await service.readers(event.node, event.config, wanting)
                recipients.update((r, None) for r in wanting if r in readers)
        if not recipients:
            return
        # one notification, serialized once: the copies differ only in 'to'
        shared = Broadcast(protocol.event_message(event, str(owner), None))
        for to in recipients:
            await self.router.route(shared.to(str(to)), None, owner, to)

    async def _remote_interested(self, owner: JID, node: str) -> list[JID]:
        """In a cluster, the contacts' resources on other nodes: their presence reached the
        owner through those nodes, so ``interests`` here never saw it. Their current
        presence travels with the session directory; its caps say what they want."""
        found: list[JID] = []
        if not self.host.peers.is_clustered:
            return found  # a single process: every resource's presence passed through here
        roster = await self.rosters.cache.roster(owner)
        users = [owner]
        for item in roster.items.values():
            contact = parse_jid(item.jid) if item.subscription in ("from", "both") else None
            if contact is not None and self.host.is_local(contact.domain):
                users.append(contact)
        for user in users:
            for session in self.sessions.available(user):
                presence = session.presence
                caps = caps_of(presence) if session.is_remote and presence is not None else None
                if caps is None:
                    continue
                features = self.caps.get(caps) or await self._features(session.jid, caps)
                if features is not None and node in notify_nodes(features):
                    found.append(session.jid)
        return found

    # ------------------------------------------------------------------ presence
    async def own_presence(self, event: PresenceBroadcast) -> None:
        session = event.origin
        stype = event.stanza.get("type")
        if stype is None:
            self._observe(session.jid.bare, session.jid, event.stanza)
        elif stype == "unavailable":
            self.interests.remove(session.jid.bare, session.jid)
            self._forget_unresolved(session.jid.bare, session.jid)

    def inbound_presence(self, event: RoutedStanza) -> Coroutine[Any, Any, None] | None:
        """A contact's presence tells which nodes of the owner it wants. Decided without a
        coroutine when the owner's roster is in memory (the usual case); otherwise the
        roster is read first, and the bus awaits that."""
        owner, contact = event.to.bare, event.sender
        if contact.resource is None or owner.local is None:
            return None
        stype = event.stanza.get("type")
        if stype == "unavailable":
            self.interests.remove(owner, contact)
            self._forget_unresolved(owner, contact)
            return None
        if stype is not None or contact.bare == owner:
            return None  # own resources are seen through their broadcast
        roster = self.rosters.cache.cached(owner)
        if roster is None:
            return self._observe_after_read(owner, contact, event.stanza)
        self._observe_subscriber(roster.items.get(str(contact.bare)), owner, contact, event.stanza)
        return None

    async def _observe_after_read(self, owner: JID, contact: JID, presence: Element) -> None:
        item = await self.rosters.roster_item(owner, contact.bare)
        self._observe_subscriber(item, owner, contact, presence)

    def _observe_subscriber(
        self, item: RosterItem | None, owner: JID, contact: JID, presence: Element
    ) -> None:
        if item is not None and item.subscription in ("from", "both"):
            self._observe(owner, contact, presence)

    def _observe(self, owner: JID, resource: JID, presence: Element) -> None:
        caps = caps_of(presence)
        if caps is None:
            self.interests.set(owner, resource, frozenset())
            return
        features = self.caps.get(caps)
        if features is not None:
            self.spawn(self._interested(owner, resource, notify_nodes(features)))
            return
        self.spawn(self._lookup_then_notify(owner, resource, caps))

    async def _lookup_then_notify(self, owner: JID, resource: JID, caps: CapsRef) -> None:
        features = await self._features(resource, caps)
        if features is not None:
            await self._interested(owner, resource, notify_nodes(features))
            return
        key = (caps.hash, caps.ver)
        waiting = self._unresolved.setdefault(key, {})
        retry = not waiting  # the first to wait asks once more (a busy peer answers late)
        if (owner, resource) not in waiting:
            self._waiting += 1
        waiting[(owner, resource)] = caps
        self._unresolved.move_to_end(key)
        while self._waiting > self.options.caps_waiting and self._unresolved:
            _key, dropped = self._unresolved.popitem(last=False)
            self._waiting -= len(dropped)
        if retry and key not in self._lookups:
            await self._features(resource, caps)

    def _resolve(self, caps: CapsRef, features: frozenset[str]) -> None:
        """A ver was verified: the resources that waited for it get their interest."""
        waiting = self._unresolved.pop((caps.hash, caps.ver), {})
        self._waiting -= len(waiting)
        if waiting:
            self.spawn(self._resolve_all(list(waiting), notify_nodes(features)))

    async def _resolve_all(self, waiting: list[tuple[JID, JID]], nodes: frozenset[str]) -> None:
        """One after the other: thousands may wait for one ver (everyone's client)."""
        for owner, resource in waiting:
            await self._interested(owner, resource, nodes)

    def _forget_unresolved(self, owner: JID, resource: JID) -> None:
        for waiting in self._unresolved.values():
            if waiting.pop((owner, resource), None) is not None:
                self._waiting -= 1

    async def _interested(self, owner: JID, resource: JID, nodes: frozenset[str]) -> None:
        """Record the interest; send the last items of the nodes newly wanted."""
        new = self.interests.set(owner, resource, nodes)
        service = self.service(owner)
        for name in sorted(new):
            node = await self.storage.pubsub.get_node(str(owner), name)
            if node is None:
                continue
            config = NodeConfig.from_dict(node.config, self.policy.defaults)
            if resource.bare == owner or await service.may_access(name, config, resource):
                await service.send_last_item(name, config, resource, on_presence=True)

    async def _features(self, resource: JID, caps: CapsRef) -> frozenset[str] | None:
        """The features behind ``caps``: cached, or asked of ``resource`` and verified."""
        key = (caps.hash, caps.ver)
        running = self._lookups.get(key)
        if running is not None:
            return await asyncio.shield(running)
        future: asyncio.Future[frozenset[str] | None] = asyncio.get_running_loop().create_future()
        self._lookups[key] = future
        try:
            features = await self._ask(resource, caps)
            future.set_result(features)
            return features
        except BaseException:
            future.set_result(None)
            raise
        finally:
            del self._lookups[key]

    async def _ask(self, resource: JID, caps: CapsRef) -> frozenset[str] | None:
        iq_id = self.pending_iqs.new_id()
        iq = Element(
            "iq", NS_CLIENT, {"type": "get", "id": iq_id, "from": self.domain, "to": str(resource)}
        )
        iq.add("query", NS_DISCO_INFO, {"node": f"{caps.node}#{caps.ver}"})
        answer = self.pending_iqs.expect(iq_id, str(resource))
        await self.router.route(iq, None, JID.make(None, self.domain), resource)
        done, _ = await asyncio.wait({answer}, timeout=self.options.caps_timeout)
        if not done:
            # Too slow for those waiting now (they wait on for the ver, see _resolve); an
            # answer that comes later is still verified and cached, up to a bound.
            answer.add_done_callback(lambda late: self._late_answer(late, resource, caps))
            self.spawn(self._give_up(answer, LATE_ANSWER_FACTOR * self.options.caps_timeout))
            return None
        return self._features_of(answer.result(), resource, caps)

    def _late_answer(self, answer: asyncio.Future[Element], resource: JID, caps: CapsRef) -> None:
        if not answer.cancelled():
            self._features_of(answer.result(), resource, caps)

    @staticmethod
    async def _give_up(answer: asyncio.Future[Element], seconds: float) -> None:
        await asyncio.sleep(seconds)
        answer.cancel()

    def _features_of(self, reply: Element, resource: JID, caps: CapsRef) -> frozenset[str] | None:
        query = reply.find("query", NS_DISCO_INFO)
        if reply.get("type") != "result" or query is None:
            return None
        features = frozenset(f.get("var") or "" for f in query.find_all("feature", NS_DISCO_INFO))
        if caps.hash in HASHES and verification_string(query, caps.hash) == caps.ver:
            self.caps.put(caps, features)  # verified: good for every entity with this ver
            self._resolve(caps, features)
        else:
            self.log.info("caps of %s do not match their hash; not cached", resource)
        return features

    async def session_ended(self, event: ResourceUnbound) -> None:
        jid = event.session.jid
        self.interests.remove(jid.bare, jid)
        self._forget_unresolved(jid.bare, jid)
        if not self.sessions.is_online(jid.bare):
            self.interests.forget_owner(jid.bare)

    async def account_deleted(self, event: AccountDeleted) -> None:
        self.interests.forget_owner(event.jid.bare)
        await self.storage.pubsub.delete_service(str(event.jid.bare))


class _Personal(PersonalEventing):
    """The account's PEP service for other modules, acting as the account."""

    def __init__(self, pep: Pep) -> None:
        self.pep = pep

    async def publish(
        self,
        owner: JID,
        node: str,
        item_id: str,
        payload: Element,
        options: Mapping[str, list[str]] | None = None,
        *,
        source: str,
    ) -> None:
        await self.pep.service(owner, source).publish(owner, node, item_id, payload, options)

    async def retract(self, owner: JID, node: str, item_id: str, *, source: str) -> bool:
        try:
            await self.pep.service(owner, source).retract(owner, node, item_id, notify=True)
        except PubSubError as err:
            if err.condition is StanzaErrorCondition.ITEM_NOT_FOUND:
                return False
            raise
        return True

    async def items(self, owner: JID, node: str) -> list[PepItem] | None:
        try:
            found = await self.pep.service(owner).items(owner, node)
        except PubSubError as err:
            if err.condition is StanzaErrorCondition.ITEM_NOT_FOUND:
                return None
            raise
        return [PepItem(i.id, parse_element(i.payload) if i.payload else None) for i in found]
