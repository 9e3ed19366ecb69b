"""Contract tests for OfflineStore; every backend must pass them unchanged."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from salon.storage import Storage
from salon.storage.sql.migrations import migrate
from tests.storage.conftest import Backend
from tests.storage.test_accounts_contract import cred

HOST = "example.org"
OTHER_HOST = "example.net"
LIMIT = 100


def msg(n: int, to: str = "juliet") -> str:
    return f"<message from='romeo@example.net/orchard' to='{to}@{HOST}'><body>{n}</body></message>"


async def test_nothing_stored_at_first(storage: Storage) -> None:
    assert await storage.offline.list(HOST, "juliet") == []
    assert await storage.offline.count(HOST, "juliet") == 0


async def test_pushed_message_is_listed(storage: Storage) -> None:
    before = datetime.now(UTC)
    assert await storage.offline.push(HOST, "juliet", msg(1), limit=LIMIT) is True

    [stored] = await storage.offline.list(HOST, "juliet")

    assert stored.stanza == msg(1)
    assert isinstance(stored.id, int)
    assert stored.stored_at.utcoffset() == timedelta(0)
    assert before - timedelta(seconds=1) <= stored.stored_at <= datetime.now(UTC)
    assert await storage.offline.count(HOST, "juliet") == 1


async def test_messages_are_listed_in_arrival_order(storage: Storage) -> None:
    for n in range(12):
        await storage.offline.push(HOST, "juliet", msg(n), limit=LIMIT)

    stored = await storage.offline.list(HOST, "juliet")

    assert [m.stanza for m in stored] == [msg(n) for n in range(12)]
    ids = [m.id for m in stored]
    assert ids == sorted(set(ids))
    assert [m.stored_at for m in stored] == sorted(m.stored_at for m in stored)


async def test_large_unicode_stanza_round_trips(storage: Storage) -> None:
    stanza = "<message><body>" + "ünïcødé 東京 🎭 &amp; " * 5000 + "</body></message>"
    await storage.offline.push(HOST, "juliet", stanza, limit=LIMIT)
    assert [m.stanza for m in await storage.offline.list(HOST, "juliet")] == [stanza]


async def test_push_refuses_once_the_limit_is_reached(storage: Storage) -> None:
    results = [await storage.offline.push(HOST, "juliet", msg(n), limit=3) for n in range(5)]

    assert results == [True, True, True, False, False]
    assert [m.stanza for m in await storage.offline.list(HOST, "juliet")] == [
        msg(0),
        msg(1),
        msg(2),
    ]


async def test_limit_applies_to_what_is_stored_now(storage: Storage) -> None:
    for n in range(3):
        await storage.offline.push(HOST, "juliet", msg(n), limit=3)
    # A lower limit refuses; a higher one accepts.
    assert await storage.offline.push(HOST, "juliet", msg(3), limit=2) is False
    assert await storage.offline.push(HOST, "juliet", msg(4), limit=4) is True

    first = (await storage.offline.list(HOST, "juliet"))[0]
    await storage.offline.delete(HOST, "juliet", [first.id])
    assert await storage.offline.push(HOST, "juliet", msg(5), limit=4) is True
    assert await storage.offline.count(HOST, "juliet") == 4


async def test_zero_or_negative_limit_stores_nothing(storage: Storage) -> None:
    assert await storage.offline.push(HOST, "juliet", msg(1), limit=0) is False
    assert await storage.offline.push(HOST, "juliet", msg(1), limit=-1) is False
    assert await storage.offline.count(HOST, "juliet") == 0


async def test_concurrent_pushes_never_exceed_the_limit(storage: Storage) -> None:
    results = await asyncio.gather(
        *(storage.offline.push(HOST, "juliet", msg(n), limit=5) for n in range(20))
    )

    assert sum(results) == 5
    assert await storage.offline.count(HOST, "juliet") == 5
    stored = {m.stanza for m in await storage.offline.list(HOST, "juliet")}
    assert stored == {msg(n) for n, ok in enumerate(results) if ok}


async def test_concurrent_pushes_for_different_users_have_their_own_limits(
    storage: Storage,
) -> None:
    users = [(HOST, "juliet"), (HOST, "romeo"), (OTHER_HOST, "juliet")]
    results = await asyncio.gather(
        *(
            storage.offline.push(host, user, msg(n, user), limit=3)
            for n in range(6)
            for host, user in users
        )
    )
    assert sum(results) == 9
    for host, user in users:
        assert await storage.offline.count(host, user) == 3


async def test_delete_removes_only_the_given_ids(storage: Storage) -> None:
    for n in range(5):
        await storage.offline.push(HOST, "juliet", msg(n), limit=LIMIT)
    stored = await storage.offline.list(HOST, "juliet")

    await storage.offline.delete(HOST, "juliet", [stored[1].id, stored[3].id])

    assert await storage.offline.list(HOST, "juliet") == [stored[0], stored[2], stored[4]]


async def test_delete_of_unknown_repeated_or_no_ids_is_harmless(storage: Storage) -> None:
    for n in range(3):
        await storage.offline.push(HOST, "juliet", msg(n), limit=LIMIT)
    stored = await storage.offline.list(HOST, "juliet")

    await storage.offline.delete(HOST, "juliet", [])
    await storage.offline.delete(HOST, "juliet", [max(m.id for m in stored) + 1000])
    assert await storage.offline.list(HOST, "juliet") == stored

    await storage.offline.delete(HOST, "juliet", [stored[0].id, stored[0].id])
    await storage.offline.delete(HOST, "juliet", [stored[0].id])
    assert await storage.offline.list(HOST, "juliet") == stored[1:]


async def test_delete_of_many_ids(storage: Storage) -> None:
    for n in range(3):
        await storage.offline.push(HOST, "juliet", msg(n), limit=LIMIT)
    stored = await storage.offline.list(HOST, "juliet")
    top = max(m.id for m in stored)
    # More ids than fit in one statement's parameters on old SQLite builds.
    ids = [*range(top + 1, top + 2500), stored[0].id, stored[2].id]

    await storage.offline.delete(HOST, "juliet", ids)

    assert await storage.offline.list(HOST, "juliet") == [stored[1]]


async def test_delete_cannot_touch_another_users_messages(storage: Storage) -> None:
    await storage.offline.push(HOST, "juliet", msg(1), limit=LIMIT)
    await storage.offline.push(HOST, "romeo", msg(2, "romeo"), limit=LIMIT)
    await storage.offline.push(OTHER_HOST, "juliet", msg(3), limit=LIMIT)
    romeo = await storage.offline.list(HOST, "romeo")
    elsewhere = await storage.offline.list(OTHER_HOST, "juliet")

    await storage.offline.delete(HOST, "juliet", [romeo[0].id, elsewhere[0].id])

    assert await storage.offline.list(HOST, "romeo") == romeo
    assert await storage.offline.list(OTHER_HOST, "juliet") == elsewhere
    assert await storage.offline.count(HOST, "juliet") == 1


async def test_users_and_hosts_are_separate(storage: Storage) -> None:
    await storage.offline.push(HOST, "juliet", msg(1), limit=1)
    assert await storage.offline.push(HOST, "romeo", msg(2, "romeo"), limit=1) is True
    assert await storage.offline.push(OTHER_HOST, "juliet", msg(3), limit=1) is True

    assert [m.stanza for m in await storage.offline.list(HOST, "juliet")] == [msg(1)]
    assert [m.stanza for m in await storage.offline.list(HOST, "romeo")] == [msg(2, "romeo")]
    assert [m.stanza for m in await storage.offline.list(OTHER_HOST, "juliet")] == [msg(3)]


async def test_ids_are_never_reused(storage: Storage) -> None:
    """A late delete of delivered ids must not hit a message that arrived since."""
    for n in range(3):
        await storage.offline.push(HOST, "juliet", msg(n), limit=LIMIT)
    delivered = await storage.offline.list(HOST, "juliet")
    await storage.offline.delete(HOST, "juliet", [m.id for m in delivered])

    await storage.offline.push(HOST, "juliet", msg(3), limit=LIMIT)
    [new] = await storage.offline.list(HOST, "juliet")
    assert new.id > max(m.id for m in delivered)

    await storage.offline.delete(HOST, "juliet", [m.id for m in delivered])  # again, late
    assert await storage.offline.list(HOST, "juliet") == [new]


async def test_account_deletion_removes_offline_messages(storage: Storage) -> None:
    for user in ("juliet", "romeo"):
        await storage.accounts.create(HOST, user, [cred()])
        await storage.offline.push(HOST, user, msg(1, user), limit=LIMIT)
        await storage.offline.push(HOST, user, msg(2, user), limit=LIMIT)

    assert await storage.accounts.delete(HOST, "juliet")

    assert await storage.offline.list(HOST, "juliet") == []
    assert await storage.offline.count(HOST, "juliet") == 0
    assert await storage.offline.count(HOST, "romeo") == 2


async def test_messages_survive_reopening(backend: Backend) -> None:
    first = await backend.open()
    try:
        for n in range(3):
            assert await first.offline.push(HOST, "juliet", msg(n), limit=LIMIT)
        stored = await first.offline.list(HOST, "juliet")
        await first.offline.delete(HOST, "juliet", [stored[-1].id])
    finally:
        await first.close()

    second = await backend.open()
    try:
        assert await second.offline.list(HOST, "juliet") == stored[:2]
        await second.offline.push(HOST, "juliet", msg(3), limit=LIMIT)
        # Ids keep increasing across restarts, past the deleted one too.
        assert (await second.offline.list(HOST, "juliet"))[-1].id > stored[-1].id
    finally:
        await second.close()


async def test_migrating_again_keeps_messages(backend: Backend) -> None:
    storage = await backend.open()
    try:
        await storage.offline.push(HOST, "juliet", msg(1), limit=LIMIT)
        stored = await storage.offline.list(HOST, "juliet")
        await migrate(storage.engine)
        await migrate(storage.engine)
        assert await storage.offline.list(HOST, "juliet") == stored
    finally:
        await storage.close()


async def test_holders_names_the_users_with_stored_messages(storage: Storage) -> None:
    assert await storage.offline.holders(HOST, 10) == []
    for user in ("romeo", "juliet", "juliet", "nurse"):
        await storage.offline.push(HOST, user, msg(1, user), limit=LIMIT)
    await storage.offline.push(OTHER_HOST, "tybalt", msg(1, "tybalt"), limit=LIMIT)

    assert await storage.offline.holders(HOST, 3) == ["juliet", "nurse", "romeo"]
    assert await storage.offline.holders(HOST, 2) is None  # more than the limit
    [stored] = await storage.offline.list(HOST, "nurse")
    await storage.offline.delete(HOST, "nurse", [stored.id])
    assert await storage.offline.holders(HOST, 2) == ["juliet", "romeo"]
