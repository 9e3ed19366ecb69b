"""SQL implementation of :class:`~salon.storage.interfaces.ArchiveStore`.

Archive order is (``ts``, ``id``). A page is one range scan of an index that starts with
the owner and ends with those two columns: ``ix_archive_time``, or ``ix_archive_with``
under a ``with`` filter. Paging from a known item compares row values,
``(ts, id) > (:ts, :id)``, which both engines answer from the index, so the cost of a
page does not grow with the archive. Only the optional count scans the result set.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, delete, func, insert, select, tuple_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from salon.storage.interfaces import ArchiveItem, ArchiveItemNotFound, ArchivePage, ArchiveQuery
from salon.storage.sql.engine import reader, writes
from salon.storage.sql.schema import archive

__all__ = ["SqlArchiveStore", "from_micros", "to_micros"]

_MAX_ID = 64
"""Longest UID; a longer one given in a query cannot be in the archive."""

_MAX_IDS = 1000
"""Most UIDs one query may name (the module enforces its own, lower, bound)."""

_BATCH = 500
"""Most appends written in one group-commit transaction."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_ITEM_COLUMNS = (
    archive.c.id,
    archive.c.item_id,
    archive.c.ts,
    archive.c.with_bare,
    archive.c.with_resource,
    archive.c.direction,
    archive.c.stanza,
)


def to_micros(moment: datetime) -> int:
    """An aware datetime as whole microseconds since the epoch."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime given to the archive")
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(micros: int) -> datetime:
    """The aware UTC datetime for microseconds since the epoch."""
    seconds, micro = divmod(micros, 1_000_000)
    return datetime.fromtimestamp(seconds, UTC).replace(microsecond=micro)


class SqlArchiveStore:
    """Archives as rows of ``archive``; each method is one transaction."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._reader = reader(engine)  # transactions that only read
        self._writes = writes(engine)  # a group commit in one round trip
        # Appends waiting for the group commit, and the task writing them (see append).
        self._waiting: list[tuple[dict[str, Any], asyncio.Future[int]]] = []
        self._writer: asyncio.Task[None] | None = None
        self._last: asyncio.Future[int] | None = None  # the newest append (see drain)

    # ------------------------------------------------------------------ writing
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
        """Store one item; commits before returning. A duplicate UID raises ValueError.

        Appends made at the same time share one transaction (see :meth:`_write_waiting`).
        """
        if not item_id or len(item_id) > _MAX_ID:
            raise ValueError(f"archive item id must be 1 to {_MAX_ID} characters")
        bare, _, resource = with_jid.partition("/")
        row = {
            "host": host,
            "username": username,
            "item_id": item_id,
            "ts": to_micros(timestamp),
            "with_bare": bare,
            "with_resource": resource,
            "direction": direction,
            "stanza": stanza,
        }
        done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._waiting.append((row, done))
        self._last = done
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._write_waiting())
        # Shielded: a caller that gives up does not take the others' batch down with it.
        return await asyncio.shield(done)

    async def _write_waiting(self) -> None:
        """Group commit: write every append waiting, in one transaction, until none waits.

        The first append writes at once; those that arrive while a transaction runs go into
        the next one together. Each append still returns only after its row is committed,
        and a whole batch costs one transaction (and one fsync) instead of one each.
        """
        try:
            while self._waiting:
                batch, self._waiting = self._waiting[:_BATCH], self._waiting[_BATCH:]
                try:
                    ids = await self._insert([row for row, _ in batch])
                except IntegrityError:
                    # A duplicate UID: write the batch one by one, so only that append fails.
                    for row, done in batch:
                        await self._insert_one(row, done)
                    continue
                except BaseException as exc:
                    for _, done in batch:
                        if not done.done():
                            done.set_exception(exc)
                    if not isinstance(exc, Exception):
                        raise
                    continue
                for (_, done), row_id in zip(batch, ids, strict=True):
                    if not done.done():
                        done.set_result(row_id)
        finally:
            self._writer = None
            for _, done in self._waiting:
                if not done.done():
                    done.set_exception(RuntimeError("archive writer stopped"))
            self._waiting = []

    async def _insert(self, rows: list[dict[str, Any]]) -> list[int]:
        return await self._writes.run(_insert_rows, rows)

    async def _insert_one(self, row: dict[str, Any], done: asyncio.Future[int]) -> None:
        try:
            (row_id,) = await self._insert([row])
        except IntegrityError as exc:
            error: BaseException = ValueError(f"archive item id {row['item_id']!r} is already used")
            error.__cause__ = exc
            if not done.done():
                done.set_exception(error)
        except Exception as exc:
            if not done.done():
                done.set_exception(exc)
        else:
            if not done.done():
                done.set_result(row_id)

    async def drain(self) -> None:
        """Wait until every append made so far is committed (or has failed). Batches
        commit in order, so the newest append's end is everyone's. Reads and deletions call
        it first: an append made before them (perhaps still in flight while its message was
        delivered, see salon.core.write_behind) is there for them."""
        last = self._last
        if last is not None and not last.done():
            await asyncio.wait({last})

    async def delete(self, host: str, username: str) -> int:
        """Remove the owner's whole archive."""
        await self.drain()
        async with self._engine.begin() as conn:
            result = await conn.execute(
                delete(archive).where(archive.c.host == host, archive.c.username == username)
            )
            return int(result.rowcount or 0)

    async def expire(self, host: str, older_than: datetime, username: str | None = None) -> int:
        """Remove items stamped before ``older_than`` (of one owner, or every owner of host)."""
        await self.drain()
        conds: list[ColumnElement[bool]] = [
            archive.c.ts < to_micros(older_than),
            archive.c.host == host,
        ]
        if username is not None:
            conds.append(archive.c.username == username)
        async with self._engine.begin() as conn:
            result = await conn.execute(delete(archive).where(*conds))
            return int(result.rowcount or 0)

    async def count(self, host: str, username: str) -> int:
        await self.drain()
        async with self._reader.begin() as conn:
            total = await conn.scalar(
                select(func.count())
                .select_from(archive)
                .where(archive.c.host == host, archive.c.username == username)
            )
            return int(total or 0)

    async def replace(self, host: str, username: str, item_id: str, stanza: str) -> bool:
        """Replace one item's stanza (a tombstone for a retracted message)."""
        await self.drain()
        async with self._engine.begin() as conn:
            result = await conn.execute(
                update(archive)
                .where(
                    archive.c.host == host,
                    archive.c.username == username,
                    archive.c.item_id == item_id,
                )
                .values(stanza=stanza)
            )
            return bool(result.rowcount)

    # ------------------------------------------------------------------ querying
    async def query(self, host: str, username: str, query: ArchiveQuery) -> ArchivePage:
        """One page of the owner's archive (see :class:`ArchiveQuery`)."""
        await self.drain()
        if query.max < 0:
            raise ValueError("max must not be negative")
        if len(query.ids) > _MAX_IDS:
            raise ValueError(f"at most {_MAX_IDS} ids per query")
        async with self._reader.begin() as conn:
            named = [u for u in (query.after_id, query.before_id, query.after) if u is not None]
            if query.before:
                named.append(query.before)
            named.extend(query.ids)
            keys = await _resolve(conn, host, username, named)

            if query.ids:
                # At most _MAX_IDS rows: fetched by their UIDs (the unique index), then
                # filtered and paged here, whatever the planner would make of the rest.
                result = await conn.execute(
                    select(*_ITEM_COLUMNS).where(
                        archive.c.host == host,
                        archive.c.username == username,
                        archive.c.item_id.in_(sorted(set(query.ids))),
                    )
                )
                rows, complete, count, index = _page_in_memory(list(result), query, keys)
            else:
                rows, complete, count, index = await _page_in_sql(conn, host, username, query, keys)
        items = [_item(row) for row in rows]
        first_uid = items[0].id if items else None
        last_uid = items[-1].id if items else None
        if query.flip:
            items.reverse()
        return ArchivePage(items, first_uid, last_uid, complete, count, index)


async def _page_in_sql(
    conn: AsyncConnection,
    host: str,
    username: str,
    query: ArchiveQuery,
    keys: dict[str, tuple[int, int]],
) -> tuple[list[Any], bool, int | None, int | None]:
    conds: list[ColumnElement[bool]] = [archive.c.host == host, archive.c.username == username]
    if query.with_jid is not None:
        bare, slash, resource = query.with_jid.partition("/")
        conds.append(archive.c.with_bare == bare)
        if slash:
            conds.append(archive.c.with_resource == resource)
    if query.start is not None:
        conds.append(archive.c.ts >= to_micros(query.start))
    if query.end is not None:
        conds.append(archive.c.ts <= to_micros(query.end))
    if query.after_id is not None:
        conds.append(_key() > tuple_(*keys[query.after_id]))
    if query.before_id is not None:
        conds.append(_key() < tuple_(*keys[query.before_id]))

    backward = query.before is not None
    page_conds = list(conds)
    if query.after is not None:
        page_conds.append(_key() > tuple_(*keys[query.after]))
    if query.before:
        page_conds.append(_key() < tuple_(*keys[query.before]))

    rows: list[Any] = []
    if query.max > 0:
        order = (
            (archive.c.ts.desc(), archive.c.id.desc()) if backward else (archive.c.ts, archive.c.id)
        )
        stmt = select(*_ITEM_COLUMNS).where(*page_conds).order_by(*order).limit(query.max + 1)
        if query.index is not None and not backward and query.after is None:
            stmt = stmt.offset(query.index)
        rows = list((await conn.execute(stmt)).all())
    complete = len(rows) <= query.max
    rows = rows[: query.max]
    if backward:
        rows.reverse()

    count: int | None = None
    index: int | None = None
    if query.with_count:
        count = await _count(conn, conds)
        if rows:
            index = await _count(conn, [*conds, _key() < tuple_(rows[0].ts, rows[0].id)])
    return rows, complete, count, index


def _page_in_memory(
    candidates: list[Any], query: ArchiveQuery, keys: dict[str, tuple[int, int]]
) -> tuple[list[Any], bool, int | None, int | None]:
    """The same result as :func:`_page_in_sql`, over a small set of candidate rows."""
    lo: tuple[int, int] | None = keys[query.after_id] if query.after_id is not None else None
    hi: tuple[int, int] | None = keys[query.before_id] if query.before_id is not None else None
    bare, slash, resource = (query.with_jid or "").partition("/")
    start = to_micros(query.start) if query.start is not None else None
    end = to_micros(query.end) if query.end is not None else None

    def matches(row: Any) -> bool:
        key = (row.ts, row.id)
        return not (
            (query.with_jid is not None and row.with_bare != bare)
            or (slash and row.with_resource != resource)
            or (start is not None and row.ts < start)
            or (end is not None and row.ts > end)
            or (lo is not None and key <= lo)
            or (hi is not None and key >= hi)
        )

    result_set = sorted((r for r in candidates if matches(r)), key=lambda r: (r.ts, r.id))
    positions = list(range(len(result_set)))
    if query.after is not None:
        after = keys[query.after]
        positions = [i for i in positions if (result_set[i].ts, result_set[i].id) > after]
    if query.before:
        before = keys[query.before]
        positions = [i for i in positions if (result_set[i].ts, result_set[i].id) < before]
    if query.before is not None:
        chosen = positions[-query.max :] if query.max > 0 else []
        complete = len(positions) <= query.max
    else:
        if query.index is not None and query.after is None:
            positions = positions[query.index :]
        chosen = positions[: query.max]
        complete = len(positions) <= query.max
    rows = [result_set[i] for i in chosen]
    if not query.with_count:
        return rows, complete, None, None
    return rows, complete, len(result_set), (chosen[0] if chosen else None)


def _key() -> Any:
    return tuple_(archive.c.ts, archive.c.id)


async def _resolve(
    conn: AsyncConnection, host: str, username: str, uids: Sequence[str]
) -> dict[str, tuple[int, int]]:
    """Archive order keys (ts, id) of the given UIDs; ArchiveItemNotFound names a missing one."""
    wanted = set(uids)
    for uid in wanted:
        if not uid or len(uid) > _MAX_ID:
            raise ArchiveItemNotFound(uid)
    if not wanted:
        return {}
    rows = await conn.execute(
        select(archive.c.item_id, archive.c.ts, archive.c.id).where(
            archive.c.host == host,
            archive.c.username == username,
            archive.c.item_id.in_(sorted(wanted)),
        )
    )
    keys = {row.item_id: (int(row.ts), int(row.id)) for row in rows}
    for uid in uids:
        if uid not in keys:
            raise ArchiveItemNotFound(uid)
    return keys


async def _count(conn: AsyncConnection, conds: Sequence[ColumnElement[bool]]) -> int:
    total = await conn.scalar(select(func.count()).select_from(archive).where(*conds))
    return int(total or 0)


def _item(row: Any) -> ArchiveItem:
    with_jid = row.with_bare + "/" + row.with_resource if row.with_resource else row.with_bare
    return ArchiveItem(
        id=row.item_id,
        with_jid=with_jid,
        stanza=row.stanza,
        timestamp=from_micros(int(row.ts)),
        direction=row.direction,
    )


def _insert_rows(conn: Connection, rows: list[dict[str, Any]]) -> list[int]:
    stmt = insert(archive).returning(archive.c.id, sort_by_parameter_order=True)
    result = conn.execute(stmt, rows[0]) if len(rows) == 1 else conn.execute(stmt, rows)
    return [int(row_id) for row_id in result.scalars()]
