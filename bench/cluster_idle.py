"""Many concurrent idle authenticated sessions on ``salon serve --workers N`` (cluster mode on
Redis and PostgreSQL), and the server's memory per session.

    python -m bench.cluster_idle --workers 6 --sessions 100000 --generators 7

Each process here may open at most 20,000 files, so neither one worker nor one load generator
can hold 100,000 sockets: the sessions spread over the workers (the kernel's SO_REUSEPORT
hash), and the load comes from ``--generators`` processes, each raising its soft open-file
limit to the hard one and connecting from its own source addresses (127.0.<20+g>.1 and .2,
about 28,000 ephemeral ports each). Logins are SCRAM-SHA-1 (4,096 iterations; the accounts
share one salt, so each generator computes PBKDF2 once and the server's work per login is
a few HMACs, as with a client that caches its SaltedPassword), then bind and initial
presence; then the sessions stay silent.

Memory per session is (sum of the workers' RSS with the sessions held, ``--hold`` seconds
after the last login) minus (the same sum before the logins, after a warm-up of a few logins
per worker), divided by the sessions held. ``--workers 1`` runs one process without cluster
mode on the same PostgreSQL, for comparison (at most about 19,000 sessions there). The ramp
is bounded by ``--ramp-limit`` seconds; at the end every generator and server process is
stopped and the schema and Redis keys dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import resource
import tempfile
import time
import uuid
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from bench import client
from bench.client import Counters, LoginSpec
from bench.cluster import (
    POSTGRES_URL,
    config,
    create_accounts,
    drop_redis,
    drop_schema,
    server_pids,
    start,
    stop,
)
from bench.procstat import rss_kib


def _raise_nofile() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 20_000
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return want


async def _hold(
    port: int,
    names: list[str],
    sources: list[str],
    concurrency: int,
    ramp_limit: float,
    presence: bool,
    pipe: Connection,
) -> None:
    spec = LoginSpec(port=port, presence=presence, source_ips=sources, timeout=120)
    counters = Counters()
    conns: list[client.Conn] = []
    failures: list[str] = []
    todo = iter(range(len(names)))
    deadline = time.perf_counter() + ramp_limit

    async def worker() -> None:
        for i in todo:
            if time.perf_counter() > deadline:
                failures.append("ramp time limit")
                return
            for attempt in range(3):
                try:
                    result = await client.login(spec, names[i], counters, i)
                except (OSError, TimeoutError, client.LoginFailed) as exc:
                    if attempt == 2:
                        failures.append(f"{type(exc).__name__}: {str(exc)[:160]}")
                    else:
                        await asyncio.sleep(0.5)
                    continue
                result.conn.mode = client.MODE_DISCARD
                conns.append(result.conn)
                break

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    pipe.send(("held", len(conns), time.perf_counter() - t0, len(failures), failures[:2]))
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, pipe.recv)  # "close"
    open_now = sum(1 for c in conns if not c.closed.done())
    for c in conns:
        if not c.transport.is_closing():
            c.transport.abort()
    await asyncio.sleep(0.2)
    pipe.send(("closed", open_now))


def generator(
    port: int,
    names: list[str],
    sources: list[str],
    concurrency: int,
    ramp_limit: float,
    presence: bool,
    pipe: Connection,
) -> None:
    """One load-generator process (the multiprocessing target)."""
    _raise_nofile()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    try:
        asyncio.run(_hold(port, names, sources, concurrency, ramp_limit, presence, pipe))
    except BaseException as exc:
        with contextlib.suppress(Exception):
            pipe.send(("error", f"{type(exc).__name__}: {exc}"))
        raise


def _rss(pids: list[int]) -> int:
    return sum(rss_kib(pid) for pid in pids)


def _fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def run(
    workers: int,
    sessions: int,
    generators: int,
    concurrency: int,
    ramp_limit: float,
    hold: float,
    presence: bool = True,
    heartbeat_ttl: float | None = 30.0,
) -> dict[str, Any]:
    from bench.cluster import PORT

    _raise_nofile()
    schema = f"salon_bench_{uuid.uuid4().hex[:12]}"
    storage = f"{POSTGRES_URL}{'&' if '?' in POSTGRES_URL else '?'}schema={schema}"
    prefix = f"salonbench:{uuid.uuid4().hex[:8]}:"
    out: dict[str, Any] = {"workers": workers, "sessions_wanted": sessions}
    ctx = multiprocessing.get_context("spawn")
    procs: list[Any] = []
    pipes: list[Connection] = []
    with tempfile.TemporaryDirectory(prefix="salon-cluster-idle-") as tmp:
        folder = Path(tmp)
        try:
            t0 = time.perf_counter()
            asyncio.run(create_accounts(storage, sessions + 50 * workers, "i"))
            print(f"accounts created in {time.perf_counter() - t0:.0f} s", flush=True)
            log = folder / "server.log"
            cfg = config(folder, storage, workers, prefix, heartbeat_ttl, ping_silent_clients=False)
            server = start(cfg, workers, log)
            try:
                pids = server_pids(server, workers)
                # warm-up: a few logins per worker, closed again, so that lazily loaded code
                # and the first allocations are in the baseline
                warm = [f"i{sessions + k}" for k in range(50 * workers)]
                asyncio.run(_warm(PORT, warm))
                time.sleep(3)
                out["rss_before_kib"] = _rss(pids)
                out["load_before"] = os.getloadavg()[0]
                share = -(-sessions // generators)
                t0 = time.perf_counter()
                for g in range(generators):
                    names = [f"i{k}" for k in range(g * share, min(sessions, (g + 1) * share))]
                    sources = [f"127.0.{20 + g}.1", f"127.0.{20 + g}.2"]
                    ours, theirs = ctx.Pipe()
                    proc = ctx.Process(
                        target=generator,
                        args=(PORT, names, sources, concurrency, ramp_limit, presence, theirs),
                        daemon=True,
                    )
                    proc.start()
                    procs.append(proc)
                    pipes.append(ours)
                held = failed = 0
                samples: list[str] = []
                for pipe in pipes:
                    if not pipe.poll(ramp_limit + 120):
                        raise RuntimeError("a generator did not report within the ramp limit")
                    msg = pipe.recv()
                    if msg[0] != "held":
                        raise RuntimeError(f"generator: {msg}")
                    held += msg[1]
                    failed += msg[3]
                    samples += msg[4]
                ramp = time.perf_counter() - t0
                out.update(held=held, failed=failed, failure_sample=samples[:3], ramp_seconds=ramp)
                print(
                    f"{held:,} sessions held after {ramp:.0f} s ({held / ramp:,.0f} logins/s), "
                    f"{failed} failed",
                    flush=True,
                )
                time.sleep(hold)
                out["rss_held_kib"] = _rss(pids)
                out["rss_per_worker_kib"] = [rss_kib(p) for p in pids]
                out["fds_per_worker"] = [_fds(p) for p in pids]
                out["load_held"] = os.getloadavg()[0]
                for pipe in pipes:
                    pipe.send("close")
                still_open = 0
                for pipe in pipes:
                    if pipe.poll(120):
                        msg = pipe.recv()
                        if msg[0] == "closed":
                            still_open += msg[1]
                out["open_at_end"] = still_open
            finally:
                stop(server, 60)
        finally:
            deadline = time.monotonic() + 30
            for proc in procs:
                proc.join(max(0.1, deadline - time.monotonic()))
                if proc.is_alive():
                    proc.kill()
                    proc.join(10)
            with contextlib.suppress(Exception):
                asyncio.run(drop_schema(schema))
            with contextlib.suppress(Exception):
                asyncio.run(drop_redis(prefix))
    if out.get("open_at_end"):
        # per session still open when the RSS was read (the generators count theirs just
        # after it): sessions that ended during the ramp do not count
        out["kib_per_session"] = (out["rss_held_kib"] - out["rss_before_kib"]) / out["open_at_end"]
    return out


async def _warm(port: int, names: list[str]) -> None:
    spec = LoginSpec(port=port, presence=True, timeout=120)
    counters = Counters()
    todo = iter(names)

    async def one() -> None:
        for name in todo:
            result = await client.login(spec, name, counters)
            await client.close(result.conn)

    await asyncio.wait_for(asyncio.gather(*(one() for _ in range(20))), 300)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=6)
    parser.add_argument("--sessions", type=int, default=100_000)
    parser.add_argument("--generators", type=int, default=7)
    parser.add_argument("--concurrency", type=int, default=40)  # logins in flight, each
    parser.add_argument("--ramp-limit", type=float, default=900.0)
    parser.add_argument("--hold", type=float, default=15.0)
    parser.add_argument("--heartbeat-ttl", type=float, default=30.0)  # [cluster], see README
    parser.add_argument(
        "--presence", action=argparse.BooleanOptionalAction, default=True
    )  # initial presence after bind (--no-presence: authenticated and bound only)
    args = parser.parse_args()
    limit = _raise_nofile()
    per_gen = -(-args.sessions // args.generators)
    if per_gen > limit - 200:
        parser.error(f"{per_gen} connections per generator exceed the open-file limit {limit}")
    out = run(
        args.workers,
        args.sessions,
        args.generators,
        args.concurrency,
        args.ramp_limit,
        args.hold,
        args.presence,
        args.heartbeat_ttl,
    )
    for key, value in out.items():
        print(f"{key}: {value}")
    if "kib_per_session" in out:
        print(
            f"\n{out['held']:,} logged in, {out['open_at_end']:,} still open, on "
            f"{args.workers} worker(s): RSS "
            f"{out['rss_before_kib'] / 1024:,.0f} MiB before, {out['rss_held_kib'] / 1024:,.0f} "
            f"MiB held, {out['kib_per_session']:.1f} KiB per session"
        )


if __name__ == "__main__":
    main()
