"""Table definitions (the current schema) for the SQL storage backend.

The same definitions serve SQLite and PostgreSQL. Changing a table here
requires a new version and upgrade step in :mod:`salon.storage.sql.migrations`.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    Column,
    DateTime,
    Dialect,
    ForeignKeyConstraint,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
)
from sqlalchemy.types import TypeDecorator

__all__ = [
    "PER_USER_TABLES",
    "UtcDateTime",
    "account_credentials",
    "accounts",
    "kv",
    "metadata",
    "schema_version",
]

# Limits from RFC 7622: localpart and domainpart are at most 1023 octets each.
_HOST = 1023
_USERNAME = 1023
_NAME = 255


class UtcDateTime(TypeDecorator[datetime]):
    """A timestamp that is always timezone-aware UTC in Python.

    PostgreSQL stores it as ``timestamptz``. SQLite has no time zones, so the
    value is stored as naive UTC text and made aware again on the way out.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Reject naive datetimes and normalise to UTC."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Return an aware UTC datetime whatever the engine gave back."""
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


metadata = MetaData()

schema_version = Table(
    "schema_version",
    metadata,
    Column("store", String(_NAME), primary_key=True),
    Column("version", Integer, nullable=False),
)

accounts = Table(
    "accounts",
    metadata,
    Column("host", String(_HOST), nullable=False),
    Column("username", String(_USERNAME), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    PrimaryKeyConstraint("host", "username", name="pk_accounts"),
)

account_credentials = Table(
    "account_credentials",
    metadata,
    Column("host", String(_HOST), nullable=False),
    Column("username", String(_USERNAME), nullable=False),
    Column("hash_name", String(32), nullable=False),
    Column("salt", LargeBinary, nullable=False),
    Column("iterations", Integer, nullable=False),
    Column("stored_key", LargeBinary, nullable=False),
    Column("server_key", LargeBinary, nullable=False),
    PrimaryKeyConstraint("host", "username", "hash_name", name="pk_account_credentials"),
    ForeignKeyConstraint(
        ["host", "username"],
        ["accounts.host", "accounts.username"],
        ondelete="CASCADE",
        name="fk_account_credentials_accounts",
    ),
)

kv = Table(
    "kv",
    metadata,
    Column("host", String(_HOST), nullable=False),
    Column("username", String(_USERNAME), nullable=False),
    Column("store", String(_NAME), nullable=False),
    Column("value", Text, nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    PrimaryKeyConstraint("host", "username", "store", name="pk_kv"),
)

PER_USER_TABLES: tuple[Table, ...] = (kv,)
"""Tables keyed by (host, username) whose rows go when the account is deleted.

Every new per-user store adds its table here so that
:meth:`~salon.storage.interfaces.AccountStore.delete` removes its rows in the
same transaction. Their primary keys start with (host, username), so the
delete uses the index.
"""
