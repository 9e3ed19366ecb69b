"""The groupchat scenario: one chat room at a time, of 10, 100 and 1,000 occupants.

For each size, on one fresh server process:

* **Joins.** The first user creates the room ``gc<N>@conference.localhost`` (and accepts the
  default configuration, XEP-0045 §10.1.2), then the others join it, twenty at a time, each
  asking for no history; a join ends at the occupant's own presence (status 110). Every join
  sends the newcomer the presence of everyone present and everyone the newcomer's presence,
  so filling a room of N costs about N² presence stanzas. The last occupant then joins alone,
  into a quiet room of N-1: the time from its presence to its own presence coming back is
  "time for the Nth occupant to join".
* **Messages.** Every occupant in turn sends 100-byte groupchat messages to the room (the
  send timestamp inside the body, as in ``messages``); each one reaches all N occupants,
  the sender included. The offered rate counts deliveries (room messages times N) and steps up
  by 1.5 until less than 95% of the deliveries arrive within 1 s, the p99 passes 500 ms or the
  p50 50 ms, exactly as ``messages`` does; the best sustained step gives the figures:
  deliveries/s, deliveries/s per core (÷ the server's CPU share) and server CPU µs per
  delivered message.
"""

from __future__ import annotations

import asyncio
import time

from bench import client
from bench.client import Conn, Counters, LoginSpec
from bench.procstat import CpuMeter, others_share
from bench.scenarios import (
    SOURCE_IPS,
    MessageLoad,
    Plan,
    Profiler,
    Result,
    Step,
    _noise,
    _step_line,
    abort_all,
    login_many,
)
from bench.servers import MUC, ServerUnderTest, user

JOIN_CONCURRENCY = 20
SELF_PRESENCE = b"code='110'"
CONFIGURED = b"gccfg'"


def join_stanza(room: str, nick: str) -> bytes:
    return (
        b"<presence to='" + f"{room}/{nick}".encode() + b"'>"
        b"<x xmlns='http://jabber.org/protocol/muc'><history maxstanzas='0'/></x></presence>"
    )


def instant_config(room: str) -> bytes:
    return (
        b"<iq type='set' id='gccfg' to='" + room.encode() + b"'>"
        b"<query xmlns='http://jabber.org/protocol/muc#owner'>"
        b"<x xmlns='jabber:x:data' type='submit'/></query></iq>"
    )


def groupchat_prefix(room: str) -> bytes:
    return b"<message type='groupchat' to='" + room.encode() + b"'><body>"


class GroupchatLoad(MessageLoad):
    """MessageLoad whose rate and counts are deliveries: each room message sent counts
    ``fanout`` times, and every occupant sends in turn."""

    def __init__(self, conns: list[Conn], counters: Counters, room: str) -> None:
        super().__init__(conns, counters, [0] * len(conns))
        self.prefixes = [groupchat_prefix(room)]
        self.fanout = len(conns)

    async def offer(self, rate: float, seconds: float, tick: float) -> tuple[int, int]:
        sent, blocked = await super().offer(rate / self.fanout, seconds, tick)
        self.total_sent += sent * (self.fanout - 1)
        return sent * self.fanout, blocked * self.fanout


async def _join(conn: Conn, room: str, nick: str, timeout: float) -> float:
    """Join ``room`` as ``nick``; seconds until the own presence (110) came back."""
    conn.buf.clear()
    started = time.perf_counter()
    conn.write(join_stanza(room, nick))
    await conn.expect(SELF_PRESENCE, timeout)
    elapsed = time.perf_counter() - started
    conn.buf.clear()
    conn.mode = client.MODE_PRESENCE
    return elapsed


async def _quiet(counters: Counters, quiet: float, cap: float) -> None:
    """Until no presence arrived for ``quiet`` s (or ``cap`` s in all)."""
    deadline = time.perf_counter() + cap
    last, changed = counters.presences, time.perf_counter()
    while time.perf_counter() < deadline:
        await asyncio.sleep(0.05)
        if counters.presences != last:
            last, changed = counters.presences, time.perf_counter()
        elif time.perf_counter() - changed >= quiet:
            return


async def _fill_room(
    conns: list[Conn], counters: Counters, room: str, meter: CpuMeter, plan: Plan
) -> dict[str, float]:
    """The owner creates the room; all but the last join; then the last one alone."""
    owner, rest, last = conns[0], conns[1:-1], conns[-1]
    owner.buf.clear()
    owner.write(join_stanza(room, "n0"))
    await owner.expect(SELF_PRESENCE, 60)
    owner.write(instant_config(room))
    await owner.expect(CONFIGURED, 60)
    owner.buf.clear()
    owner.mode = client.MODE_PRESENCE
    before = meter.sample()
    started = time.perf_counter()
    queue = iter(range(len(rest)))

    async def worker() -> None:
        for i in queue:
            await _join(rest[i], room, f"n{i + 1}", 300)

    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(JOIN_CONCURRENCY))), 30 * 60)
    await _quiet(counters, plan.quiet * 2, 600)
    after = meter.sample()
    fill_seconds = time.perf_counter() - started
    _wall, fill_cpu, _gen = CpuMeter.delta(before, after)
    await asyncio.sleep(plan.settle)
    before = meter.sample()
    last_join = await _join(last, room, f"n{len(conns) - 1}", 300)
    await _quiet(counters, plan.quiet, 60)
    after = meter.sample()
    _wall, last_cpu, _gen = CpuMeter.delta(before, after)
    joins = max(len(rest), 1)
    return {
        "fill_seconds": fill_seconds,
        "fill_cpu_ms_per_join": fill_cpu / joins * 1e3,
        "joins_per_second": joins / fill_seconds if fill_seconds else float("nan"),
        "last_join_ms": last_join * 1e3,
        "last_join_cpu_ms": last_cpu * 1e3,
        "presences": float(counters.presences),
        "others": others_share(before, after)[0],
    }


async def _measure(
    load: GroupchatLoad, meter: CpuMeter, plan: Plan, name: str, size: int
) -> tuple[Step | None, Step | None, list[Step]]:
    steps: list[Step] = []
    best: Step | None = None
    failed: Step | None = None
    rate = plan.groupchat_start_rate
    for _ in range(plan.groupchat_max_steps):
        s = await load.step(meter, rate, plan)
        steps.append(s)
        print(f"    {name} room of {size}: {rate:>9,.0f}/s offered: {_step_line(s)}", flush=True)
        if s.passed:
            best = s
            if s.generator_bound:
                break
        else:
            failed = s
            break
        rate *= plan.rate_factor
    if best is not None and failed is not None:
        low, high = best.offered, failed.offered
        for _ in range(plan.bisect_steps):
            mid = (low + high) / 2
            s = await load.step(meter, mid, plan)
            steps.append(s)
            print(f"    {name} room of {size}: {mid:>9,.0f}/s offered: {_step_line(s)}", flush=True)
            if s.passed:
                best, low = (s if s.delivered_rate > best.delivered_rate else best), mid
            else:
                high = mid
    return best, failed, steps


async def scenario_groupchat(server: ServerUnderTest, plan: Plan) -> Result:
    result = Result()
    for size in plan.groupchat_sizes:
        server.start()
        conns: list[Conn] = []
        try:
            counters = Counters()
            spec = LoginSpec(port=server.port, source_ips=SOURCE_IPS, timeout=120)
            conns = await login_many(spec, [user(i) for i in range(size)], counters, 20)
            await asyncio.sleep(plan.settle)
            room = f"gc{size}@{MUC}"
            meter = CpuMeter(server.pid)
            joined = await _fill_room(conns, counters, room, meter, plan)
            print(
                f"    {server.name} room of {size}: filled in {joined['fill_seconds']:.1f}s, "
                f"last join {joined['last_join_ms']:.1f} ms",
                flush=True,
            )
            for c in conns:
                c.buf.clear()
                c.tail = b""
                c.mode = client.MODE_MESSAGES
            load = GroupchatLoad(conns, counters, room)
            warm = min(plan.groupchat_start_rate, 1000.0)
            await load.offer(warm, plan.settle, plan.tick)
            await load.drain(quiet=plan.quiet)
            best, failed, steps = await _measure(load, meter, plan, server.name, size)
            key = f"groupchat.{size}"
            result.details[key] = {"join": joined, "steps": [s.__dict__ for s in steps]}
            result.add(
                f"{key}.join_last", f"groupchat {size}: time for occupant #{size} to join (ms)",
                joined["last_join_ms"], False, "{:,.1f}",
            )  # fmt: skip
            result.add(
                f"{key}.join_cpu", f"groupchat {size}: server CPU ms per join (filling the room)",
                joined["fill_cpu_ms_per_join"], False, "{:,.2f}",
            )  # fmt: skip
            # Server CPU per delivery holds whatever CPU share the server got (this machine
            # is shared): from the best sustained step, else from the first step.
            measured = best if best is not None else steps[0]
            result.add(
                f"{key}.cpu", f"groupchat {size}: server CPU µs per delivered message",
                measured.cpu_us_per_msg, False, "{:,.2f}",
            )  # fmt: skip
            result.add(
                f"{key}.per_cpu_second",
                f"groupchat {size}: deliveries per CPU-second (10⁶ ÷ µs; noise-proof)",
                1e6 / measured.cpu_us_per_msg if measured.cpu_us_per_msg else float("nan"),
                True,
            )  # fmt: skip
            if best is None:
                result.notes.append(
                    f"groupchat {size}: no step was sustained: first step {_step_line(steps[0])}"
                )
                continue
            per_core = (
                best.delivered_rate / best.server_share if best.server_share > 0 else float("nan")
            )
            result.add(
                f"{key}.max", f"groupchat {size}: max sustained deliveries/s",
                best.delivered_rate, True,
            )  # fmt: skip
            result.add(
                f"{key}.per_core", f"groupchat {size}: deliveries/s per core", per_core, True
            )
            result.add(
                f"{key}.p99", f"groupchat {size}: latency p99 at max (ms)", best.p99_ms, False,
                "{:,.1f}",
            )  # fmt: skip
            note = (
                f"groupchat {size}: room filled in {joined['fill_seconds']:.1f}s "
                f"({joined['joins_per_second']:,.0f} joins/s, {JOIN_CONCURRENCY} at a time); max "
                f"sustained at {best.offered:,.0f} deliveries/s offered, server CPU "
                f"{best.server_share:.0%}, generator CPU {best.generator_share:.0%}, "
                f"{_noise((best.others_cpu0, best.others_cpu1))}"
            )
            if failed is not None:
                note += f"; the next step failed ({failed.reason})"
            else:
                note += " — GENERATOR-BOUND or out of steps: the true maximum is higher"
            result.notes.append(note)
            profiler = Profiler(server, plan, f"groupchat{size}")
            if profiler.enabled and size == max(plan.groupchat_sizes):
                rate = best.offered * 0.9
                print(f"    profiling Salon with py-spy at {rate:,.0f} deliveries/s", flush=True)
                await profiler.start()
                await load.offer(rate, plan.profile_seconds, plan.tick)
                result.details[f"{key}.profile"] = await profiler.stop()
                await load.drain(quiet=plan.quiet)
        finally:
            abort_all(conns)
            await asyncio.sleep(0.2)
            server.stop()
    return result


__all__ = ["GroupchatLoad", "scenario_groupchat"]
