"""Messages per second through Salon as one process and as ``salon serve --workers N``
(cluster mode on Redis and PostgreSQL), in one interleaved run. The archive (MAM) is off in
both: on PostgreSQL it would make the figure the disk's commit rate.

    python -m bench.cluster --workers 1,2 --pairs 40 --seconds 8 --rounds 2

``1`` is a single process without cluster mode (the baseline); N > 1 is ``--workers N``
with ``[cluster]``. Both use the same PostgreSQL (a fresh schema per run) so storage is not
the difference. Each pair is a sender and a receiver; a sender keeps ``--window`` messages
in flight to its receiver (closed loop), so the figure is what the server sustains, not what
the generator offers. Connections land on workers as the kernel spreads them, so in the
cluster about half the messages cross between workers through Redis.

Needs Redis at 127.0.0.1:6379 and PostgreSQL at 127.0.0.1:5432 (database ``test``).
The generator runs in this process and takes CPU from the same cores: on a 2-core machine
the ratio is a lower bound of what 2 workers give on dedicated cores.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from bench.client import MODE_MESSAGES, MSG_SUFFIX, Counters, LoginSpec, login, message_prefix
from bench.servers import make_certificate, wait_port
from salon.config import DEFAULT_MODULES

POSTGRES_URL = os.environ.get(
    "SALON_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("SALON_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
PORT = 15322


def config(folder: Path, storage: str, workers: int, prefix: str) -> Path:
    cert, key, _ = make_certificate(folder / "certs")
    # Without the archive: with it each message is two PostgreSQL commits, and the figure
    # would be the disk's fsync rate, not routing (the single-process bench uses SQLite).
    modules = json.dumps([m for m in DEFAULT_MODULES if m != "mam"])
    text = f"""
[server]
data_dir = "{folder}"
storage = "{storage}"
log_level = "warning"

[c2s]
interfaces = ["127.0.0.1"]
port = {PORT}
direct_tls_enabled = false
require_encryption = false
idle_timeout = 3600.0

[http]
enabled = false

[s2s]
enabled = false

[hosts."localhost"]
certificate = "{cert}"
key = "{key}"

[modules]
enabled = {modules}
"""
    if workers > 1:
        text += f"""
[cluster]
redis = "{REDIS_URL}"
node = "bench"
key_prefix = "{prefix}"
"""
    path = folder / f"salon-{workers}.toml"
    path.write_text(text)
    return path


async def create_accounts(storage_url: str, count: int) -> None:
    from salon.auth.credentials import make_credentials
    from salon.storage import open_storage

    storage = await open_storage(storage_url)
    try:
        creds = make_credentials("pw")
        for i in range(count):
            await storage.accounts.create("localhost", f"b{i}", creds)
    finally:
        await storage.close()


async def drop_schema(schema: str) -> None:
    from sqlalchemy.ext.asyncio import create_async_engine
    from sqlalchemy.schema import DropSchema

    from salon.storage.sql.engine import to_async_url

    engine = create_async_engine(to_async_url(POSTGRES_URL)[0])
    async with engine.begin() as conn:
        await conn.execute(DropSchema(schema, cascade=True, if_exists=True))
    await engine.dispose()


async def measure(pairs: int, seconds: float, window: int) -> float:
    """Messages delivered per second over ``seconds`` after a one-second warm-up."""
    spec = LoginSpec(port=PORT, presence=True)
    receivers = [Counters() for _ in range(pairs)]
    sends = []
    for i in range(pairs):
        got = await login(spec, f"b{2 * i + 1}", receivers[i], i)
        got.conn.mode = MODE_MESSAGES
        sender = await login(spec, f"b{2 * i}", Counters(), i)
        sender.conn.mode = MODE_MESSAGES
        sends.append(sender.conn)
    await asyncio.sleep(0.5)
    prefixes = [message_prefix(f"b{2 * i + 1}@localhost/bench") for i in range(pairs)]
    sent = [0] * pairs
    stop = False

    async def pump(i: int) -> None:
        conn, counter, prefix = sends[i], receivers[i], prefixes[i]
        while not stop:
            while sent[i] - counter.messages < window:
                stamp = str(time.perf_counter_ns() // 1000).rjust(16, "0").encode()
                conn.transport.write(prefix + stamp + MSG_SUFFIX)
                sent[i] += 1
            await asyncio.sleep(0.001)

    tasks = [asyncio.create_task(pump(i)) for i in range(pairs)]
    await asyncio.sleep(1.0)
    start_count = sum(c.messages for c in receivers)
    started = time.perf_counter()
    await asyncio.sleep(seconds)
    delivered = sum(c.messages for c in receivers) - start_count
    elapsed = time.perf_counter() - started
    stop = True
    for task in tasks:
        task.cancel()
    for counter in receivers:
        if counter.closed:
            raise RuntimeError("a connection was closed during the run")
    return delivered / elapsed


def start(path: Path, workers: int, log: Path) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "salon", "serve", "-c", str(path)]
    if workers > 1:
        command += ["--workers", str(workers)]
    proc = subprocess.Popen(command, stdout=log.open("ab"), stderr=subprocess.STDOUT)
    wait_port(PORT, proc, 60, log)
    if workers > 1:  # every worker listening
        deadline = time.time() + 60
        while log.read_text().count("listening: c2s") < workers and time.time() < deadline:
            time.sleep(0.1)
    return proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--pairs", type=int, default=40)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--window", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    counts = [int(w) for w in args.workers.split(",")]
    schema = f"salon_bench_{uuid.uuid4().hex[:12]}"
    storage = f"{POSTGRES_URL}{'&' if '?' in POSTGRES_URL else '?'}schema={schema}"
    prefix = f"salonbench:{uuid.uuid4().hex[:8]}:"
    results: dict[int, list[float]] = {w: [] for w in counts}
    with tempfile.TemporaryDirectory(prefix="salon-cluster-bench-") as tmp:
        folder = Path(tmp)
        asyncio.run(create_accounts(storage, 2 * args.pairs))
        try:
            for _ in range(args.rounds):
                for workers in counts:  # interleaved: a noisy minute hits both
                    log = folder / f"server-{workers}.log"
                    proc = start(config(folder, storage, workers, prefix), workers, log)
                    try:
                        rate = asyncio.run(measure(args.pairs, args.seconds, args.window))
                    finally:
                        stop(proc)
                    results[workers].append(rate)
                    print(f"workers={workers}: {rate:,.0f} messages/s", flush=True)
        finally:
            with contextlib.suppress(Exception):
                asyncio.run(drop_schema(schema))
    base = max(results[counts[0]])
    print(f"\n| workers | messages/s (best of {args.rounds}) | vs {counts[0]} |")
    print("|---|---|---|")
    for workers in counts:
        best = max(results[workers])
        print(f"| {workers} | {best:,.0f} | {best / base:.2f}x |")


if __name__ == "__main__":
    main()
