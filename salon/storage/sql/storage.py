"""The SQL :class:`~salon.storage.interfaces.Storage` bundle."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from salon.storage.interfaces import (
    AccountStore,
    ArchiveStore,
    BlocklistStore,
    MucStore,
    OfflineStore,
    PubSubStore,
    RosterStore,
)
from salon.storage.sql.accounts import SqlAccountStore
from salon.storage.sql.archive import SqlArchiveStore
from salon.storage.sql.blocklist import SqlBlocklistStore
from salon.storage.sql.engine import dispose
from salon.storage.sql.kv import SqlKeyValueStore
from salon.storage.sql.muc import SqlMucStore
from salon.storage.sql.offline import SqlOfflineStore
from salon.storage.sql.pubsub import SqlPubSubStore
from salon.storage.sql.roster import SqlRosterStore

__all__ = ["SqlStorage"]


class SqlStorage:
    """All stores over one engine (SQLite or PostgreSQL).

    The engine must already be migrated (see
    :func:`salon.storage.sql.migrations.migrate`); :func:`salon.storage.open_storage`
    does both.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        """Build the stores over ``engine``; :meth:`close` disposes of it."""
        self.engine = engine
        self.accounts: AccountStore = SqlAccountStore(engine)
        self.roster: RosterStore = SqlRosterStore(engine)
        self.offline: OfflineStore = SqlOfflineStore(engine)
        self.blocklist: BlocklistStore = SqlBlocklistStore(engine)
        self.muc: MucStore = SqlMucStore(engine)
        self.pubsub: PubSubStore = SqlPubSubStore(engine)
        self._archive = SqlArchiveStore(engine)
        self.archive: ArchiveStore = self._archive
        self._keyvalue: dict[str, SqlKeyValueStore] = {}

    def keyvalue(self, store: str) -> SqlKeyValueStore:
        """Return the key-value store called ``store``."""
        kv = self._keyvalue.get(store)
        if kv is None:
            kv = self._keyvalue[store] = SqlKeyValueStore(self.engine, store)
        return kv

    async def close(self) -> None:
        """Finish the archive's waiting appends and the queued pubsub publishes, then close
        all pooled connections."""
        await self._archive.drain()
        if isinstance(self.pubsub, SqlPubSubStore):
            await self.pubsub.drain()
        await dispose(self.engine)
