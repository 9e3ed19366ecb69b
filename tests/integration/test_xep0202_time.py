"""XEP-0202: Entity Time, answered by the server; a full JID's time comes from that client."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from slixmpp.exceptions import IqError

from tests.integration.harness import RunningServer, connect_slixmpp, raw_session

NS_TIME = "urn:xmpp:time"
MODULES = ["disco", "presence", "message", "time"]
ServerFactory = Callable[..., Awaitable[RunningServer]]


async def test_server_answers_with_utc_and_offset(server_factory: ServerFactory) -> None:
    server = await server_factory(modules=MODULES)
    client = await connect_slixmpp(server, await server.add_user())
    client.xmpp.register_plugin("xep_0202")
    reply = await client.xmpp.plugin["xep_0202"].get_entity_time(server.domain)
    time = reply.xml.find(f"{{{NS_TIME}}}time")
    assert time is not None
    tzo = time.findtext(f"{{{NS_TIME}}}tzo")
    utc = time.findtext(f"{{{NS_TIME}}}utc")
    # XEP-0202 §2: tzo is a XEP-0082 offset, utc a XEP-0082 dateTime in UTC ("Z").
    assert tzo is not None and re.fullmatch(r"[+-]\d\d:\d\d", tzo), tzo
    assert utc is not None and utc.endswith("Z"), utc
    told = datetime.fromisoformat(utc.removesuffix("Z")).replace(tzinfo=UTC)
    assert abs(datetime.now(UTC) - told) < timedelta(seconds=5)
    await client.disconnect()


async def test_time_is_advertised_in_disco(server_factory: ServerFactory) -> None:
    server = await server_factory(modules=MODULES)
    client = await connect_slixmpp(server, await server.add_user())
    client.xmpp.register_plugin("xep_0030")
    info = await client.xmpp.plugin["xep_0030"].get_info(jid=server.domain)
    assert NS_TIME in info["disco_info"]["features"]
    await client.disconnect()


async def test_time_of_a_full_jid_is_answered_by_that_client(
    server_factory: ServerFactory,
) -> None:
    server = await server_factory(modules=MODULES)
    jid = await server.add_user()
    asker = await connect_slixmpp(server, jid)
    answerer, answerer_jid = await raw_session(server, jid, resource="clock")
    asker.xmpp.register_plugin("xep_0202")
    pending = asyncio.ensure_future(asker.xmpp.plugin["xep_0202"].get_entity_time(answerer_jid))
    request = await answerer.next()
    assert request.get("from") == asker.jid and request.get("to") == answerer_jid
    assert request.find(f"{{{NS_TIME}}}time") is not None
    await answerer.send(
        f"<iq type='result' id='{request.get('id')}' to='{asker.jid}'>"
        f"<time xmlns='{NS_TIME}'><tzo>+01:00</tzo><utc>2024-05-01T10:00:00Z</utc></time></iq>"
    )
    reply = await pending
    assert str(reply["from"]) == answerer_jid
    assert reply.xml.findtext(f"{{{NS_TIME}}}time/{{{NS_TIME}}}tzo") == "+01:00"
    await asker.disconnect()
    await answerer.close()


async def test_time_of_a_bare_jid_is_service_unavailable(server_factory: ServerFactory) -> None:
    # The server answers IQs to bare JIDs itself (RFC 6120 §10.5.3.1) and has no time for
    # an account.
    server = await server_factory(modules=MODULES)
    client = await connect_slixmpp(server, await server.add_user())
    other = await server.add_user()
    client.xmpp.register_plugin("xep_0202")
    try:
        await client.xmpp.plugin["xep_0202"].get_entity_time(other)
    except IqError as err:
        assert err.condition == "service-unavailable"
    else:
        raise AssertionError("expected an error")
    await client.disconnect()
