"""SQL implementation of :class:`~salon.storage.interfaces.PubSubStore`.

Items are ordered by an autoincrement id: a republished item id gets a new row, so it
becomes the newest. Pruning to ``max_items`` is one ``DELETE ... NOT IN (newest N)``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, insert, select, update
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

__all__ = ["SqlPubSubStore"]

_LOCK_CLASS = 0x5A1_0B5B
"""Advisory lock class (PostgreSQL) for one service's node set and one node's items."""

_CHUNK = 500

_NODE_TABLES = (pubsub_items, pubsub_subscriptions, pubsub_affiliations, pubsub_nodes)


def _node(row: Any) -> PubSubNode:
    return PubSubNode(row.service, row.node, json.loads(row.config), row.created_at)


def _item(row: Any) -> PubSubItem:
    return PubSubItem(row.item_id, row.publisher, row.payload, row.published_at)


class SqlPubSubStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._reader = reader(engine)  # transactions that only read

    # ------------------------------------------------------------------ nodes
    async def create_node(
        self, service: str, node: str, config: dict[str, Any], owner: str, *, max_nodes: int
    ) -> bool:
        async with self._engine.begin() as conn:
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
        async with self._engine.begin() as conn:
            result = await conn.execute(
                update(pubsub_nodes)
                .where(pubsub_nodes.c.service == service, pubsub_nodes.c.node == node)
                .values(config=json.dumps(config, sort_keys=True))
            )
            return bool(result.rowcount)

    async def delete_node(self, service: str, node: str) -> bool:
        async with self._engine.begin() as conn:
            found = await self._node_exists(conn, service, node)
            for table in _NODE_TABLES:
                await conn.execute(
                    delete(table).where(table.c.service == service, table.c.node == node)
                )
            return found

    async def delete_service(self, service: str) -> None:
        async with self._engine.begin() as conn:
            for table in _NODE_TABLES:
                await conn.execute(delete(table).where(table.c.service == service))

    # ------------------------------------------------------------------ items
    async def publish(
        self, service: str, node: str, item: PubSubItem, *, max_items: int
    ) -> list[str]:
        where = (pubsub_items.c.service == service, pubsub_items.c.node == node)
        async with self._engine.begin() as conn:
            await lock_user(conn, _LOCK_CLASS, service, node)
            await conn.execute(
                delete(pubsub_items).where(*where, pubsub_items.c.item_id == item.id)
            )
            await conn.execute(
                insert(pubsub_items).values(
                    service=service,
                    node=node,
                    item_id=item.id,
                    publisher=item.publisher,
                    payload=item.payload,
                    published_at=item.published_at,
                )
            )
            newest = (
                select(pubsub_items.c.id)
                .where(*where)
                .order_by(pubsub_items.c.id.desc())
                .limit(max(max_items, 0))
            )
            # Materialise the kept ids in a subquery (MySQL-style LIMIT-in-IN limits do
            # not apply to SQLite or PostgreSQL).
            kept = select(newest.subquery().c.id)
            pruned = await conn.execute(
                select(pubsub_items.c.item_id).where(*where, pubsub_items.c.id.not_in(kept))
            )
            pruned_ids = [row.item_id for row in pruned]
            if pruned_ids:
                await conn.execute(
                    delete(pubsub_items).where(*where, pubsub_items.c.id.not_in(kept))
                )
            return pruned_ids

    async def get_items(
        self,
        service: str,
        node: str,
        *,
        ids: Sequence[str] | None = None,
        last: int | None = None,
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
        async with self._engine.begin() as conn:
            result = await conn.execute(
                delete(pubsub_items).where(
                    pubsub_items.c.service == service,
                    pubsub_items.c.node == node,
                    pubsub_items.c.item_id == item_id,
                )
            )
            return bool(result.rowcount)

    async def purge(self, service: str, node: str) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(
                delete(pubsub_items).where(
                    pubsub_items.c.service == service, pubsub_items.c.node == node
                )
            )

    # ------------------------------------------------------------------ affiliations
    async def set_affiliation(self, service: str, node: str, jid: str, affiliation: str) -> None:
        async with self._engine.begin() as conn:
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
        async with self._engine.begin() as conn:
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
        async with self._engine.begin() as conn:
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
        async with self._reader.begin() as conn:
            rows = await conn.execute(
                select(pubsub_subscriptions)
                .where(
                    pubsub_subscriptions.c.service == service,
                    pubsub_subscriptions.c.node == node,
                )
                .order_by(pubsub_subscriptions.c.jid, pubsub_subscriptions.c.subid)
            )
            return [PubSubSubscription(row.jid, row.subid, row.state) for row in rows]

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
