"""XEP-0313: Message Archive Management for accounts, with XEP-0359 stanza ids.

What is archived (XEP-0313 §5.1.1): messages of type ``chat`` or ``normal`` with a
``<body/>`` that a user sends or receives, and any message with the XEP-0334 ``<store/>``
hint. Never: errors, headlines, groupchat, carbon copies a client put in, and messages with
``<no-store/>`` or ``<no-permanent-store/>``.

Where (each message once per user's archive, §5.1.1):

* Received: when the router hands a message to a local account (``MessageToBare``,
  ``MessageToFull``), at ARCHIVE priority, before carbons copy it and before delivery or
  offline storage. The archive's UID is then stamped on the message as
  ``<stanza-id by='user@host'/>`` (XEP-0359), so the delivered message, its carbon copies
  and the offline copy all carry it: offline delivery needs no change of its own. Any
  stanza-id a sender put in that claims our user's ``by`` is removed first (XEP-0359 §4).
  A message that will be bounced (type normal to an absent resource) and a message to an
  account that does not exist are not archived.
* Sent: when a client sends it (``PreStanza``), after GUARD modules (blocking) let it
  through. The stanza-id goes on the carbon copies sent to the user's other resources only
  (§3.5: not on the message to the contact): it is added at ARCHIVE priority and removed
  again just after carbons made their copies. A message to one's own account is archived
  once, on the receiving side.

Preferences (XEP-0441 ``<prefs/>``) are kept in the key-value store ``mam_prefs`` and
cached for recently active users. Retention: ``max_age_days`` for everyone, and
``user_max_age_days`` per user, applied by a sweep every ``expiry_interval`` seconds of the
host clock. The archive goes with the account (the store deletes it in the account's
transaction; ``AccountDeleted`` also drops cached preferences).
"""

from __future__ import annotations

import base64
import os
from collections import OrderedDict
from datetime import UTC, datetime, timedelta

from pydantic import Field

from salon.core.events import (
    AccountDeleted,
    MessageToBare,
    MessageToFull,
    PeerDataChanged,
    PreStanza,
    RoutedStanza,
)
from salon.core.hooks import Priority
from salon.core.iq import IqRequest, Target
from salon.core.module import Module, ModuleOptions, Spec
from salon.core.roster_cache import RosterCache
from salon.core.write_behind import write_behind
from salon.errors import StanzaError, StanzaErrorCondition
from salon.jid import JID
from salon.modules.mam import prefs as mam_prefs
from salon.modules.mam.query import answer_page, metadata_element, parse_query, query_form
from salon.namespaces import NS_CARBONS, NS_HINTS, NS_MAM, NS_MAM_EXTENDED, NS_SID
from salon.storage.interfaces import ArchiveItemNotFound, ArchiveQuery
from salon.xml.element import Element
from salon.xml.serializer import serialize_str

__all__ = ["Mam", "MamOptions", "is_archivable", "strip_stanza_ids"]

_UNSTAMP = Priority.COPY - 1  # just after carbons copied the outgoing message


def is_archivable(stanza: Element, stype: str) -> bool:
    """XEP-0313 §5.1.1 with the XEP-0334 hints: may this message go into a user archive?"""
    if stype not in ("chat", "normal"):
        return False
    has_body = False
    store_hint = False
    for child in stanza.elements():
        if child.ns == NS_HINTS:
            if child.tag in ("no-store", "no-permanent-store"):
                return False
            if child.tag == "store":
                store_hint = True
        elif child.ns == NS_CARBONS and child.tag in ("sent", "received"):
            return False
        elif child.tag == "body" and child.ns == stanza.ns:
            has_body = True
    return has_body or store_hint


def strip_stanza_ids(stanza: Element, by: str) -> None:
    """Remove every ``<stanza-id/>`` claiming to be ``by``'s (XEP-0359 §4: only the entity
    named in 'by' may add one; the recipient could otherwise be fooled)."""
    for sid in stanza.find_all("stanza-id", NS_SID):
        if sid.get("by") == by:
            stanza.remove(sid)


_UID_BYTES = 12  # 96 random bits, 16 URL-safe characters (XEP-0359: unique, unguessable)
_uid_pool = bytearray()


def _new_uid() -> str:
    """A random archive UID. The random bytes are drawn from the OS 512 UIDs at a time: one
    ``getrandom`` call per message (two archive copies each) showed in the chat path's profile."""
    global _uid_pool
    if len(_uid_pool) < _UID_BYTES:
        _uid_pool = bytearray(os.urandom(_UID_BYTES * 512))
    chunk = bytes(_uid_pool[-_UID_BYTES:])
    del _uid_pool[-_UID_BYTES:]
    return base64.urlsafe_b64encode(chunk).decode("ascii")


class MamOptions(ModuleOptions):
    default_page: int = Field(50, ge=1, description="Results per page when a query sets no max.")
    max_page: int = Field(250, ge=1, description="Most results one query page returns.")
    max_ids: int = Field(100, ge=1, description="Most UIDs one query may ask for ('ids').")
    count: bool = Field(
        False,
        description="Include the RSM count and first index in every answer. Off by default: "
        "counting scans the whole result set (about 60 ms on SQLite and 250 ms on PostgreSQL "
        "for 1M messages, against 1-4 ms for a page). A max of 0 always gets the count.",
    )
    default_prefs: str = Field(
        "always", pattern="^(always|never|roster)$", description="Default for new users."
    )
    max_age_days: float | None = Field(
        None, gt=0, description="Delete archived messages older than this (None: keep)."
    )
    user_max_age_days: dict[str, float] = Field(
        default_factory=dict, description="Per-user retention in days, by username."
    )
    expiry_interval: float = Field(3600.0, gt=0, description="Seconds between expiry sweeps.")
    prefs_cache: int = Field(10_000, ge=0, description="Users whose preferences stay cached.")


class Mam(Module[MamOptions]):
    name = "mam"
    specs = (
        Spec("XEP-0313", "1.1.3", "user archives; prefs as in XEP-0441"),
        Spec("XEP-0359", "0.7.0", "stanza-id on archived messages"),
        Spec("XEP-0441", "0.2.0"),
    )

    def setup(self) -> None:
        self.archive = self.storage.archive
        self.prefs_store = self.storage.keyvalue("mam_prefs")
        self.rosters = self.require(RosterCache)
        self.prefs_cache: OrderedDict[JID, mam_prefs.Prefs] = OrderedDict()
        self.add_account_feature(NS_MAM)
        self.add_account_feature(NS_MAM_EXTENDED)
        self.add_account_feature(NS_SID)
        self.on_iq("set", NS_MAM, "query", self.query, to=Target.ACCOUNT)
        self.on_iq("get", NS_MAM, "query", self.form, to=Target.ACCOUNT)
        self.on_iq("get", NS_MAM, "metadata", self.metadata, to=Target.ACCOUNT)
        self.on_iq("get", NS_MAM, "prefs", self.get_prefs, to=Target.ACCOUNT)
        self.on_iq("set", NS_MAM, "prefs", self.set_prefs, to=Target.ACCOUNT)
        self.hook(MessageToBare, self.received, Priority.ARCHIVE)
        self.hook(MessageToFull, self.received, Priority.ARCHIVE)
        self.hook(PreStanza, self.sent, Priority.ARCHIVE)
        self.hook(PreStanza, self.unstamp_sent, _UNSTAMP)
        self.hook(AccountDeleted, self.account_deleted)
        self.hook(PeerDataChanged, self.peer_changed)
        if self.options.max_age_days is not None or self.options.user_max_age_days:
            self.every(self.options.expiry_interval, self.expire)

    # ------------------------------------------------------------------ archiving
    async def received(self, event: RoutedStanza) -> None:
        stanza, user = event.stanza, event.to.bare
        owner = str(user)
        strip_stanza_ids(stanza, owner)
        if not is_archivable(stanza, event.stanza_type):
            return
        if (
            isinstance(event, MessageToFull)
            and event.stanza_type != "chat"
            and self.sessions.get(event.to) is None
        ):
            return  # RFC 6121 §8.5.3.2.1: bounced, never delivered
        if not self.sessions.is_online(user) and not await self._exists(user):
            return  # no such account: the sender gets an error
        if not await self._wanted(user, event.sender):
            return
        uid = await self._append(user, event.sender, stanza, "in")
        stanza.add("stanza-id", NS_SID, {"by": owner, "id": uid})

    async def sent(self, event: PreStanza) -> None:
        stanza, to = event.stanza, event.to
        if stanza.tag != "message" or to is None:
            return
        user = event.origin.jid.bare
        if to.bare == user:
            return  # archived once, as received
        if not is_archivable(stanza, stanza.get("type") or "normal"):
            return
        if not await self._wanted(user, to):
            return
        uid = await self._append(user, to, stanza, "out")
        stanza.add("stanza-id", NS_SID, {"by": str(user), "id": uid})

    def unstamp_sent(self, event: PreStanza) -> None:
        """Take our stanza-id off an outgoing message once carbons have copied it (§3.5)."""
        if event.stanza.tag == "message":
            strip_stanza_ids(event.stanza, str(event.origin.jid.bare))

    async def _exists(self, user: JID) -> bool:
        return await self.storage.accounts.get(self.domain, user.local or "") is not None

    async def _append(self, user: JID, peer: JID, stanza: Element, direction: str) -> str:
        """Archive a copy; the stanza is delivered while the copy is written, and a client's
        stanza counts as handled once it is committed (salon.core.write_behind)."""
        uid = _new_uid()
        append = self.archive.append(
            self.domain,
            user.local or "",
            item_id=uid,
            with_jid=str(peer),
            stanza=serialize_str(stanza),
            timestamp=datetime.fromtimestamp(self.clock.time(), UTC),
            direction=direction,
        )
        await write_behind(append)
        return uid

    async def _wanted(self, user: JID, peer: JID) -> bool:
        prefs = await self._prefs(user)
        decision = mam_prefs.decide(prefs, peer, None)
        if decision is None:
            item = await self.rosters.item(user, str(peer.bare))
            decision = mam_prefs.decide(prefs, peer, item is not None)
        return bool(decision)

    # ------------------------------------------------------------------ preferences
    async def _prefs(self, user: JID) -> mam_prefs.Prefs:
        cached = self.prefs_cache.get(user)
        if cached is not None:
            self.prefs_cache.move_to_end(user)
            return cached
        text = await self.prefs_store.get(self.domain, user.local or "")
        prefs = (
            mam_prefs.loads(text)
            if text is not None
            else mam_prefs.Prefs(default=self.options.default_prefs)
        )
        self._remember(user, prefs)
        return prefs

    def _remember(self, user: JID, prefs: mam_prefs.Prefs) -> None:
        if self.options.prefs_cache <= 0:
            return
        self.prefs_cache[user] = prefs
        self.prefs_cache.move_to_end(user)
        while len(self.prefs_cache) > self.options.prefs_cache:
            self.prefs_cache.popitem(last=False)

    async def get_prefs(self, request: IqRequest) -> Element:
        user = self._own_archive(request)
        return request.result(mam_prefs.prefs_element(await self._prefs(user)))

    async def set_prefs(self, request: IqRequest) -> Element:
        user = self._own_archive(request)
        prefs = mam_prefs.parse_prefs(request.payload)
        self.prefs_cache.pop(user, None)
        await self.prefs_store.set(self.domain, user.local or "", mam_prefs.dumps(prefs))
        self._remember(user, prefs)
        self.host.peers.changed("mam_prefs", user)
        return request.result(mam_prefs.prefs_element(prefs))

    def account_deleted(self, event: AccountDeleted) -> None:
        self.prefs_cache.pop(event.jid.bare, None)

    def peer_changed(self, event: PeerDataChanged) -> None:
        if event.kind == "mam_prefs":
            self.prefs_cache.pop(event.user, None)

    # ------------------------------------------------------------------ queries
    @staticmethod
    def _own_archive(request: IqRequest) -> JID:
        """Only a user may read or configure their archive (§8.1: forbidden otherwise)."""
        if request.target is not Target.SELF:
            raise StanzaError(StanzaErrorCondition.FORBIDDEN)
        return request.sender.bare

    def form(self, request: IqRequest) -> Element:
        self._own_archive(request)
        return request.result(query_form())

    async def query(self, request: IqRequest) -> Element:
        user = self._own_archive(request)
        session = request.origin
        if session is None:
            raise StanzaError(StanzaErrorCondition.FORBIDDEN)
        options = self.options
        parsed = parse_query(
            request.payload,
            default_max=options.default_page,
            max_max=options.max_page,
            max_ids=options.max_ids,
            with_count=options.count,
        )
        try:
            page = await self.archive.query(self.domain, user.local or "", parsed.query)
        except ArchiveItemNotFound:
            raise StanzaError(StanzaErrorCondition.ITEM_NOT_FOUND) from None
        answer = answer_page(str(user), str(session.jid), parsed.queryid, page)
        for uid in answer.unreadable:
            self.log.error("archived item %s of %s is unreadable", uid, user)
        for result in answer.results:
            session.send(result)
        return request.result(answer.fin)

    async def metadata(self, request: IqRequest) -> Element:
        """Archive metadata (§6): the first and the last item."""
        user = self._own_archive(request)
        username = user.local or ""
        oldest = await self.archive.query(self.domain, username, ArchiveQuery(max=1))
        newest = await self.archive.query(self.domain, username, ArchiveQuery(max=1, before=""))
        first = oldest.items[0] if oldest.items else None
        last = newest.items[0] if newest.items else None
        return request.result(metadata_element(first, last))

    # ------------------------------------------------------------------ retention
    async def expire(self) -> None:
        now = datetime.fromtimestamp(self.clock.time(), UTC)
        options = self.options
        if options.max_age_days is not None:
            removed = await self.archive.expire(
                self.domain, now - timedelta(days=options.max_age_days)
            )
            if removed:
                self.log.info("expired %d archived messages", removed)
        for username, days in options.user_max_age_days.items():
            await self.archive.expire(self.domain, now - timedelta(days=days), username)
