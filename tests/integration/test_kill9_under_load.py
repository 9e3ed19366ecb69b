"""SIGKILL a real ``python -m salon serve`` while messages flow; nothing it acknowledged is lost.

Four senders with XEP-0198 stream management send chat messages, alternately to a recipient
who is online and to one who is offline, and ask for an ack (``<r/>``) after every five. The
server is killed with SIGKILL in the middle of that, then started again on the same SQLite
database. Every message the server counted in an ``<a h='…'/>`` must then be there: in the
offline recipient's offline store (delivered on login) and in the archive (XEP-0313) of its
recipient. A message delivered live but killed before its archive commit must be one the
server had not acknowledged (its sender sends it again).
"""

from __future__ import annotations

import asyncio
import random
import signal
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import cast

import trustme

from salon.auth.credentials import make_credentials
from salon.storage import open_storage
from salon.storage.interfaces import ArchiveQuery
from tests.integration.harness import PASSWORD, RawClient, RunningServer, q, until
from tests.integration.test_xep0160_offline import (
    ServerProcess,
    processes,  # noqa: F401  (the fixture)
    read_offline,
    serve_process,
)

NS_SM = "urn:xmpp:sm:3"
MODULES = ["disco", "ping", "presence", "message", "offline", "carbons", "smacks", "mam"]
SENDERS = [f"sender{i}" for i in range(4)]
ONLINE, OFFLINE = "online", "offline"
BATCH = 5  # messages between two <r/>
MIN_ACKED = 120  # acknowledged messages before the kill, across all senders
MAX_SENT = 4000  # per sender: the load loop is bounded whatever happens


class Sender:
    """One XEP-0198 client: sends, asks for acks, remembers which messages the server took."""

    def __init__(self, name: str, client: RawClient) -> None:
        self.name = name
        self.client = client
        self.sent: list[tuple[str, str]] = []  # (recipient, body), in order
        self.acked = 0  # the server's last h: sent[:acked] were handled

    async def run(self) -> None:
        try:
            while len(self.sent) < MAX_SENT:
                for _ in range(BATCH):
                    to = ONLINE if len(self.sent) % 2 == 0 else OFFLINE
                    body = f"{self.name}-{len(self.sent)}"
                    self.sent.append((to, body))
                    await self.client.send(
                        f"<message to='{to}@localhost' type='chat'><body>{body}</body></message>"
                    )
                await self.client.send(f"<r xmlns='{NS_SM}'/>")
                while True:
                    answer = await self.client.next()
                    if answer.tag == q(NS_SM, "a"):
                        self.acked = int(answer.get("h") or "0")
                        break
        except (OSError, EOFError, AssertionError, asyncio.IncompleteReadError, TimeoutError):
            return  # the server died under us


async def reader(client: RawClient, received: set[str]) -> None:
    try:
        while True:
            stanza = await client.next(timeout=60)
            if stanza.tag == q("jabber:client", "message"):
                received.add(stanza.findtext(q("jabber:client", "body")) or "")
    except (OSError, EOFError, AssertionError, asyncio.IncompleteReadError, TimeoutError):
        return


async def login(srv: ServerProcess, user: str) -> RawClient:
    running = cast(RunningServer, srv)
    client = await RawClient.connect(running)
    await client.login(running, f"{user}@localhost")
    return client


async def enable_sm(client: RawClient) -> None:
    await client.send(f"<enable xmlns='{NS_SM}'/>")
    enabled = await client.next()
    assert enabled.tag == q(NS_SM, "enabled"), ET.tostring(enabled)


async def archived_bodies(data_dir: Path, user: str) -> set[str]:
    storage = await open_storage("sqlite:///salon.db", base_dir=data_dir)
    try:
        page = await storage.archive.query("localhost", user, ArchiveQuery(max=100_000))
    finally:
        await storage.close()
    bodies = set()
    for item in page.items:
        body = ET.fromstring(item.stanza).findtext(q("jabber:client", "body"))
        if body:
            bodies.add(body)
    return bodies


async def test_acknowledged_messages_survive_sigkill_under_load(
    tmp_path: Path,
    ca: trustme.CA,
    processes: list[ServerProcess],  # noqa: F811
) -> None:
    storage = await open_storage("sqlite:///salon.db", base_dir=tmp_path)
    try:
        for local in [*SENDERS, ONLINE, OFFLINE]:
            await storage.accounts.create("localhost", local, make_credentials(PASSWORD))
    finally:
        await storage.close()
    first = await serve_process(tmp_path, ca, MODULES)
    processes.append(first)

    online = await login(first, ONLINE)
    await online.send("<presence/>")
    received: set[str] = set()
    reading = asyncio.create_task(reader(online, received))
    senders = []
    for name in SENDERS:
        client = await login(first, name)
        await enable_sm(client)
        senders.append(Sender(name, client))
    sending = [asyncio.create_task(s.run()) for s in senders]

    # Kill mid-flow: once a random number of messages past MIN_ACKED was acknowledged, while
    # every sender has more on the wire.
    target = MIN_ACKED + random.randrange(0, 5 * BATCH * len(SENDERS))
    await until(lambda: sum(s.acked for s in senders) >= target, "acks from the server", 60)
    assert not any(t.done() for t in sending), "a sender stopped before the kill"
    first.process.send_signal(signal.SIGKILL)
    await first.process.wait()
    await asyncio.wait_for(asyncio.gather(*sending, reading), 30)
    in_flight = sum(len(s.sent) - s.acked for s in senders)
    for client in [online, *(s.client for s in senders)]:
        await client.close()

    second = await serve_process(tmp_path, ca, MODULES)
    processes.append(second)
    offline_client = await login(second, OFFLINE)
    await offline_client.send("<presence/>")
    delivered_offline, ping = await read_offline(offline_client)
    await offline_client.send(f"<iq type='result' id='{ping.get('id')}' to='localhost'/>")
    await offline_client.close()
    second.process.send_signal(signal.SIGTERM)
    await second.process.wait()

    archived = {user: await archived_bodies(tmp_path, user) for user in (ONLINE, OFFLINE)}
    acked = [(to, body) for s in senders for to, body in s.sent[: s.acked]]
    assert len(acked) >= MIN_ACKED
    lost_offline = [b for to, b in acked if to == OFFLINE and b not in delivered_offline]
    lost_archive = [b for to, b in acked if b not in archived[to]]
    assert not lost_offline, f"acknowledged but not stored offline: {lost_offline}"
    assert not lost_archive, f"acknowledged but not archived: {lost_archive}"
    # A message is delivered while its archive copies are written (salon.core.write_behind)
    # and acknowledged after they are committed: one delivered live but not archived was
    # killed in between, so it is unacknowledged, and its sender still holds it to send again
    # (XEP-0198 §4). None of them may have been acknowledged.
    unacked = {body for s in senders for _, body in s.sent[s.acked :]}
    assert received - archived[ONLINE] <= unacked
    print(f"acked {len(acked)}, in flight at the kill {in_flight}, delivered live {len(received)}")
