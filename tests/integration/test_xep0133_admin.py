"""XEP-0050 ad-hoc commands and XEP-0133 service administration, driven by slixmpp's
xep_0050 plugin as an admin, and refused to anyone else."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import slixmpp
from slixmpp.exceptions import IqError

from salon.jid import JID
from tests.integration.harness import (
    RawClient,
    RunningServer,
    SlixClient,
    connect_slixmpp,
    q,
)
from tests.integration.message_helpers import available

ServerFactory = Callable[..., Awaitable[RunningServer]]
NS_COMMANDS = "http://jabber.org/protocol/commands"
NS_ADMIN = "http://jabber.org/protocol/admin"
NS_DATA = "jabber:x:data"
NS_ROSTER = "jabber:iq:roster"
NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"


def with_adhoc(xmpp: slixmpp.ClientXMPP) -> None:
    xmpp.register_plugin("xep_0004")
    xmpp.register_plugin("xep_0030")
    xmpp.register_plugin("xep_0050")


@pytest.fixture
async def admin_server(server_factory: ServerFactory) -> RunningServer:
    return await server_factory(sections={"server": {"admins": ["boss@localhost"]}})


async def login(srv: RunningServer, jid: str) -> SlixClient:
    return await connect_slixmpp(srv, jid, configure=with_adhoc)


def submit(xmpp: slixmpp.ClientXMPP, values: dict[str, Any]) -> Any:
    form = xmpp.plugin["xep_0004"].make_form(ftype="submit")
    form.add_field(var="FORM_TYPE", ftype="hidden", value=NS_ADMIN)
    for var, value in values.items():
        form.add_field(var=var, value=value)
    return form


async def run(client: SlixClient, node: str, values: dict[str, Any] | None) -> Any:
    """Execute ``node``; when it answers with a form, submit ``values`` with 'complete'."""
    xmpp = client.xmpp
    first = await xmpp.plugin["xep_0050"].send_command("localhost", f"{NS_ADMIN}#{node}", timeout=5)
    command = first["command"]
    if command["status"] == "completed":
        return first
    assert command["status"] == "executing"
    assert command.xml.find(f"{q(NS_COMMANDS, 'actions')}/{q(NS_COMMANDS, 'complete')}") is not None
    form = command.xml.find(q(NS_DATA, "x"))
    assert form is not None and form.get("type") == "form"
    return await xmpp.plugin["xep_0050"].send_command(
        "localhost",
        f"{NS_ADMIN}#{node}",
        action="complete",
        sessionid=command["sessionid"],
        payload=submit(xmpp, values or {}),
        timeout=5,
    )


async def plain_auth(srv: RunningServer, jid: str, password: str) -> str:
    """SASL PLAIN over a raw stream: "success" or the failure's condition."""
    raw = await RawClient.connect(srv)
    try:
        await raw.open()
        await raw.starttls(srv)
        await raw.open()
        answer = await raw.auth_plain(jid, password)
    finally:
        raw.writer.close()
    if answer.tag == q(NS_SASL, "success"):
        return "success"
    assert answer.tag == q(NS_SASL, "failure")
    return answer[0].tag.split("}")[1]


def field_values(reply: Any, var: str) -> list[str]:
    x = reply["command"].xml.find(q(NS_DATA, "x"))
    assert x is not None
    for f in x.findall(q(NS_DATA, "field")):
        if f.get("var") == var:
            return [v.text or "" for v in f.findall(q(NS_DATA, "value"))]
    raise AssertionError(f"no field {var}")


async def test_admin_sees_and_runs_commands(admin_server: RunningServer) -> None:
    srv = admin_server
    await srv.add_user("boss")
    boss = await login(srv, "boss@localhost")
    items = await boss.xmpp.plugin["xep_0030"].get_items(
        jid="localhost", node=NS_COMMANDS, timeout=5
    )
    nodes = {item[1] for item in items["disco_items"]["items"]}
    assert f"{NS_ADMIN}#add-user" in nodes and f"{NS_ADMIN}#announce" in nodes

    # add a user, who can then log in
    done = await run(boss, "add-user", {"accountjid": "newbie@localhost", "password": "s3cret!",
                                        "password-verify": "s3cret!"})  # fmt: skip
    assert done["command"]["status"] == "completed"
    newbie = await connect_slixmpp(srv, "newbie@localhost", "s3cret!")
    await available(newbie)

    # adding the same user again: conflict
    with pytest.raises(IqError) as exc:
        await run(boss, "add-user", {"accountjid": "newbie@localhost", "password": "x",
                                     "password-verify": "x"})  # fmt: skip
    assert exc.value.condition == "conflict"

    count = await run(boss, "get-online-users-num", None)
    assert field_values(count, "onlineusersnum") == ["2"]
    online = await run(boss, "get-online-users-list", None)
    assert set(field_values(online, "onlineuserjids")) == {"boss@localhost", "newbie@localhost"}

    # announce reaches the online user as a headline from the server
    await run(boss, "announce", {"subject": "Hi", "announcement": "maintenance at noon"})
    msg = await newbie.expect(lambda s: s.name == "message" and s["type"] == "headline")
    assert msg["body"] == "maintenance at noon" and str(msg["from"]) == "localhost"

    # the roster of a user
    await newbie.xmpp.update_roster("boss@localhost", name="The Boss", groups=["Work"])
    roster = await run(boss, "get-user-roster", {"accountjid": "newbie@localhost"})
    query = roster["command"].xml.find(q(NS_ROSTER, "query"))
    assert query is not None
    (item,) = query.findall(q(NS_ROSTER, "item"))
    assert item.get("jid") == "boss@localhost" and item.get("name") == "The Boss"

    last = await run(boss, "get-user-lastlogin", {"accountjid": "newbie@localhost"})
    assert field_values(last, "lastlogin")[0].endswith("Z")

    # change the password: the old one no longer works, the new one does
    await run(boss, "change-user-password", {"accountjid": "newbie@localhost",
                                             "password": "n3w-pass"})  # fmt: skip
    assert await plain_auth(srv, "newbie@localhost", "s3cret!") == "not-authorized"
    assert await plain_auth(srv, "newbie@localhost", "n3w-pass") == "success"

    # end the session: the stream closes
    await run(boss, "end-user-session", {"accountjids": ["newbie@localhost"]})
    await newbie.expect(lambda s: s.name == "stream_error" or "error" in str(s.name), 5)
    sessions = srv.server.core.sessions
    for _ in range(100):
        if not sessions.is_online(JID.parse("newbie@localhost")):
            break
        await asyncio.sleep(0.02)
    assert not sessions.is_online(JID.parse("newbie@localhost"))
    newbie.xmpp.disconnect()

    # disable: cannot log in; re-enable: can again
    await run(boss, "disable-user", {"accountjids": ["newbie@localhost"]})
    assert await plain_auth(srv, "newbie@localhost", "n3w-pass") == "not-authorized"
    await run(boss, "reenable-user", {"accountjids": ["newbie@localhost"]})
    again = await connect_slixmpp(srv, "newbie@localhost", "n3w-pass")
    await again.disconnect()

    # delete: gone
    done = await run(boss, "delete-user", {"accountjids": ["newbie@localhost"]})
    assert done["command"]["status"] == "completed"
    assert await srv.server.core.storage.accounts.get("localhost", "newbie") is None
    await boss.disconnect()


async def test_motd_sent_at_login(admin_server: RunningServer) -> None:
    srv = admin_server
    await srv.add_user("boss")
    boss = await login(srv, "boss@localhost")
    await run(boss, "set-motd", {"subject": "Welcome", "motd": ["Be nice.", "Really."]})
    user = await srv.add_user()
    client = await connect_slixmpp(srv, user)
    client.xmpp.send_presence()
    motd = await client.expect(lambda s: s.name == "message" and s["type"] == "headline")
    assert motd["subject"] == "Welcome" and motd["body"] == "Be nice.\nReally."
    # once per session: available again after unavailable brings no second copy
    client.xmpp.send_presence(ptype="unavailable")
    client.xmpp.send_presence()
    await client.expect_nothing(lambda s: s.name == "message", within=0.3)
    await run(boss, "delete-motd", None)
    other = await connect_slixmpp(srv, await srv.add_user())
    other.xmpp.send_presence()
    await other.expect_nothing(lambda s: s.name == "message", within=0.3)
    for c in (boss, client, other):
        await c.disconnect()


async def test_non_admin_is_forbidden(admin_server: RunningServer) -> None:
    srv = admin_server
    user = await srv.add_user()
    client = await login(srv, user)
    items = await client.xmpp.plugin["xep_0030"].get_items(
        jid="localhost", node=NS_COMMANDS, timeout=5
    )
    assert list(items["disco_items"]["items"]) == []
    with pytest.raises(IqError) as exc:
        await client.xmpp.plugin["xep_0050"].send_command(
            "localhost", f"{NS_ADMIN}#add-user", timeout=5
        )
    assert exc.value.condition == "forbidden"
    assert exc.value.iq["error"]["type"] == "auth"
    await client.disconnect()


async def test_session_rules(admin_server: RunningServer) -> None:
    """Cancel ends a session; an unknown session id is bad-request with <bad-sessionid/>."""
    srv = admin_server
    await srv.add_user("boss")
    boss = await login(srv, "boss@localhost")
    plugin = boss.xmpp.plugin["xep_0050"]
    node = f"{NS_ADMIN}#add-user"
    first = await plugin.send_command("localhost", node, timeout=5)
    sid = first["command"]["sessionid"]
    canceled = await plugin.send_command("localhost", node, action="cancel", sessionid=sid,
                                         timeout=5)  # fmt: skip
    assert canceled["command"]["status"] == "canceled"
    with pytest.raises(IqError) as exc:
        await plugin.send_command("localhost", node, action="complete", sessionid=sid,
                                  payload=submit(boss.xmpp, {}), timeout=5)  # fmt: skip
    assert exc.value.condition == "bad-request"
    assert exc.value.iq.xml.find(f"*/{q(NS_COMMANDS, 'bad-sessionid')}") is not None
    with pytest.raises(IqError) as exc:
        await plugin.send_command("localhost", f"{NS_ADMIN}#nope", timeout=5)
    assert exc.value.condition == "item-not-found"
    await boss.disconnect()


async def test_admins_per_host(server_factory: ServerFactory) -> None:
    srv = await server_factory(
        sections={"hosts": {"example.test": {"admins": ["chief@example.test"]}}}
    )
    assert "chief@example.test" in srv.server.core.hosts["example.test"].admins()
    assert srv.server.core.hosts["localhost"].admins() == frozenset()
