"""The rosters of online users, held in memory and shared by every module that reads or writes
rosters (roster, presence, blocking, last) as the host item ``"roster_cache"``.

Presence needs a user's roster for each broadcast and each probe answered on the user's behalf;
read from the database every time, that is one transaction per contact as a user comes
online. So a user's roster is read once, when something first needs it, and kept while the
user has a session (and a while after, see below). Probes and broadcasts then cost no query.

The cache stays exact because every write of a local roster (items and pending inbound
subscription requests) goes through it: it writes to storage and then updates its copy.

* Each roster write returns the roster's new version. A cached roster one version behind takes
  the change; one further behind (a write we did not see, or writes finishing out of order)
  is dropped, to be read again when next needed.
* A read that overlapped a write is returned to its callers but not kept: the write drops the
  read in flight, so a stale roster never replaces a newer one. Concurrent reads of one roster
  share one query.
* A copy is replaced, never changed in place: a roster a caller holds stays as it was.

Pending requests are kept the same way, and beyond the session a bounded memory of users
known to have none, so a user with no waiting request costs no query to come online.

A user whose last session ended keeps the entry for ``recent_ttl`` seconds more (at most
``recent_size`` such users, the least recently gone out first): a client that reconnects (a
mobile network blip, a restart storm's second wave) finds its roster without a query. A roster
read for a user without a session (to answer a contact's probe) is kept the same way, as a
whole: in a login storm each offline user is probed by many contacts coming online, and then
comes online too; one query serves them all. Writes go through the cache whether the user is
online or not, so the kept copy stays exact.
"""

from __future__ import annotations

import asyncio
import functools
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from salon.core.events import AccountDeleted, PeerDataChanged, ResourceUnbound
from salon.core.hooks import Priority
from salon.core.locks import UserLocks
from salon.jid import JID
from salon.storage.interfaces import PendingSubscription, Roster, RosterItem, RosterStore

if TYPE_CHECKING:
    from salon.core.hosts import VirtualHost

__all__ = ["RosterCache", "RosterLimit"]


@dataclass(frozen=True, slots=True)
class RosterLimit:
    """The most items a roster may hold (a service the roster module provides)."""

    max_items: int


_ROSTER, _PENDING = "roster", "pending"


class _Entry:
    """What is cached for one user: either part may not be loaded yet."""

    __slots__ = ("pending", "roster")

    def __init__(self) -> None:
        self.roster: Roster | None = None
        self.pending: tuple[PendingSubscription, ...] | None = None


class RosterCache:
    """Rosters and pending requests of the online users of one host, read through to storage."""

    def __init__(
        self,
        host: VirtualHost,
        no_pending_size: int = 10_000,
        recent_size: int = 2_000,
        recent_ttl: float = 60.0,
    ) -> None:
        self.host = host
        self.recent_size = recent_size if recent_ttl > 0 else 0
        self.recent_ttl = recent_ttl
        # Users gone offline whose entry is still kept, with its expiry, oldest first.
        self._recent: OrderedDict[JID, float] = OrderedDict()
        # One writer per user's roster at a time (roster sets, subscription changes).
        self.locks = UserLocks()
        self.no_pending_size = no_pending_size
        self._entries: dict[JID, _Entry] = {}
        # Reads in flight, by (user, part): a write drops the user's, so they are not kept.
        self._loading: dict[tuple[JID, str], asyncio.Task[Any]] = {}
        # Users without a session known to have no pending request (least recently used out).
        self._no_pending: OrderedDict[JID, None] = OrderedDict()
        # Users whose session is ending: modules still use their roster (unavailable presence).
        self._ending: dict[JID, int] = {}

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def _store(self) -> RosterStore:
        return self.host.storage.roster

    # ------------------------------------------------------------------ reads
    async def roster(self, user: JID) -> Roster:
        """The whole roster of the local account ``user`` (a bare JID)."""
        entry = self._entries.get(user)
        if entry is not None and entry.roster is not None:
            return entry.roster
        if not self._keeps(user) and (user, _ROSTER) not in self._loading:
            return await self._store.get(user.domain, user.local or "")
        roster: Roster = await self._load(user, _ROSTER)
        return roster

    def cached(self, user: JID) -> Roster | None:
        """``user``'s roster if it is in memory now (no query), else None."""
        entry = self._entries.get(user)
        return None if entry is None else entry.roster

    async def item(self, user: JID, jid: str) -> RosterItem | None:
        """The item for ``jid`` in ``user``'s roster: one query at most, none when cached."""
        entry = self._entries.get(user)
        if entry is not None and entry.roster is not None:
            return entry.roster.items.get(jid)
        if not self._keeps(user) and (user, _ROSTER) not in self._loading:
            return await self._store.get_item(user.domain, user.local or "", jid)
        return (await self.roster(user)).items.get(jid)

    async def count(self, user: JID) -> int:
        entry = self._entries.get(user)
        if entry is not None and entry.roster is not None:
            return len(entry.roster.items)
        return await self._store.count(user.domain, user.local or "")

    async def pending(self, user: JID) -> list[PendingSubscription]:
        """The requests waiting for ``user``, oldest first."""
        entry = self._entries.get(user)
        if entry is not None and entry.pending is not None:
            return list(entry.pending)
        if user in self._no_pending:
            self._no_pending.move_to_end(user)
            return []
        pending: tuple[PendingSubscription, ...] = await self._load(user, _PENDING)
        return list(pending)

    async def _load(self, user: JID, part: str) -> Any:
        """Read ``part`` of ``user``'s record, sharing a read already in flight. A roster read
        for a user whose pending requests are not known yet reads them too, in the same
        transaction: coming online needs both."""
        key = (user, part)
        task = self._loading.get(key)
        if task is None:
            both = part == _ROSTER and self._pending_unknown(user)
            coro: Any
            if both:
                coro = self._read_both(user)
            elif part == _ROSTER:
                coro = self._read_roster(user)
            else:
                coro = self._read_pending(user)
            task = asyncio.get_running_loop().create_task(coro)
            keys = [key, (user, _PENDING)] if both else [key]
            for k in keys:
                self._loading[k] = task
                task.add_done_callback(functools.partial(self._loaded, k))
        parts: dict[str, Any] = await asyncio.shield(task)
        return parts[part]

    def _pending_unknown(self, user: JID) -> bool:
        if (user, _PENDING) in self._loading or user in self._no_pending:
            return False
        entry = self._entries.get(user)
        return entry is None or entry.pending is None

    async def _read_roster(self, user: JID) -> dict[str, Any]:
        return {_ROSTER: await self._store.get(user.domain, user.local or "")}

    async def _read_pending(self, user: JID) -> dict[str, Any]:
        return {_PENDING: tuple(await self._store.list_pending(user.domain, user.local or ""))}

    async def _read_both(self, user: JID) -> dict[str, Any]:
        roster, pending = await self._store.get_with_pending(user.domain, user.local or "")
        return {_ROSTER: roster, _PENDING: tuple(pending)}

    def _loaded(self, key: tuple[JID, str], task: asyncio.Task[Any]) -> None:
        """Keep what a read found, unless a write came since it started."""
        if self._loading.get(key) is not task:
            return
        del self._loading[key]
        if task.cancelled() or task.exception() is not None:
            return
        user, part = key
        value = task.result()[part]
        if part == _PENDING and not value:
            self._remember_no_pending(user)
        if not self._in_use(user):
            if not self.recent_size:
                return
            # Read for a user without a session (a contact's probe): kept as a recent entry,
            # so the next probes, and the user's own login, cost no query.
            if user not in self._recent:
                self._recent[user] = self.host.clock.monotonic() + self.recent_ttl
        entry = self._entries.get(user)
        if entry is None:
            entry = self._entries[user] = _Entry()
        if part == _ROSTER:
            entry.roster = value
        else:
            entry.pending = value
        if user in self._recent:
            self._expire_recent()

    # ------------------------------------------------------------------ writes
    async def put_item(self, user: JID, item: RosterItem) -> int:
        """Store ``item`` (replacing the one for its JID); the roster's new version."""
        try:
            version = await self._store.put_item(user.domain, user.local or "", item)
        except BaseException:
            self._forget_roster(user)  # it may or may not have been stored
            raise
        self._changed(user, item.jid, item, version)
        self.host.peers.changed("roster", user)
        return version

    async def remove_item(self, user: JID, jid: str) -> int | None:
        """Remove the item for ``jid``; the new version, or None when there was none."""
        try:
            version = await self._store.remove_item(user.domain, user.local or "", jid)
        except BaseException:
            self._forget_roster(user)
            raise
        if version is not None:
            self._changed(user, jid, None, version)
            self.host.peers.changed("roster", user)
        return version

    def _changed(self, user: JID, jid: str, item: RosterItem | None, version: int) -> None:
        self._loading.pop((user, _ROSTER), None)
        entry = self._entries.get(user)
        if entry is None or entry.roster is None:
            return
        cached = entry.roster
        if cached.version >= version:
            return  # read after this write: the copy has it already
        if cached.version != version - 1:
            entry.roster = None  # a change we did not see: read it again when needed
            return
        items = dict(cached.items)
        if item is None:
            items.pop(jid, None)
        else:
            items[jid] = item
        entry.roster = Roster(version=version, items=items)

    def _forget_roster(self, user: JID) -> None:
        self._loading.pop((user, _ROSTER), None)
        entry = self._entries.get(user)
        if entry is not None:
            entry.roster = None

    async def add_pending(self, user: JID, jid: str, stanza: str) -> None:
        """Remember the request from ``jid`` (replacing an earlier one, which it follows)."""
        self._no_pending.pop(user, None)
        try:
            await self._store.add_pending(user.domain, user.local or "", jid, stanza)
        except BaseException:
            self._forget_pending(user)
            raise
        self._no_pending.pop(user, None)
        self._loading.pop((user, _PENDING), None)
        entry = self._entries.get(user)
        if entry is not None and entry.pending is not None:
            kept = tuple(p for p in entry.pending if p.jid != jid)
            entry.pending = (*kept, PendingSubscription(jid=jid, stanza=stanza))
        self.host.peers.changed("roster", user)

    async def remove_pending(self, user: JID, jid: str) -> bool:
        """Forget the request from ``jid``; whether there was one."""
        try:
            removed = await self._store.remove_pending(user.domain, user.local or "", jid)
        except BaseException:
            self._forget_pending(user)
            raise
        self._loading.pop((user, _PENDING), None)
        entry = self._entries.get(user)
        if entry is not None and entry.pending is not None:
            entry.pending = tuple(p for p in entry.pending if p.jid != jid)
        if removed:
            self.host.peers.changed("roster", user)
        return removed

    def _forget_pending(self, user: JID) -> None:
        self._no_pending.pop(user, None)
        self._loading.pop((user, _PENDING), None)
        entry = self._entries.get(user)
        if entry is not None:
            entry.pending = None

    def _remember_no_pending(self, user: JID) -> None:
        if self.no_pending_size <= 0:
            return
        self._no_pending[user] = None
        self._no_pending.move_to_end(user)
        while len(self._no_pending) > self.no_pending_size:
            self._no_pending.popitem(last=False)

    # ------------------------------------------------------------------ upkeep
    def _keeps(self, user: JID) -> bool:
        """Whether a roster read for ``user`` is kept: always while the user has a session,
        and for ``recent_ttl`` seconds otherwise (unless that memory is off)."""
        return bool(self.recent_size) or self._in_use(user)

    def _in_use(self, user: JID) -> bool:
        """Whether what is read for ``user`` is kept: the user has a session, or one is ending."""
        return self.host.sessions.is_online(user) or user in self._ending

    def session_ending(self, event: ResourceUnbound) -> None:
        """Runs before every other module's handler."""
        user = event.session.jid.bare
        self._ending[user] = self._ending.get(user, 0) + 1

    def session_ended(self, event: ResourceUnbound) -> None:
        """Runs after every other module's handler: they may still use the roster."""
        user = event.session.jid.bare
        ending = self._ending.pop(user, 0) - 1
        if ending > 0:
            self._ending[user] = ending
        if self._in_use(user):
            return
        if self.recent_size and user in self._entries:
            self._recent.pop(user, None)
            self._recent[user] = self.host.clock.monotonic() + self.recent_ttl
        else:
            self._drop(user)
        self._expire_recent()

    def _expire_recent(self) -> None:
        recent, now = self._recent, self.host.clock.monotonic()
        while recent and (len(recent) > self.recent_size or next(iter(recent.values())) <= now):
            user, _expiry = recent.popitem(last=False)
            if not self._in_use(user):
                self._drop(user)

    def _drop(self, user: JID) -> None:
        entry = self._entries.pop(user, None)
        if entry is not None and entry.pending == ():
            self._remember_no_pending(user)

    def peer_changed(self, event: PeerDataChanged) -> None:
        """Another cluster node wrote this user's roster: drop what is kept of it."""
        if event.kind == "roster":
            self.forget(event.user)

    def account_deleted(self, event: AccountDeleted) -> None:
        self.forget(event.jid.bare)

    def forget(self, user: JID) -> None:
        """Drop everything kept for ``user``; the next read goes to storage."""
        self._entries.pop(user, None)
        self._recent.pop(user, None)
        self._loading.pop((user, _ROSTER), None)
        self._loading.pop((user, _PENDING), None)
        self._no_pending.pop(user, None)


def attach(host: VirtualHost) -> RosterCache:
    """Create the roster cache of ``host`` and hook it to the host's session events."""
    cache = RosterCache(host)
    host.hooks.add(ResourceUnbound, cache.session_ending, Priority.GUARD + 1)
    host.hooks.add(ResourceUnbound, cache.session_ended, Priority.FALLBACK - 1)
    host.hooks.add(AccountDeleted, cache.account_deleted)
    host.hooks.add(PeerDataChanged, cache.peer_changed)
    return cache
