"""salon.core.roster_cache: rosters of online users read once, kept exact through writes."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from types import SimpleNamespace
from typing import Any, cast

from salon.core.clock import ManualClock
from salon.core.events import AccountDeleted, ResourceUnbound
from salon.core.ports import NoPeers
from salon.core.roster_cache import RosterCache
from salon.core.session import C2SSession
from salon.jid import JID
from salon.storage.interfaces import PendingSubscription, Roster, RosterItem

JULIET = JID.make("juliet", "localhost")
ROMEO_BARE = JID.make("romeo", "localhost")
ROMEO = RosterItem("romeo@localhost", subscription="both")
NURSE = RosterItem("nurse@localhost", subscription="from")


class MemoryRosters:
    """A RosterStore in memory that counts reads and can hold them at a gate."""

    def __init__(self) -> None:
        self.versions: dict[str, int] = {}
        self.items: dict[str, dict[str, RosterItem]] = {}
        self.pending: dict[str, dict[str, str]] = {}
        self.reads = 0
        self.gate: asyncio.Event | None = None

    async def _read(self) -> None:
        self.reads += 1
        if self.gate is not None:
            await self.gate.wait()

    async def get(self, host: str, username: str) -> Roster:
        version, items = self.versions.get(username, 0), dict(self.items.get(username, {}))
        await self._read()  # what was read is what stood when the read began
        return Roster(version=version, items=items)

    async def get_item(self, host: str, username: str, jid: str) -> RosterItem | None:
        await self._read()
        return self.items.get(username, {}).get(jid)

    async def count(self, host: str, username: str) -> int:
        await self._read()
        return len(self.items.get(username, {}))

    async def put_item(self, host: str, username: str, item: RosterItem) -> int:
        await asyncio.sleep(0)
        self.items.setdefault(username, {})[item.jid] = item
        self.versions[username] = self.versions.get(username, 0) + 1
        return self.versions[username]

    async def remove_item(self, host: str, username: str, jid: str) -> int | None:
        await asyncio.sleep(0)
        if self.items.get(username, {}).pop(jid, None) is None:
            return None
        self.versions[username] += 1
        return self.versions[username]

    async def add_pending(self, host: str, username: str, jid: str, stanza: str) -> None:
        await asyncio.sleep(0)
        requests = self.pending.setdefault(username, {})
        requests.pop(jid, None)
        requests[jid] = stanza

    async def remove_pending(self, host: str, username: str, jid: str) -> bool:
        await asyncio.sleep(0)
        return self.pending.get(username, {}).pop(jid, None) is not None

    async def list_pending(self, host: str, username: str) -> list[PendingSubscription]:
        requests = list(self.pending.get(username, {}).items())
        await self._read()
        return [PendingSubscription(jid, stanza) for jid, stanza in requests]

    async def get_with_pending(
        self, host: str, username: str
    ) -> tuple[Roster, list[PendingSubscription]]:
        version, items = self.versions.get(username, 0), dict(self.items.get(username, {}))
        requests = list(self.pending.get(username, {}).items())
        await self._read()  # one transaction for both
        pending = [PendingSubscription(jid, stanza) for jid, stanza in requests]
        return Roster(version=version, items=items), pending


class Online:
    def __init__(self) -> None:
        self.users: set[JID] = set()

    def is_online(self, bare: JID) -> bool:
        return bare in self.users


def make_cache(
    recent_ttl: float = 0.0, clock: ManualClock | None = None
) -> tuple[RosterCache, MemoryRosters, Online]:
    """By default a user's entry goes with the last session (``recent_ttl`` 0)."""
    store, online = MemoryRosters(), Online()
    server = SimpleNamespace(
        storage=SimpleNamespace(roster=store),
        sessions=online,
        clock=clock or ManualClock(),
        peers=NoPeers(),
    )
    return RosterCache(cast(Any, server), recent_ttl=recent_ttl), store, online


def unbound(user: JID) -> ResourceUnbound:
    return ResourceUnbound(cast(C2SSession, SimpleNamespace(jid=user.with_resource("r"))))


async def test_an_online_users_roster_is_read_once_and_follows_every_write() -> None:
    cache, store, online = make_cache()
    await store.put_item("localhost", "juliet", ROMEO)
    online.users.add(JULIET)
    assert (await cache.roster(JULIET)).items == {ROMEO.jid: ROMEO}
    assert await cache.item(JULIET, ROMEO.jid) == ROMEO
    assert await cache.item(JULIET, NURSE.jid) is None
    assert await cache.count(JULIET) == 1
    assert store.reads == 1

    held = await cache.roster(JULIET)
    assert await cache.put_item(JULIET, NURSE) == 2
    renamed = replace(ROMEO, name="Romeo")
    assert await cache.put_item(JULIET, renamed) == 3
    assert await cache.remove_item(JULIET, NURSE.jid) == 4
    assert await cache.remove_item(JULIET, NURSE.jid) is None
    assert await cache.roster(JULIET) == Roster(version=4, items={ROMEO.jid: renamed})
    assert held.items == {ROMEO.jid: ROMEO}  # a roster handed out never changes
    assert store.reads == 1
    assert await cache.roster(JULIET) == await store.get("localhost", "juliet")


async def test_an_offline_user_costs_one_query_per_item_and_nothing_is_kept() -> None:
    cache, store, _online = make_cache()
    await store.put_item("localhost", "juliet", ROMEO)
    assert await cache.item(JULIET, ROMEO.jid) == ROMEO
    assert await cache.item(JULIET, ROMEO.jid) == ROMEO
    assert store.reads == 2
    assert len(cache) == 0


async def test_concurrent_reads_share_one_query() -> None:
    cache, store, online = make_cache()
    online.users.add(JULIET)
    store.gate = asyncio.Event()
    readers = [asyncio.create_task(cache.item(JULIET, ROMEO.jid)) for _ in range(5)]
    await asyncio.sleep(0)
    store.gate.set()
    assert await asyncio.gather(*readers) == [None] * 5
    assert store.reads == 1


async def test_a_read_overlapping_a_write_is_not_kept() -> None:
    cache, store, online = make_cache()
    online.users.add(JULIET)
    store.gate = asyncio.Event()
    reader = asyncio.create_task(cache.roster(JULIET))
    await asyncio.sleep(0)  # the read has begun: it will not see the write
    await cache.put_item(JULIET, ROMEO)
    store.gate.set()
    assert (await reader).items == {}  # stale, as any read racing a write may be
    assert (await cache.roster(JULIET)).items == {ROMEO.jid: ROMEO}  # but not kept
    assert store.reads == 2


async def test_a_write_the_cache_did_not_see_makes_it_read_again() -> None:
    cache, store, online = make_cache()
    online.users.add(JULIET)
    await cache.roster(JULIET)
    await store.put_item("localhost", "juliet", NURSE)  # behind the cache's back
    await cache.put_item(JULIET, ROMEO)  # version 2, the copy is at 0: a gap
    assert await cache.roster(JULIET) == Roster(
        version=2, items={NURSE.jid: NURSE, ROMEO.jid: ROMEO}
    )
    assert store.reads == 2


async def test_the_roster_stays_while_the_last_session_ends_then_goes() -> None:
    cache, store, online = make_cache()
    await store.put_item("localhost", "juliet", ROMEO)
    online.users.add(JULIET)
    online.users.discard(JULIET)  # the registry forgets the session before the event
    cache.session_ending(unbound(JULIET))
    assert await cache.item(JULIET, ROMEO.jid) == ROMEO  # read and kept for the other hooks
    assert (await cache.roster(JULIET)).items == {ROMEO.jid: ROMEO}
    assert store.reads == 1
    cache.session_ended(unbound(JULIET))
    assert len(cache) == 0
    assert await cache.item(JULIET, ROMEO.jid) == ROMEO
    assert store.reads == 2


async def test_a_returning_user_finds_the_roster_kept_for_the_ttl() -> None:
    clock = ManualClock()
    cache, store, online = make_cache(recent_ttl=60.0, clock=clock)
    await store.put_item("localhost", "juliet", ROMEO)
    online.users.add(JULIET)
    assert (await cache.roster(JULIET)).items == {ROMEO.jid: ROMEO}
    online.users.discard(JULIET)
    cache.session_ending(unbound(JULIET))
    cache.session_ended(unbound(JULIET))
    # gone, but back within the minute: no query
    assert (await cache.roster(JULIET)).items == {ROMEO.jid: ROMEO}
    assert store.reads == 1
    # a write while offline goes through the cache: the kept copy stays exact
    await cache.put_item(JULIET, NURSE)
    assert (await cache.roster(JULIET)).items == {ROMEO.jid: ROMEO, NURSE.jid: NURSE}
    assert store.reads == 1
    # past the TTL the next session end lets it go
    await clock.advance(61.0)
    online.users.add(ROMEO_BARE)
    online.users.discard(ROMEO_BARE)
    cache.session_ending(unbound(ROMEO_BARE))
    cache.session_ended(unbound(ROMEO_BARE))
    assert len(cache) == 0
    assert (await cache.roster(JULIET)).items == {ROMEO.jid: ROMEO, NURSE.jid: NURSE}
    assert store.reads == 2


async def test_pending_requests_are_kept_and_known_absence_outlives_the_session() -> None:
    cache, store, online = make_cache()
    online.users.add(JULIET)
    assert await cache.pending(JULIET) == []
    await cache.add_pending(JULIET, ROMEO.jid, "<presence type='subscribe'/>")
    await cache.add_pending(JULIET, NURSE.jid, "<presence type='subscribe'/>")
    await cache.add_pending(JULIET, ROMEO.jid, "<presence type='subscribe' id='2'/>")
    assert [p.jid for p in await cache.pending(JULIET)] == [NURSE.jid, ROMEO.jid]
    assert await cache.remove_pending(JULIET, NURSE.jid) is True
    assert await cache.remove_pending(JULIET, NURSE.jid) is False
    assert await cache.pending(JULIET) == await store.list_pending("localhost", "juliet")
    assert await cache.remove_pending(JULIET, ROMEO.jid) is True
    reads = store.reads

    online.users.discard(JULIET)
    cache.session_ending(unbound(JULIET))
    cache.session_ended(unbound(JULIET))
    assert await cache.pending(JULIET) == []  # known to have none: no query
    assert store.reads == reads
    await cache.add_pending(JULIET, ROMEO.jid, "<presence type='subscribe'/>")
    assert [p.jid for p in await cache.pending(JULIET)] == [ROMEO.jid]
    assert store.reads == reads + 1


async def test_a_deleted_account_is_forgotten() -> None:
    cache, store, online = make_cache()
    online.users.add(JULIET)
    await cache.put_item(JULIET, ROMEO)
    assert await cache.roster(JULIET) == Roster(version=1, items={ROMEO.jid: ROMEO})
    store.items.clear()
    store.versions.clear()
    cache.account_deleted(AccountDeleted(JULIET))
    assert await cache.roster(JULIET) == Roster(version=0, items={})


async def test_coming_online_reads_roster_and_pending_requests_in_one_query() -> None:
    cache, store, online = make_cache()
    await store.put_item("localhost", "juliet", ROMEO)
    await store.add_pending("localhost", "juliet", NURSE.jid, "<presence type='subscribe'/>")
    online.users.add(JULIET)
    assert (await cache.roster(JULIET)).items == {ROMEO.jid: ROMEO}
    assert [p.jid for p in await cache.pending(JULIET)] == [NURSE.jid]
    assert store.reads == 1


async def test_an_offline_users_roster_read_for_probes_is_kept_for_the_ttl() -> None:
    """A login storm: many contacts probe a user who is not online yet, then the user comes
    online. One query serves every probe and the user's own login."""
    clock = ManualClock()
    cache, store, online = make_cache(recent_ttl=60.0, clock=clock)
    await store.put_item("localhost", "juliet", ROMEO)
    await store.put_item("localhost", "juliet", NURSE)
    for _ in range(3):
        assert await cache.item(JULIET, ROMEO.jid) == ROMEO
        assert await cache.item(JULIET, "tybalt@localhost") is None
    assert store.reads == 1
    await cache.put_item(JULIET, replace(NURSE, name="Nurse"))  # exact while offline too
    online.users.add(JULIET)
    assert (await cache.roster(JULIET)).items[NURSE.jid].name == "Nurse"
    assert await cache.pending(JULIET) == []
    assert store.reads == 1
    # not online, past the TTL: let go at the next expiry check
    online.users.discard(JULIET)
    await clock.advance(61.0)
    assert await cache.item(ROMEO_BARE, JULIET.local or "") is None  # another user's read
    assert JULIET not in cache._entries
    assert await cache.item(JULIET, ROMEO.jid) == ROMEO
    assert store.reads == 3
