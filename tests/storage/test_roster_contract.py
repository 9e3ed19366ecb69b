"""Contract tests for RosterStore; every backend must pass them unchanged."""

from __future__ import annotations

import asyncio

import pytest

from salon.storage import Storage
from salon.storage.interfaces import PendingSubscription, Roster, RosterItem
from salon.storage.sql.migrations import migrate
from tests.storage.conftest import Backend
from tests.storage.test_accounts_contract import cred

HOST = "example.org"
OTHER_HOST = "example.net"

ROMEO = RosterItem(
    jid="romeo@example.net",
    name="Romeo",
    subscription="both",
    groups=("Friends", "Montague"),
)
NURSE = RosterItem(jid="nurse@example.org", subscription="from", ask=True, approved=True)


async def test_unknown_roster_is_empty_at_version_zero(storage: Storage) -> None:
    assert await storage.roster.get(HOST, "juliet") == Roster(version=0, items={})
    assert await storage.roster.get_item(HOST, "juliet", ROMEO.jid) is None
    assert await storage.roster.count(HOST, "juliet") == 0


async def test_put_item_then_get(storage: Storage) -> None:
    version = await storage.roster.put_item(HOST, "juliet", ROMEO)

    assert version > 0
    assert await storage.roster.get(HOST, "juliet") == Roster(
        version=version, items={ROMEO.jid: ROMEO}
    )
    assert await storage.roster.get_item(HOST, "juliet", ROMEO.jid) == ROMEO
    assert await storage.roster.count(HOST, "juliet") == 1


async def test_every_field_round_trips(storage: Storage) -> None:
    items = [
        RosterItem(jid="plain@example.net"),
        NURSE,
        RosterItem(jid="to@example.net", name="", subscription="to"),
        RosterItem(
            jid="jürgen@東京.example",
            name="Jürgen 🎭 'quoted' \"name\"",
            subscription="none",
            ask=True,
            groups=("Zeta", "alpha", "Ärzte", "東京", "a,b", '["json"]', ""),
        ),
        RosterItem(jid="example.com", name=None, subscription="both", approved=True),
    ]
    for item in items:
        await storage.roster.put_item(HOST, "juliet", item)

    roster = await storage.roster.get(HOST, "juliet")

    assert roster.items == {item.jid: item for item in items}
    for item in items:
        got = roster.items[item.jid]
        assert got.groups == item.groups  # order kept, not sorted
        assert type(got.groups) is tuple
        assert type(got.ask) is bool
        assert type(got.approved) is bool
        assert await storage.roster.get_item(HOST, "juliet", item.jid) == item


async def test_put_item_replaces_the_whole_item(storage: Storage) -> None:
    await storage.roster.put_item(HOST, "juliet", ROMEO)
    replacement = RosterItem(jid=ROMEO.jid, subscription="to", groups=("Verona",))

    await storage.roster.put_item(HOST, "juliet", replacement)

    assert await storage.roster.get_item(HOST, "juliet", ROMEO.jid) == replacement
    assert await storage.roster.count(HOST, "juliet") == 1


async def test_versions_strictly_increase_with_every_change(storage: Storage) -> None:
    versions = [
        await storage.roster.put_item(HOST, "juliet", ROMEO),
        await storage.roster.put_item(HOST, "juliet", NURSE),
        await storage.roster.put_item(HOST, "juliet", ROMEO),  # an unchanged item too
    ]
    removed = await storage.roster.remove_item(HOST, "juliet", NURSE.jid)
    assert removed is not None
    versions.append(removed)
    versions.append(await storage.roster.put_item(HOST, "juliet", NURSE))

    assert versions == sorted(set(versions))
    assert (await storage.roster.get(HOST, "juliet")).version == versions[-1]


async def test_remove_item(storage: Storage) -> None:
    await storage.roster.put_item(HOST, "juliet", ROMEO)
    put_version = await storage.roster.put_item(HOST, "juliet", NURSE)

    version = await storage.roster.remove_item(HOST, "juliet", ROMEO.jid)

    assert version is not None
    assert version > put_version
    assert await storage.roster.get(HOST, "juliet") == Roster(
        version=version, items={NURSE.jid: NURSE}
    )
    assert await storage.roster.get_item(HOST, "juliet", ROMEO.jid) is None


async def test_removing_a_missing_item_returns_none_and_keeps_the_version(
    storage: Storage,
) -> None:
    assert await storage.roster.remove_item(HOST, "juliet", ROMEO.jid) is None
    assert (await storage.roster.get(HOST, "juliet")).version == 0

    version = await storage.roster.put_item(HOST, "juliet", ROMEO)
    assert await storage.roster.remove_item(HOST, "juliet", NURSE.jid) is None
    assert (await storage.roster.get(HOST, "juliet")).version == version

    removed = await storage.roster.remove_item(HOST, "juliet", ROMEO.jid)
    assert removed is not None
    assert await storage.roster.remove_item(HOST, "juliet", ROMEO.jid) is None
    assert (await storage.roster.get(HOST, "juliet")).version == removed


async def test_emptied_roster_keeps_its_version(storage: Storage) -> None:
    await storage.roster.put_item(HOST, "juliet", ROMEO)
    version = await storage.roster.remove_item(HOST, "juliet", ROMEO.jid)
    assert version is not None
    assert await storage.roster.get(HOST, "juliet") == Roster(version=version, items={})
    assert await storage.roster.put_item(HOST, "juliet", ROMEO) > version


@pytest.mark.parametrize("subscription", ["", "None", "pending", "both "])
async def test_invalid_subscription_is_rejected_without_a_change(
    storage: Storage, subscription: str
) -> None:
    version = await storage.roster.put_item(HOST, "juliet", ROMEO)
    with pytest.raises(ValueError):
        await storage.roster.put_item(
            HOST, "juliet", RosterItem(jid=ROMEO.jid, subscription=subscription)
        )
    assert await storage.roster.get(HOST, "juliet") == Roster(
        version=version, items={ROMEO.jid: ROMEO}
    )


async def test_concurrent_puts_get_distinct_versions(storage: Storage) -> None:
    items = [RosterItem(jid=f"contact{i}@example.net") for i in range(10)]

    versions = await asyncio.gather(
        *(storage.roster.put_item(HOST, "juliet", item) for item in items)
    )

    assert sorted(versions) == list(range(1, 11))
    roster = await storage.roster.get(HOST, "juliet")
    assert roster.version == 10
    assert roster.items == {item.jid: item for item in items}


async def test_concurrent_puts_of_one_item_get_distinct_versions(storage: Storage) -> None:
    variants = [RosterItem(jid=ROMEO.jid, name=f"Romeo {i}") for i in range(10)]

    versions = await asyncio.gather(
        *(storage.roster.put_item(HOST, "juliet", item) for item in variants)
    )

    assert sorted(versions) == list(range(1, 11))
    roster = await storage.roster.get(HOST, "juliet")
    assert roster.version == 10
    # The write that got the last version is the one that stayed.
    assert roster.items == {ROMEO.jid: variants[versions.index(10)]}


async def test_concurrent_puts_and_removes_get_distinct_versions(storage: Storage) -> None:
    items = [RosterItem(jid=f"contact{i}@example.net") for i in range(10)]
    for item in items:
        await storage.roster.put_item(HOST, "juliet", item)

    results = await asyncio.gather(
        *(storage.roster.remove_item(HOST, "juliet", item.jid) for item in items[:5]),
        *(storage.roster.put_item(HOST, "juliet", NURSE) for _ in range(3)),
        *(storage.roster.put_item(HOST, "juliet", item) for item in items[5:]),
    )

    assert sorted(v for v in results if v is not None) == list(range(11, 11 + 13))
    roster = await storage.roster.get(HOST, "juliet")
    assert roster.version == 23
    assert set(roster.items) == {NURSE.jid} | {item.jid for item in items[5:]}


async def test_concurrent_reads_see_consistent_rosters(storage: Storage) -> None:
    """A roster read while items are added has exactly ``version`` items."""
    items = [RosterItem(jid=f"contact{i}@example.net") for i in range(8)]

    async def read() -> Roster:
        await asyncio.sleep(0)
        return await storage.roster.get(HOST, "juliet")

    results = await asyncio.gather(
        *(storage.roster.put_item(HOST, "juliet", item) for item in items),
        *(read() for _ in range(8)),
    )

    for roster in results[len(items) :]:
        assert isinstance(roster, Roster)
        assert len(roster.items) == roster.version


async def test_users_and_hosts_have_separate_rosters_and_versions(storage: Storage) -> None:
    await storage.roster.put_item(HOST, "juliet", ROMEO)
    await storage.roster.put_item(HOST, "juliet", NURSE)
    assert await storage.roster.put_item(HOST, "romeo", NURSE) == 1
    assert await storage.roster.put_item(OTHER_HOST, "juliet", ROMEO) == 1

    assert (await storage.roster.get(HOST, "juliet")).version == 2
    assert set((await storage.roster.get(HOST, "romeo")).items) == {NURSE.jid}
    assert await storage.roster.count(OTHER_HOST, "juliet") == 1
    assert await storage.roster.get_item(HOST, "romeo", ROMEO.jid) is None

    await storage.roster.remove_item(HOST, "juliet", ROMEO.jid)
    assert await storage.roster.get_item(OTHER_HOST, "juliet", ROMEO.jid) == ROMEO
    assert (await storage.roster.get(OTHER_HOST, "juliet")).version == 1


def _subscribe(jid: str, n: int = 0) -> str:
    return f"<presence from='{jid}' to='juliet@{HOST}' type='subscribe' id='s{n}'/>"


async def test_no_pending_subscriptions_at_first(storage: Storage) -> None:
    assert await storage.roster.list_pending(HOST, "juliet") == []
    assert await storage.roster.remove_pending(HOST, "juliet", ROMEO.jid) is False


async def test_pending_subscriptions_are_listed_oldest_first(storage: Storage) -> None:
    jids = ["zed@example.net", "romeo@example.net", "amy@example.net", "example.com"]
    for jid in jids:
        await storage.roster.add_pending(HOST, "juliet", jid, _subscribe(jid))

    assert await storage.roster.list_pending(HOST, "juliet") == [
        PendingSubscription(jid=jid, stanza=_subscribe(jid)) for jid in jids
    ]


async def test_add_pending_replaces_the_request_from_the_same_jid(storage: Storage) -> None:
    await storage.roster.add_pending(HOST, "juliet", ROMEO.jid, _subscribe(ROMEO.jid, 1))
    await storage.roster.add_pending(HOST, "juliet", NURSE.jid, _subscribe(NURSE.jid, 1))
    await storage.roster.add_pending(HOST, "juliet", ROMEO.jid, _subscribe(ROMEO.jid, 2))

    # The replacement carries the new stanza and counts as the newest request.
    assert await storage.roster.list_pending(HOST, "juliet") == [
        PendingSubscription(jid=NURSE.jid, stanza=_subscribe(NURSE.jid, 1)),
        PendingSubscription(jid=ROMEO.jid, stanza=_subscribe(ROMEO.jid, 2)),
    ]


async def test_remove_pending(storage: Storage) -> None:
    await storage.roster.add_pending(HOST, "juliet", ROMEO.jid, _subscribe(ROMEO.jid))
    await storage.roster.add_pending(HOST, "juliet", NURSE.jid, _subscribe(NURSE.jid))

    assert await storage.roster.remove_pending(HOST, "juliet", ROMEO.jid) is True
    assert await storage.roster.remove_pending(HOST, "juliet", ROMEO.jid) is False
    assert await storage.roster.list_pending(HOST, "juliet") == [
        PendingSubscription(jid=NURSE.jid, stanza=_subscribe(NURSE.jid))
    ]


async def test_pending_subscriptions_do_not_touch_the_roster(storage: Storage) -> None:
    await storage.roster.add_pending(HOST, "juliet", ROMEO.jid, _subscribe(ROMEO.jid))
    assert await storage.roster.get(HOST, "juliet") == Roster(version=0, items={})
    version = await storage.roster.put_item(HOST, "juliet", ROMEO)
    await storage.roster.remove_pending(HOST, "juliet", ROMEO.jid)
    assert (await storage.roster.get(HOST, "juliet")).version == version


async def test_pending_subscriptions_of_users_and_hosts_are_separate(storage: Storage) -> None:
    await storage.roster.add_pending(HOST, "juliet", ROMEO.jid, "here")
    await storage.roster.add_pending(HOST, "nurse", ROMEO.jid, "nurse")
    await storage.roster.add_pending(OTHER_HOST, "juliet", ROMEO.jid, "there")

    await storage.roster.remove_pending(HOST, "juliet", ROMEO.jid)

    assert await storage.roster.list_pending(HOST, "juliet") == []
    assert await storage.roster.list_pending(HOST, "nurse") == [
        PendingSubscription(ROMEO.jid, "nurse")
    ]
    assert await storage.roster.list_pending(OTHER_HOST, "juliet") == [
        PendingSubscription(ROMEO.jid, "there")
    ]


async def test_concurrent_add_pending_from_one_jid_keeps_one(storage: Storage) -> None:
    stanzas = [_subscribe(ROMEO.jid, i) for i in range(8)]
    await asyncio.gather(
        *(storage.roster.add_pending(HOST, "juliet", ROMEO.jid, s) for s in stanzas)
    )
    pending = await storage.roster.list_pending(HOST, "juliet")
    assert len(pending) == 1
    assert pending[0].stanza in stanzas


async def test_account_deletion_removes_roster_and_pending(storage: Storage) -> None:
    for user in ("juliet", "romeo"):
        await storage.accounts.create(HOST, user, [cred()])
        await storage.roster.put_item(HOST, user, ROMEO)
        await storage.roster.put_item(HOST, user, NURSE)
        await storage.roster.add_pending(HOST, user, "tybalt@example.net", "<presence/>")

    assert await storage.accounts.delete(HOST, "juliet")

    await storage.accounts.create(HOST, "juliet", [cred()])
    assert await storage.roster.get(HOST, "juliet") == Roster(version=0, items={})
    assert await storage.roster.count(HOST, "juliet") == 0
    assert await storage.roster.list_pending(HOST, "juliet") == []
    # Other users keep theirs.
    assert await storage.roster.get(HOST, "romeo") == Roster(
        version=2, items={ROMEO.jid: ROMEO, NURSE.jid: NURSE}
    )
    assert len(await storage.roster.list_pending(HOST, "romeo")) == 1


async def test_account_deletion_while_the_roster_changes(storage: Storage) -> None:
    """Deleting an account races roster writes without deadlocking (PostgreSQL)."""
    await storage.accounts.create(HOST, "juliet", [cred()])
    items = [RosterItem(jid=f"contact{i}@example.net") for i in range(6)]
    for item in items[:3]:
        await storage.roster.put_item(HOST, "juliet", item)

    await asyncio.gather(
        *(storage.roster.put_item(HOST, "juliet", item) for item in items[3:]),
        *(storage.roster.remove_item(HOST, "juliet", item.jid) for item in items[:3]),
        storage.accounts.delete(HOST, "juliet"),
    )

    roster = await storage.roster.get(HOST, "juliet")
    assert len(roster.items) == await storage.roster.count(HOST, "juliet")


async def test_roster_survives_reopening(backend: Backend) -> None:
    first = await backend.open()
    try:
        await first.roster.put_item(HOST, "juliet", ROMEO)
        version = await first.roster.put_item(HOST, "juliet", NURSE)
        await first.roster.add_pending(HOST, "juliet", "tybalt@example.net", "<presence/>")
    finally:
        await first.close()

    second = await backend.open()
    try:
        assert await second.roster.get(HOST, "juliet") == Roster(
            version=version, items={ROMEO.jid: ROMEO, NURSE.jid: NURSE}
        )
        assert await second.roster.list_pending(HOST, "juliet") == [
            PendingSubscription("tybalt@example.net", "<presence/>")
        ]
        assert await second.roster.put_item(HOST, "juliet", ROMEO) == version + 1
    finally:
        await second.close()


async def test_migrating_again_keeps_rosters(backend: Backend) -> None:
    storage = await backend.open()
    try:
        version = await storage.roster.put_item(HOST, "juliet", ROMEO)
        await storage.roster.add_pending(HOST, "juliet", NURSE.jid, "<presence/>")
        await migrate(storage.engine)
        await migrate(storage.engine)
        assert await storage.roster.get(HOST, "juliet") == Roster(
            version=version, items={ROMEO.jid: ROMEO}
        )
        assert await storage.roster.list_pending(HOST, "juliet") == [
            PendingSubscription(NURSE.jid, "<presence/>")
        ]
    finally:
        await storage.close()


async def test_get_with_pending_reads_both_in_one_call(storage: Storage) -> None:
    assert await storage.roster.get_with_pending(HOST, "juliet") == (
        Roster(version=0, items={}),
        [],
    )
    version = await storage.roster.put_item(HOST, "juliet", ROMEO)
    await storage.roster.add_pending(HOST, "juliet", NURSE.jid, _subscribe(NURSE.jid))

    roster, pending = await storage.roster.get_with_pending(HOST, "juliet")

    assert roster == Roster(version=version, items={ROMEO.jid: ROMEO})
    assert pending == [PendingSubscription(jid=NURSE.jid, stanza=_subscribe(NURSE.jid))]
    assert await storage.roster.get_with_pending(HOST, "romeo") == (
        Roster(version=0, items={}),
        [],
    )
