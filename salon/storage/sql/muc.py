"""SQL implementation of :class:`~salon.storage.interfaces.MucStore`."""

from __future__ import annotations

import json

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from salon.storage.interfaces import StoredRoom
from salon.storage.sql.dialect import upsert
from salon.storage.sql.engine import reader
from salon.storage.sql.schema import muc_affiliations, muc_rooms

__all__ = ["SqlMucStore"]


class SqlMucStore:
    """Rooms in ``muc_rooms``, their affiliations in ``muc_affiliations``."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._reader = reader(engine)  # transactions that only read

    async def rooms(self, service: str) -> list[StoredRoom]:
        async with self._reader.begin() as conn:
            rows = (
                await conn.execute(select(muc_rooms).where(muc_rooms.c.service == service))
            ).all()
            affs = (
                await conn.execute(
                    select(muc_affiliations).where(muc_affiliations.c.service == service)
                )
            ).all()
        by_room: dict[str, dict[str, str]] = {}
        for aff in affs:
            by_room.setdefault(aff.room, {})[aff.jid] = aff.affiliation
        rooms = [_room(row, by_room.get(row.name, {})) for row in rows]
        return sorted(rooms, key=lambda room: room.name)

    async def get(self, service: str, name: str) -> StoredRoom | None:
        async with self._reader.begin() as conn:
            row = (
                await conn.execute(
                    select(muc_rooms).where(
                        muc_rooms.c.service == service, muc_rooms.c.name == name
                    )
                )
            ).first()
            if row is None:
                return None
            affs = await conn.execute(
                select(muc_affiliations.c.jid, muc_affiliations.c.affiliation).where(
                    muc_affiliations.c.service == service, muc_affiliations.c.room == name
                )
            )
            return _room(row, {jid: aff for jid, aff in affs})

    async def save(self, room: StoredRoom) -> None:
        async with self._engine.begin() as conn:
            await upsert(
                conn,
                muc_rooms,
                {
                    "service": room.service,
                    "name": room.name,
                    "config": json.dumps(room.config, sort_keys=True),
                    "subject": room.subject,
                    "subject_nick": room.subject_nick,
                },
                key=("service", "name"),
            )
            await _delete_affiliations(conn, room.service, room.name)
            rows = [
                {"service": room.service, "room": room.name, "jid": jid, "affiliation": aff}
                for jid, aff in sorted(room.affiliations.items())
            ]
            if rows:
                await conn.execute(insert(muc_affiliations), rows)

    async def delete(self, service: str, name: str) -> None:
        async with self._engine.begin() as conn:
            await _delete_affiliations(conn, service, name)
            await conn.execute(
                delete(muc_rooms).where(muc_rooms.c.service == service, muc_rooms.c.name == name)
            )


async def _delete_affiliations(conn: AsyncConnection, service: str, name: str) -> None:
    await conn.execute(
        delete(muc_affiliations).where(
            muc_affiliations.c.service == service, muc_affiliations.c.room == name
        )
    )


def _room(row: object, affiliations: dict[str, str]) -> StoredRoom:
    config = json.loads(row.config)  # type: ignore[attr-defined]
    return StoredRoom(
        row.service,  # type: ignore[attr-defined]
        row.name,  # type: ignore[attr-defined]
        config if isinstance(config, dict) else {},
        affiliations,
        row.subject,  # type: ignore[attr-defined]
        row.subject_nick,  # type: ignore[attr-defined]
    )
