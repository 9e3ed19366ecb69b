"""Message archive (XEP-0313) store: query time over a large archive, and write cost.

    python -m bench.archive_query [--rows 1000000] [--engines sqlite,postgres]

Fills one user's archive with ``--rows`` items (plus a second user with a tenth as many, so
the owner filter matters) through bulk inserts, then times paged queries through the
ArchiveStore as the mam module issues them: the first page, a page after an item in the
middle, the last page (RSM ``<before/>``), backwards from the middle, a ``with`` filter, a
``start`` filter, and the same first page with the RSM count. Each query runs ``--repeat``
times; the median is reported. Then ``--writes`` single appends (one transaction each, as
the module does per message) are timed: wall time and CPU time of this process (for SQLite
that includes the database engine; for PostgreSQL the server's own CPU is not counted).

PostgreSQL is the test server (``SALON_TEST_POSTGRES_URL``), in a schema dropped afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.schema import DropSchema

from salon.storage import open_storage
from salon.storage.interfaces import ArchiveQuery
from salon.storage.sql import SqlStorage
from salon.storage.sql.archive import to_micros
from salon.storage.sql.engine import to_async_url
from salon.storage.sql.schema import archive

HOST = "bench.example"
USER = "juliet"
PEERS = tuple(f"contact{n}@example.net" for n in range(50))
T0 = datetime(2020, 1, 1, tzinfo=UTC)
POSTGRES_URL = os.environ.get(
    "SALON_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
BATCH = 20_000
STANZA = (
    "<message xmlns='jabber:client' from='contact1@example.net/phone' "
    "to='juliet@bench.example/laptop' type='chat' id='%d'><body>message number %d, "
    "a sentence of ordinary length</body></message>"
)


def uid(user: str, n: int) -> str:
    return f"{user}-{n:09d}"


async def fill(storage: SqlStorage, user: str, rows: int, deadline: float) -> int:
    """Bulk-insert ``rows`` items (1 s apart); returns how many went in before the deadline."""
    done = 0
    base = to_micros(T0)
    while done < rows and time.monotonic() < deadline:
        batch = [
            {
                "host": HOST,
                "username": user,
                "item_id": uid(user, n),
                "ts": base + n * 1_000_000,
                "with_bare": PEERS[n % len(PEERS)],
                "with_resource": "phone",
                "direction": "in" if n % 2 else "out",
                "stanza": STANZA % (n, n),
            }
            for n in range(done, min(rows, done + BATCH))
        ]
        async with storage.engine.begin() as conn:
            await conn.execute(insert(archive), batch)
        done += len(batch)
    if storage.engine.dialect.name == "postgresql":
        # What autovacuum does after a bulk load; SQLite runs without statistics, as the
        # server does (the indexes are chosen so its planner needs none).
        async with storage.engine.begin() as conn:
            await conn.execute(text("ANALYZE archive"))
    return done


async def timed(repeat: int, fn: Callable[[], Awaitable[Any]]) -> float:
    """Median wall milliseconds of ``fn`` over ``repeat`` runs (after one warm-up)."""
    await fn()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        await fn()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


async def run_engine(name: str, url: str, args: argparse.Namespace) -> dict[str, float]:
    base_dir = Path(tempfile.mkdtemp(prefix="salon-archive-bench-"))
    storage = await open_storage(url, base_dir=base_dir)
    assert isinstance(storage, SqlStorage)
    figures: dict[str, float] = {}
    try:
        deadline = time.monotonic() + args.fill_seconds
        start = time.monotonic()
        rows = await fill(storage, USER, args.rows, deadline)
        await fill(storage, "romeo", args.rows // 10, deadline)
        figures["rows"] = rows
        figures["fill_s"] = time.monotonic() - start
        store = storage.archive
        middle = uid(USER, rows // 2)

        async def q(query: ArchiveQuery) -> None:
            page = await store.query(HOST, USER, query)
            assert page.items or query.max == 0

        cases: dict[str, ArchiveQuery] = {
            "first page": ArchiveQuery(max=50),
            "page after middle item": ArchiveQuery(max=50, after=middle),
            "last page (<before/>)": ArchiveQuery(max=50, before=""),
            "page before middle item": ArchiveQuery(max=50, before=middle),
            "with=contact7, last page": ArchiveQuery(
                max=50, before="", with_jid="contact7@example.net"
            ),
            "start=middle time, first page": ArchiveQuery(
                max=50, start=T0 + timedelta(seconds=rows // 2)
            ),
            "ids (3 items)": ArchiveQuery(ids=(uid(USER, 5), middle, uid(USER, rows - 1))),
            "first page + count": ArchiveQuery(max=50, with_count=True),
        }
        for label, query in cases.items():
            figures[f"query ms: {label}"] = await timed(args.repeat, lambda q_=query: q(q_))

        # Write cost: one append per message, one transaction each.
        writes = args.writes
        stanza = STANZA % (0, 0)
        wall = time.perf_counter()
        cpu = time.process_time()
        for _ in range(writes):
            await store.append(
                HOST,
                "writer",
                item_id=secrets.token_urlsafe(12),
                with_jid="romeo@example.net/phone",
                stanza=stanza,
                timestamp=datetime.now(UTC),
                direction="in",
            )
        figures["append wall µs"] = (time.perf_counter() - wall) / writes * 1e6
        figures["append CPU µs (this process)"] = (time.process_time() - cpu) / writes * 1e6
    finally:
        await storage.close()
        shutil.rmtree(base_dir, ignore_errors=True)
    return figures


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--engines", default="sqlite,postgres")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--writes", type=int, default=2000)
    parser.add_argument("--fill-seconds", type=float, default=600.0, help="bound on filling")
    args = parser.parse_args()
    results: dict[str, dict[str, float]] = {}
    for engine in args.engines.split(","):
        if engine == "sqlite":
            results[engine] = await run_engine(engine, "sqlite:///archive-bench.db", args)
            continue
        schema = f"salon_bench_{uuid.uuid4().hex[:12]}"
        sep = "&" if "?" in POSTGRES_URL else "?"
        admin = create_async_engine(to_async_url(POSTGRES_URL)[0])
        try:
            results[engine] = await run_engine(engine, f"{POSTGRES_URL}{sep}schema={schema}", args)
        finally:
            async with admin.begin() as conn:
                await conn.execute(DropSchema(schema, cascade=True, if_exists=True))
            await admin.dispose()
    names = list(results)
    keys = list(next(iter(results.values())))
    print("| figure | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for key in keys:
        cells = [f"{results[n].get(key, float('nan')):,.2f}" for n in names]
        print(f"| {key} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    asyncio.run(main())
