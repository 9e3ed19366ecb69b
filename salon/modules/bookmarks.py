"""XEP-0402: PEP Native Bookmarks, with both compatibility modes of §5.3.

Native bookmarks are items of the account's ``urn:xmpp:bookmarks:1`` PEP node, one per
room, the room's JID as item id. Clients that still speak XEP-0048 keep one
``<storage xmlns='storage:bookmarks'/>`` either in private XML (XEP-0049, the ``#compat``
feature) or as the item ``current`` of the ``storage:bookmarks`` PEP node (XEP-0223, the
``#compat-pep`` feature). The server keeps the three in step:

* a native publish or retract (or purge, or node deletion) rebuilds the legacy
  ``<storage/>`` from the native items and stores it in both legacy places; ``<url/>``
  bookmarks, which have no native form, are kept from what was stored;
* a legacy write (either place) is split into native items: changed or new rooms are
  published, rooms no longer listed are retracted (so native clients are notified), and the
  other legacy place gets the same ``<storage/>``.

Conference children other than ``<nick/>`` and ``<password/>`` travel inside the native
``<extensions/>`` and back. Writes made here name this module as their source, so the
change events they cause are not converted again.
"""

from __future__ import annotations

from dataclasses import dataclass

from salon.core.events import PepItemPublished, PepItemsRemoved, PrivateXmlStored
from salon.core.locks import UserLocks
from salon.core.module import Module, ModuleOptions, Spec
from salon.core.personal import PepItem, PersonalEventing, PrivateXml
from salon.errors import StanzaError, StanzaErrorCondition
from salon.jid import JID, parse_jid
from salon.namespaces import (
    NS_BOOKMARKS,
    NS_BOOKMARKS_COMPAT,
    NS_BOOKMARKS_COMPAT_PEP,
    NS_LEGACY_BOOKMARKS,
)
from salon.xml.element import Element
from salon.xml.serializer import serialize_str

LEGACY_ITEM = "current"

#: §3 publish-options of a native bookmark; the legacy node is private the same way.
NATIVE_OPTIONS: dict[str, list[str]] = {
    "pubsub#persist_items": ["true"],
    "pubsub#max_items": ["max"],
    "pubsub#send_last_published_item": ["never"],
    "pubsub#access_model": ["whitelist"],
}
LEGACY_OPTIONS: dict[str, list[str]] = {
    "pubsub#persist_items": ["true"],
    "pubsub#access_model": ["whitelist"],
}


def _true(value: str | None) -> bool:
    return value in ("true", "1")


@dataclass(frozen=True, slots=True)
class Bookmark:
    """One room bookmark, whichever form it came in."""

    jid: str
    name: str | None = None
    autojoin: bool = False
    nick: str | None = None
    password: str | None = None
    extensions: tuple[Element, ...] = ()

    @property
    def key(self) -> tuple[object, ...]:
        extensions = tuple(serialize_str(e) for e in self.extensions)
        return (self.jid, self.name, self.autojoin, self.nick, self.password, extensions)

    @classmethod
    def from_legacy(cls, conference: Element) -> Bookmark | None:
        room = parse_jid(conference.get("jid") or "")
        if room is None or room.local is None or room.resource is not None:
            return None
        extra = tuple(c for c in conference.elements() if (c.ns, c.tag) not in _LEGACY_FIELDS)
        return cls(
            str(room),
            conference.get("name"),
            _true(conference.get("autojoin")),
            conference.find_text("nick", NS_LEGACY_BOOKMARKS),
            conference.find_text("password", NS_LEGACY_BOOKMARKS),
            extra,
        )

    @classmethod
    def from_native(cls, item_id: str, conference: Element | None) -> Bookmark | None:
        room = parse_jid(item_id)
        if room is None or conference is None or conference.tag != "conference":
            return None
        if conference.ns != NS_BOOKMARKS:
            return None
        extensions = conference.find("extensions", NS_BOOKMARKS)
        return cls(
            str(room),
            conference.get("name"),
            _true(conference.get("autojoin")),
            conference.find_text("nick", NS_BOOKMARKS),
            conference.find_text("password", NS_BOOKMARKS),
            tuple(extensions.elements()) if extensions is not None else (),
        )

    def to_native(self) -> Element:
        conference = Element("conference", NS_BOOKMARKS)
        if self.name is not None:
            conference.set("name", self.name)
        conference.set("autojoin", "true" if self.autojoin else "false")
        if self.nick is not None:
            conference.add("nick", text=self.nick)
        if self.password is not None:
            conference.add("password", text=self.password)
        if self.extensions:
            extensions = conference.add("extensions")
            for element in self.extensions:
                extensions.append(element.copy())
        return conference

    def to_legacy(self) -> Element:
        conference = Element("conference", NS_LEGACY_BOOKMARKS, {"jid": self.jid})
        if self.name is not None:
            conference.set("name", self.name)
        conference.set("autojoin", "true" if self.autojoin else "false")
        if self.nick is not None:
            conference.add("nick", text=self.nick)
        if self.password is not None:
            conference.add("password", text=self.password)
        for element in self.extensions:
            conference.append(element.copy())
        return conference


_LEGACY_FIELDS = frozenset(((NS_LEGACY_BOOKMARKS, "nick"), (NS_LEGACY_BOOKMARKS, "password")))


def _is_storage(element: Element | None) -> bool:
    return element is not None and (element.ns, element.tag) == (NS_LEGACY_BOOKMARKS, "storage")


def from_storage(storage: Element) -> dict[str, Bookmark]:
    """The rooms of a legacy ``<storage/>``; the last one wins when a room repeats."""
    found: dict[str, Bookmark] = {}
    for conference in storage.find_all("conference", NS_LEGACY_BOOKMARKS):
        bookmark = Bookmark.from_legacy(conference)
        if bookmark is not None:
            found[bookmark.jid] = bookmark
    return found


def to_storage(bookmarks: list[Bookmark], kept: Element | None) -> Element:
    """A legacy ``<storage/>`` of ``bookmarks``, with the ``<url/>`` ones of ``kept``."""
    storage = Element("storage", NS_LEGACY_BOOKMARKS)
    for bookmark in bookmarks:
        storage.append(bookmark.to_legacy())
    for url in kept.find_all("url", NS_LEGACY_BOOKMARKS) if kept is not None else ():
        storage.append(url.copy())
    return storage


class BookmarksOptions(ModuleOptions):
    pass


class Bookmarks(Module[BookmarksOptions]):
    name = "bookmarks"
    specs = (
        Spec("XEP-0402", "1.2.0", "#compat and #compat-pep"),
        Spec("XEP-0048", "1.2", "through private XML and PEP, converted"),
    )
    depends = ("pep", "private")

    def setup(self) -> None:
        self.pep = self.require(PersonalEventing)
        self.private = self.require(PrivateXml)
        self.locks = UserLocks()
        for feature in (NS_BOOKMARKS_COMPAT, NS_BOOKMARKS_COMPAT_PEP):
            self.add_account_feature(feature)
        self.hook(PrivateXmlStored, self.private_stored)
        self.hook(PepItemPublished, self.pep_published)
        self.hook(PepItemsRemoved, self.pep_removed)

    # ------------------------------------------------------------------ events
    async def private_stored(self, event: PrivateXmlStored) -> None:
        if event.source == self.name:
            return
        for fragment in event.fragments:
            if fragment.ns == NS_LEGACY_BOOKMARKS and fragment.tag == "storage":
                await self._from_legacy(event.user, fragment, to_private=False)

    async def pep_published(self, event: PepItemPublished) -> None:
        if event.source == self.name:
            return
        payload = event.payload
        if event.node == NS_BOOKMARKS:
            await self._to_legacy(event.owner)
        elif event.node == NS_LEGACY_BOOKMARKS and _is_storage(payload):
            assert payload is not None
            await self._from_legacy(event.owner, payload, to_private=True)

    async def pep_removed(self, event: PepItemsRemoved) -> None:
        if event.source != self.name and event.node == NS_BOOKMARKS:
            await self._to_legacy(event.owner)

    # ------------------------------------------------------------------ conversions
    async def _native(self, user: JID) -> dict[str, Bookmark]:
        items: list[PepItem] = await self.pep.items(user, NS_BOOKMARKS) or []
        found: dict[str, Bookmark] = {}
        for item in items:
            bookmark = Bookmark.from_native(item.id, item.payload)
            if bookmark is not None:
                found[item.id] = bookmark
        return found

    async def _to_legacy(self, user: JID) -> None:
        """Native → legacy: rebuild ``<storage/>`` and store it in both legacy places."""
        async with self.locks.hold(user):
            native = await self._native(user)
            kept = await self.private.get(user, NS_LEGACY_BOOKMARKS)
            storage = to_storage(list(native.values()), kept)
            await self._store_legacy(user, storage, to_private=True)

    async def _from_legacy(self, user: JID, storage: Element, *, to_private: bool) -> None:
        """Legacy → native: publish what changed, retract what went; copy the legacy
        ``<storage/>`` to the other legacy place."""
        async with self.locks.hold(user):
            wanted = from_storage(storage)
            native = await self._native(user)
            for jid, bookmark in wanted.items():
                current = native.get(jid)
                if current is None or current.key != bookmark.key:
                    await self._publish(
                        user, NS_BOOKMARKS, jid, bookmark.to_native(), NATIVE_OPTIONS
                    )
            for jid in native.keys() - wanted.keys():
                await self.pep.retract(user, NS_BOOKMARKS, jid, source=self.name)
            await self._store_legacy(user, storage, to_private=to_private, to_pep=not to_private)

    async def _store_legacy(
        self, user: JID, storage: Element, *, to_private: bool, to_pep: bool = True
    ) -> None:
        if to_private:
            await self.private.put(user, storage, source=self.name)
        if to_pep:
            await self._publish(user, NS_LEGACY_BOOKMARKS, LEGACY_ITEM, storage, LEGACY_OPTIONS)

    async def _publish(
        self, user: JID, node: str, item_id: str, payload: Element, options: dict[str, list[str]]
    ) -> None:
        try:
            await self.pep.publish(user, node, item_id, payload, options, source=self.name)
        except StanzaError as err:
            if err.condition is not StanzaErrorCondition.CONFLICT:
                raise
            # the user configured the node otherwise: keep their configuration
            self.log.info("%s of %s has its own configuration; publishing as it is", node, user)
            await self.pep.publish(user, node, item_id, payload, source=self.name)
