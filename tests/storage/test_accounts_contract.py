"""Contract tests for AccountStore; every backend must pass them unchanged."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from salon.storage import AccountExists, AccountNotFound, ScramCredential, Storage

HOST = "example.org"
OTHER_HOST = "example.net"


def cred(hash_name: str = "SHA-256", seed: int = 1) -> ScramCredential:
    """A made-up credential; ``seed`` makes distinct values."""
    return ScramCredential(
        hash_name=hash_name,
        salt=bytes([seed]) * 16,
        iterations=4096 + seed,
        stored_key=bytes([seed + 1]) * 32,
        server_key=bytes([seed + 2]) * 32,
    )


async def test_created_account_is_returned_with_its_credentials(storage: Storage) -> None:
    before = datetime.now(UTC)
    sha1, sha256 = cred("SHA-1", 1), cred("SHA-256", 2)
    await storage.accounts.create(HOST, "juliet", [sha1, sha256])

    account = await storage.accounts.get(HOST, "juliet")

    assert account is not None
    assert (account.host, account.username) == (HOST, "juliet")
    assert account.credentials == {"SHA-1": sha1, "SHA-256": sha256}
    assert account.created_at.tzinfo is not None
    assert account.created_at.utcoffset() == timedelta(0)
    assert before - timedelta(seconds=1) <= account.created_at <= datetime.now(UTC)


async def test_get_unknown_account_returns_none(storage: Storage) -> None:
    assert await storage.accounts.get(HOST, "nobody") is None


async def test_account_without_credentials_is_allowed(storage: Storage) -> None:
    await storage.accounts.create(HOST, "romeo", [])
    account = await storage.accounts.get(HOST, "romeo")
    assert account is not None
    assert account.credentials == {}


async def test_binary_credential_fields_round_trip_exactly(storage: Storage) -> None:
    raw = ScramCredential(
        hash_name="SHA-512",
        salt=bytes(range(256)),
        iterations=2**31 - 1,
        stored_key=b"\x00" * 64,
        server_key=b"\xff\x00" * 32,
    )
    await storage.accounts.create(HOST, "nurse", [raw])
    account = await storage.accounts.get(HOST, "nurse")
    assert account is not None
    got = account.credentials["SHA-512"]
    assert got == raw
    assert type(got.salt) is bytes
    assert type(got.stored_key) is bytes


async def test_non_ascii_username_round_trips(storage: Storage) -> None:
    await storage.accounts.create(HOST, "jürgen-東京", [cred()])
    account = await storage.accounts.get(HOST, "jürgen-東京")
    assert account is not None
    assert account.username == "jürgen-東京"


async def test_creating_an_existing_account_raises_and_keeps_the_original(
    storage: Storage,
) -> None:
    original = cred("SHA-256", 1)
    await storage.accounts.create(HOST, "juliet", [original])

    with pytest.raises(AccountExists):
        await storage.accounts.create(HOST, "juliet", [cred("SHA-256", 9), cred("SHA-1", 9)])

    account = await storage.accounts.get(HOST, "juliet")
    assert account is not None
    assert account.credentials == {"SHA-256": original}
    assert await storage.accounts.count(HOST) == 1


async def test_store_is_usable_after_a_duplicate_create(storage: Storage) -> None:
    await storage.accounts.create(HOST, "juliet", [cred()])
    for _ in range(3):
        with pytest.raises(AccountExists):
            await storage.accounts.create(HOST, "juliet", [cred()])
    await storage.accounts.create(HOST, "romeo", [cred()])
    assert await storage.accounts.list_usernames(HOST) == ["juliet", "romeo"]


async def test_duplicate_hash_names_are_rejected_without_creating(storage: Storage) -> None:
    with pytest.raises(ValueError):
        await storage.accounts.create(HOST, "juliet", [cred("SHA-1", 1), cred("SHA-1", 2)])
    assert await storage.accounts.get(HOST, "juliet") is None


async def test_concurrent_creates_of_one_account_have_one_winner(storage: Storage) -> None:
    results = await asyncio.gather(
        *(storage.accounts.create(HOST, "juliet", [cred(seed=i)]) for i in range(5)),
        return_exceptions=True,
    )
    assert sum(r is None for r in results) == 1
    assert all(r is None or isinstance(r, AccountExists) for r in results)
    assert await storage.accounts.count(HOST) == 1


async def test_set_credentials_replaces_all_credentials(storage: Storage) -> None:
    await storage.accounts.create(HOST, "juliet", [cred("SHA-1", 1), cred("SHA-256", 2)])
    created = await storage.accounts.get(HOST, "juliet")
    assert created is not None
    new = cred("SHA-512", 3)

    await storage.accounts.set_credentials(HOST, "juliet", [new])

    account = await storage.accounts.get(HOST, "juliet")
    assert account is not None
    assert account.credentials == {"SHA-512": new}
    assert account.created_at == created.created_at


async def test_set_credentials_can_update_a_hash_in_place(storage: Storage) -> None:
    await storage.accounts.create(HOST, "juliet", [cred("SHA-256", 1)])
    await storage.accounts.set_credentials(HOST, "juliet", [cred("SHA-256", 5)])
    account = await storage.accounts.get(HOST, "juliet")
    assert account is not None
    assert account.credentials == {"SHA-256": cred("SHA-256", 5)}


async def test_set_credentials_of_unknown_account_raises(storage: Storage) -> None:
    with pytest.raises(AccountNotFound):
        await storage.accounts.set_credentials(HOST, "nobody", [cred()])
    assert await storage.accounts.get(HOST, "nobody") is None


async def test_set_credentials_rejects_duplicates_and_keeps_old_ones(storage: Storage) -> None:
    await storage.accounts.create(HOST, "juliet", [cred("SHA-1", 1)])
    with pytest.raises(ValueError):
        await storage.accounts.set_credentials(
            HOST, "juliet", [cred("SHA-256", 2), cred("SHA-256", 3)]
        )
    account = await storage.accounts.get(HOST, "juliet")
    assert account is not None
    assert account.credentials == {"SHA-1": cred("SHA-1", 1)}


async def test_delete_reports_whether_the_account_existed(storage: Storage) -> None:
    await storage.accounts.create(HOST, "juliet", [cred()])
    assert await storage.accounts.delete(HOST, "juliet") is True
    assert await storage.accounts.get(HOST, "juliet") is None
    assert await storage.accounts.delete(HOST, "juliet") is False
    assert await storage.accounts.delete(HOST, "nobody") is False


async def test_delete_removes_credentials_and_per_user_data(storage: Storage) -> None:
    await storage.accounts.create(HOST, "juliet", [cred("SHA-1", 1), cred("SHA-256", 2)])
    await storage.keyvalue("vcard").set(HOST, "juliet", "<vCard/>")
    await storage.keyvalue("private").set(HOST, "juliet", "<query/>")

    assert await storage.accounts.delete(HOST, "juliet")

    # A new account of the same name starts clean: no leftover credential rows
    # (ON DELETE CASCADE) and no key-value documents.
    await storage.accounts.create(HOST, "juliet", [])
    account = await storage.accounts.get(HOST, "juliet")
    assert account is not None
    assert account.credentials == {}
    assert await storage.keyvalue("vcard").get(HOST, "juliet") is None
    assert await storage.keyvalue("private").get(HOST, "juliet") is None


async def test_delete_leaves_other_users_and_hosts_alone(storage: Storage) -> None:
    vcard = storage.keyvalue("vcard")
    for host in (HOST, OTHER_HOST):
        for user in ("juliet", "romeo"):
            await storage.accounts.create(host, user, [cred()])
            await vcard.set(host, user, f"<vCard>{user}@{host}</vCard>")

    await storage.accounts.delete(HOST, "juliet")

    assert await storage.accounts.list_usernames(HOST) == ["romeo"]
    assert await storage.accounts.list_usernames(OTHER_HOST) == ["juliet", "romeo"]
    assert await vcard.get(HOST, "romeo") == f"<vCard>romeo@{HOST}</vCard>"
    assert await vcard.get(OTHER_HOST, "juliet") == f"<vCard>juliet@{OTHER_HOST}</vCard>"
    other = await storage.accounts.get(OTHER_HOST, "juliet")
    assert other is not None
    assert other.credentials == {"SHA-256": cred()}


async def test_list_usernames_is_sorted_by_code_point(storage: Storage) -> None:
    names = ["romeo", "b", "a_b", "a-b", "aa", "a", "ä", "z", "1", "é", "a.b"]
    for name in names:
        await storage.accounts.create(HOST, name, [])
    assert await storage.accounts.list_usernames(HOST) == sorted(names)


async def test_list_and_count_of_empty_host(storage: Storage) -> None:
    assert await storage.accounts.list_usernames(HOST) == []
    assert await storage.accounts.count(HOST) == 0


async def test_count_follows_creates_and_deletes(storage: Storage) -> None:
    for i in range(7):
        await storage.accounts.create(HOST, f"user{i}", [cred()])
    assert await storage.accounts.count(HOST) == 7
    await storage.accounts.delete(HOST, "user3")
    assert await storage.accounts.count(HOST) == 6


async def test_hosts_are_separate(storage: Storage) -> None:
    await storage.accounts.create(HOST, "juliet", [cred(seed=1)])
    await storage.accounts.create(OTHER_HOST, "juliet", [cred(seed=2)])
    await storage.accounts.create(OTHER_HOST, "romeo", [cred(seed=3)])

    here = await storage.accounts.get(HOST, "juliet")
    there = await storage.accounts.get(OTHER_HOST, "juliet")
    assert here is not None
    assert there is not None
    assert here.credentials == {"SHA-256": cred(seed=1)}
    assert there.credentials == {"SHA-256": cred(seed=2)}
    assert await storage.accounts.get(HOST, "romeo") is None
    assert await storage.accounts.count(HOST) == 1
    assert await storage.accounts.count(OTHER_HOST) == 2
    assert await storage.accounts.list_usernames(HOST) == ["juliet"]

    await storage.accounts.set_credentials(HOST, "juliet", [cred(seed=4)])
    there = await storage.accounts.get(OTHER_HOST, "juliet")
    assert there is not None
    assert there.credentials == {"SHA-256": cred(seed=2)}
