"""XEP-0030: Service Discovery for the server and for accounts.

Modules announce features with ``add_feature`` (server) and ``add_account_feature``
(accounts); this module collects them, nobody calls it. Host items of kind
``disco_extension`` (XEP-0128 data forms) extend the server's info, and kind
``disco_info_node`` names nodes answered with that same info (XEP-0115 ``node#ver``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from salon.core.iq import IqRequest, Target
from salon.core.items import (
    ACCOUNT_FEATURE,
    DISCO_EXTENSION,
    DISCO_FEATURE,
    DISCO_IDENTITY,
    DISCO_INFO_NODE,
    DISCO_ITEM,
    DISCO_NODE,
    Identity,
)
from salon.core.module import Module, ModuleOptions, Spec
from salon.errors import StanzaError, StanzaErrorCondition
from salon.namespaces import NS_DISCO_INFO, NS_DISCO_ITEMS
from salon.xml.element import Element

if TYPE_CHECKING:
    from salon.core.hosts import VirtualHost


def info_query(
    identities: Sequence[Identity], features: Iterable[str], extensions: Sequence[Element] = ()
) -> Element:
    """A disco#info <query/>: each identity once, features sorted, then extension forms."""
    query = Element("query", NS_DISCO_INFO)
    for identity in dict.fromkeys(identities):
        attrs = {"category": identity.category, "type": identity.type}
        if identity.name:
            attrs["name"] = identity.name
        query.add("identity", attrs=attrs)
    for feature in sorted(set(features)):
        query.add("feature", attrs={"var": feature})
    for form in extensions:
        query.append(form.copy())
    return query


def server_info(host: VirtualHost) -> Element:
    """The disco#info of the server itself, as every module registered it."""
    return info_query(
        host.items.get(DISCO_IDENTITY),
        host.items.get(DISCO_FEATURE),
        host.items.get(DISCO_EXTENSION),
    )


class Disco(Module[ModuleOptions]):
    name = "disco"
    specs = (Spec("XEP-0030", "2.5rc3"),)

    def setup(self) -> None:
        self.add_identity("server", "im", "Salon")
        self.add_feature(NS_DISCO_INFO)
        self.add_feature(NS_DISCO_ITEMS)
        self.add_account_feature(NS_DISCO_INFO)
        self.on_iq("get", NS_DISCO_INFO, "query", self.info, to=Target.ANY)
        self.on_iq("get", NS_DISCO_ITEMS, "query", self.items, to=Target.ANY)

    async def info(self, request: IqRequest) -> Element:
        node = request.payload.get("node")
        if request.target is Target.HOST:
            if node is not None and node not in self.host.items.get(DISCO_INFO_NODE):
                for answered in self.host.items.get(DISCO_NODE):
                    if answered.node == node and (found := await answered.info(request)):
                        return request.result(found)
                raise StanzaError(StanzaErrorCondition.ITEM_NOT_FOUND)
            query = server_info(self.host)
            query.set("node", node)
            return request.result(query)
        if node is not None:
            raise StanzaError(StanzaErrorCondition.ITEM_NOT_FOUND)
        if not await self._account_exists(request):
            raise StanzaError(StanzaErrorCondition.SERVICE_UNAVAILABLE)
        account = [Identity("account", "registered")]
        return request.result(info_query(account, self.host.items.get(ACCOUNT_FEATURE)))

    async def items(self, request: IqRequest) -> Element:
        node = request.payload.get("node")
        if node is not None:
            return await self._node_items(request, node)
        if request.target is not Target.HOST and not await self._account_exists(request):
            raise StanzaError(StanzaErrorCondition.SERVICE_UNAVAILABLE)
        query = Element("query", NS_DISCO_ITEMS)
        if request.target is Target.HOST:
            for item in self.host.items.get(DISCO_ITEM):
                attrs = {"jid": item.jid}
                if item.name:
                    attrs["name"] = item.name
                if item.node:
                    attrs["node"] = item.node
                query.add("item", attrs=attrs)
        return request.result(query)

    async def _node_items(self, request: IqRequest, node: str) -> Element:
        """disco#items of a node a module answers (DISCO_NODE), on the server only."""
        if request.target is Target.HOST:
            for answered in self.host.items.get(DISCO_NODE):
                if answered.node == node:
                    query = Element("query", NS_DISCO_ITEMS, {"node": node})
                    for item in await answered.items(request):
                        attrs = {"jid": item.jid}
                        if item.name:
                            attrs["name"] = item.name
                        if item.node:
                            attrs["node"] = item.node
                        query.add("item", attrs=attrs)
                    return request.result(query)
        raise StanzaError(StanzaErrorCondition.ITEM_NOT_FOUND)

    async def _account_exists(self, request: IqRequest) -> bool:
        if request.target is Target.SELF:
            return True
        to = request.to
        if self.sessions.is_online(to):
            return True
        return await self.storage.accounts.get(self.domain, to.local or "") is not None
