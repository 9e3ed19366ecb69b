"""XEP-0054: vcard-temp. Each account stores one vCard; anyone may read it.

A user sets their own vCard (no 'to', or their own bare JID); setting another's is
<forbidden/>. Reading one's own vCard when none is stored gives an empty <vCard/>; reading
another user's gives <item-not-found/>, or <service-unavailable/> when the account does not
exist (XEP-0054 §3.3, RFC 6121 §8.5.1). XEP-0153 avatar hashes travel in presence and are
left alone.
"""

from __future__ import annotations

from pydantic import Field

from salon.core.events import VCardStored
from salon.core.iq import IqRequest, Target
from salon.core.module import Module, ModuleOptions, Spec
from salon.core.personal import VCards
from salon.errors import StanzaError, StanzaErrorCondition
from salon.jid import JID
from salon.namespaces import NS_VCARD
from salon.xml.element import Element
from salon.xml.fragment import parse_element
from salon.xml.serializer import serialize_str


class VCardTempOptions(ModuleOptions):
    max_bytes: int = Field(
        128 * 1024, ge=1024, description="Largest vCard a user may store, in bytes of XML"
    )


class VCardTemp(Module[VCardTempOptions]):
    name = "vcard"
    specs = (Spec("XEP-0054", "1.2"), Spec("XEP-0153", "1.1", "avatar hashes pass through"))

    def setup(self) -> None:
        self.max_bytes = self.options.max_bytes
        self.store = self.storage.keyvalue("vcard")
        self.add_feature(NS_VCARD)
        self.add_account_feature(NS_VCARD)
        self.on_iq("get", NS_VCARD, "vCard", self.get, to=Target.ACCOUNT)
        self.on_iq("set", NS_VCARD, "vCard", self.set, to=Target.ACCOUNT)
        self.provide(VCards, _VCards(self))

    async def get(self, request: IqRequest) -> Element:
        username = request.to.local or ""
        stored = await self.store.get(self.domain, username)
        if stored is not None:
            return request.result(parse_element(stored))
        if request.target is Target.SELF:
            return request.result(Element("vCard", NS_VCARD))
        if await self.storage.accounts.get(self.domain, username) is None:
            raise StanzaError(StanzaErrorCondition.SERVICE_UNAVAILABLE)
        raise StanzaError(StanzaErrorCondition.ITEM_NOT_FOUND)

    async def set(self, request: IqRequest) -> None:
        if request.target is not Target.SELF:
            raise StanzaError(StanzaErrorCondition.FORBIDDEN, "only your own vCard")
        await self.store_vcard(request.to.local or "", request.payload, None)

    async def store_vcard(self, username: str, vcard: Element, source: str | None) -> None:
        text = serialize_str(vcard)
        if len(text.encode()) > self.max_bytes:
            raise StanzaError(
                StanzaErrorCondition.NOT_ACCEPTABLE, f"a vCard may be {self.max_bytes} bytes"
            )
        is_empty = not list(vcard.elements()) and not vcard.text.strip()
        await self.store.set(self.domain, username, None if is_empty else text)
        user = JID.make(username, self.domain)
        await self.host.hooks.fire(VCardStored(user, None if is_empty else vcard, source))


class _VCards(VCards):
    def __init__(self, module: VCardTemp) -> None:
        self.module = module

    async def get(self, user: JID) -> Element | None:
        stored = await self.module.store.get(self.module.domain, user.local or "")
        return None if stored is None else parse_element(stored)

    async def put(self, user: JID, vcard: Element, *, source: str) -> None:
        await self.module.store_vcard(user.local or "", vcard, source)
