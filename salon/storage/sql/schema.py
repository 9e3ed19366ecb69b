"""Table definitions (the current schema) for the SQL storage backend.

The same definitions serve SQLite and PostgreSQL. Changing a table here
requires a new version and upgrade step in :mod:`salon.storage.sql.migrations`.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    ForeignKeyConstraint,
    Index,
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
    "archive",
    "blocklist",
    "kv",
    "metadata",
    "offline_messages",
    "pending_subscriptions",
    "roster_items",
    "roster_versions",
    "schema_version",
]

# Limits from RFC 7622: localpart and domainpart are at most 1023 octets each.
_HOST = 1023
_USERNAME = 1023
_NAME = 255
# A full JID: localpart@domainpart/resourcepart, each part at most 1023 octets.
_JID = 3071


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

roster_versions = Table(
    "roster_versions",
    metadata,
    Column("host", String(_HOST), nullable=False),
    Column("username", String(_USERNAME), nullable=False),
    Column("version", BigInteger, nullable=False),
    PrimaryKeyConstraint("host", "username", name="pk_roster_versions"),
)
"""One row per user with a roster: its RFC 6121 §2.6 version counter.

Every roster change updates this row first, in the same transaction, so the
row also serialises writers to one roster (a row lock on PostgreSQL).
"""

roster_items = Table(
    "roster_items",
    metadata,
    Column("host", String(_HOST), nullable=False),
    Column("username", String(_USERNAME), nullable=False),
    Column("jid", String(_JID), nullable=False),
    Column("name", Text, nullable=True),
    Column("subscription", String(8), nullable=False),
    Column("ask", Boolean, nullable=False),
    Column("approved", Boolean, nullable=False),
    Column("groups", Text, nullable=False),
    PrimaryKeyConstraint("host", "username", "jid", name="pk_roster_items"),
)
"""Roster items; ``groups`` is a JSON array of strings, in the item's order."""

pending_subscriptions = Table(
    "pending_subscriptions",
    metadata,
    Column("host", String(_HOST), nullable=False),
    Column("username", String(_USERNAME), nullable=False),
    Column("jid", String(_JID), nullable=False),
    Column("stanza", Text, nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    PrimaryKeyConstraint("host", "username", "jid", name="pk_pending_subscriptions"),
)

offline_messages = Table(
    "offline_messages",
    metadata,
    # INTEGER (not BIGINT) on SQLite, where only INTEGER PRIMARY KEY can
    # autoincrement. AUTOINCREMENT there keeps ids from ever being reused, so
    # a late delete of already delivered ids cannot hit a newer message.
    Column(
        "id",
        BigInteger().with_variant(Integer, "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    Column("host", String(_HOST), nullable=False),
    Column("username", String(_USERNAME), nullable=False),
    Column("stanza", Text, nullable=False),
    Column("stored_at", UtcDateTime(), nullable=False),
    Index("ix_offline_messages_user", "host", "username", "id"),
    sqlite_autoincrement=True,
)

blocklist = Table(
    "blocklist",
    metadata,
    Column("host", String(_HOST), nullable=False),
    Column("username", String(_USERNAME), nullable=False),
    Column("jid", String(_JID), nullable=False),
    PrimaryKeyConstraint("host", "username", "jid", name="pk_blocklist"),
)

archive = Table(
    "archive",
    metadata,
    # A plain INTEGER PRIMARY KEY on SQLite (the rowid): the order of insertion, never
    # shown to clients (they see ``item_id``), so reuse after a delete does no harm.
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("host", String(_HOST), nullable=False),
    Column("username", String(_USERNAME), nullable=False),
    Column("item_id", String(64), nullable=False),
    Column("ts", BigInteger, nullable=False),
    Column("with_bare", String(2047), nullable=False),
    Column("with_resource", String(1023), nullable=False),
    Column("direction", String(3), nullable=False),
    Column("stanza", Text, nullable=False),
    Index("ux_archive_item", "host", "username", "item_id", unique=True),
    Index("ix_archive_time", "host", "username", "ts", "id"),
    Index("ix_archive_with", "host", "username", "with_bare", "ts", "id"),
    Index("ix_archive_expiry", "host", "ts"),
)
"""Message archives (XEP-0313): one per owner (host, username), a local account or a room.

``ts`` is the item's time in microseconds since the epoch (UTC); archive order is
(``ts``, ``id``), and both indexes end in those columns, so a page, with or without a time
range or a ``with`` filter, is one index range scan. ``with_bare``/``with_resource`` split
the other party's JID so that a bare ``with`` matches every resource.
"""

PER_USER_TABLES: tuple[Table, ...] = (
    kv,
    # roster_versions before roster_items: the roster store locks them in that
    # order too, so an account deletion cannot deadlock with a roster change.
    roster_versions,
    roster_items,
    pending_subscriptions,
    offline_messages,
    blocklist,
    archive,
)
"""Tables keyed by (host, username) whose rows go when the account is deleted.

Every new per-user store adds its table here so that
:meth:`~salon.storage.interfaces.AccountStore.delete` removes its rows in the
same transaction. Their primary keys (or, for ``offline_messages``, an
index) start with (host, username), so the delete uses an index.
"""


# --------------------------------------------------------------------------- MUC rooms
muc_rooms = Table(
    "muc_rooms",
    metadata,
    Column("service", String(_HOST), nullable=False),
    Column("name", String(_USERNAME), nullable=False),
    Column("config", Text, nullable=False),  # JSON
    Column("subject", Text, nullable=False),
    Column("subject_nick", Text, nullable=False),
    PrimaryKeyConstraint("service", "name", name="pk_muc_rooms"),
)

muc_affiliations = Table(
    "muc_affiliations",
    metadata,
    Column("service", String(_HOST), nullable=False),
    Column("room", String(_USERNAME), nullable=False),
    Column("jid", String(_JID), nullable=False),
    Column("affiliation", String(16), nullable=False),
    PrimaryKeyConstraint("service", "room", "jid", name="pk_muc_affiliations"),
)


# --------------------------------------------------------------------------- pubsub
# Keyed by service (a bare JID for PEP, a domain for a pubsub service) and node name.
_NODE = 1023
_ITEM_ID = 1023

pubsub_nodes = Table(
    "pubsub_nodes",
    metadata,
    Column("service", String(_JID), nullable=False),
    Column("node", String(_NODE), nullable=False),
    Column("config", Text, nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    PrimaryKeyConstraint("service", "node", name="pk_pubsub_nodes"),
)
"""Nodes; ``config`` is a JSON object written by the pubsub module."""

pubsub_items = Table(
    "pubsub_items",
    metadata,
    # The id orders items by publication (INTEGER on SQLite, see offline_messages).
    Column(
        "id",
        BigInteger().with_variant(Integer, "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    Column("service", String(_JID), nullable=False),
    Column("node", String(_NODE), nullable=False),
    Column("item_id", String(_ITEM_ID), nullable=False),
    Column("publisher", String(_JID), nullable=False),
    Column("payload", Text, nullable=False),
    Column("published_at", UtcDateTime(), nullable=False),
    Index("ux_pubsub_items_item", "service", "node", "item_id", unique=True),
    Index("ix_pubsub_items_order", "service", "node", "id"),
    sqlite_autoincrement=True,
)

pubsub_affiliations = Table(
    "pubsub_affiliations",
    metadata,
    Column("service", String(_JID), nullable=False),
    Column("node", String(_NODE), nullable=False),
    Column("jid", String(_JID), nullable=False),
    Column("affiliation", String(16), nullable=False),
    PrimaryKeyConstraint("service", "node", "jid", name="pk_pubsub_affiliations"),
    Index("ix_pubsub_affiliations_jid", "service", "jid"),
)

pubsub_subscriptions = Table(
    "pubsub_subscriptions",
    metadata,
    Column("service", String(_JID), nullable=False),
    Column("node", String(_NODE), nullable=False),
    Column("jid", String(_JID), nullable=False),
    Column("subid", String(_NAME), nullable=False),
    Column("state", String(16), nullable=False),
    PrimaryKeyConstraint("service", "node", "jid", "subid", name="pk_pubsub_subscriptions"),
    Index("ix_pubsub_subscriptions_jid", "service", "jid"),
)
