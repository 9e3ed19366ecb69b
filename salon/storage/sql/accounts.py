"""SQL implementation of :class:`~salon.storage.interfaces.AccountStore`, with a credential
cache for returning users.

Every login reads the account's SCRAM credentials; through SQLAlchemy and aiosqlite that read
cost more server CPU than the rest of the login together. So :meth:`SqlAccountStore.get` keeps
what it read in a bounded cache: a user who logs in again soon (a reconnect after a network
blip, a mobile client coming back, a restart storm's second wave) costs no query.

* Entries live at most ``cache_ttl`` seconds and the cache holds at most ``cache_size`` of
  them, oldest out first: memory is bounded by the logins of the last minute, not by the
  number of accounts.
* Every write through this store (``create``, ``set_credentials``, ``delete``: in-band
  registration, password change and cancellation, the admin tools when they run in this
  process) drops the user's entry before it commits, and a read that overlapped any write is
  returned but not kept, so this process never serves credentials older than its own writes.
* A write by another process (``salon passwd`` / ``salon deluser`` against the same database,
  another cluster node) reaches this one when the entry expires: at most ``cache_ttl``
  seconds. ``cache_ttl=0`` turns the cache off.
* Only existing accounts are cached: an account created elsewhere can log in at once.
"""

from __future__ import annotations

import struct
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Row, Select, delete, func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from salon.storage.interfaces import (
    Account,
    AccountExists,
    AccountNotFound,
    ScramCredential,
)
from salon.storage.sql.engine import reader, reads
from salon.storage.sql.schema import PER_USER_TABLES, account_credentials, accounts

__all__ = ["CACHE_SIZE", "CACHE_TTL", "SqlAccountStore"]

CACHE_SIZE = 10_000  # accounts whose credentials are kept ...
CACHE_TTL = 60.0  # ... for at most this many seconds


class SqlAccountStore:
    """Accounts in the ``accounts`` and ``account_credentials`` tables."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        cache_size: int = CACHE_SIZE,
        cache_ttl: float = CACHE_TTL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Use ``engine``; each method runs in its own transaction. Accounts read are kept
        for ``cache_ttl`` seconds, ``cache_size`` at most (see the module's docstring)."""
        self._engine = engine
        self._reader = reader(engine)  # transactions that only read
        self._reads = reads(engine)  # one round trip per read (the login's account read)
        self._cache_size = cache_size if cache_ttl > 0 else 0
        self._cache_ttl = cache_ttl
        self._clock = clock
        # (host, username) -> (expiry, account), in order of expiry
        # (host, username) -> (expiry, packed account: see _pack), in order of expiry
        self._cache: OrderedDict[tuple[str, str], tuple[float, bytes]] = OrderedDict()
        self._writes = 0  # writes begun so far: a read that overlapped one is not kept

    def _forget(self, host: str, username: str) -> None:
        self._writes += 1
        self._cache.pop((host, username), None)

    def _keep(self, account: Account) -> None:
        try:
            packed = _pack(account)
        except (ValueError, OverflowError, struct.error):
            return  # not cacheable: read from the database each time
        cache, now = self._cache, self._clock()
        while cache and (len(cache) >= self._cache_size or next(iter(cache.values()))[0] <= now):
            cache.popitem(last=False)
        if self._cache_size:
            cache[(account.host, account.username)] = (now + self._cache_ttl, packed)

    async def create(
        self, host: str, username: str, credentials: Sequence[ScramCredential]
    ) -> None:
        """Create an account; raise :class:`AccountExists` on a duplicate."""
        rows = _credential_rows(host, username, credentials)
        self._forget(host, username)
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

    def forget(self, host: str, username: str) -> None:
        self._forget(host, username)

    def cached(self, host: str, username: str) -> Account | None:
        """The account if its cache entry is fresh, else ``None`` (no I/O)."""
        hit = self._cache.get((host, username))
        if hit is not None and hit[0] > self._clock():
            return _unpack(host, username, hit[1])
        return None

    async def get(self, host: str, username: str) -> Account | None:
        """Return the account and its credentials, or ``None`` (from the cache when this
        account was read in the last ``cache_ttl`` seconds and not written since)."""
        key = (host, username)
        hit = self._cache.get(key)
        if hit is not None:
            if hit[0] > self._clock():
                return _unpack(host, username, hit[1])
            del self._cache[key]
        writes = self._writes
        account = await self._read(host, username)
        if account is not None and writes == self._writes:
            self._keep(account)
        return account

    async def _read(self, host: str, username: str) -> Account | None:
        # One statement (the account LEFT JOIN its credentials): every round trip through
        # the async driver costs more than the query itself.
        creds = account_credentials.c
        query = (
            select(
                accounts.c.created_at,
                creds.hash_name,
                creds.salt,
                creds.iterations,
                creds.stored_key,
                creds.server_key,
            )
            .select_from(
                accounts.outerjoin(
                    account_credentials,
                    (creds.host == accounts.c.host) & (creds.username == accounts.c.username),
                )
            )
            .where(accounts.c.host == host, accounts.c.username == username)
        )
        rows = await self._reads.run(_all_rows, query)
        if not rows:
            return None
        credentials = {
            row.hash_name: ScramCredential(
                hash_name=row.hash_name,
                salt=bytes(row.salt),
                iterations=row.iterations,
                stored_key=bytes(row.stored_key),
                server_key=bytes(row.server_key),
            )
            for row in rows
            if row.hash_name is not None
        }
        created_at = rows[0].created_at
        return Account(host=host, username=username, credentials=credentials, created_at=created_at)

    async def set_credentials(
        self, host: str, username: str, credentials: Sequence[ScramCredential]
    ) -> None:
        """Replace all credentials; raise :class:`AccountNotFound` if no account."""
        rows = _credential_rows(host, username, credentials)
        self._forget(host, username)
        try:
            await self._set_credentials(host, username, rows)
        finally:
            self._forget(host, username)  # a read that began meanwhile may have kept the old

    async def _set_credentials(self, host: str, username: str, rows: list[dict[str, Any]]) -> None:
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
        self._forget(host, username)
        try:
            return await self._delete(host, username)
        finally:
            self._forget(host, username)

    async def _delete(self, host: str, username: str) -> bool:
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
        async with self._reader.begin() as conn:
            names = await conn.scalars(select(accounts.c.username).where(accounts.c.host == host))
            # Sorted here, not by ORDER BY: PostgreSQL collations vary by locale.
            return sorted(names)

    async def count(self, host: str) -> int:
        """Return the number of accounts on ``host``."""
        async with self._reader.begin() as conn:
            total = await conn.scalar(
                select(func.count()).select_from(accounts).where(accounts.c.host == host)
            )
            return int(total or 0)


# A cached account is one bytes object (about 300 bytes for the three usual credentials,
# where the Account with its dict and dataclasses took 1.5 KB): its creation time, then per
# credential its hash name, iteration count and the three byte strings, length-prefixed.
_HEAD = struct.Struct("<dB")  # created_at (POSIX seconds), number of credentials
_CRED = struct.Struct("<BIBBB")  # hash-name length, iterations, salt/stored/server lengths


def _pack(account: Account) -> bytes:
    out = [_HEAD.pack(account.created_at.timestamp(), len(account.credentials))]
    for cred in account.credentials.values():
        name = cred.hash_name.encode()
        if max(len(name), len(cred.salt), len(cred.stored_key), len(cred.server_key)) > 255:
            raise ValueError("credential too long to cache")  # never with real SCRAM data
        out.append(
            _CRED.pack(
                len(name), cred.iterations, len(cred.salt), len(cred.stored_key),
                len(cred.server_key),
            )
        )  # fmt: skip
        out += (name, cred.salt, cred.stored_key, cred.server_key)
    return b"".join(out)


def _unpack(host: str, username: str, data: bytes) -> Account:
    created, count = _HEAD.unpack_from(data)
    pos = _HEAD.size
    credentials = {}
    for _ in range(count):
        name_len, iterations, salt_len, stored_len, server_len = _CRED.unpack_from(data, pos)
        pos += _CRED.size
        name = data[pos : pos + name_len].decode()
        pos += name_len
        salt = data[pos : pos + salt_len]
        pos += salt_len
        stored = data[pos : pos + stored_len]
        pos += stored_len
        server = data[pos : pos + server_len]
        pos += server_len
        credentials[name] = ScramCredential(name, salt, iterations, stored, server)
    return Account(
        host=host,
        username=username,
        credentials=credentials,
        created_at=datetime.fromtimestamp(created, UTC),
    )


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


def _all_rows(conn: Connection, query: Select[Any]) -> list[Row[Any]]:
    return list(conn.execute(query).all())
