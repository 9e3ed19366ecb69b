"""Messages per second and logins per second through Salon as one process and as
``salon serve --workers N`` (cluster mode on Redis and PostgreSQL), in one interleaved run.
The archive (MAM) is off in both: on PostgreSQL it would make the figure the disk's commit
rate.

    python -m bench.cluster --workers 1,2 --pairs 40 --seconds 8 --rounds 2

``--scenario messages,logins`` (the default: both, on the same server start) picks what runs.
Logins: ``--login-concurrency`` clients in a closed loop each connect, authenticate with
SCRAM-SHA-1, bind, send initial presence and end the stream, and start the next login while
the server closes the connection (as ``python -m bench run --scenario login`` does), over a
pool of ``--login-pool`` accounts that a warm-up has logged in first.

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
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from bench import client
from bench.client import MODE_MESSAGES, MSG_SUFFIX, Counters, LoginSpec, login, message_prefix
from bench.procstat import cpu_seconds
from bench.servers import make_certificate, wait_port
from salon.config import DEFAULT_MODULES

POSTGRES_URL = os.environ.get(
    "SALON_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("SALON_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
PORT = 15322


def config(
    folder: Path,
    storage: str,
    workers: int,
    prefix: str,
    heartbeat_ttl: float | None = None,
    ping_silent_clients: bool = True,
) -> Path:
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
    if not ping_silent_clients:  # the idle generators do not answer XEP-0199 pings
        text += "\n[modules.ping]\ninterval = 0\n"
    if workers > 1:
        text += f"""
[cluster]
redis = "{REDIS_URL}"
node = "bench"
key_prefix = "{prefix}"
"""
        if heartbeat_ttl is not None:
            text += f"heartbeat_ttl = {heartbeat_ttl}\n"
    path = folder / f"salon-{workers}.toml"
    path.write_text(text)
    return path


async def create_accounts(storage_url: str, count: int, prefix: str = "b") -> None:
    """Accounts ``<prefix>0`` … with password ``pw``, inserted in bulk (100,000 take seconds).
    They share one SCRAM-SHA-1 salt (4,096 iterations): a load generator then computes
    PBKDF2 once, as a client caches it; the server's work per login is the same as with a
    salt per account (it never runs PBKDF2 for SCRAM)."""
    from sqlalchemy import insert

    from salon.auth.credentials import make_credentials
    from salon.storage import open_storage
    from salon.storage.sql.schema import account_credentials, accounts

    storage = await open_storage(storage_url)
    try:
        creds = make_credentials("pw")
        now = datetime.now(UTC)
        engine = storage.engine  # type: ignore[attr-defined]
        for start in range(0, count, 5000):
            names = [f"{prefix}{i}" for i in range(start, min(count, start + 5000))]
            async with engine.begin() as conn:
                await conn.execute(
                    insert(accounts),
                    [{"host": "localhost", "username": n, "created_at": now} for n in names],
                )
                await conn.execute(
                    insert(account_credentials),
                    [
                        {
                            "host": "localhost",
                            "username": n,
                            "hash_name": c.hash_name,
                            "salt": c.salt,
                            "iterations": c.iterations,
                            "stored_key": c.stored_key,
                            "server_key": c.server_key,
                        }
                        for n in names
                        for c in creds
                    ],
                )
    finally:
        await storage.close()


async def drop_redis(prefix: str) -> None:
    """Delete the keys the cluster made under ``prefix``."""
    from redis.asyncio import Redis

    redis = Redis.from_url(REDIS_URL)
    try:
        keys = [k async for k in redis.scan_iter(match=f"{prefix}*", count=1000)]
        for i in range(0, len(keys), 1000):
            await redis.delete(*keys[i : i + 1000])
    finally:
        await redis.aclose()


def server_pids(proc: subprocess.Popen[bytes], workers: int) -> list[int]:
    """The processes that serve: the one process, or the supervisor's worker children."""
    if workers <= 1:
        return [proc.pid]
    path = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
    return [int(p) for p in path.read_text().split()]


def server_cpu(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):
            total += cpu_seconds(pid)
    return total


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
    receiving = []
    for i in range(pairs):
        got = await login(spec, f"b{2 * i + 1}", receivers[i], i)
        got.conn.mode = MODE_MESSAGES
        receiving.append(got.conn)
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
    for conn in [*sends, *receiving]:
        conn.mode = client.MODE_DISCARD
        conn.transport.abort()
    return delivered / elapsed


async def measure_logins(
    pids: list[int], concurrency: int, seconds: float, pool: int, prefix: str = "l"
) -> tuple[float, float, int]:
    """(logins/s, server CPU ms per login, failures) over ``seconds`` of a closed loop of
    ``concurrency`` clients, after a warm-up that logs every account of ``pool`` in twice
    (each worker keeps its own account cache, and connections land on workers at random)."""
    from bench.scenarios import SOURCE_IPS

    spec = LoginSpec(port=PORT, presence=True, source_ips=SOURCE_IPS)
    counters = Counters()
    pool = max(pool, 2 * concurrency)  # no user's previous session is still closing
    closing: list[asyncio.Future[None]] = []
    failures: list[str] = []
    done = 0

    async def worker(w: int, stop_at: float, record: bool, at_least: int = 0) -> None:
        nonlocal done
        k = 0
        while (time.perf_counter() < stop_at or k < at_least) and k < 100_000:
            name = f"{prefix}{(w + k * concurrency) % pool}"
            k += 1
            try:
                r = await login(spec, name, counters, w + k)
                closing.append(asyncio.ensure_future(client.close(r.conn)))
            except (OSError, TimeoutError, client.LoginFailed) as exc:
                failures.append(f"{type(exc).__name__}: {str(exc)[:200]}")
                await asyncio.sleep(0.05)
                continue
            if record and time.perf_counter() <= stop_at:
                done += 1

    passes = 2 * -(-pool // concurrency)
    warm_until = time.perf_counter() + 1.0
    await asyncio.wait_for(
        asyncio.gather(*(worker(w, warm_until, False, passes) for w in range(concurrency))),
        300,
    )
    failures.clear()
    cpu0, t0 = server_cpu(pids), time.perf_counter()
    stop_at = t0 + seconds
    await asyncio.gather(*(worker(w, stop_at, True) for w in range(concurrency)))
    cpu1, t1 = server_cpu(pids), time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*closing), 60)
    if failures:
        print(f"  {len(failures)} failed logins, e.g. {failures[0]}", flush=True)
    rate = done / (t1 - t0)
    return rate, (cpu1 - cpu0) / done * 1000 if done else float("nan"), len(failures)


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


def stop(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """SIGTERM, and SIGKILL after ``timeout`` seconds, to the server and (with --workers)
    to every worker, so that no worker outlives a supervisor killed first."""
    children: list[int] = []
    with contextlib.suppress(OSError):
        children = server_pids(proc, 2)
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
    for pid in children:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--scenario", default="messages,logins")
    parser.add_argument("--pairs", type=int, default=40)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--window", type=int, default=20)
    parser.add_argument("--login-concurrency", type=int, default=50)
    parser.add_argument("--login-pool", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    counts = [int(w) for w in args.workers.split(",")]
    scenarios = [s for s in args.scenario.split(",") if s]
    unknown = set(scenarios) - {"messages", "logins"}
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    schema = f"salon_bench_{uuid.uuid4().hex[:12]}"
    storage = f"{POSTGRES_URL}{'&' if '?' in POSTGRES_URL else '?'}schema={schema}"
    prefix = f"salonbench:{uuid.uuid4().hex[:8]}:"
    rates: dict[str, dict[int, list[float]]] = {s: {w: [] for w in counts} for s in scenarios}
    login_cpu: dict[int, list[float]] = {w: [] for w in counts}
    others: list[float] = []
    with tempfile.TemporaryDirectory(prefix="salon-cluster-bench-") as tmp:
        folder = Path(tmp)
        asyncio.run(create_accounts(storage, 2 * args.pairs, "b"))
        if "logins" in scenarios:
            pool = max(args.login_pool, 2 * args.login_concurrency)
            asyncio.run(create_accounts(storage, pool, "l"))
        try:
            for r in range(args.rounds):
                for workers in counts:  # interleaved: a noisy minute hits both
                    log = folder / f"server-{workers}.log"
                    load0 = os.getloadavg()[0]
                    proc = start(config(folder, storage, workers, prefix), workers, log)
                    try:
                        pids = server_pids(proc, workers)
                        if "messages" in scenarios:
                            rate = asyncio.run(measure(args.pairs, args.seconds, args.window))
                            rates["messages"][workers].append(rate)
                            print(
                                f"round {r + 1} workers={workers}: {rate:,.0f} messages/s",
                                flush=True,
                            )
                        if "logins" in scenarios:
                            rate, cpu_ms, _failed = asyncio.run(
                                measure_logins(
                                    pids, args.login_concurrency, args.seconds, args.login_pool
                                )
                            )
                            rates["logins"][workers].append(rate)
                            login_cpu[workers].append(cpu_ms)
                            print(
                                f"round {r + 1} workers={workers}: {rate:,.0f} logins/s, "
                                f"{cpu_ms:.2f} ms server CPU per login",
                                flush=True,
                            )
                    finally:
                        stop(proc)
                    others.append(max(load0, os.getloadavg()[0]))
        finally:
            with contextlib.suppress(Exception):
                asyncio.run(drop_schema(schema))
            with contextlib.suppress(Exception):
                asyncio.run(drop_redis(prefix))
    print(f"\nload average (1 min) during the runs: {min(others):.1f} to {max(others):.1f}")
    for scenario in scenarios:
        unit = "messages/s" if scenario == "messages" else "logins/s"
        base = statistics.median(rates[scenario][counts[0]])
        print(f"\n| workers | {unit} (median of {args.rounds}) | rounds | vs {counts[0]} |")
        print("|---|---|---|---|")
        for workers in counts:
            values = rates[scenario][workers]
            med = statistics.median(values)
            each = ", ".join(f"{v:,.0f}" for v in values)
            extra = ""
            if scenario == "logins":
                extra = f" ({statistics.median(login_cpu[workers]):.2f} ms CPU per login)"
            print(f"| {workers} | {med:,.0f}{extra} | {each} | {med / base:.2f}x |")


if __name__ == "__main__":
    main()
