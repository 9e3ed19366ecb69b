"""The shortest path through the server: two slixmpp clients exchange a message."""

from __future__ import annotations

from tests.integration.harness import RawClient, RunningServer, connect_slixmpp


async def test_message_between_two_users_over_starttls(server: RunningServer) -> None:
    romeo_jid = await server.add_user("romeo")
    juliet_jid = await server.add_user("juliet")
    romeo = await connect_slixmpp(server, romeo_jid)
    juliet = await connect_slixmpp(server, juliet_jid)
    juliet.xmpp.send_presence()
    await juliet.expect(lambda s: s.name == "presence")
    romeo.xmpp.send_message(mto=juliet_jid, mbody="Art thou not Romeo?", mtype="chat")
    msg = await juliet.expect(lambda s: s.name == "message")
    assert msg["body"] == "Art thou not Romeo?"
    assert str(msg["from"]) == romeo.jid
    await romeo.disconnect()
    await juliet.disconnect()


async def test_raw_login(server: RunningServer) -> None:
    jid = await server.add_user()
    client = await RawClient.connect(server)
    bound = await client.login(server, jid, resource="desk")
    assert bound == f"{jid}/desk"
    await client.send("</stream:stream>")
    await client.expect_closed()
