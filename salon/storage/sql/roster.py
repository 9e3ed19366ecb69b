"""SQL implementation of :class:`~salon.storage.interfaces.RosterStore`.

Roster versioning (RFC 6121 §2.6): each user with a roster has a row in
``roster_versions``. Every change updates that row (``version + 1``) and the
item in one transaction, so a version always names exactly one roster state and
concurrent changes get distinct, increasing versions. The version row is always
locked before any item row (``put_item``, ``remove_item`` and account deletion
all follow that order), so writers cannot deadlock on PostgreSQL; on SQLite
``BEGIN IMMEDIATE`` serialises them anyway.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, delete, func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from salon.storage.interfaces import PendingSubscription, Roster, RosterItem
from salon.storage.sql.dialect import driver_rows, driver_tuples, increment, upsert
from salon.storage.sql.engine import reader, reads
from salon.storage.sql.schema import pending_subscriptions, roster_items, roster_versions

__all__ = ["SUBSCRIPTION_STATES", "SqlRosterStore"]

SUBSCRIPTION_STATES = frozenset({"none", "to", "from", "both"})
"""The values :attr:`RosterItem.subscription` may take (RFC 6121 §2.1.2.5)."""

_ITEM_KEY = ("host", "username", "jid")


class SqlRosterStore:
    """Rosters in ``roster_items``/``roster_versions``, requests in ``pending_subscriptions``."""

    def __init__(self, engine: AsyncEngine) -> None:
        """Use ``engine``; each method runs in its own transaction."""
        self._engine = engine
        self._reader = reader(engine)  # transactions that only read
        self._reads = reads(engine)  # the reads of a login, one round trip each

    async def get(self, host: str, username: str) -> Roster:
        """Return the items and the version they belong to (version 0 and no items if none)."""
        return await self._reads.run(_roster, host, username)

    async def get_with_pending(
        self, host: str, username: str
    ) -> tuple[Roster, list[PendingSubscription]]:
        """The roster and the waiting requests, read in one transaction."""
        return await self._reads.run(_roster_and_pending, host, username)

    async def get_item(self, host: str, username: str, jid: str) -> RosterItem | None:
        """Return the item for ``jid``, or ``None``."""
        return await self._reads.run(_get_item, host, username, jid)

    async def put_item(self, host: str, username: str, item: RosterItem) -> int:
        """Insert or replace the item; return the new roster version.

        Raises :class:`ValueError` for an unknown subscription state.
        """
        if item.subscription not in SUBSCRIPTION_STATES:
            raise ValueError(f"invalid roster subscription {item.subscription!r}")
        values = {
            "host": host,
            "username": username,
            "jid": item.jid,
            "name": item.name,
            "subscription": item.subscription,
            "ask": item.ask,
            "approved": item.approved,
            "groups": json.dumps(list(item.groups), ensure_ascii=False),
        }
        async with self._engine.begin() as conn:
            version = await _bump_version(conn, host, username)
            await upsert(conn, roster_items, values, key=_ITEM_KEY)
            return version

    async def remove_item(self, host: str, username: str, jid: str) -> int | None:
        """Remove the item; return the new version, or ``None`` (version unchanged)."""
        async with self._engine.begin() as conn:
            # Lock the version row before touching the item (see module docstring).
            await conn.execute(
                select(roster_versions.c.version)
                .where(roster_versions.c.host == host, roster_versions.c.username == username)
                .with_for_update()
            )
            result = await conn.execute(
                delete(roster_items).where(
                    roster_items.c.host == host,
                    roster_items.c.username == username,
                    roster_items.c.jid == jid,
                )
            )
            if result.rowcount == 0:
                return None
            return await _bump_version(conn, host, username)

    async def count(self, host: str, username: str) -> int:
        """Return the number of items in the roster."""
        async with self._reader.begin() as conn:
            total = await conn.scalar(
                select(func.count())
                .select_from(roster_items)
                .where(roster_items.c.host == host, roster_items.c.username == username)
            )
            return int(total or 0)

    async def add_pending(self, host: str, username: str, jid: str, stanza: str) -> None:
        """Remember the request from ``jid``.

        A request that replaces an earlier one from the same ``jid`` takes the
        new stanza and the current time, so it sorts as the newest.
        """
        async with self._engine.begin() as conn:
            await upsert(
                conn,
                pending_subscriptions,
                {
                    "host": host,
                    "username": username,
                    "jid": jid,
                    "stanza": stanza,
                    "created_at": datetime.now(UTC),
                },
                key=_ITEM_KEY,
            )

    async def remove_pending(self, host: str, username: str, jid: str) -> bool:
        """Forget the request from ``jid``; return whether there was one."""
        async with self._engine.begin() as conn:
            result = await conn.execute(
                delete(pending_subscriptions).where(
                    pending_subscriptions.c.host == host,
                    pending_subscriptions.c.username == username,
                    pending_subscriptions.c.jid == jid,
                )
            )
            return result.rowcount > 0

    async def list_pending(self, host: str, username: str) -> list[PendingSubscription]:
        """Return the waiting requests, oldest first (ties by JID, in code point order)."""
        return await self._reads.run(_pending, host, username)


# Reads: synchronous functions of a connection, run by Reads in one round trip. They are
# plain SQL handed to the driver (driver_rows, driver_tuples): a login storm reads a
# thousand rosters.
_ITEM_COLUMNS = "jid, name, subscription, ask, approved, groups"


def _roster(conn: Connection, host: str, username: str) -> Roster:
    # FOR SHARE (PostgreSQL) keeps writers out until we have read the items, so the items
    # match the version; a SQLite transaction reads one snapshot.
    lock = " FOR SHARE" if conn.dialect.name == "postgresql" else ""
    version = driver_tuples(
        conn,
        f"SELECT version FROM roster_versions WHERE host = ? AND username = ?{lock}",
        (host, username),
    )
    if not version:
        # Items are only ever written together with the version row.
        return Roster(version=0, items={})
    rows = driver_tuples(
        conn,
        f"SELECT {_ITEM_COLUMNS} FROM roster_items WHERE host = ? AND username = ?",
        (host, username),
    )
    return Roster(version=int(version[0][0]), items={row[0]: _item(row) for row in rows})


def _roster_and_pending(
    conn: Connection, host: str, username: str
) -> tuple[Roster, list[PendingSubscription]]:
    return _roster(conn, host, username), _pending(conn, host, username)


def _get_item(conn: Connection, host: str, username: str, jid: str) -> RosterItem | None:
    rows = driver_tuples(
        conn,
        f"SELECT {_ITEM_COLUMNS} FROM roster_items WHERE host = ? AND username = ? AND jid = ?",
        (host, username, jid),
    )
    return _item(rows[0]) if rows else None


def _pending(conn: Connection, host: str, username: str) -> list[PendingSubscription]:
    rows = list(
        driver_rows(
            conn,
            "SELECT jid, stanza, created_at FROM pending_subscriptions "
            "WHERE host = ? AND username = ?",
            (host, username),
        )
    )
    # Sorted here so the tie-break does not depend on a PostgreSQL collation.
    rows.sort(key=lambda row: (row.created_at, row.jid))
    return [PendingSubscription(jid=row.jid, stanza=row.stanza) for row in rows]


async def _bump_version(conn: AsyncConnection, host: str, username: str) -> int:
    """Increase the user's roster version (creating it at 1) and return it.

    One atomic statement that takes the version row's lock on PostgreSQL; a
    concurrent writer waits for our commit and then increments the committed
    value.
    """
    return await increment(conn, roster_versions, {"host": host, "username": username}, "version")


def _item(row: Sequence[Any]) -> RosterItem:
    """A roster item from a row of ``_ITEM_COLUMNS``."""
    groups = row[5]
    return RosterItem(
        row[0],
        row[1],
        row[2],
        bool(row[3]),
        bool(row[4]),
        () if groups == "[]" else tuple(json.loads(groups)),
    )
