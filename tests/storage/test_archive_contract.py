"""Contract tests for ArchiveStore; every backend must pass them unchanged."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from salon.storage import Storage
from salon.storage.interfaces import ArchiveItemNotFound, ArchiveQuery
from tests.storage.conftest import Backend
from tests.storage.test_accounts_contract import cred

HOST = "example.org"
ROOMS = "rooms.example.org"
T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def msg(n: int) -> str:
    return f"<message xmlns='jabber:client' type='chat'><body>{n}</body></message>"


async def fill(
    storage: Storage,
    n: int,
    *,
    user: str = "juliet",
    host: str = HOST,
    peers: tuple[str, ...] = ("romeo@example.net/orchard",),
    step: timedelta = timedelta(seconds=1),
) -> list[str]:
    """Append n items one second apart, alternating peers; return their UIDs in order."""
    uids = []
    for i in range(n):
        uid = f"{user}-{i:05d}"
        await storage.archive.append(
            host,
            user,
            item_id=uid,
            with_jid=peers[i % len(peers)],
            stanza=msg(i),
            timestamp=T0 + step * i,
            direction="in" if i % 2 == 0 else "out",
        )
        uids.append(uid)
    return uids


def uids_of(page: object) -> list[str]:
    return [item.id for item in page.items]  # type: ignore[attr-defined]


async def test_empty_archive(storage: Storage) -> None:
    page = await storage.archive.query(HOST, "juliet", ArchiveQuery(with_count=True))
    assert page.items == [] and page.first is None and page.last is None
    assert page.complete is True
    assert page.count == 0 and page.index is None
    assert await storage.archive.count(HOST, "juliet") == 0


async def test_append_then_query_roundtrips_every_field(storage: Storage) -> None:
    stamp = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
    row = await storage.archive.append(
        HOST,
        "juliet",
        item_id="abc",
        with_jid="romeo@example.net/orchard",
        stanza=msg(1),
        timestamp=stamp,
        direction="in",
    )
    assert isinstance(row, int)
    [item] = (await storage.archive.query(HOST, "juliet", ArchiveQuery())).items
    assert item.id == "abc"
    assert item.with_jid == "romeo@example.net/orchard"
    assert item.stanza == msg(1)
    assert item.timestamp == stamp and item.timestamp.utcoffset() == timedelta(0)
    assert item.direction == "in"


async def test_duplicate_uid_in_one_archive_is_refused(storage: Storage) -> None:
    await fill(storage, 1)
    with pytest.raises(ValueError):
        await storage.archive.append(
            HOST,
            "juliet",
            item_id="juliet-00000",
            with_jid="a@b",
            stanza=msg(0),
            timestamp=T0,
            direction="in",
        )
    # The same UID in another archive is fine: ids are unique per archive.
    await storage.archive.append(
        HOST, "romeo", item_id="juliet-00000", with_jid="a@b", stanza=msg(0), timestamp=T0,
        direction="out",
    )  # fmt: skip


async def test_archives_are_separate_per_owner_and_host(storage: Storage) -> None:
    await fill(storage, 3, user="juliet")
    await fill(storage, 2, user="romeo")
    await fill(storage, 4, user="juliet", host=ROOMS)  # a room juliet@rooms.example.org
    assert len((await storage.archive.query(HOST, "juliet", ArchiveQuery())).items) == 3
    assert len((await storage.archive.query(HOST, "romeo", ArchiveQuery())).items) == 2
    assert len((await storage.archive.query(ROOMS, "juliet", ArchiveQuery())).items) == 4


async def test_forward_paging_covers_everything_once_in_order(storage: Storage) -> None:
    uids = await fill(storage, 23)
    seen: list[str] = []
    after: str | None = None
    while True:
        page = await storage.archive.query(
            HOST, "juliet", ArchiveQuery(max=5, after=after, with_count=True)
        )
        assert page.count == 23
        assert page.index == len(seen)
        seen.extend(uids_of(page))
        assert page.first == uids_of(page)[0] and page.last == uids_of(page)[-1]
        after = page.last
        if page.complete:
            break
    assert seen == uids


async def test_complete_when_page_ends_exactly_at_the_end(storage: Storage) -> None:
    uids = await fill(storage, 10)
    page = await storage.archive.query(HOST, "juliet", ArchiveQuery(max=10))
    assert uids_of(page) == uids and page.complete is True
    page = await storage.archive.query(HOST, "juliet", ArchiveQuery(max=9))
    assert page.complete is False


async def test_last_page_and_backward_paging(storage: Storage) -> None:
    uids = await fill(storage, 12)
    page = await storage.archive.query(HOST, "juliet", ArchiveQuery(max=5, before=""))
    assert uids_of(page) == uids[7:] and page.complete is False
    page = await storage.archive.query(HOST, "juliet", ArchiveQuery(max=5, before=page.first))
    assert uids_of(page) == uids[2:7] and page.complete is False
    page = await storage.archive.query(
        HOST, "juliet", ArchiveQuery(max=5, before=page.first, with_count=True)
    )
    assert uids_of(page) == uids[:2] and page.complete is True
    assert page.count == 12 and page.index == 0


async def test_flip_reverses_items_but_not_first_and_last(storage: Storage) -> None:
    uids = await fill(storage, 6)
    page = await storage.archive.query(HOST, "juliet", ArchiveQuery(max=4, flip=True))
    assert uids_of(page) == list(reversed(uids[:4]))
    assert page.first == uids[0] and page.last == uids[3]


async def test_with_bare_matches_every_resource_full_matches_exactly(storage: Storage) -> None:
    peers = ("romeo@example.net/orchard", "romeo@example.net/balcony", "nurse@example.org")
    uids = await fill(storage, 9, peers=peers)
    page = await storage.archive.query(HOST, "juliet", ArchiveQuery(with_jid="romeo@example.net"))
    assert uids_of(page) == [u for i, u in enumerate(uids) if i % 3 != 2]
    page = await storage.archive.query(
        HOST, "juliet", ArchiveQuery(with_jid="romeo@example.net/balcony")
    )
    assert uids_of(page) == [u for i, u in enumerate(uids) if i % 3 == 1]
    page = await storage.archive.query(
        HOST, "juliet", ArchiveQuery(with_jid="nurse@example.org", with_count=True)
    )
    assert uids_of(page) == uids[2::3] and page.count == 3


async def test_start_and_end_are_inclusive(storage: Storage) -> None:
    uids = await fill(storage, 10)
    query = ArchiveQuery(start=T0 + timedelta(seconds=3), end=T0 + timedelta(seconds=6))
    page = await storage.archive.query(HOST, "juliet", query)
    assert uids_of(page) == uids[3:7]


async def test_same_timestamp_keeps_insertion_order(storage: Storage) -> None:
    uids = await fill(storage, 8, step=timedelta(0))
    page = await storage.archive.query(HOST, "juliet", ArchiveQuery(max=3, after=uids[2]))
    assert uids_of(page) == uids[3:6]
    page = await storage.archive.query(HOST, "juliet", ArchiveQuery(max=3, before=uids[5]))
    assert uids_of(page) == uids[2:5]


async def test_after_id_and_before_id_filter_the_set(storage: Storage) -> None:
    uids = await fill(storage, 10)
    query = ArchiveQuery(after_id=uids[2], before_id=uids[8], with_count=True, max=3)
    page = await storage.archive.query(HOST, "juliet", query)
    assert uids_of(page) == uids[3:6] and page.count == 5 and page.complete is False
    # RSM paging within the filtered set, backwards from its end.
    query = ArchiveQuery(after_id=uids[2], before_id=uids[8], max=3, before="")
    page = await storage.archive.query(HOST, "juliet", query)
    assert uids_of(page) == uids[5:8]


async def test_ids_fetches_exactly_those(storage: Storage) -> None:
    uids = await fill(storage, 10)
    query = ArchiveQuery(ids=(uids[7], uids[1], uids[4]))
    page = await storage.archive.query(HOST, "juliet", query)
    assert uids_of(page) == [uids[1], uids[4], uids[7]] and page.complete is True


@pytest.mark.parametrize(
    "query",
    [
        ArchiveQuery(after="nope"),
        ArchiveQuery(before="nope"),
        ArchiveQuery(after_id="nope"),
        ArchiveQuery(before_id="nope"),
        ArchiveQuery(ids=("juliet-00000", "nope")),
        ArchiveQuery(after="x" * 200),
    ],
)
async def test_unknown_uid_raises_item_not_found(storage: Storage, query: ArchiveQuery) -> None:
    await fill(storage, 2)
    with pytest.raises(ArchiveItemNotFound):
        await storage.archive.query(HOST, "juliet", query)


async def test_uid_of_another_owner_is_not_found(storage: Storage) -> None:
    romeo = await fill(storage, 2, user="romeo")
    await fill(storage, 2)
    with pytest.raises(ArchiveItemNotFound):
        await storage.archive.query(HOST, "juliet", ArchiveQuery(after=romeo[0]))


async def test_max_zero_gives_the_count_only(storage: Storage) -> None:
    await fill(storage, 7)
    page = await storage.archive.query(HOST, "juliet", ArchiveQuery(max=0, with_count=True))
    assert page.items == [] and page.count == 7 and page.first is None


async def test_index_starts_the_page_at_a_position(storage: Storage) -> None:
    uids = await fill(storage, 10)
    page = await storage.archive.query(
        HOST, "juliet", ArchiveQuery(max=3, index=4, with_count=True)
    )
    assert uids_of(page) == uids[4:7] and page.index == 4 and page.complete is False
    page = await storage.archive.query(HOST, "juliet", ArchiveQuery(max=3, index=20))
    assert page.items == [] and page.complete is True


async def test_expire_removes_only_older_items(storage: Storage) -> None:
    uids = await fill(storage, 10)
    romeo = await fill(storage, 10, user="romeo")
    cutoff = T0 + timedelta(seconds=4)
    assert await storage.archive.expire(HOST, cutoff, "juliet") == 4
    assert uids_of(await storage.archive.query(HOST, "juliet", ArchiveQuery())) == uids[4:]
    assert await storage.archive.count(HOST, "romeo") == 10
    # Host-wide: every owner on the host, nobody elsewhere.
    await fill(storage, 3, host=ROOMS)
    assert await storage.archive.expire(HOST, T0 + timedelta(seconds=6)) == 2 + 6
    assert uids_of(await storage.archive.query(HOST, "romeo", ArchiveQuery())) == romeo[6:]
    assert await storage.archive.count(ROOMS, "juliet") == 3


async def test_delete_removes_one_owner(storage: Storage) -> None:
    await fill(storage, 5)
    await fill(storage, 2, user="romeo")
    assert await storage.archive.delete(HOST, "juliet") == 5
    assert await storage.archive.count(HOST, "juliet") == 0
    assert await storage.archive.count(HOST, "romeo") == 2


async def test_account_deletion_removes_the_archive(storage: Storage) -> None:
    await storage.accounts.create(HOST, "juliet", [cred()])
    await fill(storage, 5)
    await fill(storage, 2, user="romeo")
    assert await storage.accounts.delete(HOST, "juliet") is True
    assert await storage.archive.count(HOST, "juliet") == 0
    assert await storage.archive.count(HOST, "romeo") == 2


async def test_archive_survives_reopening(backend: Backend) -> None:
    first = await backend.open()
    try:
        uids = await fill(first, 3)
    finally:
        await first.close()
    second = await backend.open()
    try:
        page = await second.archive.query(HOST, "juliet", ArchiveQuery())
        assert uids_of(page) == uids
    finally:
        await second.close()


async def test_ids_combine_with_the_other_filters_and_paging(storage: Storage) -> None:
    peers = ("romeo@example.net/orchard", "nurse@example.org")
    uids = await fill(storage, 12, peers=peers)
    wanted = tuple(uids[i] for i in (0, 2, 3, 4, 6, 8, 10, 11))
    query = ArchiveQuery(
        ids=wanted, with_jid="romeo@example.net", start=T0 + timedelta(seconds=1), max=2,
        with_count=True,
    )  # fmt: skip
    page = await storage.archive.query(HOST, "juliet", query)
    # romeo has the even positions; from second 1 on: 2, 4, 6, 8, 10.
    assert uids_of(page) == [uids[2], uids[4]] and page.complete is False
    assert page.count == 5 and page.index == 0
    page = await storage.archive.query(
        HOST, "juliet", ArchiveQuery(ids=wanted, with_jid="romeo@example.net", max=2, before="")
    )
    assert uids_of(page) == [uids[8], uids[10]] and page.complete is False
    page = await storage.archive.query(
        HOST, "juliet", ArchiveQuery(ids=wanted, max=3, after=uids[4], before_id=uids[11])
    )
    assert uids_of(page) == [uids[6], uids[8], uids[10]] and page.complete is True


async def test_replace_keeps_uid_time_and_peer(storage: Storage) -> None:
    uids = await fill(storage, 3, user="room", host=ROOMS)
    tombstone = "<message xmlns='jabber:client' type='groupchat'><retracted/></message>"
    assert await storage.archive.replace(ROOMS, "room", uids[1], tombstone) is True
    assert await storage.archive.replace(ROOMS, "room", "no-such-uid", tombstone) is False
    assert await storage.archive.replace(HOST, "room", uids[1], tombstone) is False
    page = await storage.archive.query(ROOMS, "room", ArchiveQuery())
    assert uids_of(page) == uids
    assert [item.stanza for item in page.items] == [msg(0), tombstone, msg(2)]
    assert page.items[1].timestamp == T0 + timedelta(seconds=1)
    assert page.items[1].with_jid == "romeo@example.net/orchard"


async def test_concurrent_appends_are_all_committed_in_order_of_arrival(
    storage: Storage,
) -> None:
    # Appends made at once share transactions (group commit); each still gets its own row.
    rows = await asyncio.gather(
        *(
            storage.archive.append(
                HOST,
                "juliet",
                item_id=f"c{i:03d}",
                with_jid="romeo@example.net",
                stanza=msg(i),
                timestamp=T0,
                direction="in",
            )
            for i in range(120)
        )
    )
    assert len(set(rows)) == 120
    page = await storage.archive.query(HOST, "juliet", ArchiveQuery(max=500))
    assert uids_of(page) == [f"c{i:03d}" for i in range(120)]


async def test_a_duplicate_among_concurrent_appends_fails_alone(storage: Storage) -> None:
    await fill(storage, 1)

    async def append(uid: str) -> int:
        return await storage.archive.append(
            HOST, "juliet", item_id=uid, with_jid="a@b", stanza=msg(0), timestamp=T0,
            direction="in",
        )  # fmt: skip

    outcomes = await asyncio.gather(
        append("n1"), append("juliet-00000"), append("n2"), return_exceptions=True
    )
    assert isinstance(outcomes[0], int) and isinstance(outcomes[2], int)
    assert isinstance(outcomes[1], ValueError)
    page = await storage.archive.query(HOST, "juliet", ArchiveQuery(max=10))
    assert sorted(uids_of(page)) == ["juliet-00000", "n1", "n2"]
