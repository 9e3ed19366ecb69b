"""The MUC service (XEP-0045) at ``conference.<domain>``: wires rooms to the router and to
storage. The rules live in :mod:`salon.modules.muc.room`; this module dispatches stanzas
to rooms, routes what they answer, keeps persistent rooms in the MucStore, and creates and
forgets rooms.
"""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from pydantic import Field

from salon.core.events import ResourceUnbound
from salon.core.items import DISCO_ITEM, DiscoItem, Identity
from salon.core.module import Module, ModuleOptions, Spec
from salon.errors import StanzaError, StanzaErrorCondition
from salon.jid import JID
from salon.modules.disco import info_query
from salon.modules.mam.query import answer_page, metadata_element, parse_query, query_form
from salon.modules.muc.config import RoomConfig, config_form, roominfo_form
from salon.modules.muc.history import stamp
from salon.modules.muc.moderation import parse_moderate, retraction_message, tombstone
from salon.modules.muc.room import Delivery, Limits, Room
from salon.modules.muc.rules import RANK, Affiliation
from salon.namespaces import (
    NS_DATA_FORMS,
    NS_DISCO_INFO,
    NS_DISCO_ITEMS,
    NS_HINTS,
    NS_MAM,
    NS_MODERATE,
    NS_MUC,
    NS_MUC_ADMIN,
    NS_MUC_OWNER,
    NS_MUC_SELF_PING,
    NS_MUC_USER,
    NS_OCCUPANT_ID,
    NS_PING,
    NS_RETRACT,
    NS_SID,
)
from salon.storage.interfaces import ArchiveItemNotFound, ArchiveQuery, StoredRoom
from salon.xml.element import Element
from salon.xml.fragment import parse_element
from salon.xml.serializer import serialize_str
from salon.xml.stanza import iq_result

if TYPE_CHECKING:
    from salon.core.session import C2SSession

__all__ = ["Muc", "MucOptions"]

_SERVICE_FEATURES = (NS_MUC, NS_DISCO_INFO, NS_DISCO_ITEMS, NS_PING, NS_OCCUPANT_ID)


class MucOptions(ModuleOptions):
    service: str = Field(
        "", description="Domain of the chat service; empty means conference.<host domain>."
    )
    title: str = Field("Chatrooms", description="The service's name in service discovery.")
    max_rooms: int = Field(1000, ge=1, description="Most rooms the service holds at once.")
    max_rooms_per_user: int = Field(
        20, ge=1, description="Most rooms one user may own (room creation limit)."
    )
    max_users: int = Field(200, ge=1, description="Most occupants of a room.")
    max_history: int = Field(50, ge=0, description="Most messages a room replays on join.")
    max_nick_length: int = Field(64, ge=1, description="Longest nickname, in characters.")
    max_subject_length: int = Field(1024, ge=1, description="Longest subject, in characters.")
    message_rate: float = Field(
        5.0, gt=0, description="Groupchat messages per second one occupant may send, sustained."
    )
    message_burst: int = Field(
        10, ge=1, description="Groupchat messages one occupant may send at once."
    )
    persistent_by_default: bool = Field(
        False, description="Whether new rooms are persistent until configured otherwise."
    )
    archive_page: int = Field(
        50, ge=1, description="Room archive (XEP-0313): results per page without RSM max."
    )
    archive_max_page: int = Field(
        250, ge=1, description="Room archive: most results one query page returns."
    )
    archive_max_ids: int = Field(100, ge=1, description="Room archive: most UIDs per query.")


class Muc(Module[MucOptions]):
    cluster_owned = True  # in a cluster, each room lives on one node (salon/cluster/node.py)
    name = "muc"
    specs = (
        Spec("XEP-0045", "1.34"),
        Spec("XEP-0313", "1.1.3", "room archives of persistent rooms"),
        Spec("XEP-0359", "0.7.0", "the room's stanza-id on groupchat messages"),
        Spec("XEP-0410", "1.1", "the service answers self-pings"),
        Spec("XEP-0421", "0.2"),
        Spec("XEP-0425", "0.3.0", "retraction, with a tombstone in archive and history"),
    )
    depends = ("disco",)

    def setup(self) -> None:
        self.service = self.options.service or f"conference.{self.domain}"
        self.rooms: dict[str, Room] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._stored: set[str] = set()
        self._primed: set[str] = set()  # rooms whose history holds their archive's tail
        self._secret = b""
        self.serve_domain(self.service, self)
        self.add_item(DISCO_ITEM, DiscoItem(jid=self.service, name=self.options.title))
        self.hook(ResourceUnbound, self.session_ended)

    async def start(self) -> None:
        kv = self.storage.keyvalue("muc")
        secret = await kv.get(self.service, "")
        if secret is None:
            secret = secrets.token_hex(32)
            await kv.set(self.service, "", secret)
        self._secret = bytes.fromhex(secret)
        for stored in await self.storage.muc.rooms(self.service):
            if stored.name not in self.rooms:
                self.rooms[stored.name] = self._from_storage(stored)
                self._stored.add(stored.name)

    async def stop(self) -> None:
        """The service stops (a graceful stop, or a reload that restarts it with new
        options): occupants still in rooms are told they are out (status 332), so no client
        believes it is in a room the new instance does not know. Persistent rooms stay in
        storage and are loaded again by the next start."""
        for room in list(self.rooms.values()):
            if not room.is_empty:
                try:
                    await self._send(room.shutdown())
                except Exception:
                    self.log.exception("telling the occupants of a room failed")

    # ------------------------------------------------------------------ helpers
    @property
    def limits(self) -> Limits:
        o = self.options
        return Limits(
            o.max_users,
            o.max_history,
            o.max_nick_length,
            o.max_subject_length,
            o.message_rate,
            o.message_burst,
            self._secret,
        )

    def _from_storage(self, stored: StoredRoom) -> Room:
        affs: dict[JID, Affiliation] = {}
        for jid, aff in stored.affiliations.items():
            try:
                affs[JID.parse(jid)] = Affiliation(aff)
            except ValueError:
                self.log.warning("room %s: ignoring affiliation %r of %r", stored.name, aff, jid)
        return Room(
            JID(stored.name, self.service, None),
            self.limits,
            RoomConfig.from_dict(dict(stored.config)),
            affiliations=affs,
            subject=stored.subject,
            subject_nick=stored.subject_nick,
        )

    def _lock(self, name: str) -> asyncio.Lock:
        lock = self._locks.get(name)
        if lock is None:
            lock = self._locks[name] = asyncio.Lock()
        return lock

    async def _send(self, deliveries: list[Delivery]) -> None:
        senders: dict[str, JID] = {}  # a broadcast has one sender: parse it once
        for to, stanza in deliveries:
            text = stanza.get("from") or self.service
            sender = senders.get(text)
            if sender is None:
                sender = senders[text] = JID.parse(text)
            await self.router.route(stanza, None, sender, to)

    async def _settle(self, name: str, room: Room) -> None:
        """Store what changed; forget a destroyed room or an empty temporary one."""
        if room.destroyed:
            self._forget(name)
            if name in self._stored:
                self._stored.discard(name)
                await self.storage.muc.delete(self.service, name)
            await self.storage.archive.delete(self.service, name)
            return
        if room.dirty:
            room.dirty = False
            if room.config.persistent:
                await self.storage.muc.save(
                    StoredRoom(
                        self.service,
                        name,
                        room.config.to_dict(),
                        {str(j): str(a) for j, a in room.affiliations.items()},
                        room.subject,
                        room.subject_nick,
                    )
                )
                self._stored.add(name)
            elif name in self._stored:
                self._stored.discard(name)
                await self.storage.muc.delete(self.service, name)
        if room.is_empty and not room.config.persistent:
            self._forget(name)
            await self.storage.archive.delete(self.service, name)

    def _forget(self, name: str) -> None:
        self.rooms.pop(name, None)
        self._locks.pop(name, None)
        self._primed.discard(name)

    # ------------------------------------------------------------------ entry point
    async def receive(
        self, stanza: Element, origin: C2SSession | None, sender: JID, to: JID
    ) -> None:
        if to.local is None:
            await self._to_service(stanza, origin, sender, to)
            return
        name = to.local
        async with self._lock(name):
            room = self.rooms.get(name)
            if stanza.tag == "presence":
                room = await self._presence(stanza, sender, to, room)
            elif room is None:
                if stanza.tag == "iq" and stanza.get("type") in ("result", "error"):
                    return
                raise StanzaError(StanzaErrorCondition.ITEM_NOT_FOUND, "no such room")
            elif stanza.tag == "message":
                await self._message(stanza, sender, to, room)
            else:
                await self._iq(stanza, origin, sender, to, room)
            if room is not None:
                await self._settle(name, room)

    # ------------------------------------------------------------------ presence
    async def _presence(
        self, stanza: Element, sender: JID, to: JID, room: Room | None
    ) -> Room | None:
        stype = stanza.get("type")
        if stype in ("unavailable", "error"):
            if room is not None:
                await self._send(room.leave(sender, stanza if stype == "unavailable" else None))
            return room
        if stype is not None:
            return room  # subscriptions and probes mean nothing to a room
        if to.resource is None:
            raise StanzaError(StanzaErrorCondition.JID_MALFORMED, "a room nickname is required")
        now = self.clock.time()
        if room is None:
            room = self._create(stanza, sender, to)
            deliveries = room.join(sender, to.resource, stanza, now, created=True)
            self.rooms[to.local or ""] = room
            self._primed.add(to.local or "")
        elif room.occupant(sender) is not None:
            deliveries = room.presence(sender, to.resource, stanza, now)
        else:
            await self._prime_history(room)
            deliveries = room.join(sender, to.resource, stanza, now)
        await self._send(deliveries)
        return room

    def _create(self, stanza: Element, sender: JID, to: JID) -> Room:
        """§10.1: the first to enter a room creates it and owns it; a client that speaks
        MUC (``<x xmlns='…muc'/>``) gets a locked room to configure, others an instant one."""
        if len(self.rooms) >= self.options.max_rooms:
            raise StanzaError(StanzaErrorCondition.NOT_ALLOWED, "the service holds no more rooms")
        owned = sum(1 for r in self.rooms.values() if r.affiliation(sender) is Affiliation.OWNER)
        if owned >= self.options.max_rooms_per_user:
            raise StanzaError(StanzaErrorCondition.NOT_ALLOWED, "you own too many rooms")
        config = RoomConfig(persistent=self.options.persistent_by_default)
        return Room(
            JID(to.local, self.service, None),
            self.limits,
            config,
            affiliations={sender.bare: Affiliation.OWNER},
            locked=stanza.find("x", NS_MUC) is not None,
        )

    async def session_ended(self, event: ResourceUnbound) -> None:
        """The user's session went away: it leaves every room it was in."""
        jid = event.session.jid
        for name, room in list(self.rooms.items()):
            if room.occupant(jid) is None:
                continue
            async with self._lock(name):
                await self._send(room.leave(jid, None))
                await self._settle(name, room)

    async def _prime_history(self, room: Room) -> None:
        """Before the first join after a restart, the history buffer of an archived room
        takes the newest messages of its archive: history on join survives restarts."""
        name = room.jid.local or ""
        if name in self._primed:
            return
        self._primed.add(name)
        length = room.history.length
        if not room.config.archived or length == 0:
            return
        page = await self.storage.archive.query(
            self.service, name, ArchiveQuery(max=length, before="")
        )
        for item in page.items:
            try:
                archived = parse_element(item.stanza)
            except ValueError:
                self.log.error("room %s: archived item %s is unreadable", name, item.id)
                continue
            room.history.add(archived, item.timestamp.timestamp())

    # ------------------------------------------------------------------ messages
    async def _message(self, stanza: Element, sender: JID, to: JID, room: Room) -> None:
        stype = stanza.get("type")
        if stype == "error":
            return
        if to.resource is not None:
            if stype == "groupchat":
                raise StanzaError(StanzaErrorCondition.BAD_REQUEST, "groupchat to an occupant")
            await self._send(room.private(sender, to.resource, stanza))
            return
        x = stanza.find("x", NS_MUC_USER)
        if x is not None and (x.find("invite") is not None or x.find("decline") is not None):
            await self._send(room.invite(sender, x, stanza))
            return
        if stype != "groupchat":
            raise StanzaError(StanzaErrorCondition.BAD_REQUEST, "send groupchat messages to a room")
        now = self.clock.time()
        uid = secrets.token_urlsafe(12)
        message = room.accept_groupchat(sender, stanza, now, uid)
        if room.config.archived and _archivable(stanza):
            await self.storage.archive.append(
                self.service,
                room.jid.local or "",
                item_id=uid,
                with_jid=message.get("from") or "",
                stanza=serialize_str(message),
                timestamp=datetime.fromtimestamp(now, UTC),
                direction="in",
            )
        await self._send(room.fan_out(message))

    # ------------------------------------------------------------------ iq
    async def _iq(
        self, stanza: Element, origin: C2SSession | None, sender: JID, to: JID, room: Room
    ) -> None:
        itype = stanza.get("type")
        if itype in ("result", "error"):
            return
        children = list(stanza.elements())
        if len(children) != 1:
            raise StanzaError(StanzaErrorCondition.BAD_REQUEST)
        payload = children[0]
        key = (itype, payload.ns, payload.tag)
        if to.resource is not None:
            # XEP-0410: the service answers a ping to one's own occupant JID.
            if not room.is_occupant_jid(sender, to.resource) and room.occupant(sender) is None:
                raise StanzaError(StanzaErrorCondition.NOT_ACCEPTABLE, "you are not in the room")
            if key == ("get", NS_PING, "ping") and room.is_occupant_jid(sender, to.resource):
                self.router.deliver_reply(origin, iq_result(stanza))
                return
            if room.by_nick(to.resource) is None:
                raise StanzaError(StanzaErrorCondition.ITEM_NOT_FOUND, "no such occupant")
            raise StanzaError(StanzaErrorCondition.SERVICE_UNAVAILABLE)
        reply: Element | None = None
        deliveries: list[Delivery] = []
        if key == ("get", NS_DISCO_INFO, "query"):
            if room.locked and room.affiliation(sender) is not Affiliation.OWNER:
                raise StanzaError(StanzaErrorCondition.ITEM_NOT_FOUND, "no such room")
            if payload.get("node") is not None:
                raise StanzaError(StanzaErrorCondition.ITEM_NOT_FOUND)
            reply = self._room_info(room)
        elif key == ("get", NS_DISCO_ITEMS, "query"):
            reply = Element("query", NS_DISCO_ITEMS)  # occupants stay private (§6.5)
        elif key == ("get", NS_PING, "ping"):
            reply = None
        elif key == ("get", NS_MUC_ADMIN, "query"):
            item = payload.find("item")
            if item is None:
                raise StanzaError(StanzaErrorCondition.BAD_REQUEST, "an item is required")
            reply = room.admin_get(sender, item)
        elif key == ("set", NS_MUC_ADMIN, "query"):
            items = payload.find_all("item")
            if not items:
                raise StanzaError(StanzaErrorCondition.BAD_REQUEST, "an item is required")
            deliveries = room.admin_set(sender, items)
        elif key == ("get", NS_MUC_OWNER, "query"):
            room.require_owner(sender)
            reply = Element("query", NS_MUC_OWNER)
            reply.append(config_form(room.config, self.options.max_history, self.options.max_users))
        elif key == ("set", NS_MUC_OWNER, "query"):
            deliveries = self._owner_set(sender, payload, room)
        elif key == ("set", NS_MAM, "query"):
            await self._archive_query(stanza, origin, sender, room, payload)
            return
        elif key == ("get", NS_MAM, "query"):
            self._may_read_archive(sender, room)
            reply = query_form()
        elif key == ("get", NS_MAM, "metadata"):
            self._may_read_archive(sender, room)
            reply = await self._archive_metadata(room)
        elif key == ("set", NS_MODERATE, "moderate"):
            deliveries = await self._moderate(sender, room, payload)
        else:
            raise StanzaError(StanzaErrorCondition.SERVICE_UNAVAILABLE)
        self.router.deliver_reply(origin, iq_result(stanza, reply))
        await self._send(deliveries)

    def _owner_set(self, sender: JID, payload: Element, room: Room) -> list[Delivery]:
        room.require_owner(sender)
        destroy = payload.find("destroy")
        if destroy is not None:
            return room.destroy(
                destroy.find_text("reason") or "",
                destroy.get("jid"),
                destroy.find_text("password"),
            )
        form = payload.find("x", NS_DATA_FORMS)
        if form is None:
            raise StanzaError(StanzaErrorCondition.BAD_REQUEST, "a data form is required")
        if form.get("type") == "cancel" and room.locked:
            return room.destroy("", None, None)  # §10.1.3: a cancelled new room goes away
        return room.configure(sender, form)

    # ------------------------------------------------------------------ room archive
    def _may_read_archive(self, sender: JID, room: Room) -> None:
        """XEP-0313 §5.1.2 on a room: only archived rooms answer, and only to those who
        could enter (no outcasts; members of members-only rooms; occupants of rooms with a
        password)."""
        if not room.config.archived:
            raise StanzaError(
                StanzaErrorCondition.SERVICE_UNAVAILABLE, "this room keeps no archive"
            )
        aff = room.affiliation(sender)
        if aff is Affiliation.OUTCAST:
            raise StanzaError(StanzaErrorCondition.FORBIDDEN, "you are banned from this room")
        if room.config.members_only and RANK[aff] < RANK[Affiliation.MEMBER]:
            raise StanzaError(StanzaErrorCondition.FORBIDDEN, "members only")
        if room.config.password and room.occupant(sender) is None:
            raise StanzaError(StanzaErrorCondition.FORBIDDEN, "occupants only")

    async def _archive_query(
        self,
        stanza: Element,
        origin: C2SSession | None,
        sender: JID,
        room: Room,
        payload: Element,
    ) -> None:
        self._may_read_archive(sender, room)
        o = self.options
        parsed = parse_query(
            payload,
            default_max=o.archive_page,
            max_max=o.archive_max_page,
            max_ids=o.archive_max_ids,
            with_count=False,
        )
        try:
            page = await self.storage.archive.query(
                self.service, room.jid.local or "", parsed.query
            )
        except ArchiveItemNotFound:
            raise StanzaError(StanzaErrorCondition.ITEM_NOT_FOUND) from None
        answer = answer_page(str(room.jid), str(sender), parsed.queryid, page)
        for uid in answer.unreadable:
            self.log.error("room %s: archived item %s is unreadable", room.jid, uid)
        for result in answer.results:
            self.router.deliver_reply(origin, result)
        self.router.deliver_reply(origin, iq_result(stanza, answer.fin))

    async def _archive_metadata(self, room: Room) -> Element:
        name = room.jid.local or ""
        archive = self.storage.archive
        oldest = await archive.query(self.service, name, ArchiveQuery(max=1))
        newest = await archive.query(self.service, name, ArchiveQuery(max=1, before=""))
        return metadata_element(
            oldest.items[0] if oldest.items else None,
            newest.items[0] if newest.items else None,
        )

    # ------------------------------------------------------------------ moderation
    async def _moderate(self, sender: JID, room: Room, payload: Element) -> list[Delivery]:
        """XEP-0425: a moderator retracts a message by its stanza-id; the archive and the
        history keep a tombstone, every occupant hears of the retraction."""
        moderator = room.require_moderator(sender)
        moderation = parse_moderate(payload)
        name = room.jid.local or ""
        original: Element | None = None
        archived = False
        if room.config.archived:
            try:
                page = await self.storage.archive.query(
                    self.service, name, ArchiveQuery(ids=(moderation.stanza_id,), max=1)
                )
            except (ArchiveItemNotFound, ValueError):
                page = None
            if page is not None and page.items:
                original = parse_element(page.items[0].stanza)
                archived = True
        if original is None:
            original = room.history.find(moderation.stanza_id)
        if original is None or original.find("retracted", NS_RETRACT) is not None:
            raise StanzaError(StanzaErrorCondition.ITEM_NOT_FOUND, "no such message")
        by = str(room.occupant_jid(moderator.nick))
        stone = tombstone(original, moderation, by, moderator.occupant_id, stamp(self.clock.time()))
        if archived:
            await self.storage.archive.replace(
                self.service, name, moderation.stanza_id, serialize_str(stone)
            )
        room.history.replace(moderation.stanza_id, stone)
        announcement = retraction_message(
            str(room.jid), secrets.token_urlsafe(12), moderation, by, moderator.occupant_id
        )
        return room.fan_out(announcement)

    def _room_info(self, room: Room) -> Element:
        c = room.config
        features = [
            NS_MUC,
            NS_DISCO_INFO,
            NS_OCCUPANT_ID,
            NS_MUC_SELF_PING,
            NS_SID,
            NS_MODERATE,
            NS_RETRACT,
            *([NS_MAM] if c.archived else []),
            "muc_public" if c.public else "muc_hidden",
            "muc_persistent" if c.persistent else "muc_temporary",
            "muc_membersonly" if c.members_only else "muc_open",
            "muc_moderated" if c.moderated else "muc_unmoderated",
            "muc_nonanonymous" if c.non_anonymous else "muc_semianonymous",
            "muc_passwordprotected" if c.password else "muc_unsecured",
        ]
        identity = Identity("conference", "text", c.name or room.jid.local)
        form = roominfo_form(c, len(room), room.subject)
        return info_query([identity], features, [form])

    # ------------------------------------------------------------------ the service itself
    async def _to_service(
        self, stanza: Element, origin: C2SSession | None, sender: JID, to: JID
    ) -> None:
        if stanza.tag != "iq":
            if stanza.tag == "message" and stanza.get("type") not in ("error", "groupchat"):
                raise StanzaError(StanzaErrorCondition.SERVICE_UNAVAILABLE)
            return
        itype = stanza.get("type")
        if itype in ("result", "error"):
            return
        children = list(stanza.elements())
        if len(children) != 1:
            raise StanzaError(StanzaErrorCondition.BAD_REQUEST)
        payload = children[0]
        key = (itype, payload.ns, payload.tag)
        if key == ("get", NS_DISCO_INFO, "query"):
            if payload.get("node") is not None:
                raise StanzaError(StanzaErrorCondition.ITEM_NOT_FOUND)
            identity = Identity("conference", "text", self.options.title)
            reply: Element | None = info_query([identity], _SERVICE_FEATURES)
        elif key == ("get", NS_DISCO_ITEMS, "query"):
            reply = Element("query", NS_DISCO_ITEMS)
            for name, room in sorted(self.rooms.items()):
                if room.config.public and not room.locked:
                    attrs = {"jid": str(room.jid), "name": room.config.name or name}
                    reply.add("item", attrs=attrs)
        elif key == ("get", NS_PING, "ping"):
            reply = None
        else:
            raise StanzaError(StanzaErrorCondition.SERVICE_UNAVAILABLE)
        self.router.deliver_reply(origin, iq_result(stanza, reply))


def _archivable(stanza: Element) -> bool:
    """A groupchat message goes into the room archive when it has a body and no XEP-0334
    hint against storing it."""
    has_body = False
    for child in stanza.elements():
        if child.ns == NS_HINTS and child.tag in ("no-store", "no-permanent-store"):
            return False
        if child.tag == "body" and child.ns == stanza.ns:
            has_body = True
    return has_body
