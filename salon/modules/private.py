"""XEP-0049: Private XML Storage.

A user stores XML fragments under their own namespaces and gets them back by namespace.
A set replaces, for each namespace it carries, every fragment stored in that namespace;
a get names exactly one namespace. Each user's fragments are kept as one document, and a
set that would make it larger than ``max_bytes`` is refused.

Errors (XEP-0049 §2.3, §3): a query without a child element, or with a child in a reserved
namespace (``jabber:client``, ``jabber:server``, ``jabber:iq:private`` or none at all), is
<not-acceptable/>; a get naming several namespaces is <bad-request/>; touching another
user's storage is <forbidden/>.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from pydantic import Field

from salon.core.events import PrivateXmlStored
from salon.core.iq import IqRequest, Target
from salon.core.locks import UserLocks
from salon.core.module import Module, ModuleOptions, Spec
from salon.core.personal import PrivateXml
from salon.errors import StanzaError, StanzaErrorCondition
from salon.jid import JID
from salon.namespaces import NS_CLIENT, NS_PRIVATE, NS_SERVER
from salon.xml.element import Element
from salon.xml.fragment import parse_element
from salon.xml.serializer import serialize_str

RESERVED_NAMESPACES = frozenset((NS_CLIENT, NS_SERVER, NS_PRIVATE, ""))


def fragments(query: Element) -> list[Element]:
    """The query's child elements; not-acceptable when there are none or one is reserved."""
    children = list(query.elements())
    if not children:
        raise StanzaError(StanzaErrorCondition.NOT_ACCEPTABLE, "name a namespace")
    for child in children:
        if child.ns in RESERVED_NAMESPACES:
            raise StanzaError(StanzaErrorCondition.NOT_ACCEPTABLE, "reserved namespace")
    return children


class PrivateStorageOptions(ModuleOptions):
    max_bytes: int = Field(
        256 * 1024, ge=1024, description="Most private XML one user may store, in bytes"
    )


class PrivateStorage(Module[PrivateStorageOptions]):
    name = "private"
    specs = (Spec("XEP-0049", "1.2"),)

    def setup(self) -> None:
        self.max_bytes = self.options.max_bytes
        self.store = self.storage.keyvalue("private")
        self.locks = UserLocks()
        self.add_feature(NS_PRIVATE)
        self.on_iq("get", NS_PRIVATE, "query", self.get, to=Target.ACCOUNT)
        self.on_iq("set", NS_PRIVATE, "query", self.set, to=Target.ACCOUNT)
        self.provide(PrivateXml, _Private(self))

    async def get(self, request: IqRequest) -> Element:
        wanted = fragments(self._own_query(request))
        namespaces = {child.ns for child in wanted}
        if len(namespaces) != 1:
            raise StanzaError(StanzaErrorCondition.BAD_REQUEST, "one namespace per get")
        stored = await self._load(request.to.local or "")
        found = [child for child in stored.elements() if child.ns in namespaces]
        result = Element("query", NS_PRIVATE, children=[*(found or wanted)])
        return request.result(result)

    async def set(self, request: IqRequest) -> None:
        given = fragments(self._own_query(request))
        await self.store_fragments(request.to.local or "", given, None)

    async def store_fragments(
        self, username: str, given: list[Element], source: str | None
    ) -> None:
        namespaces = {child.ns for child in given}
        async with self._user_lock(username):
            stored = await self._load(username)
            kept = [child for child in stored.elements() if child.ns not in namespaces]
            document = Element("query", NS_PRIVATE, children=[*kept, *given])
            text = serialize_str(document)
            if len(text.encode()) > self.max_bytes:
                raise StanzaError(
                    StanzaErrorCondition.NOT_ACCEPTABLE,
                    f"private storage is limited to {self.max_bytes} bytes",
                )
            await self.store.set(self.domain, username, text)
        user = JID.make(username, self.domain)
        await self.host.hooks.fire(PrivateXmlStored(user, tuple(given), source))

    # ------------------------------------------------------------------ helpers
    def _own_query(self, request: IqRequest) -> Element:
        if request.target is not Target.SELF:
            raise StanzaError(StanzaErrorCondition.FORBIDDEN, "not your private storage")
        return request.payload

    async def _load(self, username: str) -> Element:
        stored = await self.store.get(self.domain, username)
        return Element("query", NS_PRIVATE) if stored is None else parse_element(stored)

    @asynccontextmanager
    async def _user_lock(self, username: str) -> AsyncIterator[None]:
        """One set at a time per user, so concurrent sets cannot lose each other's data."""
        async with self.locks.hold(JID.make(username, self.domain)):
            yield


class _Private(PrivateXml):
    def __init__(self, module: PrivateStorage) -> None:
        self.module = module

    async def get(self, user: JID, namespace: str) -> Element | None:
        stored = await self.module._load(user.local or "")
        return next((c for c in stored.elements() if c.ns == namespace), None)

    async def put(self, user: JID, fragment: Element, *, source: str) -> None:
        await self.module.store_fragments(user.local or "", [fragment], source)
