"""XEP-0352 client state indication: bytes an inactive client is spared under presence churn.

    python -m bench.csi_savings [--contacts 200] [--changes 2000] [--rate 100] [--time-limit 120]

One Salon runs in this process (SQLite in a temporary directory, plain TCP on an ephemeral
port: the bytes counted are the XML on the wire, without TLS records). Two watchers have the
same ``--contacts`` contacts (subscription both), fetch their rosters and come online; one of
them then says ``<inactive/>``. The contacts, each logged in once, change their presence
``--changes`` times in total (a random contact each time: away, extended away, do not
disturb, back available, with a status text; every tenth change goes unavailable and comes
back), paced at ``--rate`` changes per second and bounded by ``--time-limit`` seconds. Each
variant runs the same random sequence (fixed seed) for both watchers at once.

Counted per watcher, from after ``<inactive/>`` was handled until the active watcher has
every presence: bytes and stanzas received. Then the inactive watcher says ``<active/>`` and
what it gets then (the latest presence of each contact, held back) is counted as its flush.
The saving is ``1 - (inactive + flush) / active`` (the flush includes the ~70-byte answer to
the ping that ends the measurement).

Variants: presence churn alone, and churn with a chat message from a random contact to both
watchers every ``--message-every`` changes (a message with a body goes out at once and takes
what was held with it, so the saving drops: the radio wakes anyway).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.client import (
    MODE_DISCARD,
    PRESENCE,
    ROSTER_GET,
    Conn,
    Counters,
    LoginSpec,
    header,
    scram_final,
    scram_first,
)

HOST = "localhost"
PASSWORD = "pw"
ITERATIONS = 4096
MODE_COUNT = 10  # this benchmark's own mode of bench.client.Conn: count bytes and stanzas
SHOWS = ("away", "xa", "dnd", "chat", None)


class CountingConn(Conn):
    """A bench client connection that, in MODE_COUNT, counts bytes, presences and
    messages, and can wait for a marker in what arrives."""

    __slots__ = ("bytes", "found", "marker_wanted", "messages_in", "presences_in", "tail_bytes")

    def __init__(self, counters: Counters, index: int = 0) -> None:
        super().__init__(counters, index)
        self.bytes = 0
        self.presences_in = 0
        self.messages_in = 0
        self.tail_bytes = b""
        self.marker_wanted: bytes | None = None
        self.found: asyncio.Future[None] | None = None

    def data_received(self, data: bytes) -> None:
        if self.mode != MODE_COUNT:
            super().data_received(data)
            return
        self._count(data)

    def _count(self, data: bytes) -> None:
        self.bytes += len(data)
        chunk = self.tail_bytes + data
        skip = len(self.tail_bytes)
        # Count tags that end in the new data only (the tail was counted before).
        self.presences_in += chunk.count(b"<presence") - self.tail_bytes.count(b"<presence")
        self.messages_in += chunk.count(b"<message") - self.tail_bytes.count(b"<message")
        marker, found = self.marker_wanted, self.found
        if (
            marker is not None
            and found is not None
            and not found.done()
            and chunk.find(marker, max(0, skip - len(marker))) >= 0
        ):
            found.set_result(None)
        self.tail_bytes = chunk[-64:]

    def start_counting(self) -> None:
        """Switch to MODE_COUNT; what the login left unread is counted too."""
        self.mode = MODE_COUNT
        left = bytes(self.buf)
        self.buf.clear()
        if left:
            self._count(left)

    def reset(self) -> None:
        self.bytes = self.presences_in = self.messages_in = 0

    async def roundtrip(self, tag: str, timeout: float = 30.0) -> None:
        """Send a ping and wait for its answer: the server handled what came before."""
        marker = f"id='{tag}'".encode()
        self.marker_wanted = marker
        self.found = asyncio.get_running_loop().create_future()
        self.write(f"<iq type='get' id='{tag}'><ping xmlns='urn:xmpp:ping'/></iq>".encode())
        try:
            await asyncio.wait_for(self.found, timeout)
        finally:
            self.marker_wanted = None


async def wait_until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def start_server(workdir: Path, contacts: int) -> Any:
    from salon.app import App
    from salon.auth.credentials import make_credentials
    from salon.certs import generate_self_signed
    from salon.config import settings_from_dict
    from salon.storage.interfaces import RosterItem

    cert, key = workdir / "localhost.crt", workdir / "localhost.key"
    generate_self_signed([HOST], cert, key)
    settings = settings_from_dict(
        {
            "server": {"data_dir": str(workdir), "log_level": "warning"},
            "c2s": {
                "interfaces": ["127.0.0.1"],
                "port": 0,
                "direct_tls_port": 0,
                "require_encryption": False,
                "idle_timeout": 3600.0,
            },
            "http": {"enabled": False},
            "s2s": {"enabled": False},
            "hosts": {HOST: {"certificate": str(cert), "key": str(key)}},
        }
    )
    app = App(settings)
    await app.start()
    storage = app.core.storage
    creds = make_credentials(PASSWORD, ITERATIONS)  # derived once, shared by every account
    for name in ("active", "inactive", *(f"c{i}" for i in range(contacts))):
        await storage.accounts.create(HOST, name, creds)
    for i in range(contacts):
        for watcher in ("active", "inactive"):
            await storage.roster.put_item(
                HOST, watcher, RosterItem(jid=f"c{i}@{HOST}", subscription="both")
            )
            await storage.roster.put_item(
                HOST, f"c{i}", RosterItem(jid=f"{watcher}@{HOST}", subscription="both")
            )
    return app


def presence_change(rng: random.Random, n: int) -> list[bytes]:
    """What one contact sends for change number ``n``."""
    if n % 10 == 9:
        return [b"<presence type='unavailable'/>", b"<presence/>"]
    show = rng.choice(SHOWS)
    status = f"status {n}: {rng.choice(('in a meeting', 'on the road', 'lunch', 'here'))}"
    inner = (f"<show>{show}</show>" if show else "") + f"<status>{status}</status>"
    return [f"<presence>{inner}</presence>".encode()]


@dataclass
class Figures:
    variant: str
    changes: int
    seconds: float
    messages: int
    active_bytes: int
    active_presences: int
    inactive_bytes: int
    inactive_presences: int
    flush_bytes: int
    flush_presences: int

    @property
    def saving(self) -> float:
        return 1.0 - (self.inactive_bytes + self.flush_bytes) / self.active_bytes


async def run_variant(
    port: int,
    contacts: list[CountingConn],
    variant: str,
    changes: int,
    rate: float,
    time_limit: float,
    message_every: int,
    seed: int,
) -> Figures:
    counters = Counters()
    spec = LoginSpec(port=port, password=PASSWORD, roster=True, presence=True, timeout=60.0)
    watchers: dict[str, CountingConn] = {}
    for name in ("active", "inactive"):
        watchers[name] = await login_counting(spec, name, counters)
    for conn in watchers.values():
        conn.start_counting()
    n_contacts = len(contacts)
    await wait_until(
        lambda: all(c.presences_in >= n_contacts + 1 for c in watchers.values()),
        60,
        "initial presences",
    )
    inactive = watchers["inactive"]
    inactive.write(b"<inactive xmlns='urn:xmpp:csi:0'/>")
    for name, conn in watchers.items():
        await conn.roundtrip(f"sync-{name}")
        conn.reset()

    rng = random.Random(seed)
    started = time.monotonic()
    deadline = started + time_limit
    sent_presences = 0
    sent_messages = 0
    done = 0
    while done < changes and time.monotonic() < deadline:
        who = rng.randrange(n_contacts)
        for stanza in presence_change(rng, done):
            contacts[who].write(stanza)
            sent_presences += 1
        done += 1
        if message_every and done % message_every == 0:
            sender = contacts[rng.randrange(n_contacts)]
            for name in watchers:
                sender.write(
                    f"<message type='chat' to='{name}@{HOST}'><body>message after change "
                    f"{done}</body></message>".encode()
                )
            sent_messages += 1
        pause = started + done / rate - time.monotonic()
        if pause > 0:
            await asyncio.sleep(pause)
    active = watchers["active"]
    await wait_until(
        lambda: active.presences_in >= sent_presences and active.messages_in >= sent_messages,
        60,
        "the active watcher's presences",
    )
    # The server sends each contact's presence to both watchers in one go: once the active
    # one has everything, the inactive one's share is either on its way or held. (Bytes
    # still in flight are counted with the flush below; the sum stays exact.) No ping here:
    # an iq answer is urgent and would take the held presences with it.
    seconds = time.monotonic() - started
    figures_inactive = (inactive.bytes, inactive.presences_in)
    inactive.reset()
    inactive.write(b"<active xmlns='urn:xmpp:csi:0'/>")
    await inactive.roundtrip("after-active")
    figures = Figures(
        variant=variant,
        changes=done,
        seconds=seconds,
        messages=sent_messages,
        active_bytes=active.bytes,
        active_presences=active.presences_in,
        inactive_bytes=figures_inactive[0],
        inactive_presences=figures_inactive[1],
        flush_bytes=inactive.bytes,
        flush_presences=inactive.presences_in,
    )
    for conn in watchers.values():
        conn.mode = MODE_DISCARD
        conn.transport.close()
    await asyncio.sleep(0.2)  # the server handles the logouts before the next variant
    return figures


async def login_counting(spec: LoginSpec, username: str, counters: Counters) -> CountingConn:
    """Log in as ``bench.client.login`` does (no TLS, SCRAM-SHA-1), on a CountingConn."""
    loop = asyncio.get_running_loop()
    _t, conn = await loop.create_connection(lambda: CountingConn(counters), "127.0.0.1", spec.port)
    timeout = spec.timeout
    head = header(HOST)
    conn.write(head)
    await conn.expect(b"</stream:features>", timeout)
    bare, auth = scram_first(username)
    conn.write(auth)
    await conn.expect(b"<challenge", timeout)
    await conn.expect(b">", timeout)
    frame = await conn.expect(b"</challenge>", timeout)
    conn.write(scram_final(bare, frame[: -len(b"</challenge>")], spec.password))
    await conn.expect(b"<success", timeout)
    conn.write(head)
    await conn.expect(b"</stream:features>", timeout)
    conn.write(
        b"<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
        b"<resource>bench</resource></bind></iq>"
    )
    await conn.expect(b"</jid>", timeout)
    if spec.roster:
        conn.write(ROSTER_GET)
        await conn.expect(b"roster1", timeout)
        await conn.expect(b"</iq>", timeout)
    if spec.presence:
        conn.write(PRESENCE)
    return conn


async def main_async(args: argparse.Namespace) -> list[Figures]:
    workdir = Path(tempfile.mkdtemp(prefix="salon-csi-"))
    app = await start_server(workdir, args.contacts)
    try:
        port = app.port("c2s")
        counters = Counters()
        spec = LoginSpec(port=port, password=PASSWORD, presence=True, timeout=60.0)
        contacts: list[CountingConn] = []
        for i in range(args.contacts):
            conn = await login_counting(spec, f"c{i}", counters)
            conn.mode = MODE_DISCARD
            contacts.append(conn)
        results = []
        for variant, every in (("presence churn", 0), ("churn + messages", args.message_every)):
            results.append(
                await run_variant(
                    port,
                    contacts,
                    variant,
                    args.changes,
                    args.rate,
                    args.time_limit,
                    every,
                    args.seed,
                )
            )
        for conn in contacts:
            conn.transport.close()
        return results
    finally:
        await app.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def report(results: list[Figures], contacts: int) -> str:
    lines = [
        f"CSI byte savings, {contacts} contacts (Salon, plain TCP, bytes of XML received)",
        "",
        "| variant | changes | messages | active: bytes (presences) | inactive: bytes "
        "(presences) | flush on <active/>: bytes (presences) | saving |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r.variant} | {r.changes} in {r.seconds:.1f} s | {r.messages} | "
            f"{r.active_bytes:,} ({r.active_presences}) | {r.inactive_bytes:,} "
            f"({r.inactive_presences}) | {r.flush_bytes:,} ({r.flush_presences}) | "
            f"{r.saving:.1%} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--contacts", type=int, default=200)
    parser.add_argument("--changes", type=int, default=2000, help="presence changes in total")
    parser.add_argument("--rate", type=float, default=100.0, help="changes per second")
    parser.add_argument("--time-limit", type=float, default=120.0, help="seconds per variant")
    parser.add_argument("--message-every", type=int, default=50, help="changes per message")
    parser.add_argument("--seed", type=int, default=357)
    args = parser.parse_args()
    results = asyncio.run(main_async(args))
    print(report(results, args.contacts))


if __name__ == "__main__":
    main()
