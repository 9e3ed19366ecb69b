"""Invite-only registration on a real server: an admin makes a token with the XEP-0401
``urn:xmpp:invite#create-account`` command (slixmpp), an invitee presents it with the XEP-0445
``<preauth/>`` iq and registers (XEP-0077) over a raw stream; without an accepted token, or
with an unknown, used or expired one, the exact errors."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable

import pytest
from slixmpp.exceptions import IqError

from salon.core.clock import ManualClock
from tests.integration.harness import PASSWORD, RawClient, RunningServer, SlixClient, q
from tests.integration.test_xep0077_register import (
    NS_CLIENT,
    NS_FEATURE,
    account_exists,
    can_log_in,
    error_of,
    preauth,
    register,
)
from tests.integration.test_xep0133_admin import NS_DATA, login, submit

NS_PARS = "urn:xmpp:pars:0"
NS_IBR_TOKEN = "urn:xmpp:ibr-token:0"
NODE = "urn:xmpp:invite#create-account"
ADMINS = {"server": {"admins": ["boss@localhost"]}}
LIFETIME = 100.0
Factory = Callable[..., Awaitable[RunningServer]]


async def invite_server(
    factory: Factory, clock: ManualClock | None = None, **c2s: object
) -> RunningServer:
    opts = {"invite_only": True, "invite_lifetime": LIFETIME}
    srv = await factory(sections=ADMINS, module_options={"register": opts}, clock=clock, **c2s)
    await srv.add_user("boss")
    return srv


@pytest.fixture
async def server(server_factory: Factory) -> RunningServer:
    return await invite_server(server_factory)


async def create_invite(admin: SlixClient, username: str | None = None) -> dict[str, str]:
    """Run the command (it has no form: completed at once; a ``username`` goes in a form
    submitted with the execute request); the result form's values."""
    payload = None if username is None else submit(admin.xmpp, {"username": username})
    reply = await admin.xmpp.plugin["xep_0050"].send_command(
        "localhost", NODE, payload=payload, timeout=5
    )
    assert reply["command"]["status"] == "completed"
    x = reply["command"].xml.find(q(NS_DATA, "x"))
    assert x is not None and x.get("type") == "result"
    values = {}
    for f in x.findall(q(NS_DATA, "field")):
        value = f.find(q(NS_DATA, "value"))
        values[f.get("var") or ""] = value.text if value is not None and value.text else ""
    return values


async def present(client: RawClient, token: str, iq_id: str = "pa1") -> ET.Element:
    preauth_el = f"<preauth xmlns='{NS_PARS}' token='{token}'/>"
    await client.send(f"<iq type='set' to='localhost' id='{iq_id}'>{preauth_el}</iq>")
    reply = await client.next()
    assert reply.tag == q(NS_CLIENT, "iq") and reply.get("id") == iq_id, ET.tostring(reply)
    return reply


async def test_features_offer_ibr_token_and_register(server: RunningServer) -> None:
    client, features = await preauth(server)
    assert features.find(q(NS_IBR_TOKEN, "register")) is not None
    assert features.find(q(NS_FEATURE, "register")) is not None
    await client.close()


async def test_invite_registers_once(server: RunningServer) -> None:
    admin = await login(server, "boss@localhost")
    invite = await create_invite(admin)
    token = invite["token"]
    assert invite["uri"] == f"xmpp:localhost?register;preauth={token}"
    assert invite["expire"].endswith("Z")

    # without presenting the token first: not-allowed, nothing created
    client, _ = await preauth(server)
    assert error_of(await register(client, "juliet")) == ("not-allowed", "cancel")
    assert not await account_exists(server, "juliet")

    # the token is accepted, then the registration succeeds and the user can log in
    assert (await present(client, token)).get("type") == "result"
    reply = await register(client, "juliet", iq_id="reg2")
    assert reply.get("type") == "result", ET.tostring(reply)
    await client.close()
    assert await can_log_in(server, "juliet@localhost", PASSWORD)

    # the used token: item-not-found (cancel), and still no registration on that stream
    other, _ = await preauth(server)
    assert error_of(await present(other, token)) == ("item-not-found", "cancel")
    assert error_of(await register(other, "romeo")) == ("not-allowed", "cancel")
    await other.close()
    assert not await account_exists(server, "romeo")


async def test_invite_for_a_username_registers_that_username_only(
    server: RunningServer,
) -> None:
    admin = await login(server, "boss@localhost")
    invite = await create_invite(admin, "Juliet")
    token = invite["token"]
    # XEP-0445 §2.1: the URI names the account the invitation is for (username prepared)
    assert invite["uri"] == f"xmpp:juliet@localhost?register;preauth={token}"
    client, _ = await preauth(server)
    assert (await present(client, token)).get("type") == "result"
    # another username with this token: forbidden, and the token stays usable
    assert error_of(await register(client, "romeo")) == ("forbidden", "auth")  # RFC 6120 §8.3.3.5
    assert not await account_exists(server, "romeo")
    assert (await register(client, "juliet", iq_id="reg2")).get("type") == "result"
    await client.close()
    assert await can_log_in(server, "juliet@localhost", PASSWORD)
    # used up, as any invitation
    other, _ = await preauth(server)
    assert error_of(await present(other, token)) == ("item-not-found", "cancel")
    await other.close()


async def test_invite_for_a_taken_or_invalid_username_is_refused(server: RunningServer) -> None:
    admin = await login(server, "boss@localhost")
    with pytest.raises(IqError) as exc:
        await create_invite(admin, "boss")
    assert exc.value.condition == "conflict"
    with pytest.raises(IqError) as exc:
        await create_invite(admin, "not a name")
    assert exc.value.condition == "not-acceptable"
    with pytest.raises(IqError) as exc:
        await create_invite(admin, "juliet@elsewhere.example")
    assert exc.value.condition == "not-acceptable"


async def test_unknown_or_missing_token(server: RunningServer) -> None:
    client, _ = await preauth(server)
    assert error_of(await present(client, "no-such-token")) == ("item-not-found", "cancel")
    await client.send(f"<iq type='set' id='pa2'><preauth xmlns='{NS_PARS}'/></iq>")
    reply = await client.next()
    assert error_of(reply)[0] == "bad-request"
    await client.close()


async def test_token_belongs_to_the_connection_that_presented_it(server: RunningServer) -> None:
    admin = await login(server, "boss@localhost")
    token = (await create_invite(admin))["token"]
    first, _ = await preauth(server)
    assert (await present(first, token)).get("type") == "result"
    second, _ = await preauth(server)
    assert error_of(await register(second, "mallory")) == ("not-allowed", "cancel")
    # both present it; the first to register uses it up, the other is refused
    assert (await present(second, token)).get("type") == "result"
    assert (await register(second, "alice")).get("type") == "result"
    assert error_of(await register(first, "bob")) == ("not-allowed", "cancel")
    assert not await account_exists(server, "bob")
    await first.close()
    await second.close()


async def test_taken_username_does_not_use_the_token(server: RunningServer) -> None:
    admin = await login(server, "boss@localhost")
    token = (await create_invite(admin))["token"]
    client, _ = await preauth(server)
    assert (await present(client, token)).get("type") == "result"
    assert error_of(await register(client, "boss"))[0] == "conflict"
    assert (await register(client, "carol", iq_id="reg2")).get("type") == "result"
    await client.close()


async def test_expired_token(server_factory: Factory) -> None:
    clock = ManualClock()
    # the stream waits longer than the clock moves
    srv = await invite_server(server_factory, clock, handshake_timeout=1e6, idle_timeout=1e6)
    admin = await login(srv, "boss@localhost")
    early = (await create_invite(admin))["token"]
    late = (await create_invite(admin))["token"]
    client, _ = await preauth(srv)
    assert (await present(client, early)).get("type") == "result"
    await clock.advance(LIFETIME + 1)
    # expiry is checked when the token is presented, never after (XEP-0445)
    assert (await register(client, "dave")).get("type") == "result"
    other, _ = await preauth(srv)
    assert error_of(await present(other, late)) == ("item-not-found", "cancel")
    await client.close()
    await other.close()


async def test_non_admin_cannot_create_invites(server: RunningServer) -> None:
    await server.add_user("eve")
    eve = await login(server, "eve@localhost")
    with pytest.raises(IqError) as exc:
        await eve.xmpp.plugin["xep_0050"].send_command("localhost", NODE, timeout=5)
    assert exc.value.condition == "forbidden"


async def test_preauth_not_offered_without_invite_only(server_factory: Factory) -> None:
    srv = await server_factory(module_options={"register": {"allow_registration": True}})
    client, features = await preauth(srv)
    assert features.find(q(NS_IBR_TOKEN, "register")) is None
    assert (await register(client, "frank")).get("type") == "result"
    # the preauth namespace is not open before authentication: RFC 6120's not-authorized
    preauth_el = f"<preauth xmlns='{NS_PARS}' token='x'/>"
    await client.send(f"<iq type='set' to='localhost' id='pa1'>{preauth_el}</iq>")
    error = await client.next()
    assert error.tag == q("http://etherx.jabber.org/streams", "error")
    assert error.find(q("urn:ietf:params:xml:ns:xmpp-streams", "not-authorized")) is not None
