"""The scenarios: login, idle, messages, presence and limit.

Each takes a :class:`~bench.servers.ServerUnderTest` (started and stopped here, so that each
measurement starts from a fresh process) and a :class:`Plan`, and returns a :class:`Result`:
figures keyed by a stable name, plus notes and per-step details. Every scenario reports the
server's CPU time per unit of work (read from /proc before and after), which stays comparable
when the machine is noisy, and the generator's own CPU share, flagged when the generator
itself was the bottleneck.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import client
from bench.client import Conn, Counters, LoginSpec
from bench.procstat import CpuMeter, CpuSample, others_share
from bench.servers import (
    GENERATOR_CPU,
    HOST,
    Population,
    ServerUnderTest,
    presence_user,
    ring_contacts,
    user,
)

SOURCE_IPS = [f"127.0.0.{i}" for i in range(2, 12)]
GENERATOR_SATURATED = 0.90  # generator CPU share above which it may be the bottleneck
PASS_DELIVERED = 0.95  # a step is sustained when >= 95% of what was sent arrived ...
PASS_P99_MS = 500.0  # ... with a p99 latency under this ...
PASS_P50_MS = 50.0  # ... and a median under this (above it, messages are queueing up)


@dataclass
class Plan:
    """Sizes and durations. ``full()`` is the real comparison, ``quick()`` a smoke run."""

    login_concurrency: int = 50
    login_seconds: float = 8.0
    login_pool: int = 1000
    login_warmup: float = 1.0
    settle: float = 1.0  # pauses between phases, for stragglers and lazy work
    quiet: float = 0.5  # no delivery for this long means a burst is over
    idle_sizes: tuple[int, ...] = (1000, 10000, 50000)
    idle_tls_sizes: tuple[int, ...] = (10000,)
    idle_concurrency: int = 100
    idle_settle: float = 12.0  # > Salon's 10 s: idle streams have hibernated their parsers
    msg_users: int = 1000
    step_seconds: float = 6.0
    grace_seconds: float = 1.0
    start_rate: float = 2000.0
    rate_factor: float = 1.5
    max_steps: int = 14
    bisect_steps: int = 2
    presence_users: int = 1000
    roster_size: int = 50
    presence_rounds: int = 3
    storm_chatters: int = 100  # already online, chatting while the storm's users log in
    storm_msg_rate: float = 100.0  # their messages/s
    storm_baseline: float = 3.0  # seconds of chat measured before the storm
    profile_seconds: float = 10.0
    profile_dir: Path | None = None
    native_profile: bool = False  # py-spy --native: C frames too (GC, syscalls); pauses Salon
    tick: float = 0.005
    groupchat_sizes: tuple[int, ...] = (10, 100, 1000)
    groupchat_start_rate: float = 1000.0  # deliveries/s
    groupchat_max_steps: int = 12
    soak_sessions: int = 10000
    soak_seconds: float = 600.0
    soak_warmup: float = 120.0  # RSS growth is measured from here to the end
    soak_churn: float = 0.01  # of the sessions log out and back in every second
    soak_msg_rate: float = 500.0  # chat messages/s between random online users
    soak_presence_rate: float = 200.0  # presence stanzas/s (directed, and broadcast changes)
    soak_sample: float = 5.0  # seconds between RSS samples

    @classmethod
    def full(cls) -> Plan:
        return cls()

    @classmethod
    def quick(cls) -> Plan:
        return cls(
            login_concurrency=8,
            login_seconds=2.0,
            login_pool=100,
            idle_sizes=(100,),
            idle_tls_sizes=(100,),
            idle_settle=1.0,
            msg_users=100,
            step_seconds=2.0,
            grace_seconds=0.5,
            start_rate=500.0,
            rate_factor=2.0,
            max_steps=4,
            bisect_steps=0,
            presence_users=100,
            roster_size=50,
            presence_rounds=1,
            storm_chatters=50,
            storm_msg_rate=50.0,
            storm_baseline=1.0,
            profile_seconds=0.0,
            groupchat_sizes=(10, 100),
            groupchat_max_steps=4,
            soak_sessions=1000,
            soak_seconds=60.0,
            soak_warmup=20.0,
        )

    @classmethod
    def tiny(cls) -> Plan:
        """For the smoke test: seconds in all, numbers meaningless."""
        return cls(
            login_concurrency=2,
            login_seconds=0.3,
            login_warmup=0.1,
            settle=0.1,
            quiet=0.1,
            login_pool=4,
            idle_sizes=(5,),
            idle_tls_sizes=(),
            idle_concurrency=5,
            idle_settle=0.1,
            msg_users=4,
            step_seconds=0.3,
            grace_seconds=0.2,
            start_rate=100.0,
            max_steps=1,
            bisect_steps=0,
            presence_users=6,
            roster_size=4,
            presence_rounds=1,
            storm_chatters=4,
            storm_msg_rate=50.0,
            storm_baseline=0.3,
            profile_seconds=0.0,
            groupchat_sizes=(3,),
            groupchat_start_rate=100.0,
            groupchat_max_steps=1,
            soak_sessions=20,
            soak_seconds=3.0,
            soak_warmup=1.0,
            soak_msg_rate=40.0,
            soak_presence_rate=20.0,
            soak_sample=0.5,
        )

    def population(self) -> Population:
        users = max(
            [
                self.login_pool,
                self.msg_users,
                self.login_concurrency,
                self.storm_chatters,
                *self.idle_sizes,
                *self.idle_tls_sizes,
                *self.groupchat_sizes,
                self.soak_sessions,
            ]
        )
        return Population(users, self.presence_users, self.roster_size)


@dataclass
class Figure:
    label: str
    value: float
    higher_is_better: bool
    fmt: str = "{:,.0f}"


@dataclass
class Result:
    figures: dict[str, Figure] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def add(self, key: str, label: str, value: float, higher: bool, fmt: str = "{:,.0f}") -> None:
        self.figures[key] = Figure(label, value, higher, fmt)


def percentile(sorted_values: list[float] | list[int], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return float(sorted_values[min(len(sorted_values) - 1, int(q * (len(sorted_values) - 1)))])


def cpu_share(wall: float, cpu: float) -> float:
    return cpu / wall if wall > 0 else 0.0


async def login_many(
    spec: LoginSpec,
    names: list[str],
    counters: Counters,
    concurrency: int,
    deadline: float = 900.0,
) -> list[Conn]:
    """Log ``names`` in with ``concurrency`` parallel workers; every one must succeed."""
    conns: list[Conn | None] = [None] * len(names)
    order = iter(range(len(names)))

    async def worker() -> None:
        for i in order:
            for attempt in range(3):
                try:
                    conns[i] = (await client.login(spec, names[i], counters, i)).conn
                    break
                except (OSError, TimeoutError, client.LoginFailed):
                    if attempt == 2:
                        raise
                    await asyncio.sleep(0.5)

    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(concurrency))), deadline)
    return [c for c in conns if c is not None]


async def close_all(conns: list[Conn], concurrency: int) -> None:
    """End every stream (``</stream:stream>``) and wait for the server to close each one,
    ``concurrency`` at a time."""
    todo = iter(conns)

    async def closer() -> None:
        for c in todo:
            await client.close(c, timeout=30.0)

    await asyncio.gather(*(closer() for _ in range(concurrency)))


def abort_all(conns: list[Conn]) -> None:
    for c in conns:
        c.mode = client.MODE_DISCARD
        if c.transport is not None and not c.transport.is_closing():
            c.transport.abort()


# ------------------------------------------------------------------------------------------
# login


LOGIN_VARIANTS = (
    ("scram", "SCRAM-SHA-1", False, "SCRAM-SHA-1"),
    ("scram_tls", "SCRAM-SHA-1", True, "SCRAM-SHA-1 + STARTTLS"),
    ("plain_tls", "PLAIN", True, "PLAIN + STARTTLS"),
)


async def _login_variant(server: ServerUnderTest, plan: Plan, mech: str, tls: bool) -> dict:
    spec = LoginSpec(port=server.port, tls=tls, mechanism=mech, source_ips=SOURCE_IPS)
    counters = Counters()
    meter = CpuMeter(server.pid)
    times: list[float] = []
    failures: list[str] = []
    done = 0
    pool = max(plan.login_pool, plan.login_concurrency)
    closing: list[asyncio.Future[None]] = []

    async def worker(w: int, stop_at: float, record: bool, at_least: int = 0) -> None:
        nonlocal done
        k = 0
        while (time.perf_counter() < stop_at or k < at_least) and k < 200_000:
            name = user((w + k * plan.login_concurrency) % pool)
            k += 1
            try:
                r = await client.login(spec, name, counters, w + k)
                # the close runs on while the next login starts: a server that is slow to
                # close its side must not look slow to log in
                closing.append(asyncio.ensure_future(client.close(r.conn)))
            except (OSError, TimeoutError, client.LoginFailed) as exc:
                failures.append(f"{type(exc).__name__}: {str(exc)[:200]}")
                await asyncio.sleep(0.05)
                continue
            if record and time.perf_counter() <= stop_at:
                times.append(r.bound - r.started)
                done += 1

    # warm-up: code paths, caches, (for TLS) the generator's context, and one login per
    # account of the pool, so that the generator has every account's SaltedPassword (one
    # PBKDF2 per salt, as a client caches it) before anything is measured
    rounds = -(-pool // plan.login_concurrency)
    await asyncio.gather(
        *(
            worker(w, time.perf_counter() + plan.login_warmup, False, rounds)
            for w in range(plan.login_concurrency)
        )
    )
    failures.clear()
    before = meter.sample()
    stop_at = time.perf_counter() + plan.login_seconds
    await asyncio.gather(*(worker(w, stop_at, True) for w in range(plan.login_concurrency)))
    after = meter.sample()
    await asyncio.gather(*closing)
    wall, server_cpu, gen_cpu = CpuMeter.delta(before, after)
    times.sort()
    return {
        "rate": done / plan.login_seconds,
        "p50": percentile(times, 0.50) * 1000,
        "p99": percentile(times, 0.99) * 1000,
        "cpu_ms": server_cpu / done * 1000 if done else float("nan"),
        "server_share": cpu_share(wall, server_cpu),
        "generator_share": cpu_share(wall, gen_cpu),
        "logins": done,
        "failures": len(failures),
        "failure_sample": failures[:3],
        "others": others_share(before, after),
    }


async def scenario_login(server: ServerUnderTest, plan: Plan) -> Result:
    result = Result()
    server.start()
    try:
        for key, mech, tls, label in LOGIN_VARIANTS:
            d = await _login_variant(server, plan, mech, tls)
            result.details[key] = d
            result.add(f"login.{key}.rate", f"login {label}: sessions/s", d["rate"], True)
            result.add(
                f"login.{key}.p50", f"login {label}: time-to-bound p50 (ms)", d["p50"], False,
                "{:,.1f}",
            )  # fmt: skip
            result.add(
                f"login.{key}.p99", f"login {label}: time-to-bound p99 (ms)", d["p99"], False,
                "{:,.1f}",
            )  # fmt: skip
            result.add(
                f"login.{key}.cpu", f"login {label}: server CPU ms per session", d["cpu_ms"],
                False, "{:,.2f}",
            )  # fmt: skip
            result.add(
                f"login.{key}.per_core",
                f"login {label}: sessions per CPU-second (1000 ÷ CPU ms; noise-proof)",
                1000 / d["cpu_ms"] if d["cpu_ms"] else float("nan"), True,
            )  # fmt: skip
            note = (
                f"login {label}: {d['logins']} logins by {plan.login_concurrency} clients in "
                f"{plan.login_seconds:g}s, server CPU {d['server_share']:.0%}, generator CPU "
                f"{d['generator_share']:.0%}, {_noise(d['others'])}"
            )
            if d["failures"]:
                note += f", {d['failures']} failed (e.g. {d['failure_sample'][0]})"
            if d["generator_share"] >= GENERATOR_SATURATED:
                note += " — GENERATOR SATURATED: the rate is a lower bound"
            result.notes.append(note)
        profiler = Profiler(server, plan, "login")
        if profiler.enabled:
            print("    profiling Salon with py-spy during SCRAM-SHA-1 logins", flush=True)
            await profiler.start()
            profile_plan = Plan(**{**plan.__dict__, "login_seconds": plan.profile_seconds})
            await _login_variant(server, profile_plan, "SCRAM-SHA-1", False)
            result.details["profile"] = await profiler.stop()
            result.details["profile_threads"] = profiler.thread_cpu
    finally:
        server.stop()
    return result


# ------------------------------------------------------------------------------------------
# idle


async def _idle_series(
    server: ServerUnderTest, plan: Plan, sizes: tuple[int, ...], tls: bool
) -> list[dict]:
    """One fresh server; log sessions in up to each size in turn (growing, never closing)
    and measure RSS against the baseline taken before the first session."""
    server.start()
    conns: list[Conn] = []
    out = []
    try:
        spec = LoginSpec(port=server.port, tls=tls, source_ips=SOURCE_IPS, timeout=120)
        counters = Counters()
        # one session in and out first, so lazily loaded code is not counted per session
        warm = await client.login(spec, user(0), counters)
        await client.close(warm.conn)
        await asyncio.sleep(2 * plan.settle)
        meter = CpuMeter(server.pid)
        rss_before = server.rss_kib()
        for size in sorted(sizes):
            have = len(conns)
            before = meter.sample()
            conns += await login_many(
                spec, [user(i) for i in range(have, size)], counters, plan.idle_concurrency
            )
            after = meter.sample()
            await asyncio.sleep(plan.idle_settle)
            rss_after = server.rss_kib()
            open_now = sum(1 for c in conns if not c.closed.done())
            if open_now < len(conns):
                raise RuntimeError(f"the server closed {len(conns) - open_now} idle sessions")
            wall, server_cpu, gen_cpu = CpuMeter.delta(before, after)
            added = size - have
            out.append(
                {
                    "size": size,
                    "sessions": len(conns),
                    "rss_before_kib": rss_before,
                    "rss_after_kib": rss_after,
                    "kib_per_session": (rss_after - rss_before) / size,
                    "login_rate": added / wall,
                    "cpu_ms": server_cpu / added * 1000,
                    "generator_share": cpu_share(wall, gen_cpu),
                    "others": others_share(before, after),
                }
            )
            print(
                f"    {server.name}: {size} idle{' STARTTLS' if tls else ''} sessions, "
                f"{out[-1]['kib_per_session']:.1f} KiB each",
                flush=True,
            )
        if out:
            # mass disconnect: every client ends its stream and the server closes; then how
            # much of what the sessions took does the process keep?
            t0 = time.perf_counter()
            await close_all(conns, plan.idle_concurrency * 5)
            closed_in = time.perf_counter() - t0
            conns = []
            await asyncio.sleep(plan.idle_settle)
            out[-1]["rss_closed_kib"] = server.rss_kib()
            out[-1]["close_seconds"] = closed_in
            print(
                f"    {server.name}: RSS {rss_before:,} KiB before, {out[-1]['rss_after_kib']:,} "
                f"held, {out[-1]['rss_closed_kib']:,} after closing them all",
                flush=True,
            )
    finally:
        abort_all(conns)
        await asyncio.sleep(0.2)
        server.stop()
    return out


async def scenario_idle(server: ServerUnderTest, plan: Plan) -> Result:
    result = Result()
    runs = []
    for sizes, tls in ((plan.idle_sizes, False), (plan.idle_tls_sizes, True)):
        if sizes:
            runs += [(d, tls) for d in await _idle_series(server, plan, sizes, tls)]
    for d, tls in runs:
        size = d["size"]
        tag = f"{size // 1000}k" if size >= 1000 and size % 1000 == 0 else str(size)
        key = f"idle.{'tls.' if tls else ''}{size}"
        kind = " STARTTLS" if tls else ""
        result.details[key] = d
        result.add(
            f"{key}.rss", f"idle {tag}{kind}: server RSS KiB per session", d["kib_per_session"],
            False, "{:,.1f}",
        )  # fmt: skip
        result.add(
            f"{key}.cpu", f"idle {tag}{kind}: server CPU ms per session logged in", d["cpu_ms"],
            False, "{:,.2f}",
        )  # fmt: skip
        if "rss_closed_kib" in d:
            result.add(
                f"{key}.rss_before", f"idle {tag}{kind}: server RSS MiB before login",
                d["rss_before_kib"] / 1024, False, "{:,.1f}",
            )  # fmt: skip
            result.add(
                f"{key}.rss_held", f"idle {tag}{kind}: server RSS MiB with the sessions held",
                d["rss_after_kib"] / 1024, False, "{:,.1f}",
            )  # fmt: skip
            result.add(
                f"{key}.rss_closed", f"idle {tag}{kind}: server RSS MiB after all closed",
                d["rss_closed_kib"] / 1024, False, "{:,.1f}",
            )  # fmt: skip
        result.notes.append(
            f"idle {tag}{kind}: RSS {d['rss_before_kib']:,} -> {d['rss_after_kib']:,} KiB"
            + (
                f" -> {d['rss_closed_kib']:,} KiB after closing all (in {d['close_seconds']:.1f}s)"
                if "rss_closed_kib" in d
                else ""
            )
            + ", "
            + f"logged in at {d['login_rate']:,.0f}/s, {_noise(d['others'])}"
            + (" (generator saturated)" if d["generator_share"] >= GENERATOR_SATURATED else "")
        )
    return result


# ------------------------------------------------------------------------------------------
# messages and limit


@dataclass
class Step:
    offered: float
    sent: int = 0
    sent_rate: float = 0.0
    delivered_in_step: int = 0
    delivered_with_grace: int = 0
    delivered_rate: float = 0.0
    p50_ms: float = float("nan")
    p99_ms: float = float("nan")
    server_share: float = 0.0
    generator_share: float = 0.0
    cpu_us_per_msg: float = float("nan")
    blocked: int = 0
    others_cpu0: float = 0.0
    others_cpu1: float = 0.0
    passed: bool = False
    generator_bound: bool = False
    reason: str = ""


class MessageLoad:
    """Offers chat messages at a fixed rate from every connection in turn."""

    def __init__(self, conns: list[Conn], counters: Counters, partners: list[int] | None):
        self.conns = conns
        self.counters = counters
        n = len(conns)
        self.prefixes = [client.message_prefix(f"{user(i)}@{HOST}") for i in range(n)]
        self.partners = partners  # fixed recipient per sender (the forwarder), or random
        rng = random.Random(6)
        self.random = [rng.randrange(n) for _ in range(1 << 16)]
        self.sender = 0
        self.r = 0
        self.total_sent = 0

    async def offer(self, rate: float, seconds: float, tick: float) -> tuple[int, int]:
        conns, prefixes, partners, rnd = self.conns, self.prefixes, self.partners, self.random
        n = len(conns)
        suffix = client.MSG_SUFFIX
        start = time.perf_counter()
        sent = blocked = 0
        k, r = self.sender, self.r
        total = int(rate * seconds)
        while sent + blocked < total:
            elapsed = time.perf_counter() - start
            if elapsed >= seconds + 0.5:
                break  # could not keep up: the caller sees sent + blocked < total
            due = min(int(rate * elapsed), total) - sent - blocked
            if due > 0:
                stamp = b"%016d" % (time.perf_counter_ns() // 1000)
                for _ in range(due):
                    c = conns[k]
                    if partners is None:
                        dst = rnd[r]
                        r = (r + 1) & 0xFFFF
                        if dst == k:
                            dst = (dst + 1) % n
                    else:
                        dst = partners[k]
                    k += 1
                    if k == n:
                        k = 0
                    t = c.transport
                    if t.get_write_buffer_size() > 262144:
                        blocked += 1
                        continue
                    t.write(prefixes[dst] + stamp + suffix)
                    sent += 1
            if sent + blocked < total:
                await asyncio.sleep(tick)
        self.sender, self.r = k, r
        self.total_sent += sent
        return sent, blocked

    async def drain(self, cap: float = 60.0, quiet: float = 0.5) -> None:
        """Wait until everything sent so far arrived, or nothing arrived for 10 * quiet s
        (an overloaded server can stall for seconds, and a backlog left behind would count
        in the next step)."""
        deadline = time.perf_counter() + cap
        last, last_change = self.counters.messages, time.perf_counter()
        while time.perf_counter() < deadline and self.counters.messages < self.total_sent:
            await asyncio.sleep(0.05)
            if self.counters.messages != last:
                last, last_change = self.counters.messages, time.perf_counter()
            elif time.perf_counter() - last_change > 10 * quiet:
                break

    async def step(self, meter: CpuMeter, rate: float, plan: Plan) -> Step:
        counters = self.counters
        step = Step(offered=rate)
        counters.latencies = []
        base = counters.messages
        before = meter.sample()
        sent, blocked = await self.offer(rate, plan.step_seconds, plan.tick)
        at_end = meter.sample()
        step.delivered_in_step = counters.messages - base
        await asyncio.sleep(plan.grace_seconds)
        step.delivered_with_grace = counters.messages - base
        await self.drain(quiet=plan.quiet)
        after = meter.sample()
        latencies = counters.latencies
        counters.latencies = None
        latencies.sort()
        wall, _server, gen_cpu = CpuMeter.delta(before, at_end)
        _w, server_total, _g = CpuMeter.delta(before, after)
        delivered_total = counters.messages - base
        step.sent, step.blocked = sent, blocked
        step.sent_rate = sent / wall
        step.delivered_rate = step.delivered_in_step / wall
        step.server_share = cpu_share(wall, at_end.server - before.server)
        step.generator_share = cpu_share(wall, gen_cpu)
        step.others_cpu0, step.others_cpu1 = others_share(before, at_end)
        step.cpu_us_per_msg = (
            server_total / delivered_total * 1e6 if delivered_total else float("nan")
        )
        step.p50_ms = percentile(latencies, 0.50) / 1000
        step.p99_ms = percentile(latencies, 0.99) / 1000
        step.generator_bound = (
            step.generator_share >= GENERATOR_SATURATED
            or sent + blocked < 0.97 * rate * plan.step_seconds
            or wall > plan.step_seconds * 1.05
        )
        ratio = step.delivered_with_grace / sent if sent else 0.0
        if blocked > 0.01 * (sent + blocked):
            step.reason = f"server stopped reading: {blocked} sends held back"
        elif ratio < PASS_DELIVERED:
            step.reason = f"delivered {ratio:.0%} of sent"
        elif step.p99_ms > PASS_P99_MS:
            step.reason = f"p99 {step.p99_ms:.0f} ms"
        elif step.p50_ms > PASS_P50_MS:
            step.reason = f"p50 {step.p50_ms:.0f} ms: queueing"
        else:
            step.passed = True
        return step


async def _connect_forwarder(port: int, n: int, counters: Counters) -> list[Conn]:
    loop = asyncio.get_running_loop()
    conns = []
    for i in range(n):
        source = SOURCE_IPS[i % len(SOURCE_IPS)]
        _t, conn = await loop.create_connection(
            lambda i=i: Conn(counters, i), "127.0.0.1", port, local_addr=(source, 0)
        )
        conn.write(b"%08d%08d" % (i, (i + 1) % n))
        conns.append(conn)
    return conns


def _rates(plan: Plan) -> list[float]:
    return [plan.start_rate * plan.rate_factor**i for i in range(plan.max_steps)]


class Profiler:
    """py-spy recording the server (pinned to the generator's CPU, sampling without pausing
    the server) until :meth:`stop`; writes collapsed stacks, by function."""

    def __init__(self, server: ServerUnderTest, plan: Plan, name: str) -> None:
        self.proc: asyncio.subprocess.Process | None = None
        self.raw: Path | None = None
        self.pid = server.pid if server.alive() else 0
        self.before: dict[int, float] = {}
        self.t0 = 0.0
        self.thread_cpu: dict[str, float] = {}
        if plan.profile_seconds <= 0 or plan.profile_dir is None or server.name != "salon":
            return
        spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        if not Path(spy).exists():
            return
        plan.profile_dir.mkdir(parents=True, exist_ok=True)
        self.raw = plan.profile_dir / f"salon-{name}.collapsed.txt"
        self.cmd = [
            "taskset", "-c", str(GENERATOR_CPU), spy, "record", "--pid", str(server.pid),
            "--rate", "200", "--gil", "--function", "--threads", "--format", "raw",
            "--output", str(self.raw),
        ]  # fmt: skip
        # --native shows C frames (the garbage collector, syscalls, expat) but has to pause
        # the process for each sample, which slows it down; without it py-spy reads the
        # process's memory while it runs
        self.cmd.insert(-2, "--native" if plan.native_profile else "--nonblocking")

    @property
    def enabled(self) -> bool:
        return self.raw is not None

    def _threads(self) -> dict[int, float]:
        from bench.procstat import cpu_seconds

        out = {}
        for task in Path(f"/proc/{self.pid}/task").iterdir():
            with contextlib.suppress(OSError, ValueError):
                out[int(task.name)] = cpu_seconds(self.pid, int(task.name))
        return out

    async def start(self) -> None:
        if self.raw is not None:
            self.before = self._threads()
            self.t0 = time.monotonic()
            self.proc = await asyncio.create_subprocess_exec(
                *self.cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
            )
            await asyncio.sleep(0.5)  # attach before the load starts

    async def stop(self) -> str | None:
        if self.proc is None or self.raw is None:
            return None
        after, wall = self._threads(), time.monotonic() - self.t0
        main = after.get(self.pid, 0.0) - self.before.get(self.pid, 0.0)
        others = sum(v - self.before.get(t, 0.0) for t, v in after.items() if t != self.pid)
        self.thread_cpu = {"wall": wall, "main_thread": main, "other_threads": others}
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            _out, err = await asyncio.wait_for(self.proc.communicate(), 30)
        except TimeoutError:
            self.proc.kill()
            return None
        if not self.raw.exists():
            (self.raw.parent / f"{self.raw.name}.err").write_bytes(err or b"")
            return None
        return str(self.raw)


async def scenario_messages(server: ServerUnderTest, plan: Plan, *, limit: bool = False) -> Result:
    result = Result()
    server.start()
    conns: list[Conn] = []
    try:
        counters = Counters()
        n = plan.msg_users
        if limit:
            conns = await _connect_forwarder(server.port, n, counters)
            partners: list[int] | None = [(i + 1) % n for i in range(n)]
        else:
            spec = LoginSpec(port=server.port, source_ips=SOURCE_IPS, timeout=120)
            conns = await login_many(spec, [user(i) for i in range(n)], counters, 100)
            partners = None
        await asyncio.sleep(plan.settle)  # let presence echoes and the like arrive
        for c in conns:
            c.buf.clear()
            c.mode = client.MODE_MESSAGES
        load = MessageLoad(conns, counters, partners)
        meter = CpuMeter(server.pid)
        await load.offer(min(plan.start_rate, 500.0), plan.settle, plan.tick)  # warm-up
        await load.drain(quiet=plan.quiet)
        steps: list[Step] = []
        best: Step | None = None
        failed: Step | None = None
        for rate in _rates(plan):
            s = await load.step(meter, rate, plan)
            steps.append(s)
            print(f"    {server.name} {rate:>9,.0f}/s offered: {_step_line(s)}", flush=True)
            if s.passed:
                best = s
                if s.generator_bound:
                    break
            else:
                failed = s
                break
        if best is not None and failed is not None:
            low, high = best.offered, failed.offered
            for _ in range(plan.bisect_steps):
                mid = (low + high) / 2
                s = await load.step(meter, mid, plan)
                steps.append(s)
                print(f"    {server.name} {mid:>9,.0f}/s offered: {_step_line(s)}", flush=True)
                if s.passed:
                    best, low = (s if s.delivered_rate > best.delivered_rate else best), mid
                else:
                    high = mid
        result.details["steps"] = [s.__dict__ for s in steps]
        if best is None:
            result.notes.append(f"no step was sustained: first step {_step_line(steps[0])}")
            return result
        max_rate = best.delivered_rate
        generator_bound = best.generator_bound or (failed is None)
        prefix = "limit" if limit else "messages"
        lat: dict[int, Step] = {}
        for pct in (50, 90):
            s = await load.step(meter, best.offered * pct / 100, plan)
            lat[pct] = s
            steps.append(s)
            print(f"    {server.name} at {pct}%: {_step_line(s)}", flush=True)
        result.details["steps"] = [s.__dict__ for s in steps]
        per_core = max_rate / best.server_share if best.server_share > 0 else float("nan")
        result.add("messages.max", "messages: max sustained delivered/s", max_rate, True)
        result.add(
            "messages.per_core", "messages: delivered/s per core (÷ server CPU share)",
            per_core, True,
        )  # fmt: skip
        result.add(
            "messages.cpu", "messages: server CPU µs per delivered message (at max)",
            best.cpu_us_per_msg, False, "{:,.1f}",
        )  # fmt: skip
        for pct, s in lat.items():
            result.add(
                f"messages.p50_{pct}", f"messages: latency p50 at {pct}% of max (ms)", s.p50_ms,
                False, "{:,.2f}",
            )  # fmt: skip
            result.add(
                f"messages.p99_{pct}", f"messages: latency p99 at {pct}% of max (ms)", s.p99_ms,
                False, "{:,.2f}",
            )  # fmt: skip
            result.add(
                f"messages.cpu_{pct}", f"messages: server CPU µs per message at {pct}% of max",
                s.cpu_us_per_msg, False, "{:,.1f}",
            )  # fmt: skip
        note = (
            f"{prefix}: {n} online users, {plan.step_seconds:g}s steps; max sustained at "
            f"{best.offered:,.0f}/s offered, server CPU {best.server_share:.0%}, generator CPU "
            f"{best.generator_share:.0%}, {_noise((best.others_cpu0, best.others_cpu1))}"
        )
        if failed is not None:
            note += f"; the next step failed ({failed.reason})"
        if generator_bound:
            note += (
                " — GENERATOR-BOUND: the load generator could not offer more, so the true "
                "maximum is higher; the CPU-per-message and per-core figures still hold"
            )
        result.notes.append(note)
        profiler = Profiler(server, plan, "messages")
        if not limit and profiler.enabled:
            rate = best.offered * 0.9
            print(f"    profiling Salon with py-spy at {rate:,.0f}/s", flush=True)
            await profiler.start()
            await load.offer(rate, plan.profile_seconds, plan.tick)
            result.details["profile"] = await profiler.stop()
            result.details["profile_threads"] = profiler.thread_cpu
            await load.drain(quiet=plan.quiet)
    finally:
        abort_all(conns)
        await asyncio.sleep(0.2)
        server.stop()
    return result


def _noise(others: tuple[float, float] | list[float]) -> str:
    """Other processes' use of the server's and the generator's CPU: the machine's noise."""
    return f"other processes used {others[0]:.0%} of CPU 0 and {others[1]:.0%} of CPU 1"


def _step_line(s: Step) -> str:
    state = "ok" if s.passed else f"FAIL ({s.reason})"
    gen = " gen-bound" if s.generator_bound else ""
    return (
        f"sent {s.sent_rate:,.0f}/s delivered {s.delivered_rate:,.0f}/s "
        f"p50 {s.p50_ms:.1f} ms p99 {s.p99_ms:.1f} ms server CPU {s.server_share:.0%} "
        f"gen CPU {s.generator_share:.0%} others {s.others_cpu0:.0%}/{s.others_cpu1:.0%} "
        f"{s.cpu_us_per_msg:.1f} µs/msg {state}{gen}"
    )


async def scenario_limit(server: ServerUnderTest, plan: Plan) -> Result:
    return await scenario_messages(server, plan, limit=True)


# ------------------------------------------------------------------------------------------
# presence


async def _wait_quiet(counters: Counters, target: int, quiet: float, cap: float) -> None:
    """Until ``counters.presences`` reaches ``target`` and then stays put for ``quiet`` s,
    or stays put for ``4 * quiet`` s short of it, or ``cap`` s in all."""
    deadline = time.perf_counter() + cap
    last, changed = counters.presences, time.perf_counter()
    while time.perf_counter() < deadline:
        await asyncio.sleep(0.02)
        now = time.perf_counter()
        if counters.presences != last:
            last, changed = counters.presences, now
            continue
        idle = now - changed
        if (last >= target and idle >= quiet) or idle >= 4 * quiet:
            return


async def scenario_presence(server: ServerUnderTest, plan: Plan) -> Result:
    result = Result()
    server.start()
    conns: list[Conn] = []
    try:
        n = plan.presence_users
        contacts = sum(len(ring_contacts(i, n, plan.roster_size)) for i in range(n))
        expected = contacts + n  # each contact pair: one broadcast and one probe answer; + self
        counters = Counters()
        spec = LoginSpec(
            port=server.port, source_ips=SOURCE_IPS, presence=False, roster=True, timeout=120
        )
        conns = await login_many(spec, [presence_user(i) for i in range(n)], counters, 100)
        await asyncio.sleep(0.5)
        for c in conns:
            c.buf.clear()
            c.mode = client.MODE_PRESENCE
        meter = CpuMeter(server.pid)
        online: list[dict] = []
        offline: list[dict] = []
        for _round in range(plan.presence_rounds):
            for stanza, phase in ((client.PRESENCE, online), (client.UNAVAILABLE, offline)):
                base = counters.presences
                before = meter.sample()
                t0 = time.perf_counter()
                for c in conns:
                    c.write(stanza)
                target = expected if stanza is client.PRESENCE else n
                await _wait_quiet(counters, base + target, plan.quiet, 120)
                after = meter.sample()
                got = counters.presences - base
                span = max(counters.last_delivery - t0, 1e-6)
                phase.append(
                    {
                        "delivered": got,
                        "seconds": span,
                        "rate": got / span,
                        "server_cpu": after.server - before.server,
                        "generator_cpu": after.generator - before.generator,
                        "others": others_share(before, after),
                    }
                )
                await asyncio.sleep(plan.quiet)
        delivered = sum(p["delivered"] for p in online)
        seconds = sum(p["seconds"] for p in online)
        cpu = sum(p["server_cpu"] for p in online)
        gen = sum(p["generator_cpu"] for p in online)
        result.details["online"] = online
        result.details["offline"] = offline
        result.add(
            "presence.rate", "presence: stanzas delivered/s as users come online",
            delivered / seconds, True,
        )  # fmt: skip
        result.add(
            "presence.cpu", "presence: server CPU µs per delivered presence",
            cpu / delivered * 1e6 if delivered else float("nan"), False, "{:,.1f}",
        )  # fmt: skip
        result.add(
            "presence.cpu_user", "presence: server CPU ms per user coming online",
            cpu / (n * len(online)) * 1e3, False, "{:,.2f}",
        )  # fmt: skip
        result.notes.append(
            f"presence: {n} users with {plan.roster_size}-contact rosters (subscription both), "
            f"all sending initial presence at once, {plan.presence_rounds} round(s); "
            f"{delivered / len(online):,.0f} presences delivered per round "
            f"({(delivered / len(online) - n) / contacts:.1f} per roster entry besides each "
            f"user's own presence; the minimum is 1), "
            f"generator CPU {gen / seconds:.0%} of the delivery time, "
            f"{_noise(online[0]['others'])}"
        )
        profiler = Profiler(server, plan, "presence")
        if profiler.enabled:
            print("    profiling Salon with py-spy during one more round", flush=True)
            await profiler.start()
            base = counters.presences
            for c in conns:
                c.write(client.PRESENCE)
            await _wait_quiet(counters, base + expected, plan.quiet, 120)
            result.details["profile"] = await profiler.stop()
            result.details["profile_threads"] = profiler.thread_cpu
    finally:
        abort_all(conns)
        await asyncio.sleep(0.2)
        server.stop()
    return result


async def scenario_groupchat(server: ServerUnderTest, plan: Plan) -> Result:
    """Rooms of 10, 100 and 1,000 occupants: see :mod:`bench.groupchat`."""
    from bench.groupchat import scenario_groupchat as run

    return await run(server, plan)


async def scenario_soak(server: ServerUnderTest, plan: Plan) -> Result:
    """Sessions for minutes with churn, messages and presence; RSS sampled: :mod:`bench.soak`."""
    from bench.soak import scenario_soak as soak

    return await soak(server, plan)


async def scenario_pep(server: ServerUnderTest, plan: Plan) -> Result:
    from bench.pep import scenario_pep as pep  # bench.pep builds on this module

    return await pep(server, plan)


# ------------------------------------------------------------------------------------------
# storm: every presence user logs in at once while others chat


async def _storm_login(
    spec: LoginSpec, name: str, counters: Counters, i: int, failures: list[str]
) -> float | None:
    """One storm login (roster fetched, initial presence sent); then the connection counts
    presences. Returns the time to bound from the first attempt, or None when five attempts
    failed (a server whose accept queue overflows resets connections)."""
    started = time.perf_counter()
    for attempt in range(5):
        try:
            r = await client.login(spec, name, counters, i)
            break
        except (OSError, TimeoutError, client.LoginFailed) as exc:
            failures.append(f"{type(exc).__name__}: {str(exc)[:120]}")
            if attempt == 4:
                return None
            await asyncio.sleep(0.2 * (attempt + 1))
    conn = r.conn
    early = conn.buf.count(client.PRESENCE_TAG)
    if early:
        counters.presences += early
        counters.last_delivery = time.perf_counter()
    conn.buf.clear()
    conn.mode = client.MODE_PRESENCE
    _STORM_CONNS.append(conn)
    return r.bound - started


_STORM_CONNS: list[Conn] = []


async def scenario_storm(server: ServerUnderTest, plan: Plan) -> Result:
    """A reconnect storm: ``presence_users`` users with ring rosters (subscription both) log
    in all at once (connect, auth, bind, roster, initial presence) while ``storm_chatters``
    users who are already online send each other messages; the presences delivered, their
    rate and CPU, and the chatters' message latency before and during the storm."""
    result = Result()
    server.start()
    chatters: list[Conn] = []
    _STORM_CONNS.clear()
    try:
        n = plan.presence_users
        names = [presence_user(i) for i in range(n)]
        counters = Counters()
        spec = LoginSpec(port=server.port, source_ips=SOURCE_IPS, timeout=120)
        chatters = await login_many(
            spec, [user(i) for i in range(plan.storm_chatters)], counters, 50
        )
        await asyncio.sleep(plan.settle)
        for c in chatters:
            c.buf.clear()
            c.mode = client.MODE_MESSAGES
        load = MessageLoad(chatters, counters, None)
        meter = CpuMeter(server.pid)
        # the chat alone: its latency, and its CPU per message sent
        counters.latencies = []
        before = meter.sample()
        sent_before = load.total_sent
        await load.offer(plan.storm_msg_rate, plan.storm_baseline, plan.tick)
        await load.drain(quiet=plan.quiet)
        after = meter.sample()
        calm = sorted(counters.latencies)
        calm_sent = load.total_sent - sent_before
        chat_cpu = (after.server - before.server) / calm_sent if calm_sent else 0.0
        counters.latencies = None
        # The storm's users log in and out once, just before: the generator then has every
        # salt's SaltedPassword (a client's cache), so the storm costs it a few HMACs per
        # login, and the server sees users who were online a moment ago (a network blip).
        warm_spec = LoginSpec(port=server.port, source_ips=SOURCE_IPS, presence=False, timeout=120)
        warm = await login_many(warm_spec, names, Counters(), 50)
        await close_all(warm, 200)
        await asyncio.sleep(plan.settle)
        # the storm
        storm_spec = LoginSpec(
            port=server.port, source_ips=SOURCE_IPS, roster=True, presence=True, timeout=120
        )
        counters.latencies = []
        base_msgs = counters.messages
        sent_before = load.total_sent
        base_presences = counters.presences
        profiler = Profiler(server, plan, "storm")
        await profiler.start()  # samples from the generator's CPU without pausing the server
        before = meter.sample()
        t0 = time.perf_counter()
        failures: list[str] = []
        storm = asyncio.gather(
            *(_storm_login(storm_spec, name, counters, i, failures) for i, name in enumerate(names))
        )
        while not storm.done():
            await load.offer(plan.storm_msg_rate, 0.25, plan.tick)
        bound = sorted(t for t in await storm if t is not None)
        if failures:
            result.notes.append(
                f"storm: {len(failures)} login attempts failed and were retried, "
                f"{n - len(bound)} users never got in (e.g. {failures[0]})"
            )
        logged_in = time.perf_counter() - t0
        await _wait_quiet(counters, counters.presences, plan.quiet, 120)
        after = meter.sample()
        if profiler.enabled:
            result.details["profile"] = await profiler.stop()
            result.details["profile_threads"] = profiler.thread_cpu
        await load.drain(quiet=plan.quiet)
        during = sorted(counters.latencies)
        counters.latencies = None
        delivered = counters.presences - base_presences
        storm_msgs = counters.messages - base_msgs
        storm_sent = load.total_sent - sent_before
        span = max(counters.last_delivery - t0, 1e-6)
        cpu = max((after.server - before.server) - storm_sent * chat_cpu, 0.0)
        gen_share = (after.generator - before.generator) / max(after.wall - before.wall, 1e-6)
        contacts = sum(len(ring_contacts(i, n, plan.roster_size)) for i in range(n))
        result.details.update(
            delivered=delivered, span=span, logged_in=logged_in, cpu=cpu, chat_cpu=chat_cpu,
            generator_share=gen_share,
            calm_p99=percentile(calm, 0.99) / 1000, storm_msgs=storm_msgs,
        )  # fmt: skip
        result.add("storm.delivered", "storm: presence stanzas delivered", delivered, False)
        result.add("storm.rate", "storm: presences delivered/s", delivered / span, True)
        result.add(
            "storm.cpu", "storm: server CPU µs per delivered presence (logins included)",
            cpu / delivered * 1e6 if delivered else float("nan"), False, "{:,.1f}",
        )  # fmt: skip
        result.add(
            "storm.login_seconds", f"storm: seconds until all {n} users are online", logged_in,
            False, "{:,.2f}",
        )  # fmt: skip
        result.add(
            "storm.bound_p99", "storm: time-to-bound p99 (ms)", percentile(bound, 0.99) * 1000,
            False, "{:,.0f}",
        )  # fmt: skip
        result.add(
            "storm.msg_p50", "storm: online users' message latency p50 during it (ms)",
            percentile(during, 0.50) / 1000, False, "{:,.1f}",
        )  # fmt: skip
        result.add(
            "storm.msg_p99", "storm: online users' message latency p99 during it (ms)",
            percentile(during, 0.99) / 1000, False, "{:,.1f}",
        )  # fmt: skip
        result.notes.append(
            f"storm: {n} users with {plan.roster_size}-contact rosters (subscription both) log "
            f"in at once (roster, initial presence) right after one earlier login each; "
            f"{delivered:,} presences delivered ({(delivered - n) / contacts:.2f} per roster "
            f"entry besides each user's own; the minimum is 1) in {span:.1f}s; meanwhile "
            f"{plan.storm_chatters} online users sent {plan.storm_msg_rate:,.0f} messages/s "
            f"({storm_msgs:,} delivered; p99 {percentile(during, 0.99) / 1000:.1f} ms against "
            f"{percentile(calm, 0.99) / 1000:.1f} ms before the storm; their CPU, "
            f"{chat_cpu * 1e6:.0f} µs a message sent, is taken out of the per-presence figure); "
            f"the load generator used {gen_share:.0%} of its core meanwhile (above 90%, the "
            f"storm's rates and latencies are the generator's, not the server's); "
            f"{_noise(others_share(before, after))}"
        )
    finally:
        abort_all(chatters)
        abort_all(_STORM_CONNS)
        _STORM_CONNS.clear()
        await asyncio.sleep(0.2)
        server.stop()
    return result


SCENARIOS: dict[str, Callable[[ServerUnderTest, Plan], Awaitable[Result]]] = {
    "login": scenario_login,
    "idle": scenario_idle,
    "messages": scenario_messages,
    "presence": scenario_presence,
    "groupchat": scenario_groupchat,
    "pep": scenario_pep,
    "storm": scenario_storm,
    "limit": scenario_limit,
    "soak": scenario_soak,
}


@contextlib.contextmanager
def pinned_to_generator_cpu() -> Any:
    import os

    try:
        old = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {GENERATOR_CPU})
    except OSError:
        yield
        return
    try:
        yield
    finally:
        os.sched_setaffinity(0, old)


__all__ = ["SCENARIOS", "CpuSample", "Plan", "Result", "pinned_to_generator_cpu"]
