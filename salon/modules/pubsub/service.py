"""The publish-subscribe service logic of XEP-0060, for PEP (XEP-0163) and for pubsub
services alike: who may do what (affiliations, access models), node lifecycle, items and
their pruning, subscriptions, publish-options preconditions, and the error each refusal
gets (§§6-8, with the pubsub#errors application conditions).

Pure of IO: storage, roster lookups and the delivery of notifications are injected
(``PubSubStore``, ``Relations``, ``Broadcaster``), so every rule is unit-tested on a real
store without sockets. One ``PubSubService`` serves one service address: an account's bare
JID for PEP, a domain for a pubsub service; it is cheap to build per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Protocol

from salon.errors import StanzaError, StanzaErrorCondition
from salon.jid import JID, parse_jid
from salon.modules.pubsub.config import AccessModel, NodeConfig, PublishModel, SendLast
from salon.storage.interfaces import (
    PubSubItem,
    PubSubLimitReached,
    PubSubNode,
    PubSubStore,
    PubSubSubscription,
    RosterItem,
)
from salon.xml.element import Element
from salon.xml.serializer import serialize_str

C = StanzaErrorCondition


class PubSubError(StanzaError):
    """A stanza error with its XEP-0060 application condition (pubsub#errors), e.g.
    ``PubSubError(C.CONFLICT, "precondition-not-met")``."""

    def __init__(
        self,
        condition: StanzaErrorCondition,
        app: str | None = None,
        text: str | None = None,
        *,
        feature: str | None = None,
        error_type: str | None = None,
    ) -> None:
        super().__init__(condition, text, error_type)
        self.app = app
        self.feature = feature  # for <unsupported feature='…'/>


class Affiliation(StrEnum):
    OWNER = "owner"
    PUBLISHER = "publisher"
    PUBLISH_ONLY = "publish-only"
    MEMBER = "member"
    NONE = "none"
    OUTCAST = "outcast"


SUBSCRIBED, PENDING = "subscribed", "pending"
_READERS = frozenset((Affiliation.OWNER, Affiliation.PUBLISHER, Affiliation.MEMBER))
_PUBLISHERS = frozenset((Affiliation.OWNER, Affiliation.PUBLISHER, Affiliation.PUBLISH_ONLY))


@dataclass(frozen=True, slots=True)
class Limits:
    max_item_bytes: int = 128 * 1024
    max_items: int = 256  # per node; what "max" means
    max_nodes: int = 256  # per service (per account for PEP)


class Relations(Protocol):
    """What the service may know of a node owner's roster (presence and roster access)."""

    async def roster_item(self, owner: JID, contact: JID) -> RosterItem | None: ...


@dataclass(frozen=True, slots=True)
class NodeEvent:
    """Something subscribers hear about: ``kind`` is "items" (published, or the last item
    sent on subscription/presence), "retract", "purge" or "delete". ``recipients`` are the
    subscribed JIDs; a broadcaster may add its own (PEP's presence-based interest)."""

    service: str
    node: str
    kind: str
    config: NodeConfig
    items: tuple[PubSubItem, ...] = ()
    retracted: tuple[str, ...] = ()
    recipients: tuple[JID, ...] = ()
    last_item: bool = False  # a last-published-item delivery to ``recipients`` only
    owner: JID | None = None  # the PEP account (None for a pubsub service)
    payloads: tuple[Element | None, ...] = ()  # ``items``' payloads as published, when known


class Broadcaster(Protocol):
    async def __call__(self, event: NodeEvent) -> None: ...


class _Locks:
    """One lock per node key while someone holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, list[int]]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.setdefault(key, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if users[0] == 0:
                del self._locks[key]


@dataclass(slots=True)
class ServicePolicy:
    """How one kind of service behaves: PEP or a pubsub component."""

    limits: Limits = field(default_factory=Limits)
    defaults: NodeConfig = field(default_factory=NodeConfig)
    auto_create: bool = False  # publish creates a missing node (PEP, XEP-0163 §3)
    instant_nodes: bool = True  # create without a node name (XEP-0060 §8.1.2)
    may_create: Callable[[JID], bool] = lambda _jid: True
    locks: _Locks = field(default_factory=_Locks)


class _NodeFacts:
    """What access checks on one node read, each read once (when first needed)."""

    __slots__ = ("_owner", "_subscribed", "node", "service")

    def __init__(self, service: PubSubService, node: str) -> None:
        self.service = service
        self.node = node
        self._owner: tuple[JID | None] | None = None
        self._subscribed: frozenset[JID] | None = None

    async def owner(self) -> JID | None:
        if self._owner is None:
            self._owner = (await self.service._node_owner(self.node),)
        return self._owner[0]

    async def subscribed(self) -> frozenset[JID]:
        """The JIDs (bare or full) with a subscription in state "subscribed"."""
        if self._subscribed is None:
            subs = await self.service.store.subscriptions(self.service.service, self.node)
            found = (parse_jid(sub.jid) for sub in subs if sub.state == SUBSCRIBED)
            self._subscribed = frozenset(jid for jid in found if jid is not None)
        return self._subscribed


class PubSubService:
    def __init__(
        self,
        store: PubSubStore,
        service: str,
        policy: ServicePolicy,
        broadcaster: Broadcaster,
        relations: Relations,
        *,
        owner: JID | None = None,
        now: Callable[[], float],
    ) -> None:
        self.store = store
        self.service = service
        self.policy = policy
        self.limits = policy.limits
        self.broadcast = broadcaster
        self.relations = relations
        self.owner = owner  # the PEP account: owner of every node of its service
        self._now = now

    # ------------------------------------------------------------------ lookups
    async def node(self, name: str) -> tuple[PubSubNode, NodeConfig]:
        node = await self.store.get_node(self.service, name)
        if node is None:
            raise PubSubError(C.ITEM_NOT_FOUND, text="no such node")
        return node, NodeConfig.from_dict(node.config, self.policy.defaults)

    async def affiliation(self, node: str, jid: JID) -> Affiliation:
        if self.owner is not None and jid.bare == self.owner:
            return Affiliation.OWNER
        return self._affiliation_in(await self.store.affiliations(self.service, node), jid)

    def _affiliation_in(self, affiliations: Mapping[str, str], jid: JID) -> Affiliation:
        bare = jid.bare
        if self.owner is not None and bare == self.owner:
            return Affiliation.OWNER
        stored = affiliations.get(str(bare))
        return Affiliation(stored) if stored else Affiliation.NONE

    async def _node_owner(self, node: str) -> JID | None:
        if self.owner is not None:
            return self.owner
        for jid, affiliation in sorted((await self.store.affiliations(self.service, node)).items()):
            if affiliation == Affiliation.OWNER:
                return parse_jid(jid)
        return None

    async def _subscription(self, node: str, jid: JID) -> PubSubSubscription | None:
        for sub in await self.store.subscriptions(self.service, node):
            if sub.jid == str(jid):
                return sub
        return None

    async def check_access(
        self, node: str, config: NodeConfig, jid: JID, *, subscribing: bool = False
    ) -> None:
        """May ``jid`` retrieve items of (or subscribe to) ``node``? XEP-0060 §6.1.3,
        §6.5.9: the error names the access model that refused."""
        affiliation = await self.affiliation(node, jid)
        await self._check_access(_NodeFacts(self, node), config, jid, affiliation, subscribing)

    async def _check_access(
        self,
        facts: _NodeFacts,
        config: NodeConfig,
        jid: JID,
        affiliation: Affiliation,
        subscribing: bool,
    ) -> None:
        if affiliation is Affiliation.OUTCAST:
            raise PubSubError(C.FORBIDDEN, text="you are banned from this node")
        if affiliation in _READERS:
            return
        model = config.access_model
        if model is AccessModel.OPEN:
            return
        if model is AccessModel.WHITELIST:
            raise PubSubError(C.NOT_ALLOWED, "closed-node")
        if model is AccessModel.AUTHORIZE:
            if subscribing:
                return  # the subscription waits for the owner's approval
            subscribed = await facts.subscribed()
            if jid in subscribed or jid.bare in subscribed:
                return
            raise PubSubError(C.NOT_AUTHORIZED, "not-subscribed")
        owner = await facts.owner()
        item = None if owner is None else await self.relations.roster_item(owner, jid.bare)
        if model is AccessModel.PRESENCE:
            if item is None or item.subscription not in ("from", "both"):
                raise PubSubError(C.NOT_AUTHORIZED, "presence-subscription-required")
            return
        # roster
        allowed = set(config.roster_groups_allowed)
        if item is None or not allowed.intersection(item.groups):
            raise PubSubError(C.NOT_AUTHORIZED, "not-in-roster-group")

    async def may_access(self, node: str, config: NodeConfig, jid: JID) -> bool:
        try:
            await self.check_access(node, config, jid)
        except PubSubError:
            return False
        return True

    async def readers(self, node: str, config: NodeConfig, jids: Iterable[JID]) -> set[JID]:
        """Those of ``jids`` that may read ``node`` (:meth:`check_access` for each), with
        what the checks need (affiliations, owner, subscriptions) read once for all."""
        facts = _NodeFacts(self, node)
        affiliations: Mapping[str, str] | None = None
        found: set[JID] = set()
        for jid in jids:
            if self.owner is not None and jid.bare == self.owner:
                found.add(jid)
                continue
            if affiliations is None:
                affiliations = await self.store.affiliations(self.service, node)
            affiliation = self._affiliation_in(affiliations, jid)
            try:
                await self._check_access(facts, config, jid, affiliation, False)
            except PubSubError:
                continue
            found.add(jid)
        return found

    # ------------------------------------------------------------------ nodes
    async def create(
        self, actor: JID, name: str | None, form: Mapping[str, list[str]] | None = None
    ) -> str:
        """XEP-0060 §8.1: create a node (an instant node when ``name`` is None)."""
        if not self.policy.may_create(actor) or (
            self.owner is not None and actor.bare != self.owner
        ):
            raise PubSubError(C.FORBIDDEN, text="you may not create nodes here")
        if name is None:
            if not self.policy.instant_nodes:
                raise PubSubError(C.NOT_ACCEPTABLE, "nodeid-required")
            name = secrets.token_hex(8)
        config = self._configured(self.policy.defaults, form)
        await self._create(actor, name, config)
        return name

    def _configured(self, base: NodeConfig, form: Mapping[str, list[str]] | None) -> NodeConfig:
        if not form:
            return base
        try:
            return base.apply(form, self.limits.max_items)
        except ValueError as err:
            raise PubSubError(C.NOT_ACCEPTABLE, text=str(err)) from None

    async def _create(self, actor: JID, name: str, config: NodeConfig) -> None:
        owner = str(self.owner or actor.bare)
        try:
            created = await self.store.create_node(
                self.service, name, config.to_dict(), owner, max_nodes=self.limits.max_nodes
            )
        except PubSubLimitReached:
            raise PubSubError(
                C.POLICY_VIOLATION, text=f"at most {self.limits.max_nodes} nodes"
            ) from None
        if not created:
            raise PubSubError(C.CONFLICT, text="the node exists")

    async def _require_owner(self, name: str, actor: JID) -> tuple[PubSubNode, NodeConfig]:
        node, config = await self.node(name)
        if await self.affiliation(name, actor) is not Affiliation.OWNER:
            raise PubSubError(C.FORBIDDEN, text="only the node owner may do this")
        return node, config

    async def get_config(self, actor: JID, name: str) -> NodeConfig:
        return (await self._require_owner(name, actor))[1]

    async def configure(self, actor: JID, name: str, form: Mapping[str, list[str]]) -> None:
        _node, config = await self._require_owner(name, actor)
        new = self._configured(config, form)
        await self.store.set_config(self.service, name, new.to_dict())

    async def delete(self, actor: JID, name: str) -> None:
        """§8.4: the owner deletes a node; subscribers hear of it when notify_delete."""
        async with self.policy.locks.hold(self._key(name)):
            _node, config = await self._require_owner(name, actor)
            recipients = await self._recipients(name)
            await self.store.delete_node(self.service, name)
        if config.notify_delete:
            await self._emit(name, "delete", config, recipients=recipients)

    async def purge(self, actor: JID, name: str) -> None:
        """§8.5: the owner removes every item."""
        async with self.policy.locks.hold(self._key(name)):
            _node, config = await self._require_owner(name, actor)
            await self.store.purge(self.service, name)
        await self._emit(name, "purge", config)

    # ------------------------------------------------------------------ items
    async def publish(
        self,
        actor: JID,
        name: str,
        item_id: str | None,
        payload: Element | None,
        options: Mapping[str, list[str]] | None = None,
    ) -> str:
        """§7.1: publish (and, for PEP, create the node first); returns the item id."""
        async with self.policy.locks.hold(self._key(name)):
            found = await self.store.get_node(self.service, name)
            if found is None:
                if not self.policy.auto_create:
                    raise PubSubError(C.ITEM_NOT_FOUND, text="no such node")
                config = self._configured(self.policy.defaults, options)
                await self._create(actor, name, config)
            else:
                config = NodeConfig.from_dict(found.config, self.policy.defaults)
                if options:
                    unmet = config.unmet_preconditions(options, self.limits.max_items)
                    if unmet:
                        raise PubSubError(
                            C.CONFLICT,
                            "precondition-not-met",
                            "the node's configuration differs in " + ", ".join(unmet),
                        )
            await self._check_publish(name, config, actor)
            text = "" if payload is None else serialize_str(payload)
            if payload is None and (config.persist_items or config.deliver_payloads):
                raise PubSubError(C.BAD_REQUEST, "payload-required")
            if len(text.encode()) > self.limits.max_item_bytes:
                raise PubSubError(
                    C.NOT_ACCEPTABLE,
                    "payload-too-big",
                    f"items are limited to {self.limits.max_item_bytes} bytes",
                )
            item = PubSubItem(
                item_id or secrets.token_hex(8),
                str(actor),
                text,
                datetime.fromtimestamp(self._now(), UTC),
            )
            # A node that does not persist items keeps the last one, to send it later.
            keep = config.effective_max_items(self.limits.max_items) if config.persist_items else 1
            await self.store.publish(self.service, name, item, max_items=keep)
        if config.deliver_notifications:
            await self._emit(name, "items", config, items=(item,), payloads=(payload,))
        return item.id

    async def _check_publish(self, name: str, config: NodeConfig, actor: JID) -> None:
        affiliation = await self.affiliation(name, actor)
        if affiliation is Affiliation.OUTCAST:
            raise PubSubError(C.FORBIDDEN, text="you are banned from this node")
        if affiliation in _PUBLISHERS or config.publish_model is PublishModel.OPEN:
            return
        if config.publish_model is PublishModel.SUBSCRIBERS:
            subscription = await self._subscription(name, actor) or await self._subscription(
                name, actor.bare
            )
            if subscription is not None and subscription.state == SUBSCRIBED:
                return
        raise PubSubError(C.FORBIDDEN, text="you may not publish to this node")

    async def retract(self, actor: JID, name: str, item_id: str, notify: bool | None) -> None:
        """§7.2: delete an item; subscribers hear of it when ``notify`` (or, when the
        request did not say, the node's notify_retract) is true."""
        async with self.policy.locks.hold(self._key(name)):
            _node, config = await self.node(name)
            affiliation = await self.affiliation(name, actor)
            if affiliation not in (Affiliation.OWNER, Affiliation.PUBLISHER):
                if affiliation is not Affiliation.PUBLISH_ONLY:
                    raise PubSubError(C.FORBIDDEN, text="you may not retract items here")
                items = await self.store.get_items(self.service, name, ids=[item_id])
                publisher = parse_jid(items[0].publisher) if items else None
                if items and (publisher is None or publisher.bare != actor.bare):
                    raise PubSubError(C.FORBIDDEN, text="not your item")
            if not await self.store.retract(self.service, name, item_id):
                raise PubSubError(C.ITEM_NOT_FOUND, text="no such item")
        if config.notify_retract if notify is None else notify:
            await self._emit(name, "retract", config, retracted=(item_id,))

    async def items(
        self,
        actor: JID,
        name: str,
        *,
        max_items: int | None = None,
        ids: list[str] | None = None,
    ) -> list[PubSubItem]:
        """§6.5: items of a node the actor may read: all, the newest ``max_items``, or
        those with ``ids``."""
        _node, config = await self.node(name)
        await self.check_access(name, config, actor)
        if ids:
            return await self.store.get_items(self.service, name, ids=ids)
        keep = config.effective_max_items(self.limits.max_items)
        last = keep if max_items is None else min(max_items, keep)
        return await self.store.get_items(self.service, name, last=last)

    async def last_item(self, name: str) -> PubSubItem | None:
        items = await self.store.get_items(self.service, name, last=1)
        return items[0] if items else None

    # ------------------------------------------------------------------ subscriptions
    async def subscribe(self, actor: JID, name: str, jid: JID) -> PubSubSubscription:
        """§6.1: one subscription per JID (a second request returns the first)."""
        if jid.bare != actor.bare:
            raise PubSubError(C.BAD_REQUEST, "invalid-jid", "subscribe your own address")
        _node, config = await self.node(name)
        await self.check_access(name, config, actor, subscribing=True)
        existing = await self._subscription(name, jid)
        if existing is not None:
            return existing
        affiliation = await self.affiliation(name, actor)
        state = (
            PENDING
            if config.access_model is AccessModel.AUTHORIZE and affiliation not in _READERS
            else SUBSCRIBED
        )
        subscription = PubSubSubscription(str(jid), secrets.token_hex(8), state)
        await self.store.add_subscription(self.service, name, subscription)
        if state == SUBSCRIBED:
            await self.send_last_item(name, config, jid, on_presence=False)
        return subscription

    async def unsubscribe(self, actor: JID, name: str, jid: JID, subid: str | None) -> None:
        """§6.2."""
        if jid.bare != actor.bare and await self.affiliation(name, actor) is not Affiliation.OWNER:
            raise PubSubError(C.FORBIDDEN, text="you may not unsubscribe that address")
        await self.node(name)
        subscription = await self._subscription(name, jid)
        if subscription is None:
            raise PubSubError(C.UNEXPECTED_REQUEST, "not-subscribed", error_type="cancel")
        if subid is not None and subid != subscription.subid:
            raise PubSubError(C.NOT_ACCEPTABLE, "invalid-subid")
        await self.store.remove_subscription(
            self.service, name, subscription.jid, subscription.subid
        )

    async def send_last_item(
        self, name: str, config: NodeConfig, to: JID, *, on_presence: bool
    ) -> bool:
        """Send the last published item to ``to`` if the node's send_last_published_item
        says so (on subscription, or also when the subscriber's presence arrives)."""
        wanted = (
            (SendLast.ON_SUB_AND_PRESENCE,)
            if on_presence
            else (
                SendLast.ON_SUB,
                SendLast.ON_SUB_AND_PRESENCE,
            )
        )
        if config.send_last_published_item not in wanted:
            return False
        item = await self.last_item(name)
        if item is None:
            return False
        await self.broadcast(
            NodeEvent(
                self.service,
                name,
                "items",
                config,
                items=(item,),
                recipients=(to,),
                last_item=True,
                owner=self.owner,
            )
        )
        return True

    async def subscriptions_of(
        self, actor: JID, name: str | None
    ) -> list[tuple[str, PubSubSubscription]]:
        """§5.6: the actor's subscriptions (its bare JID and each of its full JIDs)."""
        found: list[tuple[str, PubSubSubscription]] = []
        for jid in dict.fromkeys((actor.bare, actor)):
            found.extend(await self.store.subscriptions_of(self.service, str(jid)))
        return [(node, sub) for node, sub in found if name is None or node == name]

    async def affiliations_of(self, actor: JID, name: str | None) -> dict[str, str]:
        """§5.7: the actor's affiliations."""
        if self.owner is not None and actor.bare == self.owner:
            nodes = await self.store.list_nodes(self.service)
            found = {node.node: Affiliation.OWNER.value for node in nodes}
        else:
            found = await self.store.affiliations_of(self.service, str(actor.bare))
        return {n: a for n, a in found.items() if name is None or n == name}

    # ------------------------------------------------------------------ owner management
    async def owner_subscriptions(self, actor: JID, name: str) -> list[PubSubSubscription]:
        await self._require_owner(name, actor)
        return await self.store.subscriptions(self.service, name)

    async def set_owner_subscriptions(
        self, actor: JID, name: str, changes: list[tuple[JID, str, str | None]]
    ) -> None:
        """§8.8.2: (jid, state, subid) each; state "none" removes the subscription."""
        _node, config = await self._require_owner(name, actor)
        current = {sub.jid: sub for sub in await self.store.subscriptions(self.service, name)}
        for _jid, state, _subid in changes:
            if state not in ("none", SUBSCRIBED, PENDING):
                raise PubSubError(C.BAD_REQUEST, text=f"unknown subscription state {state}")
        for jid, state, subid in changes:
            existing = current.get(str(jid))
            if state == "none":
                if existing is not None:
                    await self.store.remove_subscription(
                        self.service, name, existing.jid, existing.subid
                    )
                continue
            sid = subid or (existing.subid if existing else secrets.token_hex(8))
            await self.store.add_subscription(
                self.service, name, PubSubSubscription(str(jid), sid, state)
            )
            if state == SUBSCRIBED and (existing is None or existing.state != SUBSCRIBED):
                await self.send_last_item(name, config, jid, on_presence=False)

    async def owner_affiliations(self, actor: JID, name: str) -> dict[str, str]:
        await self._require_owner(name, actor)
        found = await self.store.affiliations(self.service, name)
        if self.owner is not None:
            found[str(self.owner)] = Affiliation.OWNER.value
        return found

    async def set_owner_affiliations(
        self, actor: JID, name: str, changes: list[tuple[JID, str]]
    ) -> None:
        """§8.9.2: set affiliations; the last owner cannot be removed (not-acceptable)."""
        await self._require_owner(name, actor)
        current = await self.store.affiliations(self.service, name)
        for jid, affiliation in changes:
            try:
                Affiliation(affiliation)
            except ValueError:
                raise PubSubError(
                    C.BAD_REQUEST, text=f"unknown affiliation {affiliation}"
                ) from None
            if self.owner is not None and jid.bare == self.owner:
                raise PubSubError(C.NOT_ACCEPTABLE, text="the account owns its PEP nodes")
            if affiliation == "none":
                current.pop(str(jid.bare), None)
            else:
                current[str(jid.bare)] = affiliation
        if self.owner is None and Affiliation.OWNER.value not in current.values():
            raise PubSubError(C.NOT_ACCEPTABLE, text="a node keeps at least one owner")
        for jid, affiliation in changes:
            await self.store.set_affiliation(self.service, name, str(jid.bare), affiliation)
            if affiliation == Affiliation.OUTCAST:
                for sub in await self.store.subscriptions(self.service, name):
                    sub_jid = parse_jid(sub.jid)
                    if sub_jid is not None and sub_jid.bare == jid.bare:
                        await self.store.remove_subscription(self.service, name, sub.jid, sub.subid)

    # ------------------------------------------------------------------ notifications
    def _key(self, name: str) -> str:
        return f"{self.service}\x00{name}"

    async def _recipients(self, name: str) -> tuple[JID, ...]:
        found: dict[JID, None] = {}
        for sub in await self.store.subscriptions(self.service, name):
            jid = parse_jid(sub.jid)
            if jid is not None and sub.state == SUBSCRIBED:
                found[jid] = None
        return tuple(found)

    async def _emit(
        self,
        name: str,
        kind: str,
        config: NodeConfig,
        *,
        items: tuple[PubSubItem, ...] = (),
        retracted: tuple[str, ...] = (),
        recipients: tuple[JID, ...] | None = None,
        payloads: tuple[Element | None, ...] = (),
    ) -> None:
        if recipients is None:
            recipients = await self._recipients(name)
        await self.broadcast(
            NodeEvent(
                self.service,
                name,
                kind,
                config,
                items=items,
                retracted=retracted,
                recipients=recipients,
                owner=self.owner,
                payloads=payloads,
            )
        )
