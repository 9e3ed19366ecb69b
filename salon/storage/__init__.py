"""Storage: typed async interfaces and the way to open a backend.

Modules see only the Protocols and dataclasses re-exported here (they get a
:class:`Storage` through ``self.storage``). :func:`open_storage` picks the SQL
implementation for a URL and brings its schema up to date.
"""

from __future__ import annotations

from pathlib import Path

from salon.storage.interfaces import (
    Account,
    AccountExists,
    AccountNotFound,
    AccountStore,
    KeyValueStore,
    ScramCredential,
    Storage,
)

__all__ = [
    "Account",
    "AccountExists",
    "AccountNotFound",
    "AccountStore",
    "KeyValueStore",
    "ScramCredential",
    "Storage",
    "open_storage",
]


async def open_storage(url: str, *, base_dir: Path | None = None) -> Storage:
    """Open the storage at ``url``, creating or upgrading its schema.

    ``url`` is ``sqlite:///relative/or/abs.db`` (relative paths are resolved
    against ``base_dir``, default the working directory; four slashes make an
    absolute path), ``sqlite:///:memory:``, or
    ``postgresql://user@host:port/db[?schema=name]``. See
    :mod:`salon.storage.sql.engine` for details.

    Raises :class:`ValueError` for an unsupported URL and
    :class:`~salon.storage.sql.migrations.MigrationError` if the database
    was written by a newer Salon. Call :meth:`Storage.close` when done.
    """
    # Imported here so that importing the interfaces never loads SQLAlchemy.
    from salon.storage.sql.engine import open_engine
    from salon.storage.sql.migrations import migrate
    from salon.storage.sql.storage import SqlStorage

    engine = await open_engine(url, base_dir=base_dir)
    try:
        await migrate(engine)
    except BaseException:
        await engine.dispose()
        raise
    return SqlStorage(engine)
