"""Typed storage interfaces: domain dataclasses and async Protocols.

Modules program against these names only. They never see SQL, engines or
transactions: every method is one unit of work that either happens completely
or not at all. The SQL implementation lives in :mod:`salon.storage.sql`.

This module deliberately imports nothing from SQLAlchemy.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

__all__ = [
    "Account",
    "AccountExists",
    "AccountNotFound",
    "AccountStore",
    "BlocklistStore",
    "KeyValueStore",
    "MucStore",
    "OfflineMessage",
    "OfflineStore",
    "PendingSubscription",
    "PubSubItem",
    "PubSubLimitReached",
    "PubSubNode",
    "PubSubStore",
    "PubSubSubscription",
    "Roster",
    "RosterItem",
    "RosterStore",
    "ScramCredential",
    "Storage",
    "StoredRoom",
]


@dataclass(frozen=True, slots=True)
class ScramCredential:
    """The SCRAM verifier for one hash function (RFC 5802 section 3).

    The plaintext password is never stored; only what the server needs to
    verify a client proof and to prove itself to the client.
    """

    hash_name: str
    """IANA SCRAM hash name: ``"SHA-1"``, ``"SHA-256"`` or ``"SHA-512"``."""
    salt: bytes
    iterations: int
    stored_key: bytes
    server_key: bytes


@dataclass(frozen=True, slots=True)
class Account:
    """A local user account on one virtual host."""

    host: str
    username: str
    """The already normalised (PRECIS UsernameCaseMapped) localpart."""
    credentials: dict[str, ScramCredential]
    """SCRAM credentials keyed by :attr:`ScramCredential.hash_name`."""
    created_at: datetime
    """Creation time, timezone-aware UTC."""


class AccountExists(Exception):
    """Raised by :meth:`AccountStore.create` when the account already exists."""


class AccountNotFound(Exception):
    """Raised when an operation needs an account that does not exist."""


class AccountStore(Protocol):
    """Accounts and their SCRAM credentials, per virtual host."""

    def cached(self, host: str, username: str) -> Account | None:
        """The account if the store holds it in memory right now (no I/O), else ``None``:
        the login path then skips a task and a round trip. Always ``None`` is correct."""
        ...

    def forget(self, host: str, username: str) -> None:
        """Drop what is held in memory for the account (it changed outside the store's own
        writes, e.g. it was disabled): the next read goes to the database."""
        ...

    async def create(
        self, host: str, username: str, credentials: Sequence[ScramCredential]
    ) -> None:
        """Create an account with the given credentials.

        Raises :class:`AccountExists` if ``username`` already exists on
        ``host``, and :class:`ValueError` if two credentials share a hash name.
        """
        ...

    async def get(self, host: str, username: str) -> Account | None:
        """Return the account with all its credentials, or ``None``."""
        ...

    async def set_credentials(
        self, host: str, username: str, credentials: Sequence[ScramCredential]
    ) -> None:
        """Replace all credentials of an account (e.g. on password change).

        Raises :class:`AccountNotFound` if the account does not exist.
        """
        ...

    async def delete(self, host: str, username: str) -> bool:
        """Delete an account and all of that user's per-user data.

        Credentials and the user's rows in every per-user store (such as
        :class:`KeyValueStore`) go in the same transaction. Returns whether
        the account existed.
        """
        ...

    async def list_usernames(self, host: str) -> list[str]:
        """Return the usernames on ``host``, sorted by code point."""
        ...

    async def count(self, host: str) -> int:
        """Return the number of accounts on ``host``."""
        ...


class KeyValueStore(Protocol):
    """One small document per (host, user) for one named store.

    Meant for private XML, vCard-temp, preferences and the like: a new small
    module gets storage without a schema change.
    """

    async def get(self, host: str, username: str) -> str | None:
        """Return the stored document, or ``None`` if there is none."""
        ...

    async def set(self, host: str, username: str, value: str | None) -> None:
        """Store ``value``, replacing any previous one; ``None`` deletes it."""
        ...

    async def set_many(self, host: str, values: Mapping[str, str]) -> None:
        """Store many users' documents (username -> document) at once, in one transaction."""
        ...


@dataclass(frozen=True, slots=True)
class RosterItem:
    """One contact in a user's roster (RFC 6121 §2.1.2)."""

    jid: str
    """The contact's bare JID, normalised."""
    name: str | None = None
    subscription: str = "none"
    """``"none"``, ``"to"``, ``"from"`` or ``"both"``."""
    ask: bool = False
    """Pending-out: the user asked to subscribe and the contact has not answered."""
    approved: bool = False
    """Pre-approved: a future inbound subscribe is accepted at once (RFC 6121 §3.4)."""
    groups: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Roster:
    version: int
    """Increases with every change (RFC 6121 §2.6); 0 for a roster never written."""
    items: dict[str, RosterItem]
    """Keyed by :attr:`RosterItem.jid`."""


@dataclass(frozen=True, slots=True)
class PendingSubscription:
    """An inbound subscription request waiting for the user (RFC 6121 §3.1.3)."""

    jid: str
    """The requester's bare JID."""
    stanza: str
    """The serialized subscribe presence, redelivered while it waits."""


class RosterStore(Protocol):
    """Rosters and pending inbound subscription requests."""

    async def get(self, host: str, username: str) -> Roster:
        """The whole roster; an empty roster at version 0 when there is none."""
        ...

    async def get_item(self, host: str, username: str, jid: str) -> RosterItem | None: ...

    async def put_item(self, host: str, username: str, item: RosterItem) -> int:
        """Insert or replace the item for ``item.jid``; returns the new roster version."""
        ...

    async def remove_item(self, host: str, username: str, jid: str) -> int | None:
        """Remove the item; the new roster version, or None when there was no such item."""
        ...

    async def count(self, host: str, username: str) -> int: ...

    async def add_pending(self, host: str, username: str, jid: str, stanza: str) -> None:
        """Remember (or replace) the inbound request from ``jid``."""
        ...

    async def remove_pending(self, host: str, username: str, jid: str) -> bool: ...

    async def list_pending(self, host: str, username: str) -> list[PendingSubscription]:
        """Oldest first."""
        ...

    async def get_with_pending(
        self, host: str, username: str
    ) -> tuple[Roster, list[PendingSubscription]]:
        """``get`` and ``list_pending`` in one transaction (one round trip at login)."""
        ...


@dataclass(frozen=True, slots=True)
class OfflineMessage:
    id: int
    """Increases with arrival order."""
    stanza: str
    """The serialized message as it arrived (``from`` already stamped)."""
    stored_at: datetime
    """Timezone-aware UTC."""


class OfflineStore(Protocol):
    """Messages held for users with no available resource (XEP-0160). ``push`` commits
    before it returns: an accepted message survives a crash."""

    async def push(self, host: str, username: str, stanza: str, *, limit: int) -> bool:
        """Store the message unless the user already has ``limit`` of them (then False);
        the count check and the insert are one transaction."""
        ...

    async def list(self, host: str, username: str) -> list[OfflineMessage]:
        """Oldest first."""
        ...

    async def delete(self, host: str, username: str, ids: Sequence[int]) -> None: ...

    async def count(self, host: str, username: str) -> int: ...

    async def holders(self, host: str, limit: int) -> builtins.list[str] | None:
        """The usernames of ``host`` with at least one stored message, or None when there
        are more than ``limit`` of them."""
        ...


class BlocklistStore(Protocol):
    """Blocked JIDs per user (XEP-0191). JIDs are stored as given after normalisation; they
    may be domains, bare JIDs or full JIDs."""

    async def get(self, host: str, username: str) -> list[str]:
        """Sorted."""
        ...

    async def add(self, host: str, username: str, jids: Sequence[str]) -> None:
        """Idempotent."""
        ...

    async def remove(self, host: str, username: str, jids: Sequence[str]) -> None:
        """Remove these; an empty ``jids`` removes every entry."""
        ...


# --------------------------------------------------------------------------- pubsub
@dataclass(frozen=True, slots=True)
class PubSubNode:
    """A node of a pubsub service. ``service`` names the service: a bare JID for PEP
    (``juliet@example.org``), a domain for a pubsub component (``pubsub.example.org``).
    ``config`` is the node configuration as the pubsub module writes it (JSON values)."""

    service: str
    node: str
    config: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True, slots=True)
class PubSubItem:
    id: str
    publisher: str
    """The full or bare JID that published it."""
    payload: str
    """The serialized payload element, or "" for a notification-only item."""
    published_at: datetime


@dataclass(frozen=True, slots=True)
class PubSubSubscription:
    jid: str
    subid: str
    state: str
    """"subscribed" or "pending" (XEP-0060 §4.2)."""


class PubSubStore(Protocol):
    """Nodes, items, subscriptions and affiliations of every pubsub service (XEP-0060),
    PEP (XEP-0163) included. Each method is one transaction."""

    async def create_node(
        self, service: str, node: str, config: dict[str, Any], owner: str, *, max_nodes: int
    ) -> bool:
        """Create the node with ``owner`` affiliated as owner. False when it exists;
        :class:`PubSubLimitReached` when ``service`` already has ``max_nodes`` nodes."""
        ...

    async def get_node(self, service: str, node: str) -> PubSubNode | None: ...

    async def list_nodes(self, service: str) -> list[PubSubNode]:
        """Sorted by node name."""
        ...

    async def set_config(self, service: str, node: str, config: dict[str, Any]) -> bool: ...

    async def delete_node(self, service: str, node: str) -> bool:
        """The node with its items, subscriptions and affiliations."""
        ...

    async def delete_service(self, service: str) -> None:
        """Every node of ``service`` (e.g. an account's PEP data when it is deleted)."""
        ...

    async def publish(
        self, service: str, node: str, item: PubSubItem, *, max_items: int
    ) -> list[str]:
        """Store ``item`` as the newest (replacing one with its id), then keep only the
        newest ``max_items`` items; returns the ids pruned."""
        ...

    async def get_items(
        self,
        service: str,
        node: str,
        *,
        ids: Sequence[str] | None = None,
        last: int | None = None,
    ) -> list[PubSubItem]:
        """Oldest first: the items with ``ids`` (unknown ones left out), or the newest
        ``last`` items, or all."""
        ...

    async def retract(self, service: str, node: str, item_id: str) -> bool: ...

    async def purge(self, service: str, node: str) -> None: ...

    async def set_affiliation(self, service: str, node: str, jid: str, affiliation: str) -> None:
        """Set a bare JID's affiliation; "none" removes it."""
        ...

    async def affiliations(self, service: str, node: str) -> dict[str, str]: ...

    async def affiliations_of(self, service: str, jid: str) -> dict[str, str]:
        """``jid``'s affiliation with each node of ``service``, by node."""
        ...

    async def add_subscription(
        self, service: str, node: str, subscription: PubSubSubscription
    ) -> None:
        """Insert or update (same jid and subid)."""
        ...

    async def remove_subscription(self, service: str, node: str, jid: str, subid: str) -> bool: ...

    async def subscriptions(self, service: str, node: str) -> list[PubSubSubscription]: ...

    async def subscriptions_of(
        self, service: str, jid: str
    ) -> list[tuple[str, PubSubSubscription]]:
        """(node, subscription) for each subscription of ``jid`` (full or bare, exact)."""
        ...


class PubSubLimitReached(Exception):
    """A pubsub service already holds its most nodes."""


class Storage(Protocol):
    """The bundle of stores a running server uses."""

    accounts: AccountStore
    roster: RosterStore
    offline: OfflineStore
    blocklist: BlocklistStore
    muc: MucStore
    pubsub: PubSubStore
    archive: ArchiveStore

    def keyvalue(self, store: str) -> KeyValueStore:
        """Return the key-value store called ``store`` (e.g. ``"vcard"``)."""
        ...

    async def close(self) -> None:
        """Release all connections. The stores must not be used afterwards."""
        ...


# --------------------------------------------------------------------------- MUC rooms
@dataclass(frozen=True, slots=True)
class StoredRoom:
    """A persistent chat room (XEP-0045): what survives a restart. ``config`` is the room's
    configuration as plain JSON-able values; ``affiliations`` maps bare JIDs to
    owner/admin/member/outcast."""

    service: str  # conference.example.org
    name: str  # the room's localpart
    config: dict[str, object]
    affiliations: dict[str, str]
    subject: str = ""
    subject_nick: str = ""


class MucStore(Protocol):
    """Persistent rooms of MUC services. ``save`` replaces the whole room atomically."""

    async def rooms(self, service: str) -> list[StoredRoom]:
        """Every stored room of ``service``, sorted by name."""
        ...

    async def get(self, service: str, name: str) -> StoredRoom | None: ...

    async def save(self, room: StoredRoom) -> None:
        """Create or replace the room, its configuration, affiliations and subject."""
        ...

    async def delete(self, service: str, name: str) -> None:
        """Forget the room (idempotent)."""
        ...


# ---------------------------------------------------------------------- message archive
@dataclass(frozen=True, slots=True)
class ArchiveItem:
    """One archived stanza (XEP-0313)."""

    id: str
    """The archive's UID for it: the XEP-0359 stanza-id, unique within the archive."""
    with_jid: str
    """The other party: the peer's JID for a user archive, the sender for a room archive."""
    stanza: str
    """The serialized stanza as archived."""
    timestamp: datetime
    """When it was sent or received; timezone-aware UTC, microsecond precision."""
    direction: str
    """``"in"`` (received by the owner) or ``"out"`` (sent by the owner)."""


class ArchiveItemNotFound(Exception):
    """A query named a UID (RSM after/before, before-id, after-id, ids) the archive lacks."""

    def __init__(self, item_id: str) -> None:
        super().__init__(item_id)
        self.item_id = item_id


@dataclass(frozen=True, slots=True)
class ArchiveQuery:
    """Filters and one page of an archive query (XEP-0313 §4, XEP-0059).

    Archive order is (timestamp, insertion order). Every filter narrows the result set;
    ``after``/``before``/``index`` then choose the page within it.
    """

    with_jid: str | None = None
    """A bare JID matches every resource of it; a full JID matches exactly."""
    start: datetime | None = None
    """Items at or after this time."""
    end: datetime | None = None
    """Items at or before this time."""
    after_id: str | None = None
    """Filter: only items after this UID (exclusive)."""
    before_id: str | None = None
    """Filter: only items before this UID (exclusive)."""
    ids: tuple[str, ...] = ()
    """Filter: only these UIDs (empty: no such filter)."""
    max: int = 50
    """Page size; 0 asks for the count only."""
    after: str | None = None
    """RSM: the page that follows this UID."""
    before: str | None = None
    """RSM: the page that precedes this UID; ``""`` asks for the last page."""
    index: int | None = None
    """RSM: the page starting at this position of the result set (ignored with ``before``)."""
    with_count: bool = False
    """Also count the result set (and the first item's index): costs a scan of the set."""
    flip: bool = False
    """Return the page's items newest first (XEP-0313 flip-page); ``first``/``last`` keep
    naming the page's oldest and newest item."""


@dataclass(frozen=True, slots=True)
class ArchivePage:
    items: list[ArchiveItem]
    """The page, oldest first (newest first when the query asked to flip)."""
    first: str | None
    """UID of the page's oldest item; None for an empty page."""
    last: str | None
    """UID of the page's newest item; None for an empty page."""
    complete: bool
    """No further item in the direction of paging (forwards, or backwards with ``before``)."""
    count: int | None = None
    """Size of the whole result set, when asked for."""
    index: int | None = None
    """Position of ``first`` in the result set, when the count was asked for."""


class ArchiveStore(Protocol):
    """Message archives (XEP-0313), one per owner.

    An owner is a bare JID given as (``host``, ``username``): a local account
    (``host`` its virtual host, ``username`` its localpart) or a chat room (``host`` the MUC
    service's domain, ``username`` the room's localpart). Account deletion removes the
    account's archive in the same transaction.
    """

    async def append(
        self,
        host: str,
        username: str,
        *,
        item_id: str,
        with_jid: str,
        stanza: str,
        timestamp: datetime,
        direction: str,
    ) -> int:
        """Store one item under the caller-chosen UID ``item_id`` (at most 64 characters,
        unique within the owner's archive: a duplicate raises ValueError); commits before it
        returns. Returns the row's internal sequence number."""
        ...

    async def query(self, host: str, username: str, query: ArchiveQuery) -> ArchivePage:
        """One page of the owner's archive; raises :class:`ArchiveItemNotFound` when a UID
        the query names is not in it."""
        ...

    async def delete(self, host: str, username: str) -> int:
        """Remove the owner's whole archive; returns the number of items removed."""
        ...

    async def expire(self, host: str, older_than: datetime, username: str | None = None) -> int:
        """Remove items stamped before ``older_than``: of one owner, or of every owner on
        ``host``. Returns the number of items removed."""
        ...

    async def count(self, host: str, username: str) -> int: ...

    async def replace(self, host: str, username: str, item_id: str, stanza: str) -> bool:
        """Replace the stanza of one item, keeping its UID, time and peer (a XEP-0424
        tombstone takes the place of a retracted message). False if there is no such item."""
        ...
