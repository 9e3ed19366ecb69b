"""Contract tests for BlocklistStore; every backend must pass them unchanged."""

from __future__ import annotations

import asyncio

from salon.storage import Storage
from salon.storage.sql.migrations import migrate
from tests.storage.conftest import Backend
from tests.storage.test_accounts_contract import cred

HOST = "example.org"
OTHER_HOST = "example.net"


async def test_nothing_blocked_at_first(storage: Storage) -> None:
    assert await storage.blocklist.get(HOST, "juliet") == []


async def test_added_jids_are_returned_sorted_by_code_point(storage: Storage) -> None:
    jids = [
        "tybalt@example.net",
        "example.com",
        "romeo@example.net/orchard",
        "Zed@example.net",
        "ärger@example.net",
        "東京@example.jp",
        "a@example.net",
        "a@example.net/Resource With Spaces",
    ]
    await storage.blocklist.add(HOST, "juliet", jids)
    assert await storage.blocklist.get(HOST, "juliet") == sorted(jids)


async def test_add_is_idempotent(storage: Storage) -> None:
    await storage.blocklist.add(HOST, "juliet", ["tybalt@example.net"])
    await storage.blocklist.add(HOST, "juliet", ["tybalt@example.net", "example.com"])
    await storage.blocklist.add(HOST, "juliet", ["example.com", "example.com"])
    await storage.blocklist.add(HOST, "juliet", [])
    assert await storage.blocklist.get(HOST, "juliet") == ["example.com", "tybalt@example.net"]


async def test_jids_are_stored_exactly_as_given(storage: Storage) -> None:
    # Domains, bare and full JIDs are distinct entries; nothing is rewritten.
    jids = ["example.net", "romeo@example.net", "romeo@example.net/orchard"]
    await storage.blocklist.add(HOST, "juliet", jids)
    assert await storage.blocklist.get(HOST, "juliet") == jids
    await storage.blocklist.remove(HOST, "juliet", ["romeo@example.net"])
    assert await storage.blocklist.get(HOST, "juliet") == [
        "example.net",
        "romeo@example.net/orchard",
    ]


async def test_remove_some(storage: Storage) -> None:
    await storage.blocklist.add(HOST, "juliet", ["a@x.example", "b@x.example", "c@x.example"])

    await storage.blocklist.remove(HOST, "juliet", ["a@x.example", "c@x.example", "unknown"])

    assert await storage.blocklist.get(HOST, "juliet") == ["b@x.example"]


async def test_remove_with_no_jids_removes_everything(storage: Storage) -> None:
    await storage.blocklist.add(HOST, "juliet", ["a@x.example", "b@x.example"])
    await storage.blocklist.add(HOST, "romeo", ["a@x.example"])

    await storage.blocklist.remove(HOST, "juliet", [])

    assert await storage.blocklist.get(HOST, "juliet") == []
    assert await storage.blocklist.get(HOST, "romeo") == ["a@x.example"]
    await storage.blocklist.remove(HOST, "juliet", [])  # nothing left: harmless


async def test_many_jids(storage: Storage) -> None:
    jids = [f"spammer{i:04}@example.net" for i in range(1200)]
    await storage.blocklist.add(HOST, "juliet", jids)
    assert await storage.blocklist.get(HOST, "juliet") == jids

    await storage.blocklist.remove(HOST, "juliet", jids[:1100])
    assert await storage.blocklist.get(HOST, "juliet") == jids[1100:]


async def test_users_and_hosts_are_separate(storage: Storage) -> None:
    await storage.blocklist.add(HOST, "juliet", ["tybalt@example.net"])
    await storage.blocklist.add(HOST, "romeo", ["tybalt@example.net", "paris@example.net"])
    await storage.blocklist.add(OTHER_HOST, "juliet", ["paris@example.net"])

    await storage.blocklist.remove(HOST, "romeo", ["tybalt@example.net"])
    await storage.blocklist.remove(OTHER_HOST, "juliet", [])

    assert await storage.blocklist.get(HOST, "juliet") == ["tybalt@example.net"]
    assert await storage.blocklist.get(HOST, "romeo") == ["paris@example.net"]
    assert await storage.blocklist.get(OTHER_HOST, "juliet") == []


async def test_concurrent_adds_of_the_same_jids(storage: Storage) -> None:
    jids = ["a@x.example", "b@x.example", "c@x.example"]
    await asyncio.gather(
        *(storage.blocklist.add(HOST, "juliet", jids[i % 3 :] + jids[: i % 3]) for i in range(9))
    )
    assert await storage.blocklist.get(HOST, "juliet") == jids


async def test_account_deletion_removes_the_blocklist(storage: Storage) -> None:
    for user in ("juliet", "romeo"):
        await storage.accounts.create(HOST, user, [cred()])
        await storage.blocklist.add(HOST, user, ["tybalt@example.net"])

    assert await storage.accounts.delete(HOST, "juliet")

    assert await storage.blocklist.get(HOST, "juliet") == []
    assert await storage.blocklist.get(HOST, "romeo") == ["tybalt@example.net"]


async def test_blocklist_survives_reopening(backend: Backend) -> None:
    first = await backend.open()
    try:
        await first.blocklist.add(HOST, "juliet", ["tybalt@example.net", "example.com"])
    finally:
        await first.close()

    second = await backend.open()
    try:
        assert await second.blocklist.get(HOST, "juliet") == [
            "example.com",
            "tybalt@example.net",
        ]
    finally:
        await second.close()


async def test_migrating_again_keeps_the_blocklist(backend: Backend) -> None:
    storage = await backend.open()
    try:
        await storage.blocklist.add(HOST, "juliet", ["tybalt@example.net"])
        await migrate(storage.engine)
        await migrate(storage.engine)
        assert await storage.blocklist.get(HOST, "juliet") == ["tybalt@example.net"]
    finally:
        await storage.close()
