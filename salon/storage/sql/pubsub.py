"""SQL implementation of :class:`~salon.storage.interfaces.PubSubStore`.

Items are ordered by an autoincrement id: a republished item id gets a new row, so it
becomes the newest. Pruning to ``max_items`` is one ``DELETE ... NOT IN (newest N)``.

Two things keep a publish cheap when many arrive at once (every contact's client publishing
its tune, mood or avatar):

* **Group commit.** Publishes waiting for the database go into one transaction: the first
  waiter starts a writer task, which takes everything queued (up to ``BATCH``), writes it,
  commits once, then answers each caller. A caller's ``publish`` returns only after the
  commit (with SQLite's ``synchronous=FULL``, after the fsync), so an item whose publish was
  answered is stored. If a batch fails, each of its publishes is retried in a transaction of
  its own, so one bad item fails alone.
* **A read cache** of what every publish and notification reads but rarely changes: each
  node's row (with its configuration), its affiliations and its subscriptions; and each
  node's newest item, which every resource coming online (or whose caps are learned) is
  sent (set by the publish that wrote it, dropped by retract, purge and delete). Entries live
  at most ``cache_ttl`` seconds (``cache_size`` of each kind at most, oldest out first).
  Every write through this store that changes one of them drops it, and a read that
  overlapped any such write is returned but not kept, so this process never serves data
  older than its own writes. A change by another process (another cluster node) is seen
  when the entry expires: at most ``cache_ttl`` seconds. ``cache_ttl=0`` turns it off.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import bindparam, delete, func, insert, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from salon.storage.interfaces import (
    PubSubItem,
    PubSubLimitReached,
    PubSubNode,
    PubSubSubscription,
)
from salon.storage.sql.dialect import lock_user, upsert
from salon.storage.sql.engine import reader
from salon.storage.sql.schema import (
    pubsub_affiliations,
    pubsub_items,
    pubsub_nodes,
    pubsub_subscriptions,
)

__all__ = ["BATCH", "CACHE_SIZE", "CACHE_TTL", "SqlPubSubStore"]

CACHE_SIZE = 10_000  # nodes (and as many affiliation and subscription lists) kept ...
CACHE_TTL = 60.0  # ... for at most this many seconds
BATCH = 500  # publishes written in one transaction at most

_LOCK_CLASS = 0x5A1_0B5B
"""Advisory lock class (PostgreSQL) for one service's node set and one node's items."""

_CHUNK = 500

_NODE_TABLES = (pubsub_items, pubsub_subscriptions, pubsub_affiliations, pubsub_nodes)


def _node(row: Any) -> PubSubNode:
    return PubSubNode(row.service, row.node, json.loads(row.config), row.created_at)


def _item(row: Any) -> PubSubItem:
    return PubSubItem(row.item_id, row.publisher, row.payload, row.published_at)


_Key = tuple[str, str]
V = TypeVar("V")


class _Cache(Generic[V]):
    """``(service, node)`` -> value, for ``ttl`` seconds, ``size`` entries at most."""

    def __init__(self, size: int, ttl: float, clock: Callable[[], float]) -> None:
        self.size = size if ttl > 0 else 0
        self.ttl = ttl
        self.clock = clock
        self.entries: OrderedDict[_Key, tuple[float, V]] = OrderedDict()

    def get(self, key: _Key) -> V | None:
        hit = self.entries.get(key)
        if hit is None:
            return None
        if hit[0] > self.clock():
            return hit[1]
        del self.entries[key]
        return None

    def put(self, key: _Key, value: V) -> None:
        if not self.size:
            return
        entries, now = self.entries, self.clock()
        entries.pop(key, None)
        while entries and (len(entries) >= self.size or next(iter(entries.values()))[0] <= now):
            entries.popitem(last=False)
        entries[key] = (now + self.ttl, value)

    def drop_service(self, service: str) -> None:
        for key in [k for k in self.entries if k[0] == service]:
            del self.entries[key]


class _Publish:
    __slots__ = ("future", "item", "max_items", "node", "service")

    def __init__(
        self, service: str, node: str, item: PubSubItem, max_items: int, future: Any
    ) -> None:
        self.service = service
        self.node = node
        self.item = item
        self.max_items = max_items
        self.future: asyncio.Future[list[str]] = future


class SqlPubSubStore:
    def __init__(
        self,
        engine: AsyncEngine,
        *,
        cache_size: int = CACHE_SIZE,
        cache_ttl: float = CACHE_TTL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Use ``engine``. Nodes, affiliations and subscriptions read are kept for
        ``cache_ttl`` seconds, ``cache_size`` of each at most (see the module's docstring)."""
        self._engine = engine
        self._reader = reader(engine)  # transactions that only read
        self._nodes: _Cache[PubSubNode] = _Cache(cache_size, cache_ttl, clock)
        self._affiliations: _Cache[dict[str, str]] = _Cache(cache_size, cache_ttl, clock)
        self._subscriptions: _Cache[tuple[PubSubSubscription, ...]] = _Cache(
            cache_size, cache_ttl, clock
        )
        self._writes = 0  # writes begun or ended: a read that overlapped one is not kept
        # each node's newest item (empty: none), what a last-published-item delivery reads;
        # with its own count of item writes begun or ended
        self._last: _Cache[tuple[PubSubItem, ...]] = _Cache(cache_size, cache_ttl, clock)
        self._item_writes = 0
        # reads under way, by (cache, key), with the write count they started after
        self._flights: dict[tuple[int, _Key], tuple[asyncio.Future[Any], int]] = {}
        self._queue: list[_Publish] = []
        self._writer: asyncio.Task[None] | None = None

    def disable_cache(self) -> None:
        """Read through to the database every time: in a cluster another node writes the
        same nodes, and what this one kept could be stale (access control included)."""
        for cache in (self._nodes, self._affiliations, self._subscriptions, self._last):
            cache.size = 0
            cache.entries.clear()

    def _changed(self, service: str, node: str | None = None) -> None:
        """Drop what a write to ``node`` (every node of ``service`` when None) may change;
        called when the write begins and when it has ended."""
        self._writes += 1
        self._items_changed(service, node)
        for cache in (self._nodes, self._affiliations, self._subscriptions):
            if node is None:
                cache.drop_service(service)
            else:
                cache.entries.pop((service, node), None)

    async def _read_through(
        self,
        cache: _Cache[V],
        key: _Key,
        read: Callable[[], Awaitable[V | None]],
        *,
        items: bool = False,
    ) -> V | None:
        """``cache``'s entry for ``key``, or what ``read()`` returns (kept unless a write
        overlapped the read). Concurrent misses of one key after the same writes share one
        read: thousands of contacts coming online at once cost one query per node."""
        hit = cache.get(key)
        if hit is not None:
            return hit
        writes = self._item_writes if items else self._writes
        flight = (id(cache), key)
        running = self._flights.get(flight)
        if running is not None and running[1] == writes:
            try:
                value: V | None = await asyncio.shield(running[0])
                return value
            except asyncio.CancelledError:
                if not running[0].cancelled():
                    raise  # this caller was cancelled; otherwise the read was: read anew
        future: asyncio.Future[V | None] = asyncio.get_running_loop().create_future()
        self._flights[flight] = (future, writes)
        try:
            value = await read()
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                future.cancel()
            else:
                future.set_exception(exc)
                future.exception()  # those waiting get it; nobody need retrieve it
            raise
        finally:
            if self._flights.get(flight, (None, 0))[0] is future:
                del self._flights[flight]
        future.set_result(value)
        if value is not None and writes == (self._item_writes if items else self._writes):
            cache.put(key, value)
        return value

    def _items_changed(self, service: str, node: str | None) -> None:
        self._item_writes += 1
        if node is None:
            self._last.drop_service(service)
        else:
            self._last.entries.pop((service, node), None)

    @contextlib.asynccontextmanager
    async def _items_writing(self, service: str, node: str) -> AsyncIterator[AsyncConnection]:
        """A transaction that changes ``node``'s items."""
        self._items_changed(service, node)
        try:
            async with self._engine.begin() as conn:
                yield conn
        finally:
            self._items_changed(service, node)

    @contextlib.asynccontextmanager
    async def _writing(
        self, service: str, node: str | None = None
    ) -> AsyncIterator[AsyncConnection]:
        """A transaction that changes ``node`` (or all of ``service``): the caches forget it
        before and after."""
        self._changed(service, node)
        try:
            async with self._engine.begin() as conn:
                yield conn
        finally:
            self._changed(service, node)

    # ------------------------------------------------------------------ nodes
    async def create_node(
        self, service: str, node: str, config: dict[str, Any], owner: str, *, max_nodes: int
    ) -> bool:
        async with self._writing(service, node) as conn:
            await lock_user(conn, _LOCK_CLASS, service, "")
            if await self._node_exists(conn, service, node):
                return False
            count = await conn.scalar(
                select(func.count())
                .select_from(pubsub_nodes)
                .where(pubsub_nodes.c.service == service)
            )
            if int(count or 0) >= max_nodes:
                raise PubSubLimitReached(f"{service} has {max_nodes} nodes")
            await conn.execute(
                insert(pubsub_nodes).values(
                    service=service,
                    node=node,
                    config=json.dumps(config, sort_keys=True),
                    created_at=datetime.now(UTC),
                )
            )
            await conn.execute(
                insert(pubsub_affiliations).values(
                    service=service, node=node, jid=owner, affiliation="owner"
                )
            )
            return True

    async def _node_exists(self, conn: AsyncConnection, service: str, node: str) -> bool:
        found = await conn.scalar(
            select(pubsub_nodes.c.node).where(
                pubsub_nodes.c.service == service, pubsub_nodes.c.node == node
            )
        )
        return found is not None

    async def get_node(self, service: str, node: str) -> PubSubNode | None:
        # only nodes that exist are kept: one made elsewhere is seen at once
        return await self._read_through(
            self._nodes, (service, node), lambda: self._read_node(service, node)
        )

    async def _read_node(self, service: str, node: str) -> PubSubNode | None:
        async with self._reader.begin() as conn:
            row = (
                await conn.execute(
                    select(pubsub_nodes).where(
                        pubsub_nodes.c.service == service, pubsub_nodes.c.node == node
                    )
                )
            ).first()
        return None if row is None else _node(row)

    async def list_nodes(self, service: str) -> list[PubSubNode]:
        async with self._reader.begin() as conn:
            rows = await conn.execute(
                select(pubsub_nodes)
                .where(pubsub_nodes.c.service == service)
                .order_by(pubsub_nodes.c.node)
            )
            return [_node(row) for row in rows]

    async def set_config(self, service: str, node: str, config: dict[str, Any]) -> bool:
        async with self._writing(service, node) as conn:
            result = await conn.execute(
                update(pubsub_nodes)
                .where(pubsub_nodes.c.service == service, pubsub_nodes.c.node == node)
                .values(config=json.dumps(config, sort_keys=True))
            )
            return bool(result.rowcount)

    async def delete_node(self, service: str, node: str) -> bool:
        async with self._writing(service, node) as conn:
            found = await self._node_exists(conn, service, node)
            for table in _NODE_TABLES:
                await conn.execute(
                    delete(table).where(table.c.service == service, table.c.node == node)
                )
            return found

    async def delete_service(self, service: str) -> None:
        async with self._writing(service) as conn:
            for table in _NODE_TABLES:
                await conn.execute(delete(table).where(table.c.service == service))

    # ------------------------------------------------------------------ items
    async def publish(
        self, service: str, node: str, item: PubSubItem, *, max_items: int
    ) -> list[str]:
        """Queued for the writer task, which commits every publish waiting in one
        transaction; returns once this one is committed."""
        future: asyncio.Future[list[str]] = asyncio.get_running_loop().create_future()
        self._queue.append(_Publish(service, node, item, max_items, future))
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._write_queued())
        return await asyncio.shield(future)  # a caller that gives up does not undo the write

    async def drain(self) -> None:
        """Wait until every queued publish is written (before the engine is closed)."""
        while self._writer is not None:
            await asyncio.wait({self._writer})

    async def _write_queued(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue[:BATCH], self._queue[BATCH:]
                try:
                    results = await self._write(batch)
                except Exception as exc:
                    if len(batch) == 1:
                        _answer(batch[0].future, exc)
                        continue
                    for one in batch:  # each alone: one bad item fails alone
                        try:
                            _answer(one.future, (await self._write([one]))[0])
                        except Exception as single:
                            _answer(one.future, single)
                    continue
                for one, pruned in zip(batch, results, strict=True):
                    _answer(one.future, pruned)
        except BaseException as exc:  # cancelled (shutdown): nobody waits forever
            for one in self._queue:
                _answer(one.future, exc if isinstance(exc, Exception) else RuntimeError("stopped"))
            self._queue = []
            raise
        finally:
            self._writer = None

    async def _write(self, batch: list[_Publish]) -> list[list[str]]:
        """One transaction; a few statements for the whole batch, whatever its size."""
        pruned: dict[int, list[str]] = {}
        for one in batch:
            self._items_changed(one.service, one.node)
        try:
            async with self._engine.begin() as conn:
                for part in _one_per_node(batch):
                    await self._write_part(conn, [batch[k] for k in part], part, pruned)
        finally:
            for one in batch:
                self._items_changed(one.service, one.node)
        # committed: each node's newest item is the last one published to it here
        for one in batch:
            self._last.put((one.service, one.node), (one.item,) if one.max_items > 0 else ())
        return [pruned.get(k, []) for k in range(len(batch))]

    @staticmethod
    async def _write_part(
        conn: AsyncConnection,
        part: list[_Publish],
        indexes: list[int],
        pruned: dict[int, list[str]],
    ) -> None:
        """Publishes to distinct nodes: replace the items with the same ids, insert, prune
        each node to its newest ``max_items`` (one statement per distinct ``max_items``)."""
        c = pubsub_items.c
        for service, node in sorted({(one.service, one.node) for one in part}):
            await lock_user(conn, _LOCK_CLASS, service, node)  # in one order: no deadlock
        await conn.execute(
            delete(pubsub_items).where(
                c.service == bindparam("b_service"),
                c.node == bindparam("b_node"),
                c.item_id == bindparam("b_item"),
            ),
            [{"b_service": p.service, "b_node": p.node, "b_item": p.item.id} for p in part],
        )
        await conn.execute(
            insert(pubsub_items),
            [
                {
                    "service": p.service,
                    "node": p.node,
                    "item_id": p.item.id,
                    "publisher": p.item.publisher,
                    "payload": p.item.payload,
                    "published_at": p.item.published_at,
                }
                for p in part
            ],
        )
        by_node = {(p.service, p.node): k for p, k in zip(part, indexes, strict=True)}
        for keep in sorted({max(p.max_items, 0) for p in part}):
            nodes = [(p.service, p.node) for p in part if max(p.max_items, 0) == keep]
            ranked = (
                select(
                    c.id,
                    func.row_number()
                    .over(partition_by=(c.service, c.node), order_by=c.id.desc())
                    .label("newness"),
                )
                .where(tuple_(c.service, c.node).in_(nodes))
                .subquery()
            )
            doomed = select(ranked.c.id).where(ranked.c.newness > keep)
            rows = await conn.execute(
                delete(pubsub_items).where(c.id.in_(doomed)).returning(c.service, c.node, c.item_id)
            )
            for row in rows:
                pruned.setdefault(by_node[(row.service, row.node)], []).append(row.item_id)

    async def get_items(
        self,
        service: str,
        node: str,
        *,
        ids: Sequence[str] | None = None,
        last: int | None = None,
    ) -> list[PubSubItem]:
        if ids is None and last == 1:
            newest = await self._read_through(
                self._last, (service, node), lambda: self._newest(service, node), items=True
            )
            return list(newest or ())
        return await self._get_items(service, node, ids, last)

    async def _newest(self, service: str, node: str) -> tuple[PubSubItem, ...]:
        return tuple(await self._get_items(service, node, None, 1))

    async def _get_items(
        self, service: str, node: str, ids: Sequence[str] | None, last: int | None
    ) -> list[PubSubItem]:
        where = [pubsub_items.c.service == service, pubsub_items.c.node == node]
        async with self._reader.begin() as conn:
            if ids is not None:
                wanted = sorted(set(ids))
                found: list[Any] = []
                for start in range(0, len(wanted), _CHUNK):
                    rows = await conn.execute(
                        select(pubsub_items).where(
                            *where, pubsub_items.c.item_id.in_(wanted[start : start + _CHUNK])
                        )
                    )
                    found.extend(rows)
                found.sort(key=lambda row: row.id)
                return [_item(row) for row in found]
            query = select(pubsub_items).where(*where)
            if last is not None:
                query = query.order_by(pubsub_items.c.id.desc()).limit(max(last, 0))
                rows_desc = list(await conn.execute(query))
                return [_item(row) for row in reversed(rows_desc)]
            rows = await conn.execute(query.order_by(pubsub_items.c.id))
            return [_item(row) for row in rows]

    async def retract(self, service: str, node: str, item_id: str) -> bool:
        async with self._items_writing(service, node) as conn:
            result = await conn.execute(
                delete(pubsub_items).where(
                    pubsub_items.c.service == service,
                    pubsub_items.c.node == node,
                    pubsub_items.c.item_id == item_id,
                )
            )
            return bool(result.rowcount)

    async def purge(self, service: str, node: str) -> None:
        async with self._items_writing(service, node) as conn:
            await conn.execute(
                delete(pubsub_items).where(
                    pubsub_items.c.service == service, pubsub_items.c.node == node
                )
            )

    # ------------------------------------------------------------------ affiliations
    async def set_affiliation(self, service: str, node: str, jid: str, affiliation: str) -> None:
        async with self._writing(service, node) as conn:
            if affiliation == "none":
                await conn.execute(
                    delete(pubsub_affiliations).where(
                        pubsub_affiliations.c.service == service,
                        pubsub_affiliations.c.node == node,
                        pubsub_affiliations.c.jid == jid,
                    )
                )
                return
            await upsert(
                conn,
                pubsub_affiliations,
                {"service": service, "node": node, "jid": jid, "affiliation": affiliation},
                key=("service", "node", "jid"),
            )

    async def affiliations(self, service: str, node: str) -> dict[str, str]:
        found = await self._read_through(
            self._affiliations, (service, node), lambda: self._read_affiliations(service, node)
        )
        return dict(found or {})  # the caller's to change

    async def _read_affiliations(self, service: str, node: str) -> dict[str, str]:
        async with self._reader.begin() as conn:
            rows = await conn.execute(
                select(pubsub_affiliations.c.jid, pubsub_affiliations.c.affiliation).where(
                    pubsub_affiliations.c.service == service, pubsub_affiliations.c.node == node
                )
            )
            return {row.jid: row.affiliation for row in rows}

    async def affiliations_of(self, service: str, jid: str) -> dict[str, str]:
        async with self._reader.begin() as conn:
            rows = await conn.execute(
                select(pubsub_affiliations.c.node, pubsub_affiliations.c.affiliation).where(
                    pubsub_affiliations.c.service == service, pubsub_affiliations.c.jid == jid
                )
            )
            return {row.node: row.affiliation for row in rows}

    # ------------------------------------------------------------------ subscriptions
    async def add_subscription(
        self, service: str, node: str, subscription: PubSubSubscription
    ) -> None:
        async with self._writing(service, node) as conn:
            await upsert(
                conn,
                pubsub_subscriptions,
                {
                    "service": service,
                    "node": node,
                    "jid": subscription.jid,
                    "subid": subscription.subid,
                    "state": subscription.state,
                },
                key=("service", "node", "jid", "subid"),
            )

    async def remove_subscription(self, service: str, node: str, jid: str, subid: str) -> bool:
        async with self._writing(service, node) as conn:
            result = await conn.execute(
                delete(pubsub_subscriptions).where(
                    pubsub_subscriptions.c.service == service,
                    pubsub_subscriptions.c.node == node,
                    pubsub_subscriptions.c.jid == jid,
                    pubsub_subscriptions.c.subid == subid,
                )
            )
            return bool(result.rowcount)

    async def subscriptions(self, service: str, node: str) -> list[PubSubSubscription]:
        found = await self._read_through(
            self._subscriptions, (service, node), lambda: self._read_subscriptions(service, node)
        )
        return list(found or ())

    async def _read_subscriptions(self, service: str, node: str) -> tuple[PubSubSubscription, ...]:
        async with self._reader.begin() as conn:
            rows = await conn.execute(
                select(pubsub_subscriptions)
                .where(
                    pubsub_subscriptions.c.service == service,
                    pubsub_subscriptions.c.node == node,
                )
                .order_by(pubsub_subscriptions.c.jid, pubsub_subscriptions.c.subid)
            )
            return tuple(PubSubSubscription(row.jid, row.subid, row.state) for row in rows)

    async def subscriptions_of(
        self, service: str, jid: str
    ) -> list[tuple[str, PubSubSubscription]]:
        async with self._reader.begin() as conn:
            rows = await conn.execute(
                select(pubsub_subscriptions)
                .where(pubsub_subscriptions.c.service == service, pubsub_subscriptions.c.jid == jid)
                .order_by(pubsub_subscriptions.c.node, pubsub_subscriptions.c.subid)
            )
            return [(row.node, PubSubSubscription(row.jid, row.subid, row.state)) for row in rows]


def _one_per_node(batch: list[_Publish]) -> list[list[int]]:
    """``batch``'s indexes in parts that each name a node once, in order (two publishes
    to one node are written one after the other)."""
    parts: list[list[int]] = []
    seen: list[set[_Key]] = []
    for k, one in enumerate(batch):
        key = (one.service, one.node)
        # after the last part that has this node
        at = next((i + 1 for i in range(len(seen) - 1, -1, -1) if key in seen[i]), 0)
        if at == len(parts):
            parts.append([])
            seen.append(set())
        parts[at].append(k)
        seen[at].add(key)
    return parts


def _answer(future: asyncio.Future[list[str]], result: list[str] | BaseException) -> None:
    if future.done():
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)
