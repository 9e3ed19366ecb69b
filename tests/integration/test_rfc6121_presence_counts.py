"""RFC 6121 §4.2 and §4.3: every contact's presence reaches each resource once per change.

Two users who share contacts (and are each other's contact) log in with two resources each,
all four initial presences sent at the same moment. Each resource must then hold exactly one
available presence from every resource it should see: its own (§4.2.2), its sibling's, each
contact resource's (a probe answer or a broadcast, never both), and nothing more. Each
contact resource sees each of the four new resources once.

The counts are exact: the test waits until the expected number has arrived, then proves that
nothing else arrives within a short bounded window.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable

import pytest

from tests.integration.harness import RunningServer, SlixClient
from tests.integration.im_helpers import befriend, login, presence

Factory = Callable[..., Awaitable[RunningServer]]

AVAILABLE = presence()
QUIET = 0.5  # seconds in which no further presence may arrive once the counts are reached
CONTACT_RESOURCES = (1, 2, 1, 2, 1)  # c1..c5: how many resources each has online


@pytest.fixture
async def srv(server_factory: Factory) -> RunningServer:
    return await server_factory()


async def available_from(client: SlixClient, expected: int) -> Counter[str]:
    """Available presences ``client`` receives, by sender full JID: waits for ``expected`` of
    them (bounded), then asserts that no further presence of any type arrives within QUIET."""
    seen: Counter[str] = Counter()
    while sum(seen.values()) < expected:
        try:
            stanza = await client.expect(AVAILABLE, timeout=10)
        except AssertionError:
            got = sum(seen.values())
            raise AssertionError(f"{client.jid}: {got} of {expected}: {seen}") from None
        seen[str(stanza["from"])] += 1
    try:
        await client.expect_nothing(presence(), within=QUIET)
    except AssertionError as err:
        raise AssertionError(f"{client.jid}: more than {expected} presences: {err}") from None
    return seen


def siblings(client: SlixClient, clients: list[SlixClient]) -> list[SlixClient]:
    """The other resources of ``client``'s account among ``clients``."""
    bare = client.jid.split("/")[0]
    return [c for c in clients if c is not client and c.jid.split("/")[0] == bare]


async def test_a_second_resource_does_not_bring_contacts_again(srv: RunningServer) -> None:
    """§4.3.1: the probes for a new resource answer that resource; the user's resource that
    was already online hears only the new resource's presence, not its contacts' again."""
    alice = await srv.add_user()
    contact_jids = [await srv.add_user() for _ in range(3)]
    contacts = []
    for contact in contact_jids:
        await befriend(srv, alice, contact)
        contacts.append(await login(srv, contact, "c", available=True))
    first = await login(srv, alice, "a1", available=True)
    assert sorted(await available_from(first, 3)) == sorted(c.jid for c in contacts)
    second = await login(srv, alice, "a2", available=True)  # its own presence taken
    assert await available_from(first, 1) == {second.jid: 1}
    seen = await available_from(second, 4)
    assert seen == {first.jid: 1, **{c.jid: 1 for c in contacts}}
    for client in contacts:
        assert await available_from(client, 2) == {first.jid: 1, second.jid: 1}
    for client in [first, second, *contacts]:
        await client.disconnect()


async def test_two_users_with_shared_contacts_log_in_at_once(srv: RunningServer) -> None:
    alice, bob = await srv.add_user(), await srv.add_user()
    await befriend(srv, alice, bob)
    contact_jids = [await srv.add_user() for _ in CONTACT_RESOURCES]
    for contact in contact_jids:
        await befriend(srv, alice, contact)
        await befriend(srv, bob, contact)

    # The contacts are online first; each resource sees its own presence and its siblings'.
    contacts: list[SlixClient] = []
    for contact, count in zip(contact_jids, CONTACT_RESOURCES, strict=True):
        for n in range(count):
            contacts.append(await login(srv, contact, f"c{n}", available=True))
    await asyncio.gather(*(available_from(c, len(siblings(c, contacts))) for c in contacts))

    # Alice and Bob: four resources bound, then all four initial presences at once.
    users = await asyncio.gather(
        login(srv, alice, "a1"),
        login(srv, alice, "a2"),
        login(srv, bob, "b1"),
        login(srv, bob, "b2"),
    )
    for client in users:
        client.xmpp.send_presence()

    user_jids = [u.jid for u in users]
    contact_full = [c.jid for c in contacts]
    # Each of the four sees itself, its sibling, the other user's two, and 7 contact resources.
    wanted_by_user = sorted(user_jids + contact_full)
    results = await asyncio.gather(*(available_from(u, len(wanted_by_user)) for u in users))
    for client, seen in zip(users, results, strict=True):
        assert sorted(seen) == wanted_by_user, (client.jid, seen)
        assert set(seen.values()) == {1}, (client.jid, seen)
    # Each contact resource sees each of the four new resources once.
    results = await asyncio.gather(*(available_from(c, len(user_jids)) for c in contacts))
    for client, seen in zip(contacts, results, strict=True):
        assert sorted(seen) == sorted(user_jids), (client.jid, seen)
        assert set(seen.values()) == {1}, (client.jid, seen)

    for client in users + contacts:
        await client.disconnect()
