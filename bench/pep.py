"""The ``pep`` scenario: PEP notification fan-out (XEP-0163).

The presence population (users whose rosters hold their ring neighbours, subscription both)
logs in, fetches rosters and sends initial presence with entity capabilities (XEP-0115)
advertising ``http://jabber.org/protocol/tune+notify``; every client has the same caps, so a
server asks disco#info once (or a few times) and the generator answers from the buffers.
Then, each round, every user publishes one tune at once; each publish is delivered to the
publisher's own resource and to each contact, so a round is ``users * (contacts + 1)``
notifications. A warm-up round (nodes created, caps learned) is not measured.

Figures: notifications delivered/s (wall), notifications per server CPU second (= delivered/s
per core), server CPU µs per notification and ms per publish. The generator counts
``pubsub#event`` markers in each connection's buffer every few milliseconds, without
parsing; disco#info requests are found with one regular expression.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import re
import time

from bench import client
from bench.client import Conn, Counters, LoginSpec
from bench.procstat import CpuMeter, others_share
from bench.scenarios import SOURCE_IPS, Plan, Profiler, Result, _noise, abort_all, login_many
from bench.servers import ServerUnderTest, presence_user, ring_contacts

NODE = "http://jabber.org/protocol/tune"
CAPS_NODE = "https://salon.example/bench"
FEATURES = sorted(
    (
        "http://jabber.org/protocol/caps",
        "http://jabber.org/protocol/disco#info",
        f"{NODE}+notify",
    )
)
IDENTITY = ("client", "pc", "bench")
EVENT_MARK = b"pubsub#event"
DISCO_RE = re.compile(
    rb"<iq\b([^>]*)>\s*<query\b[^>]*\bxmlns=['\"]http://jabber\.org/protocol/disco#info['\"]"
)
ATTR_RE = {name: re.compile(rb"\b" + name + rb"=['\"]([^'\"]*)['\"]") for name in (b"id", b"from")}
POLL = 0.005
PREPARE = 999  # the round number of the node-creating publishes


def caps_ver() -> str:
    category, ctype, name = IDENTITY
    text = f"{category}/{ctype}//{name}<" + "".join(f"{f}<" for f in FEATURES)
    return base64.b64encode(hashlib.sha1(text.encode()).digest()).decode()


VER = caps_ver()
CAPS_PRESENCE = (
    f"<presence><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='{CAPS_NODE}' "
    f"ver='{VER}'/></presence>"
).encode()


def disco_reply(iq_id: bytes, to: bytes) -> bytes:
    category, ctype, name = IDENTITY
    features = "".join(f"<feature var='{f}'/>" for f in FEATURES)
    return (
        b"<iq type='result' id='" + iq_id + b"' to='" + to + b"'>"
        + (
            f"<query xmlns='http://jabber.org/protocol/disco#info' node='{CAPS_NODE}#{VER}'>"
            f"<identity category='{category}' type='{ctype}' name='{name}'/>{features}</query>"
        ).encode()
        + b"</iq>"
    )  # fmt: skip


def round_token(n: int) -> bytes:
    """The id of round ``n``'s publishes: found in their results, never in notifications."""
    return f"p{n:03d}q".encode()


def publish(i: int, n: int) -> bytes:
    return (
        f"<iq type='set' id='{round_token(n).decode()}'><pubsub xmlns='http://jabber.org/protocol/pubsub'>"
        f"<publish node='{NODE}'><item id='current'><tune xmlns='{NODE}'>"
        f"<title>user {i} song {n}</title></tune></item></publish></pubsub></iq>"
    ).encode()


class Watcher:
    """Drains the connections' login buffers: counts notifications, answers disco#info."""

    def __init__(self, conns: list[Conn]) -> None:
        self.conns = conns
        self.tails = [b""] * len(conns)
        self.events = 0
        self.answers = 0  # results (or errors) of the current round's publishes
        self.token = b"\x00"
        self.discos = 0
        self.last_event = 0.0
        self.last_disco = 0.0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            self.poll()
            await asyncio.sleep(POLL)

    def poll(self) -> None:
        now = time.perf_counter()
        for k, conn in enumerate(self.conns):
            buf = conn.buf
            if not buf:
                continue
            data = self.tails[k] + bytes(buf)
            buf.clear()
            keep = max(len(data) - (len(EVENT_MARK) - 1), 0)
            partial = data.rfind(b"<iq", keep - 2000 if keep > 2000 else 0)
            if partial >= 0 and b"</iq>" not in data[partial:] and b"/>" not in data[partial:]:
                keep = min(keep, partial)  # an iq still arriving: look at it next time
            self.answers += data.count(self.token, 0, keep)
            found = data.count(EVENT_MARK, 0, keep)
            if found:
                self.events += found
                self.last_event = now
            if b"disco#info" in data:
                for match in DISCO_RE.finditer(data):
                    if match.start() >= keep:
                        break  # in the tail: seen again next time
                    attrs = match.group(1)
                    if b"get" not in attrs:
                        continue
                    iq_id, sender = (ATTR_RE[a].search(attrs) for a in (b"id", b"from"))
                    if iq_id is None or sender is None:
                        continue
                    conn.write(disco_reply(iq_id.group(1), sender.group(1)))
                    self.discos += 1
                    self.last_disco = now
            self.tails[k] = data[keep:]

    async def answered(self, count: int, cap: float) -> None:
        deadline = time.perf_counter() + cap
        while self.answers < count and time.perf_counter() < deadline:
            await asyncio.sleep(POLL)

    def new_round(self, n: int) -> None:
        self.token = round_token(n)
        self.answers = 0

    async def wait(self, target: int, publishes: int, quiet: float, cap: float) -> None:
        """Until every publish was answered and ``target`` notifications arrived, then none
        for ``quiet`` s; or, every publish answered, none for ``4 * quiet`` s short of the
        target; or ``cap`` s in all. (A server that stores each item durably answers its
        publishes one disk write after another: the first notification can take long.)"""
        deadline = time.perf_counter() + cap
        last, changed = self.events, time.perf_counter()
        while time.perf_counter() < deadline:
            await asyncio.sleep(0.02)
            now = time.perf_counter()
            if self.events != last:
                last, changed = self.events, now
                continue
            if self.answers < publishes:
                continue
            idle = now - changed
            if (last >= target and idle >= quiet) or idle >= 4 * quiet:
                return


async def scenario_pep(server: ServerUnderTest, plan: Plan) -> Result:
    result = Result()
    server.start()
    conns: list[Conn] = []
    watcher: Watcher | None = None
    try:
        n = plan.presence_users
        per_round = sum(len(ring_contacts(i, n, plan.roster_size)) + 1 for i in range(n))
        counters = Counters()
        spec = LoginSpec(
            port=server.port, source_ips=SOURCE_IPS, presence=False, roster=True, timeout=120
        )
        conns = await login_many(spec, [presence_user(i) for i in range(n)], counters, 100)
        for c in conns:
            c.buf.clear()
            c.mode = client.MODE_LOGIN  # data accumulates in buf; the watcher drains it
        watcher = Watcher(conns)
        watcher.start()
        for c in conns:
            c.write(CAPS_PRESENCE)
        # presence flows and the servers learn the caps (answered by the watcher)
        await asyncio.sleep(max(plan.settle, 1.0))
        # Each node is created by a first publish, one user at a time: concurrent node
        # creation is not what is measured (and ejabberd's Mnesia aborts most of it).
        watcher.new_round(PREPARE)
        for i, c in enumerate(conns):
            c.write(publish(i, PREPARE))
            await watcher.answered(i + 1, 30)
        created = watcher.answers
        await asyncio.sleep(plan.quiet)
        meter = CpuMeter(server.pid)
        rounds: list[dict] = []
        for r in range(plan.presence_rounds + 1):
            watcher.new_round(r)
            base = watcher.events
            before = meter.sample()
            t0 = time.perf_counter()
            for i, c in enumerate(conns):
                c.write(publish(i, r))
            await watcher.wait(base + per_round, n, plan.quiet, 600)
            after = meter.sample()
            got = watcher.events - base
            span = max(watcher.last_event - t0, 1e-6)
            rounds.append(
                {
                    "answered": watcher.answers,
                    "delivered": got,
                    "expected": per_round,
                    "seconds": span,
                    "rate": got / span,
                    "server_cpu": after.server - before.server,
                    "generator_cpu": after.generator - before.generator,
                    "others": others_share(before, after),
                }
            )
            await asyncio.sleep(plan.quiet)
        warmup, measured = rounds[0], rounds[1:]
        stanzas = sum(p["delivered"] for p in measured)
        # a server may deliver one notification twice (Prosody: to the bare and the full JID);
        # the figures count each (publish, recipient) once
        delivered = sum(min(p["delivered"], p["expected"]) for p in measured)
        seconds = sum(p["seconds"] for p in measured)
        cpu = sum(p["server_cpu"] for p in measured)
        gen = sum(p["generator_cpu"] for p in measured)
        result.details["measured_rounds"] = rounds
        result.add("pep.rate", "PEP: notifications delivered/s", delivered / seconds, True)
        result.add(
            "pep.per_core", "PEP: notifications per server CPU second (per core)",
            delivered / cpu if cpu > 0 else float("nan"), True,
        )  # fmt: skip
        result.add(
            "pep.cpu", "PEP: server CPU µs per notification",
            cpu / delivered * 1e6 if delivered else float("nan"), False, "{:,.1f}",
        )  # fmt: skip
        result.add(
            "pep.cpu_publish", "PEP: server CPU ms per publish (with its fan-out)",
            cpu / (n * len(measured)) * 1e3, False, "{:,.2f}",
        )  # fmt: skip
        result.notes.append(
            f"pep: {n} users with {plan.roster_size}-contact rosters, caps with tune+notify "
            f"({watcher.discos} disco#info answered); nodes created one user at a time "
            f"({created} of {n} answered), then every user publishes at once, "
            f"{len(measured)} measured round(s) after a warm-up that delivered "
            f"{warmup['delivered']:,} of {per_round:,}; measured rounds delivered "
            f"{stanzas / len(measured):,.0f} notification stanzas for {per_round:,} "
            f"(publish, recipient) pairs each, generator CPU "
            f"{gen / seconds:.0%} of the delivery time, {_noise(measured[0]['others'])}"
        )
        profiler = Profiler(server, plan, "pep")
        if profiler.enabled:
            print("    profiling Salon with py-spy during one more round", flush=True)
            await profiler.start()
            r = plan.presence_rounds + 1
            watcher.new_round(r)
            base = watcher.events
            for i, c in enumerate(conns):
                c.write(publish(i, r))
            await watcher.wait(base + per_round, n, plan.quiet, 600)
            result.details["profile"] = await profiler.stop()
            result.details["profile_threads"] = profiler.thread_cpu
    finally:
        if watcher is not None:
            await watcher.stop()
        abort_all(conns)
        await asyncio.sleep(0.2)
        server.stop()
    return result
