"""Contract tests for KeyValueStore; every backend must pass them unchanged."""

from __future__ import annotations

import asyncio

import pytest

from salon.storage import Storage

HOST = "example.org"
OTHER_HOST = "example.net"


async def test_missing_document_is_none(storage: Storage) -> None:
    assert await storage.keyvalue("vcard").get(HOST, "juliet") is None


async def test_set_then_get(storage: Storage) -> None:
    store = storage.keyvalue("vcard")
    await store.set(HOST, "juliet", "<vCard xmlns='vcard-temp'/>")
    assert await store.get(HOST, "juliet") == "<vCard xmlns='vcard-temp'/>"


async def test_set_overwrites(storage: Storage) -> None:
    store = storage.keyvalue("vcard")
    await store.set(HOST, "juliet", "first")
    await store.set(HOST, "juliet", "second")
    assert await store.get(HOST, "juliet") == "second"


async def test_set_none_deletes(storage: Storage) -> None:
    store = storage.keyvalue("vcard")
    await store.set(HOST, "juliet", "doc")
    await store.set(HOST, "juliet", None)
    assert await store.get(HOST, "juliet") is None
    await store.set(HOST, "juliet", "again")
    assert await store.get(HOST, "juliet") == "again"


async def test_set_none_on_missing_document_is_harmless(storage: Storage) -> None:
    store = storage.keyvalue("vcard")
    await store.set(HOST, "juliet", None)
    assert await store.get(HOST, "juliet") is None


async def test_empty_string_is_a_value_not_a_deletion(storage: Storage) -> None:
    store = storage.keyvalue("prefs")
    await store.set(HOST, "juliet", "")
    assert await store.get(HOST, "juliet") == ""


async def test_large_unicode_document_round_trips(storage: Storage) -> None:
    doc = "<query xmlns='jabber:iq:private'>" + "ünïcødé 東京 🎭 " * 5000 + "</query>"
    store = storage.keyvalue("private")
    await store.set(HOST, "juliet", doc)
    assert await store.get(HOST, "juliet") == doc


async def test_stores_users_and_hosts_are_separate(storage: Storage) -> None:
    vcard, prefs = storage.keyvalue("vcard"), storage.keyvalue("prefs")
    await vcard.set(HOST, "juliet", "vcard juliet")
    await prefs.set(HOST, "juliet", "prefs juliet")
    await vcard.set(HOST, "romeo", "vcard romeo")
    await vcard.set(OTHER_HOST, "juliet", "vcard juliet elsewhere")

    assert await vcard.get(HOST, "juliet") == "vcard juliet"
    assert await prefs.get(HOST, "juliet") == "prefs juliet"
    assert await vcard.get(HOST, "romeo") == "vcard romeo"
    assert await prefs.get(HOST, "romeo") is None
    assert await vcard.get(OTHER_HOST, "juliet") == "vcard juliet elsewhere"

    await vcard.set(HOST, "juliet", None)
    assert await prefs.get(HOST, "juliet") == "prefs juliet"
    assert await vcard.get(OTHER_HOST, "juliet") == "vcard juliet elsewhere"


async def test_same_store_name_gives_the_same_documents(storage: Storage) -> None:
    await storage.keyvalue("vcard").set(HOST, "juliet", "doc")
    assert await storage.keyvalue("vcard").get(HOST, "juliet") == "doc"


async def test_concurrent_writes_to_one_document_leave_one_of_them(storage: Storage) -> None:
    store = storage.keyvalue("prefs")
    values = [f"value {i}" for i in range(8)]
    await asyncio.gather(*(store.set(HOST, "juliet", v) for v in values))
    assert await store.get(HOST, "juliet") in values


@pytest.mark.parametrize("name", ["", "x" * 256])
async def test_invalid_store_names_are_rejected(storage: Storage, name: str) -> None:
    with pytest.raises(ValueError):
        storage.keyvalue(name)


async def test_set_many_inserts_and_replaces_in_one_go(storage: Storage) -> None:
    store = storage.keyvalue("last")
    await store.set("example.org", "juliet", "old")
    await store.set_many("example.org", {"juliet": "new", "romeo": "r", "nurse": "n"})
    await store.set_many("example.org", {})
    assert await store.get("example.org", "juliet") == "new"
    assert await store.get("example.org", "romeo") == "r"
    assert await store.get("example.org", "nurse") == "n"
    assert await store.get("example.net", "romeo") is None
    assert await storage.keyvalue("vcard").get("example.org", "romeo") is None
