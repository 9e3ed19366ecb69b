"""Contract tests for MucStore; every backend must pass them unchanged."""

from __future__ import annotations

import asyncio

from salon.storage import Storage
from salon.storage.interfaces import StoredRoom
from tests.storage.conftest import Backend

SERVICE = "conference.example.org"


def room(name: str = "coven", **changes: object) -> StoredRoom:
    base: dict[str, object] = {
        "service": SERVICE,
        "name": name,
        "config": {"name": "The Coven", "persistent": True, "max_users": 30},
        "affiliations": {"crone@example.org": "owner", "wiccarocks@example.org": "outcast"},
        "subject": "Fire Burn and Cauldron Bubble!",
        "subject_nick": "secondwitch",
    }
    base.update(changes)
    return StoredRoom(**base)  # type: ignore[arg-type]


async def test_no_rooms_at_first(storage: Storage) -> None:
    assert await storage.muc.rooms(SERVICE) == []
    assert await storage.muc.get(SERVICE, "coven") is None


async def test_saved_room_reads_back_whole(storage: Storage) -> None:
    await storage.muc.save(room())
    assert await storage.muc.get(SERVICE, "coven") == room()
    assert await storage.muc.rooms(SERVICE) == [room()]


async def test_save_replaces_config_affiliations_and_subject(storage: Storage) -> None:
    await storage.muc.save(room())
    changed = room(
        config={"name": "Renamed", "members_only": True},
        affiliations={"hag66@example.org": "member", "crone@example.org": "owner"},
        subject="",
        subject_nick="",
    )
    await storage.muc.save(changed)
    assert await storage.muc.get(SERVICE, "coven") == changed


async def test_rooms_are_per_service_and_sorted(storage: Storage) -> None:
    await storage.muc.save(room("zeta"))
    await storage.muc.save(room("alpha"))
    await storage.muc.save(StoredRoom("conference.example.net", "other", {}, {}))
    assert [r.name for r in await storage.muc.rooms(SERVICE)] == ["alpha", "zeta"]
    assert [r.name for r in await storage.muc.rooms("conference.example.net")] == ["other"]


async def test_delete_is_idempotent_and_removes_affiliations(storage: Storage) -> None:
    await storage.muc.save(room())
    await storage.muc.delete(SERVICE, "coven")
    await storage.muc.delete(SERVICE, "coven")
    assert await storage.muc.get(SERVICE, "coven") is None
    await storage.muc.save(room(affiliations={}))
    assert (await storage.muc.get(SERVICE, "coven")) == room(affiliations={})


async def test_unicode_names_and_jids(storage: Storage) -> None:
    r = room("東京", affiliations={"ärger@example.org": "admin"}, subject="¡hola! 🎉")
    await storage.muc.save(r)
    assert await storage.muc.get(SERVICE, "東京") == r


async def test_concurrent_saves_leave_one_whole_version(storage: Storage) -> None:
    versions = [
        room(affiliations={f"u{i}@example.org": "member"}, subject=str(i)) for i in range(8)
    ]
    await asyncio.gather(*(storage.muc.save(v) for v in versions))
    stored = await storage.muc.get(SERVICE, "coven")
    assert stored in versions


async def test_rooms_survive_reopening(backend: Backend) -> None:
    first = await backend.open()
    try:
        await first.muc.save(room())
    finally:
        await first.close()
    second = await backend.open()
    try:
        assert await second.muc.get(SERVICE, "coven") == room()
    finally:
        await second.close()
