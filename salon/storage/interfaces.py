"""Typed storage interfaces: domain dataclasses and async Protocols.

Modules program against these names only. They never see SQL, engines or
transactions: every method is one unit of work that either happens completely
or not at all. The SQL implementation lives in :mod:`salon.storage.sql`.

This module deliberately imports nothing from SQLAlchemy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

__all__ = [
    "Account",
    "AccountExists",
    "AccountNotFound",
    "AccountStore",
    "KeyValueStore",
    "ScramCredential",
    "Storage",
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


class Storage(Protocol):
    """The bundle of stores a running server uses."""

    accounts: AccountStore

    def keyvalue(self, store: str) -> KeyValueStore:
        """Return the key-value store called ``store`` (e.g. ``"vcard"``)."""
        ...

    async def close(self) -> None:
        """Release all connections. The stores must not be used afterwards."""
        ...
