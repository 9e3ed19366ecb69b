"""XEP-0012: Last Activity of the server (uptime) and of accounts (time since logout)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from slixmpp.exceptions import IqError

from salon.core.clock import ManualClock
from salon.storage.interfaces import RosterItem
from tests.integration.harness import RunningServer, SlixClient, connect_slixmpp

NS_LAST = "jabber:iq:last"
MODULES = ["disco", "ping", "presence", "message", "last"]
ServerFactory = Callable[..., Awaitable[RunningServer]]


@pytest.fixture
def clock() -> ManualClock:
    """Time moves only when a test says so: "a second later" needs no sleeping."""
    return ManualClock()


@pytest.fixture
async def server(server_factory: ServerFactory, clock: ManualClock) -> RunningServer:
    return await server_factory(modules=MODULES, clock=clock)


async def connect(server: RunningServer, jid: str) -> SlixClient:
    client = await connect_slixmpp(server, jid)
    client.xmpp.register_plugin("xep_0012")
    return client


async def last_activity(client: SlixClient, jid: str) -> Any:
    return (await client.xmpp.plugin["xep_0012"].get_last_activity(jid))["last_activity"]


async def error_condition(client: SlixClient, jid: str) -> str:
    try:
        await last_activity(client, jid)
    except IqError as err:
        return str(err.condition)
    raise AssertionError("expected an error")


async def subscribe(server: RunningServer, user: str, contact: str, subscription: str) -> None:
    """Give ``user``'s roster an item for ``contact`` (test set-up through storage)."""
    local, domain = user.split("@")
    item = RosterItem(jid=contact, subscription=subscription)
    await server.server.core.storage.roster.put_item(domain, local, item)


async def log_out(client: SlixClient, status: str | None = None) -> None:
    """Unavailable presence (with ``status``), then close the stream."""
    client.xmpp.send_presence(ptype="unavailable", pstatus=status)
    client.xmpp.register_plugin("xep_0199")
    await client.xmpp.plugin["xep_0199"].ping(client.xmpp.boundjid.domain)  # presence handled
    await client.disconnect()


async def last_after_logout(client: SlixClient, jid: str) -> Any:
    """The answer once the server has recorded the logout (as the stream ends; records are
    read from the batch not yet written as well)."""
    for _ in range(250):
        try:
            return await last_activity(client, jid)
        except IqError as err:
            if err.condition != "item-not-found":
                raise
        await asyncio.sleep(0.02)
    raise AssertionError("the logout was never recorded")


async def test_server_answers_its_uptime(server: RunningServer, clock: ManualClock) -> None:
    client = await connect(server, await server.add_user())
    first = await last_activity(client, server.domain)
    assert 0 <= first["seconds"] < 60
    assert not first["status"]  # XEP-0012 §5: SHOULD NOT contain character data
    await clock.advance(42)
    second = await last_activity(client, server.domain)
    assert second["seconds"] == first["seconds"] + 42
    await client.disconnect()


async def test_subscribed_contact_learns_time_and_status_of_last_logout(
    server: RunningServer, clock: ManualClock
) -> None:
    user, contact = await server.add_user(), await server.add_user()
    await subscribe(server, user, contact, "from")
    juliet = await connect(server, user)
    juliet.xmpp.send_presence()
    romeo = await connect(server, contact)
    await log_out(juliet, "Heading Home")
    answer = await last_after_logout(romeo, user)
    assert answer["seconds"] == 0  # the server's clock has not moved since the logout
    assert answer["status"] == "Heading Home"
    await clock.advance(90)  # the record is written meanwhile (batches each second)
    assert (await last_activity(romeo, user))["seconds"] == 90
    await romeo.disconnect()


async def test_user_with_an_available_resource_reports_zero(server: RunningServer) -> None:
    user, contact = await server.add_user(), await server.add_user()
    await subscribe(server, user, contact, "both")
    juliet = await connect(server, user)
    juliet.xmpp.send_presence()
    await juliet.expect(lambda s: s.name == "presence")  # own presence came back: available
    romeo = await connect(server, contact)
    answer = await last_activity(romeo, user)
    assert answer["seconds"] == 0
    assert not answer["status"]
    await juliet.disconnect()
    await romeo.disconnect()


async def test_a_user_may_always_ask_about_their_own_account(server: RunningServer) -> None:
    user = await server.add_user()
    first = await connect(server, user)
    await log_out(first, "gone fishing")
    second = await connect(server, user)  # connected, no presence sent: not available
    answer = await last_after_logout(second, user)
    assert answer["status"] == "gone fishing"
    second.xmpp.send_presence()
    await second.expect(lambda s: s.name == "presence")
    assert (await last_activity(second, user))["seconds"] == 0
    await second.disconnect()


@pytest.mark.parametrize("subscription", [None, "none", "to"])
async def test_entity_without_presence_subscription_is_forbidden(
    server: RunningServer, subscription: str | None
) -> None:
    # XEP-0012 §3: MUST NOT reveal it to an entity not authorized to see the presence.
    user, stranger = await server.add_user(), await server.add_user()
    if subscription is not None:
        await subscribe(server, user, stranger, subscription)
    juliet = await connect(server, user)
    juliet.xmpp.send_presence()
    await juliet.expect(lambda s: s.name == "presence")
    client = await connect(server, stranger)
    assert await error_condition(client, user) == "forbidden"
    await juliet.disconnect()
    await client.disconnect()


async def test_unknown_account_is_service_unavailable(server: RunningServer) -> None:
    # RFC 6121 §8.5.1: an iq to an account that does not exist gets service-unavailable,
    # whatever its payload (as vCard and disco already answer).
    client = await connect(server, await server.add_user())
    assert await error_condition(client, f"nobody@{server.domain}") == "service-unavailable"
    await client.disconnect()


async def test_no_logout_recorded_yet_is_item_not_found(server: RunningServer) -> None:
    user, contact = await server.add_user(), await server.add_user()
    await subscribe(server, user, contact, "from")
    client = await connect(server, contact)
    assert await error_condition(client, user) == "item-not-found"
    await client.disconnect()


async def test_last_activity_is_advertised_in_disco(server: RunningServer) -> None:
    client = await connect(server, await server.add_user())
    client.xmpp.register_plugin("xep_0030")
    info = await client.xmpp.plugin["xep_0030"].get_info(jid=server.domain)
    assert NS_LAST in info["disco_info"]["features"]
    await client.disconnect()
