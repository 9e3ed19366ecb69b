"""A node of the cluster is SIGKILLed while messages flow to a user on it: every message the
sender's server acknowledged (XEP-0198 <a/>) either reached the user before the kill or is
stored offline for the user afterwards; the user's contacts on the surviving nodes get its
unavailable presence; the surviving nodes keep serving."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.cluster.conftest import Cluster
from tests.cluster.test_cluster import chat, login
from tests.integration.harness import until
from tests.integration.im_helpers import presence
from tests.integration.message_helpers import is_message

BEFORE_KILL = 40  # messages sent before the kill
AFTER_KILL = 40  # and after it, while the cluster notices


async def test_sigkill_mid_load_loses_nothing_accepted(cluster: Cluster) -> None:
    n1, n2, n3 = cluster.nodes
    alice, bob, carol = [await cluster.add_user(n) for n in ("alice", "bob", "carol")]
    await cluster.befriend(bob, carol)
    loop = asyncio.get_running_loop()
    enabled: asyncio.Future[Any] = loop.create_future()
    acked: set[str] = set()

    def configure(xmpp: Any) -> None:
        xmpp.register_plugin("xep_0198")
        xmpp.plugin["xep_0198"].window = 1  # ask for an ack after every stanza

        def on_enabled(_event: Any) -> None:
            if not enabled.done():
                enabled.set_result(True)

        def on_acked(stanza: Any) -> None:
            if stanza.name == "message" and stanza["body"]:
                acked.add(str(stanza["body"]))

        xmpp.add_event_handler("sm_enabled", on_enabled)
        xmpp.add_event_handler("stanza_acked", on_acked)

    ca = await login(n1, f"{alice}/a", configure=configure)
    await asyncio.wait_for(enabled, 5)
    cb = await login(n2, f"{bob}/b")
    cc = await login(n3, f"{carol}/c")
    await cc.expect(presence(sender=f"{bob}/b"))

    received: set[str] = set()

    def bob_got(stanza: Any) -> bool:
        if is_message(stanza) and stanza["body"]:
            received.add(str(stanza["body"]))
        return False

    collector = loop.create_task(_drain(cb, bob_got))
    for n in range(BEFORE_KILL):
        chat(ca, f"{bob}/b", f"m{n}")
        if n % 10 == 9:
            await asyncio.sleep(0.02)
    await until(lambda: len(received) >= BEFORE_KILL // 2, "bob receiving the first messages")
    n2.kill()  # mid-load: messages are in flight to n2
    for n in range(BEFORE_KILL, BEFORE_KILL + AFTER_KILL):
        chat(ca, f"{bob}/b", f"m{n}")
        if n % 10 == 9:
            await asyncio.sleep(0.05)
    collector.cancel()

    # Carol (on n3) learns that bob is gone, within seconds of the kill.
    await cc.expect(presence("unavailable", f"{bob}/b"), timeout=10)
    # Everything alice sent is acknowledged by n1, which survived.
    sent = {f"m{n}" for n in range(BEFORE_KILL + AFTER_KILL)}
    ca.xmpp.plugin["xep_0198"].request_ack()  # the window may leave the last ones unasked
    await until(lambda: acked >= sent, "acks for every message", timeout=15)

    # Whatever bob did not get is stored offline: bob logs in again on a survivor.
    async def stored() -> set[str]:
        from salon.xml.fragment import parse_element

        bodies = set()
        for message in await cluster.storage.offline.list("localhost", "bob"):
            body = parse_element(message.stanza).find_text("body", "jabber:client")
            if body:
                bodies.add(body)
        return bodies

    async def accounted() -> bool:
        return acked <= received | await stored()

    await until(accounted, "every acknowledged message delivered or stored", timeout=15)
    missing = acked - received - await stored()
    assert not missing, sorted(missing)
    # The survivors keep serving: bob comes back on n3 and gets the stored messages.
    offline = await stored()
    cb2 = await login(n3, f"{bob}/b2")
    got_back: set[str] = set()
    while not offline <= got_back:
        stanza = await cb2.expect(lambda s: is_message(s) and bool(s["body"]))
        got_back.add(str(stanza["body"]))
    chat(cc, bob, "still here")
    await cb2.expect(lambda s: is_message(s, "still here"))
    print(f"received before the kill: {len(received)}, stored offline: {len(offline)}")
    for client in (ca, cc, cb2):
        await client.disconnect()


async def _drain(client: Any, look: Any) -> None:
    while True:
        stanza = await client.inbox.get()
        look(stanza)


async def test_sigkill_of_the_senders_node_loses_nothing_it_acknowledged(
    cluster: Cluster,
) -> None:
    """The other side: the sender's node dies mid-load. Whatever it acknowledged (XEP-0198
    <a/>, sent only once the stanzas are in the recipient node's Redis stream) reaches the
    recipient on a surviving node."""
    n1, n2, _ = cluster.nodes
    alice, bob = [await cluster.add_user(n) for n in ("alice", "bob")]
    loop = asyncio.get_running_loop()
    enabled: asyncio.Future[Any] = loop.create_future()
    acked: set[str] = set()

    def configure(xmpp: Any) -> None:
        xmpp.register_plugin("xep_0198")
        xmpp.plugin["xep_0198"].window = 1

        def on_enabled(_event: Any) -> None:
            if not enabled.done():
                enabled.set_result(True)

        def on_acked(stanza: Any) -> None:
            if stanza.name == "message" and stanza["body"]:
                acked.add(str(stanza["body"]))

        xmpp.add_event_handler("sm_enabled", on_enabled)
        xmpp.add_event_handler("stanza_acked", on_acked)

    cb = await login(n2, f"{bob}/b")
    ca = await login(n1, f"{alice}/a", configure=configure)
    await asyncio.wait_for(enabled, 5)
    received: set[str] = set()

    def bob_got(stanza: Any) -> bool:
        if is_message(stanza) and stanza["body"]:
            received.add(str(stanza["body"]))
        return False

    collector = loop.create_task(_drain(cb, bob_got))
    for n in range(200):
        chat(ca, f"{bob}/b", f"k{n}")
        if n % 10 == 9:
            await asyncio.sleep(0.01)
        if len(acked) >= 30:
            break
    n1.kill()  # with acknowledged and unacknowledged messages in flight
    assert acked, "nothing was acknowledged before the kill"
    await until(lambda: acked <= received, "every acknowledged message at bob", timeout=15)
    collector.cancel()
    print(f"acknowledged before the kill: {len(acked)}, received: {len(received)}")
    await cb.disconnect()
