"""SQL storage backend (SQLAlchemy Core, async) for SQLite and PostgreSQL.

Only :mod:`salon.storage` and tests import this package; modules use the
Protocols in :mod:`salon.storage.interfaces`.
"""

from salon.storage.sql.storage import SqlStorage

__all__ = ["SqlStorage"]
