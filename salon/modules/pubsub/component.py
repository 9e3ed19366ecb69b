"""The ``pubsub`` module: a XEP-0060 service at ``pubsub.<domain>`` (the ``domain`` option
names it otherwise). Local accounts create nodes; anyone may discover, subscribe and read as
each node's access model allows; notifications go to subscribed JIDs."""

from __future__ import annotations

from pydantic import Field

from salon.core.items import DISCO_ITEM, DiscoItem, Identity
from salon.core.module import Module, ModuleOptions, Spec
from salon.core.roster_cache import RosterCache
from salon.core.session import C2SSession
from salon.errors import StanzaError, StanzaErrorCondition
from salon.jid import JID
from salon.modules.disco import info_query
from salon.modules.pubsub import protocol
from salon.modules.pubsub.config import AccessModel, NodeConfig
from salon.modules.pubsub.service import Limits, NodeEvent, PubSubService, ServicePolicy
from salon.namespaces import (
    NS_DISCO_INFO,
    NS_DISCO_ITEMS,
    NS_PUBSUB,
    NS_PUBSUB_META_DATA,
    NS_PUBSUB_OWNER,
)
from salon.storage.interfaces import RosterItem
from salon.xml.broadcast import Broadcast
from salon.xml.dataforms import Field as FormField
from salon.xml.dataforms import build_form
from salon.xml.element import Element
from salon.xml.stanza import iq_result


class PubSubOptions(ModuleOptions):
    domain: str = Field("", description="The service's address (default pubsub.<host>)")
    max_item_bytes: int = Field(128 * 1024, ge=1024, description="Largest item payload, bytes")
    max_items: int = Field(1024, ge=1, description="Most items a node keeps ('max')")
    max_nodes: int = Field(10_000, ge=1, description="Most nodes on the service")
    default_max_items: int = Field(64, ge=1, description="max_items of a new node")
    local_creators_only: bool = Field(True, description="Only local accounts create nodes")


class _Rosters:
    def __init__(self, cache: RosterCache) -> None:
        self.cache = cache

    async def roster_item(self, owner: JID, contact: JID) -> RosterItem | None:
        return await self.cache.item(owner, str(contact))


class PubSub(Module[PubSubOptions]):
    name = "pubsub"
    specs = (Spec("XEP-0060", "1.26.0", "no subscription options, no collections"),)
    depends = ("disco", "roster")

    def setup(self) -> None:
        opts = self.options
        self.address = opts.domain or f"pubsub.{self.domain}"
        self.jid = JID.make(None, self.address)
        host_domain = self.domain
        self.policy = ServicePolicy(
            limits=Limits(opts.max_item_bytes, opts.max_items, opts.max_nodes),
            defaults=NodeConfig(
                access_model=AccessModel.OPEN,
                max_items=min(opts.default_max_items, opts.max_items),
            ),
            auto_create=False,
            instant_nodes=True,
            may_create=(lambda jid: jid.domain == host_domain)
            if opts.local_creators_only
            else (lambda _jid: True),
        )
        self.rosters = _Rosters(self.require(RosterCache))
        self.add_item(DISCO_ITEM, DiscoItem(jid=self.address, name="Publish-Subscribe"))
        self.serve_domain(self.address, self)

    def service(self) -> PubSubService:
        return PubSubService(
            self.storage.pubsub,
            self.address,
            self.policy,
            self.broadcast,
            self.rosters,
            now=self.clock.time,
        )

    async def broadcast(self, event: NodeEvent) -> None:
        if not event.recipients:
            return
        shared = Broadcast(protocol.event_message(event, self.address, None))  # serialized once
        for to in event.recipients:
            await self.router.route(shared.to(str(to)), None, self.jid, to)

    # ------------------------------------------------------------------ DomainService
    async def receive(
        self, stanza: Element, origin: C2SSession | None, sender: JID, to: JID
    ) -> None:
        if stanza.tag != "iq":
            if stanza.tag == "message" and stanza.get("type") not in ("error", "headline"):
                raise StanzaError(StanzaErrorCondition.SERVICE_UNAVAILABLE)
            return  # presence, and answers to nothing we sent
        iq_type = stanza.get("type")
        if iq_type not in ("get", "set"):
            return
        if to.local is not None or to.resource is not None:
            raise StanzaError(StanzaErrorCondition.SERVICE_UNAVAILABLE)
        payload = stanza.first_child
        if payload is None:
            raise StanzaError(StanzaErrorCondition.BAD_REQUEST)
        key = (iq_type, payload.ns, payload.tag)
        if key[1:] in ((NS_PUBSUB, "pubsub"), (NS_PUBSUB_OWNER, "pubsub")):
            reply = await protocol.handle(self.service(), stanza, sender)
        elif key == ("get", NS_DISCO_INFO, "query"):
            reply = iq_result(stanza, await self._info(payload.get("node")))
        elif key == ("get", NS_DISCO_ITEMS, "query"):
            reply = iq_result(stanza, await self._items(payload.get("node")))
        else:
            raise StanzaError(StanzaErrorCondition.SERVICE_UNAVAILABLE)
        self.router.deliver_reply(origin, reply)

    async def _info(self, node: str | None) -> Element:
        if node is None:
            return info_query(
                [Identity("pubsub", "service", "Publish-Subscribe")],
                [NS_DISCO_INFO, NS_DISCO_ITEMS, *protocol.features(pep=False)],
            )
        found = await self.storage.pubsub.get_node(self.address, node)
        if found is None:
            raise StanzaError(StanzaErrorCondition.ITEM_NOT_FOUND)
        config = NodeConfig.from_dict(found.config, self.policy.defaults)
        meta = build_form(
            NS_PUBSUB_META_DATA,
            [
                FormField("pubsub#title", values=(config.title,)),
                FormField("pubsub#access_model", values=(config.access_model.value,)),
                FormField("pubsub#publish_model", values=(config.publish_model.value,)),
            ],
            "result",
        )
        query = info_query(
            [Identity("pubsub", "leaf")], [NS_PUBSUB, NS_DISCO_INFO, NS_DISCO_ITEMS], [meta]
        )
        query.set("node", node)
        return query

    async def _items(self, node: str | None) -> Element:
        query = Element("query", NS_DISCO_ITEMS)
        if node is None:
            for found in await self.storage.pubsub.list_nodes(self.address):
                attrs = {"jid": self.address, "node": found.node}
                title = found.config.get("title")
                if title:
                    attrs["name"] = str(title)
                query.add("item", attrs=attrs)
            return query
        if await self.storage.pubsub.get_node(self.address, node) is None:
            raise StanzaError(StanzaErrorCondition.ITEM_NOT_FOUND)
        query.set("node", node)
        return query
