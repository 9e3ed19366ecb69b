"""A Salon cluster federates (issue 16): capulet.example is served by two ``salon serve``
nodes on one Redis and one PostgreSQL; montague.example is a separate Salon server, run
in-process so the test can read its state. Each node opens its own outgoing server-to-server
connections; a remote server may connect to any node, which routes across the cluster; and
the nodes share the server dialback secret (XEP-0185), so a key made on one node verifies on
another.

Addresses: the nodes listen on 127.0.0.1 (each its own s2s port), montague.example on
127.0.0.2; static overrides replace DNS. montague.example's override for capulet.example names
node n1 only.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme

from salon.net.s2s import S2SInConnection
from tests.cluster.conftest import Cluster, Node
from tests.cluster.test_cluster import chat, login
from tests.integration.harness import (
    SlixClient,
    free_port,
)
from tests.integration.im_helpers import expect_all, presence, push
from tests.integration.message_helpers import is_message
from tests.integration.test_federation import MONTAGUE, MONTAGUE_ADDRESS, Peer, start_peer

CAPULET = "capulet.example"
NODE_ADDRESS = "127.0.0.1"


@dataclass
class Verona:
    """The cluster serving capulet.example and the server of montague.example."""

    cluster: Cluster
    montague: Peer
    s2s_ports: dict[str, int]  # node name -> its s2s port


Federate = Callable[..., Awaitable[Verona]]


@pytest.fixture
async def federate(
    cluster_factory: Callable[..., Awaitable[Cluster]], tmp_path: Path, ca: trustme.CA
) -> AsyncIterator[Federate]:
    trusted = tmp_path / "trusted-ca.pem"
    ca.cert_pem.write_to_path(str(trusted))
    untrusted = tmp_path / "untrusted-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(untrusted))
    started: list[Peer] = []

    async def make(*, dialback: bool = False) -> Verona:
        """``dialback``: montague.example does not trust the CA of capulet.example's
        certificates, so the cluster's outgoing connections authenticate by dialback (the
        cluster trusts montague.example's, which authenticates with SASL EXTERNAL)."""
        montague_port = free_port(MONTAGUE_ADDRESS)
        ports: dict[str, int] = {}

        def s2s(node: Node) -> dict[str, Any]:
            ports[node.name] = free_port(NODE_ADDRESS)
            return {
                "s2s": {
                    "enabled": True,
                    "interfaces": [NODE_ADDRESS],
                    "port": ports[node.name],
                    "direct_tls_enabled": False,
                    "ca_file": str(trusted),
                    "overrides": {MONTAGUE: f"{MONTAGUE_ADDRESS}:{montague_port}"},
                    "connect_timeout": 5.0,
                }
            }

        cluster = await cluster_factory(2, domains=(CAPULET,), sections=s2s)
        montague = await start_peer(
            tmp_path / "montague",
            ca,
            (MONTAGUE,),
            MONTAGUE_ADDRESS,
            montague_port,
            trust=untrusted if dialback else trusted,
            overrides={CAPULET: f"{NODE_ADDRESS}:{ports['n1']}"},  # one node only
            connect_timeout=5.0,
        )
        started.append(montague)
        return Verona(cluster, montague, ports)

    yield make
    for peer in started:
        await peer.server.stop()


async def montague_user(pair: Verona, local: str) -> SlixClient:
    jid = await pair.montague.srv.add_user(local, domain=MONTAGUE)
    return await login(pair.montague.srv, f"{jid}/m")


async def romeo_juliet_and_the_nurse(pair: Verona) -> tuple[SlixClient, ...]:
    """Romeo on montague.example, Juliet on node 1 and the nurse on node 2, all online."""
    n1, n2 = pair.cluster.nodes
    romeo = await montague_user(pair, "romeo")
    juliet = await login(n1, f"{await pair.cluster.add_user('juliet')}/j")
    nurse = await login(n2, f"{await pair.cluster.add_user('nurse')}/n")
    return romeo, juliet, nurse


def from_capulet(pair: Verona) -> list[S2SInConnection]:
    """montague.example's incoming connections on which capulet.example authenticated."""
    return [c for c in pair.montague.server.s2s.incoming if (CAPULET, MONTAGUE) in c.authenticated]


async def test_each_node_opens_its_own_connection_to_the_remote_domain(
    federate: Federate,
) -> None:
    pair = await federate()
    n1, n2 = pair.cluster.nodes
    romeo, juliet, nurse = await romeo_juliet_and_the_nurse(pair)

    chat(juliet, romeo.jid, "from node one")
    chat(nurse, romeo.jid, "from node two")
    first, second = await expect_all(
        romeo,
        lambda s: is_message(s, "from node one"),
        lambda s: is_message(s, "from node two"),
    )
    assert str(first["from"]) == juliet.jid and str(second["from"]) == nurse.jid
    # Two connections reached montague.example, one per node, each authenticated for the
    # cluster's domain (with the certificate every node holds).
    inbound = from_capulet(pair)
    assert len(inbound) == 2, inbound
    assert all(c.authenticated[(CAPULET, MONTAGUE)] == "EXTERNAL" for c in inbound)
    for node in (n1, n2):
        assert f"{CAPULET} → {MONTAGUE} authorized" in node.log_text(), node.name
    await juliet.expect_nothing(lambda s: s["type"] == "error", within=0.2)
    await nurse.expect_nothing(lambda s: s["type"] == "error", within=0.2)
    for client in (romeo, juliet, nurse):
        await client.disconnect()


async def test_remote_server_reaches_users_on_every_node_through_one(
    federate: Federate,
) -> None:
    pair = await federate()
    n1, n2 = pair.cluster.nodes
    romeo, juliet, nurse = await romeo_juliet_and_the_nurse(pair)

    # To bare JIDs (the cluster finds the sessions) and to a full JID on the other node.
    chat(romeo, f"juliet@{CAPULET}", "to juliet on n1")
    chat(romeo, f"nurse@{CAPULET}", "to the nurse on n2")
    chat(romeo, nurse.jid, "to the nurse's resource")
    got = await juliet.expect(lambda s: is_message(s, "to juliet on n1"))
    assert str(got["from"]) == romeo.jid
    for text in ("to the nurse on n2", "to the nurse's resource"):
        got = await nurse.expect(lambda s, text=text: is_message(s, text))
        assert str(got["from"]) == romeo.jid
    await romeo.expect_nothing(lambda s: s["type"] == "error", within=0.2)
    # Everything came in on n1, the only node montague.example knows: n2 accepted no
    # server connection and opened none (nobody on it wrote to montague.example).
    assert f"authenticated as {MONTAGUE} for {CAPULET}" in n1.log_text()
    assert f"authenticated as {MONTAGUE}" not in n2.log_text()
    assert f"connecting to {MONTAGUE}" not in n2.log_text()
    for client in (romeo, juliet, nurse):
        await client.disconnect()


async def test_dialback_key_made_by_one_node_verifies_on_another(federate: Federate) -> None:
    """The nurse on n2 writes to romeo: n2 connects to montague.example and offers a
    dialback key, which montague.example verifies with the authoritative server for
    capulet.example, that is node n1 (its override). n1 can only vouch for the key
    when it knows the secret n2 made it with."""
    pair = await federate(dialback=True)
    n1, n2 = pair.cluster.nodes
    romeo = await montague_user(pair, "romeo")
    nurse = await login(n2, f"{await pair.cluster.add_user('nurse')}/n")

    chat(nurse, romeo.jid, "made on n2, verified on n1")
    got = await romeo.expect(lambda s: is_message(s, "made on n2, verified on n1"))
    assert str(got["from"]) == nurse.jid
    # montague.example accepted capulet.example by dialback, on the one connection there is
    # (n2's: n1 opened none), after asking n1.
    (inbound,) = from_capulet(pair)
    assert inbound.authenticated[(CAPULET, MONTAGUE)] == "dialback"
    assert f"connecting to {MONTAGUE} for {CAPULET}" in n2.log_text()
    assert f"connecting to {MONTAGUE}" not in n1.log_text()
    (verifier,) = pair.montague.server.s2s.outgoing  # where montague.example asked
    assert verifier.remote == CAPULET and verifier.target is not None
    assert verifier.target.port == pair.s2s_ports["n1"]
    # The answer goes back through n1 to the nurse on n2.
    chat(romeo, nurse.jid, "and back")
    got = await nurse.expect(lambda s: is_message(s, "and back"))
    assert str(got["from"]) == romeo.jid
    await nurse.expect_nothing(lambda s: s["type"] == "error", within=0.2)
    for client in (romeo, nurse):
        await client.disconnect()


async def test_subscription_between_a_cluster_user_and_a_remote_user(
    federate: Federate,
) -> None:
    pair = await federate()
    _, n2 = pair.cluster.nodes  # n2: montague.example's stanzas cross the cluster to it
    romeo = await montague_user(pair, "romeo")
    juliet = await login(n2, f"{await pair.cluster.add_user('juliet')}/j")
    romeo_bare, juliet_bare = f"romeo@{MONTAGUE}", f"juliet@{CAPULET}"

    juliet.xmpp.send_presence(pto=romeo_bare, ptype="subscribe")
    request = await romeo.expect(presence("subscribe", juliet_bare))
    assert str(request["from"]) == juliet_bare
    romeo.xmpp.send_presence(pto=juliet_bare, ptype="subscribed")
    await expect_all(
        juliet,
        push(romeo_bare, "to"),
        presence("subscribed", romeo_bare),
        presence(sender=romeo.jid),  # romeo's current presence, answering the probe
    )

    romeo.xmpp.send_presence(pto=juliet_bare, ptype="subscribe")
    await juliet.expect(presence("subscribe", romeo_bare))
    juliet.xmpp.send_presence(pto=romeo_bare, ptype="subscribed")
    await expect_all(
        romeo,
        push(juliet_bare, "both"),
        presence("subscribed", juliet_bare),
        presence(sender=juliet.jid),
    )

    # Broadcasts flow both ways now.
    juliet.xmpp.send_presence(pshow="away")
    await romeo.expect(lambda s: presence(sender=juliet.jid)(s) and s["show"] == "away")
    romeo.xmpp.send_presence(ptype="unavailable")
    await juliet.expect(presence("unavailable", romeo.jid))
    for client in (romeo, juliet):
        await client.disconnect()
