"""The item registries every host has, by kind. A module adds with
``self.add_item(KIND, value)``; whoever needs them reads ``host.items.get(KIND)``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from salon.core.registry import ItemKind
from salon.core.web import HttpRoute
from salon.xml.element import Element

if TYPE_CHECKING:
    from salon.core.iq import IqRequest


@dataclass(frozen=True, slots=True)
class Identity:
    category: str
    type: str
    name: str | None = None


@dataclass(frozen=True, slots=True)
class DiscoItem:
    jid: str
    name: str | None = None
    node: str | None = None


# service discovery (XEP-0030) of the server itself
DISCO_FEATURE = ItemKind[str]("disco_feature")
DISCO_IDENTITY = ItemKind[Identity]("disco_identity")
DISCO_EXTENSION = ItemKind[Element]("disco_extension")  # XEP-0128 forms in disco#info
DISCO_ITEM = ItemKind[DiscoItem]("disco_item")  # the server's disco#items
DISCO_INFO_NODE = ItemKind[str]("disco_info_node")  # nodes disco#info answers (caps)


@dataclass(frozen=True, slots=True)
class DiscoNode:
    """A node of the server's disco tree a module answers (XEP-0050's command list):
    ``items`` gives its disco#items, ``info`` its disco#info ``<query/>`` (None: the node
    is unknown to the requester)."""

    node: str
    items: Callable[[IqRequest], Awaitable[list[DiscoItem]]]
    info: Callable[[IqRequest], Awaitable[Element | None]]


DISCO_NODE = ItemKind[DiscoNode]("disco_node")  # nodes of the server answered by modules
# service discovery of accounts (a bare JID)
ACCOUNT_FEATURE = ItemKind[str]("account_feature")
# stream negotiation
STREAM_FEATURE = ItemKind[Element]("stream_feature")  # offered after authentication
PREAUTH_FEATURE = ItemKind[Element]("preauth_feature")  # offered before authentication
PREAUTH_IQ_NAMESPACE = ItemKind[str]("preauth_iq_namespace")  # iq namespaces open before auth

# HTTP served by modules (salon.core.web): routes modules add, base URLs the web server adds
HTTP_ROUTE = ItemKind[HttpRoute]("http_route")
HTTP_BASE_URL = ItemKind[str]("http_base_url")  # "https://example.org:5281", no trailing /
NONZA_NAMESPACE = ItemKind[str]("nonza_namespace")  # stream-level elements a module takes
