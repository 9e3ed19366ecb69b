"""The soak: many sessions for many minutes with churn, while messages and presence flow;
does the server's memory stay flat?

``N`` sessions (``u0…``) log in. Then, for ``T`` seconds, every second 1% of them end their
stream and log in again (churn), while the online sessions send chat messages to random online
users (bare JIDs) and directed presence to random online users, with now and then a broadcast
presence change (``<show>away</show>`` and back). The server's RSS is sampled every few
seconds. The figure is the growth of RSS from the end of the warm-up (the first fifth of the
run, when caches, the SQLite page cache and the allocator's arenas fill) to the end, and the
least-squares slope over the same span: a leak shows as a slope that does not flatten.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

from bench import client
from bench.client import MSG_SUFFIX, Conn, Counters, LoginSpec
from bench.procstat import CpuMeter, others_share
from bench.scenarios import SOURCE_IPS, Plan, Result, _noise, abort_all, login_many
from bench.servers import HOST, ServerUnderTest, user

TICK = 0.05  # the load loop sends this often (seconds)


def slope_per_minute(samples: list[tuple[float, int]]) -> float:
    """Least-squares slope of (seconds, KiB) samples, in KiB per minute."""
    if len(samples) < 2:
        return 0.0
    n = len(samples)
    mean_t = sum(t for t, _ in samples) / n
    mean_r = sum(r for _, r in samples) / n
    var = sum((t - mean_t) ** 2 for t, _ in samples)
    if var == 0:
        return 0.0
    cov = sum((t - mean_t) * (r - mean_r) for t, r in samples)
    return cov / var * 60


def _closed_conn(counters: Counters) -> Conn:
    """A stand-in for a session whose login failed: closed, so the next churn logs it in."""
    conn = Conn(counters)
    conn.closed.set_result(None)
    return conn


class Soak:
    """The generator's side: who is online, the churn, the message and presence flow."""

    def __init__(self, server: ServerUnderTest, plan: Plan) -> None:
        self.server = server
        self.plan = plan
        self.spec = LoginSpec(port=server.port, source_ips=SOURCE_IPS, timeout=120)
        self.counters = Counters()
        self.online: dict[int, Conn] = {}
        self.churning: set[int] = set()
        self.relogins = 0
        self.relogin_failures = 0
        self.dropped = 0  # sessions the server closed by itself (logged in again)
        self.sent_messages = 0
        self.sent_presence = 0
        self.tasks: set[asyncio.Task[None]] = set()
        self.lost: list[int] = []
        self.prefixes = [
            client.message_prefix(f"{user(i)}@{HOST}") for i in range(plan.soak_sessions)
        ]

    async def relogin(self, i: int) -> None:
        """One churned session: end the stream, wait for the close, log in again."""
        conn = self.online.pop(i)
        try:
            if conn.closed.done():
                if conn.transport is not None:  # not the stand-in of a failed login
                    self.dropped += 1
            else:
                await client.close(conn, timeout=30.0)
            fresh = await client.login(self.spec, user(i), self.counters, i)
            fresh.conn.mode = client.MODE_SOAK
            self.online[i] = fresh.conn
            self.relogins += 1
        except (OSError, TimeoutError, RuntimeError, client.LoginFailed):
            self.relogin_failures += 1
            self.lost.append(i)  # tried again at the next churn
        finally:
            self.churning.discard(i)

    def churn(self, k: int) -> None:
        # sessions the server closed, and failed logins, come back first (they count in k)
        again = [i for i, c in self.online.items() if c.closed.done()] + self.lost
        self.lost = []
        for i in again:
            if i not in self.online:  # a failed login: no connection to close
                self.online[i] = _closed_conn(self.counters)
        pool = [i for i in self.online if i not in again]
        # A server that cannot log in k sessions a second would otherwise see the churn pile
        # up until nobody is online: at most 5 s worth of logins are in flight, and the figure
        # reported is the churn achieved.
        room = max(0, 5 * k - len(self.churning))
        fresh = max(0, min(k - len(again), len(pool), room - len(again)))
        candidates = again + random.sample(pool, fresh)
        for i in candidates:
            if i in self.churning:
                continue
            self.churning.add(i)
            task = asyncio.get_running_loop().create_task(self.relogin(i))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    def send(self, messages: int, presences: int) -> None:
        online = list(self.online.items())
        if len(online) < 2:
            return
        stamp = str(client.now_us()).encode()
        for _ in range(messages):
            (_, sender), (to, _) = random.sample(online, 2)
            if sender.transport is not None and not sender.transport.is_closing():
                sender.write(self.prefixes[to] + stamp + MSG_SUFFIX)
                self.sent_messages += 1
        for _ in range(presences):
            (_, sender), (to, _) = random.sample(online, 2)
            if sender.transport is None or sender.transport.is_closing():
                continue
            if random.random() < 0.1:  # a broadcast presence change
                show = b"<show>away</show>" if random.random() < 0.5 else b""
                sender.write(b"<presence>" + show + b"</presence>")
            else:
                sender.write(b"<presence to='" + user(to).encode() + b"@" + HOST.encode() + b"'/>")
            self.sent_presence += 1


async def scenario_soak(server: ServerUnderTest, plan: Plan) -> Result:
    result = Result()
    server.start()
    soak = Soak(server, plan)
    samples: list[tuple[float, int]] = []
    try:
        warm = await client.login(soak.spec, user(0), soak.counters)
        await client.close(warm.conn)
        rss_fresh = server.rss_kib()
        n = plan.soak_sessions
        t_login = time.perf_counter()
        conns = await login_many(
            soak.spec, [user(i) for i in range(n)], soak.counters, plan.idle_concurrency
        )
        login_seconds = time.perf_counter() - t_login
        for i, conn in enumerate(conns):
            conn.mode = client.MODE_SOAK
            soak.online[i] = conn
        rss_logged_in = server.rss_kib()
        print(f"    {server.name}: {n} sessions in {login_seconds:.0f}s, soaking", flush=True)

        meter = CpuMeter(server.pid)
        before = meter.sample()
        start = time.perf_counter()
        end = start + plan.soak_seconds
        next_churn = start
        next_sample = start
        next_tick = start
        owed_msgs = owed_pres = 0.0
        churn_per_second = max(1, round(n * plan.soak_churn))
        while (now := time.perf_counter()) < end:
            if now >= next_churn:
                soak.churn(churn_per_second)
                next_churn += 1.0
            if now >= next_sample:
                samples.append((now - start, server.rss_kib()))
                next_sample += plan.soak_sample
            owed_msgs += plan.soak_msg_rate * TICK
            owed_pres += plan.soak_presence_rate * TICK
            soak.send(int(owed_msgs), int(owed_pres))
            owed_msgs -= int(owed_msgs)
            owed_pres -= int(owed_pres)
            next_tick += TICK
            await asyncio.sleep(max(0.0, next_tick - time.perf_counter()))
        samples.append((time.perf_counter() - start, server.rss_kib()))
        after = meter.sample()
        online_end = sum(1 for c in soak.online.values() if not c.closed.done())
        if soak.tasks:
            await asyncio.wait(soak.tasks, timeout=60)
    finally:
        abort_all(list(soak.online.values()))
        await asyncio.sleep(0.2)
        server.stop()

    wall, server_cpu, gen_cpu = CpuMeter.delta(before, after)
    warm_t = plan.soak_warmup
    steady = [(t, r) for t, r in samples if t >= warm_t] or samples[-1:]
    rss_warm = steady[0][1]
    rss_end = samples[-1][1]
    growth = (rss_end - rss_warm) / rss_warm * 100 if rss_warm else 0.0
    slope = slope_per_minute(steady)
    details: dict[str, Any] = {
        "sessions": plan.soak_sessions,
        "seconds": plan.soak_seconds,
        "warmup": warm_t,
        "rss_fresh_kib": rss_fresh,
        "rss_logged_in_kib": rss_logged_in,
        "rss_warm_kib": rss_warm,
        "rss_end_kib": rss_end,
        "rss_max_kib": max(r for _, r in samples),
        "growth_pct": growth,
        "slope_kib_per_min": slope,
        "relogins": soak.relogins,
        "churn_achieved_per_s": soak.relogins / plan.soak_seconds,
        "online_at_end": online_end,
        "relogin_failures": soak.relogin_failures,
        "dropped_by_server": soak.dropped,
        "stream_errors": {k.decode(): v for k, v in soak.counters.stream_errors.items()},
        "pings_answered": soak.counters.pings,
        "messages_sent": soak.sent_messages,
        "messages_received": soak.counters.messages,
        "presence_sent": soak.sent_presence,
        "presence_received": soak.counters.presences,
        "server_cpu_share": server_cpu / wall if wall else 0.0,
        "generator_cpu_share": gen_cpu / wall if wall else 0.0,
        "others": others_share(before, after),
        "samples": samples,
    }
    result.details["soak"] = details
    result.add("soak.growth", "soak: RSS growth after warm-up, %", growth, False, "{:,.2f}")
    result.add("soak.slope", "soak: RSS slope after warm-up, KiB/min", slope, False, "{:,.0f}")
    result.add("soak.rss_end", "soak: server RSS MiB at the end", rss_end / 1024, False, "{:,.1f}")
    result.add("soak.relogins", "soak: churned logins", soak.relogins, True)
    result.add(
        "soak.relogin_failures", "soak: churned logins that failed", soak.relogin_failures, False
    )
    result.notes.append(
        f"soak: {plan.soak_sessions} sessions for {plan.soak_seconds:g}s, "
        f"{churn_per_second}/s to churn, {soak.relogins / plan.soak_seconds:.1f}/s achieved "
        f"({soak.relogins} logins, {soak.relogin_failures} failed, "
        f"{soak.dropped} closed by the server, {online_end} online at the end, stream errors "
        f"{details['stream_errors'] or 'none'}); "
        f"RSS {rss_fresh:,} KiB fresh, {rss_logged_in:,} logged in, {rss_warm:,} after the "
        f"{warm_t:g}s warm-up, {rss_end:,} at the end ({growth:+.2f}%, {slope:+,.0f} KiB/min); "
        f"messages {soak.sent_messages:,} sent / {soak.counters.messages:,} received, presence "
        f"{soak.sent_presence:,} sent / {soak.counters.presences:,} received; server CPU "
        f"{details['server_cpu_share']:.0%}, {_noise(details['others'])}"
    )
    print(f"    {server.name}: {result.notes[-1]}", flush=True)
    return result
