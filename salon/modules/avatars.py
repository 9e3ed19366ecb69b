"""XEP-0398: User Avatar (XEP-0084) to vCard-based avatar (XEP-0153) conversion, both ways,
and the XEP-0153 photo hash in the user's presence.

* A publish to ``urn:xmpp:avatar:metadata`` (§3.1): the info without an external ``url``
  names an item of ``urn:xmpp:avatar:data``; its image, when its SHA-1 matches the id,
  becomes the vCard's ``<PHOTO/>``. Empty metadata (the avatar switched off) removes it.
* A vCard stored with a ``<PHOTO><BINVAL/></PHOTO>`` (§3.2): the image is published to the
  data node under its SHA-1, then one info to the metadata node (notifying the contacts).
  A vCard without photo switches the PEP avatar off if one was on.
* Presence (§4): every available presence the user sends (broadcast or directed, e.g. a MUC
  join) gets ``<x xmlns='vcard-temp:x:update'><photo>hash</photo></x>`` unless the client
  put a ``<photo/>`` in one itself; an ``<x/>`` without ``<photo/>`` is filled in.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections import OrderedDict

from pydantic import Field

from salon.core.events import PepItemPublished, PresenceBroadcast, PreStanza, VCardStored
from salon.core.locks import UserLocks
from salon.core.module import Module, ModuleOptions, Spec
from salon.core.personal import PersonalEventing, VCards
from salon.errors import StanzaError
from salon.jid import JID
from salon.namespaces import (
    NS_AVATAR_DATA,
    NS_AVATAR_METADATA,
    NS_PEP_VCARD_CONVERSION,
    NS_VCARD,
    NS_VCARD_UPDATE,
)
from salon.xml.element import Element

#: A cached "no avatar" (None is "not looked up").
_NONE = ""


def vcard_photo(vcard: Element | None) -> tuple[bytes, str] | None:
    """The image and its type of a vCard's ``<PHOTO><BINVAL/></PHOTO>``, if valid."""
    photo = None if vcard is None else vcard.find("PHOTO", NS_VCARD)
    binval = None if photo is None else photo.find_text("BINVAL", NS_VCARD)
    if photo is None or not binval:
        return None
    try:
        image = base64.b64decode("".join(binval.split()), validate=True)
    except (binascii.Error, ValueError):
        return None
    if not image:
        return None
    return image, (photo.find_text("TYPE", NS_VCARD) or "image/png").strip()


def photo_hash(image: bytes) -> str:
    return hashlib.sha1(image).hexdigest()


def image_size(image: bytes) -> tuple[int, int] | None:
    """Width and height of a PNG or GIF, read from its header."""
    if image[:8] == b"\x89PNG\r\n\x1a\n" and len(image) >= 24:
        return int.from_bytes(image[16:20], "big"), int.from_bytes(image[20:24], "big")
    if image[:6] in (b"GIF87a", b"GIF89a") and len(image) >= 10:
        return int.from_bytes(image[6:8], "little"), int.from_bytes(image[8:10], "little")
    return None


def metadata_for(image: bytes, mime: str) -> Element:
    metadata = Element("metadata", NS_AVATAR_METADATA)
    info = metadata.add("info")
    info.attrs.update({"bytes": str(len(image)), "id": photo_hash(image), "type": mime})
    size = image_size(image)
    if size is not None:
        info.attrs.update({"width": str(size[0]), "height": str(size[1])})
    return metadata


def with_photo(vcard: Element | None, photo: tuple[bytes, str] | None) -> Element:
    """``vcard`` (or a new one) with its PHOTO replaced by ``photo``, or removed."""
    result = vcard.copy() if vcard is not None else Element("vCard", NS_VCARD)
    for old in result.find_all("PHOTO", NS_VCARD):
        result.remove(old)
    if photo is not None:
        image, mime = photo
        element = result.add("PHOTO")
        element.add("TYPE", text=mime)
        element.add("BINVAL", text=base64.b64encode(image).decode())
    return result


class AvatarsOptions(ModuleOptions):
    cache_size: int = Field(10_000, ge=1, description="Users whose avatar hash is remembered")


class Avatars(Module[AvatarsOptions]):
    name = "avatars"
    specs = (
        Spec("XEP-0398", "0.2.1"),
        Spec("XEP-0153", "1.1", "hashes added to presence"),
        Spec("XEP-0084", "1.1.4", "over PEP"),
    )
    depends = ("pep", "vcard")

    def setup(self) -> None:
        self.pep = self.require(PersonalEventing)
        self.vcards = self.require(VCards)
        self.locks = UserLocks()
        self.hashes: OrderedDict[JID, str] = OrderedDict()
        self.add_account_feature(NS_PEP_VCARD_CONVERSION)
        self.hook(PepItemPublished, self.pep_published)
        self.hook(VCardStored, self.vcard_stored)
        # before the presence module sends it anywhere (it runs at DELIVER)
        self.hook(PresenceBroadcast, self.broadcast, 10)
        self.hook(PreStanza, self.directed, 10)

    # ------------------------------------------------------------------ PEP → vCard
    async def pep_published(self, event: PepItemPublished) -> None:
        if event.source == self.name or event.node != NS_AVATAR_METADATA:
            return
        metadata = event.payload
        if metadata is None or (metadata.ns, metadata.tag) != (NS_AVATAR_METADATA, "metadata"):
            return
        user = event.owner
        infos = [i for i in metadata.find_all("info", NS_AVATAR_METADATA) if not i.get("url")]
        async with self.locks.hold(user):
            photo: tuple[bytes, str] | None = None
            if infos:
                info = infos[0]
                photo = await self._pep_image(user, info.get("id") or "", info.get("type"))
                if photo is None:
                    return
            elif metadata.find("info", NS_AVATAR_METADATA) is not None:
                return  # only external URLs: nothing to put in a vCard
            vcard = await self.vcards.get(user)
            if vcard is None and photo is None:
                return
            try:
                await self.vcards.put(user, with_photo(vcard, photo), source=self.name)
            except StanzaError as err:
                self.log.info("avatar of %s not copied to the vCard: %s", user, err)

    async def _pep_image(
        self, user: JID, item_id: str, mime: str | None
    ) -> tuple[bytes, str] | None:
        for item in await self.pep.items(user, NS_AVATAR_DATA) or []:
            if item.id != item_id or item.payload is None:
                continue
            try:
                image = base64.b64decode("".join(item.payload.text.split()), validate=True)
            except (binascii.Error, ValueError):
                return None
            if photo_hash(image) != item_id:
                self.log.info("avatar data of %s does not match its id", user)
                return None
            return image, mime or "image/png"
        return None

    # ------------------------------------------------------------------ vCard → PEP
    async def vcard_stored(self, event: VCardStored) -> None:
        user = event.user
        photo = vcard_photo(event.vcard)
        self._remember(user, photo_hash(photo[0]) if photo else _NONE)
        if event.source == self.name:
            return
        async with self.locks.hold(user):
            current = await self.pep.items(user, NS_AVATAR_METADATA)
            last = current[-1].payload if current else None
            shown = [] if last is None else last.find_all("info", NS_AVATAR_METADATA)
            if photo is None:
                if shown:
                    off = Element("metadata", NS_AVATAR_METADATA)
                    await self.pep.publish(user, NS_AVATAR_METADATA, "", off, source=self.name)
                return
            image, mime = photo
            digest = photo_hash(image)
            if any(info.get("id") == digest for info in shown):
                return
            data = Element("data", NS_AVATAR_DATA, children=[base64.b64encode(image).decode()])
            await self.pep.publish(user, NS_AVATAR_DATA, digest, data, source=self.name)
            metadata = metadata_for(image, mime)
            await self.pep.publish(user, NS_AVATAR_METADATA, digest, metadata, source=self.name)

    # ------------------------------------------------------------------ presence
    async def broadcast(self, event: PresenceBroadcast) -> None:
        if event.stanza.get("type") is None:
            await self._stamp(event.origin.jid.bare, event.stanza)

    async def directed(self, event: PreStanza) -> None:
        stanza = event.stanza
        if stanza.tag == "presence" and event.to is not None and stanza.get("type") is None:
            await self._stamp(event.origin.jid.bare, stanza)

    async def _stamp(self, user: JID, presence: Element) -> None:
        update = presence.find("x", NS_VCARD_UPDATE)
        if update is not None and update.find("photo", NS_VCARD_UPDATE) is not None:
            return  # the client said what to advertise (an empty photo: "not ready")
        digest = await self._hash(user)
        if update is None:
            if not digest:
                return
            update = presence.add("x", NS_VCARD_UPDATE)
        update.add("photo", text=digest or None)

    async def _hash(self, user: JID) -> str:
        known = self.hashes.get(user)
        if known is not None:
            self.hashes.move_to_end(user)
            return known
        photo = vcard_photo(await self.vcards.get(user))
        digest = photo_hash(photo[0]) if photo else _NONE
        self._remember(user, digest)
        return digest

    def _remember(self, user: JID, digest: str) -> None:
        self.hashes[user] = digest
        self.hashes.move_to_end(user)
        while len(self.hashes) > self.options.cache_size:
            self.hashes.popitem(last=False)
