"""SQL implementation of :class:`~salon.storage.interfaces.AccountStore`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from salon.storage.interfaces import (
    Account,
    AccountExists,
    AccountNotFound,
    ScramCredential,
)
from salon.storage.sql.schema import PER_USER_TABLES, account_credentials, accounts

__all__ = ["SqlAccountStore"]


class SqlAccountStore:
    """Accounts in the ``accounts`` and ``account_credentials`` tables."""

    def __init__(self, engine: AsyncEngine) -> None:
        """Use ``engine``; each method runs in its own transaction."""
        self._engine = engine

    async def create(
        self, host: str, username: str, credentials: Sequence[ScramCredential]
    ) -> None:
        """Create an account; raise :class:`AccountExists` on a duplicate."""
        rows = _credential_rows(host, username, credentials)
        async with self._engine.begin() as conn:
            try:
                await conn.execute(
                    insert(accounts).values(
                        host=host, username=username, created_at=datetime.now(UTC)
                    )
                )
            except IntegrityError as exc:
                # Primary key violation; raising here rolls the transaction back.
                raise AccountExists(f"{username}@{host}") from exc
            await _insert_credentials(conn, rows)

    async def get(self, host: str, username: str) -> Account | None:
        """Return the account and its credentials, or ``None``."""
        async with self._engine.begin() as conn:
            created_at = await conn.scalar(
                select(accounts.c.created_at).where(
                    accounts.c.host == host, accounts.c.username == username
                )
            )
            if created_at is None:
                return None
            result = await conn.execute(
                select(
                    account_credentials.c.hash_name,
                    account_credentials.c.salt,
                    account_credentials.c.iterations,
                    account_credentials.c.stored_key,
                    account_credentials.c.server_key,
                ).where(
                    account_credentials.c.host == host,
                    account_credentials.c.username == username,
                )
            )
            credentials = {
                row.hash_name: ScramCredential(
                    hash_name=row.hash_name,
                    salt=bytes(row.salt),
                    iterations=row.iterations,
                    stored_key=bytes(row.stored_key),
                    server_key=bytes(row.server_key),
                )
                for row in result
            }
        return Account(host=host, username=username, credentials=credentials, created_at=created_at)

    async def set_credentials(
        self, host: str, username: str, credentials: Sequence[ScramCredential]
    ) -> None:
        """Replace all credentials; raise :class:`AccountNotFound` if no account."""
        rows = _credential_rows(host, username, credentials)
        async with self._engine.begin() as conn:
            # FOR UPDATE (PostgreSQL) keeps a concurrent delete() out until we
            # commit; SQLite already holds the database write lock.
            exists = await conn.scalar(
                select(accounts.c.username)
                .where(accounts.c.host == host, accounts.c.username == username)
                .with_for_update()
            )
            if exists is None:
                raise AccountNotFound(f"{username}@{host}")
            await conn.execute(
                delete(account_credentials).where(
                    account_credentials.c.host == host,
                    account_credentials.c.username == username,
                )
            )
            await _insert_credentials(conn, rows)

    async def delete(self, host: str, username: str) -> bool:
        """Delete the account, its credentials and all its per-user rows."""
        async with self._engine.begin() as conn:
            for table in PER_USER_TABLES:
                await conn.execute(
                    delete(table).where(table.c.host == host, table.c.username == username)
                )
            # Credentials go by ON DELETE CASCADE.
            result = await conn.execute(
                delete(accounts).where(accounts.c.host == host, accounts.c.username == username)
            )
            return result.rowcount > 0

    async def list_usernames(self, host: str) -> list[str]:
        """Return the usernames on ``host`` in code point order."""
        async with self._engine.begin() as conn:
            names = await conn.scalars(select(accounts.c.username).where(accounts.c.host == host))
            # Sorted here, not by ORDER BY: PostgreSQL collations vary by locale.
            return sorted(names)

    async def count(self, host: str) -> int:
        """Return the number of accounts on ``host``."""
        async with self._engine.begin() as conn:
            total = await conn.scalar(
                select(func.count()).select_from(accounts).where(accounts.c.host == host)
            )
            return int(total or 0)


def _credential_rows(
    host: str, username: str, credentials: Sequence[ScramCredential]
) -> list[dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    for cred in credentials:
        if cred.hash_name in rows:
            raise ValueError(f"duplicate credential for {cred.hash_name}")
        rows[cred.hash_name] = {
            "host": host,
            "username": username,
            "hash_name": cred.hash_name,
            "salt": cred.salt,
            "iterations": cred.iterations,
            "stored_key": cred.stored_key,
            "server_key": cred.server_key,
        }
    return list(rows.values())


async def _insert_credentials(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    if rows:
        await conn.execute(insert(account_credentials), rows)
