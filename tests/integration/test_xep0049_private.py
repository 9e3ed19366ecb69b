"""XEP-0049: Private XML Storage."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from slixmpp.exceptions import IqError
from slixmpp.xmlstream import ElementBase

from tests.integration.harness import RunningServer, SlixClient, connect_slixmpp, q

NS_PRIVATE = "jabber:iq:private"
NS_PREFS = "urn:example:prefs"
MODULES = ["disco", "presence", "message", "private"]
ServerFactory = Callable[..., Awaitable[RunningServer]]


class Prefs(ElementBase):
    """A client's own payload, as a client library would declare it."""

    name = "prefs"
    namespace = NS_PREFS
    plugin_attrib = "prefs"
    interfaces = {"nick"}
    sub_interfaces = interfaces


@pytest.fixture
async def server(server_factory: ServerFactory) -> RunningServer:
    return await server_factory(modules=MODULES)


async def connect(server: RunningServer, jid: str | None = None) -> SlixClient:
    client = await connect_slixmpp(server, jid or await server.add_user())
    client.xmpp.register_plugin("xep_0049")
    client.xmpp.plugin["xep_0049"].register(Prefs)
    return client


async def private_iq(client: SlixClient, iq_type: str, inner: str, to: str | None = None) -> Any:
    """Send <query xmlns='jabber:iq:private'>inner</query>; the reply's query element."""
    iq = client.xmpp.make_iq(itype=iq_type, ito=to)
    iq.append(ET.fromstring(f"<query xmlns='{NS_PRIVATE}'>{inner}</query>"))
    reply = await iq.send()
    return reply.xml.find(q(NS_PRIVATE, "query"))


async def error_of(coro: Awaitable[Any]) -> str:
    try:
        await coro
    except IqError as err:
        return str(err.condition)
    raise AssertionError("expected an error")


def texts(query: ET.Element, ns: str, tag: str) -> list[str]:
    return [child.text or "" for child in query.findall(q(ns, tag))]


async def test_stored_fragment_comes_back_in_a_later_session(server: RunningServer) -> None:
    jid = await server.add_user()
    client = await connect(server, jid)
    prefs = Prefs()
    prefs["nick"] = "Hamlet"
    await client.xmpp.plugin["xep_0049"].store(prefs)
    await client.disconnect()
    client = await connect(server, jid)
    reply = await client.xmpp.plugin["xep_0049"].retrieve("prefs")
    assert reply["private"]["prefs"]["nick"] == "Hamlet"
    await client.disconnect()


async def test_namespace_with_nothing_stored_returns_the_empty_element(
    server: RunningServer,
) -> None:
    client = await connect(server)
    query = await private_iq(client, "get", f"<prefs xmlns='{NS_PREFS}'/>")
    children = list(query)
    assert [child.tag for child in children] == [q(NS_PREFS, "prefs")]
    assert len(children[0]) == 0
    await client.disconnect()


async def test_set_replaces_only_the_namespaces_it_carries(server: RunningServer) -> None:
    client = await connect(server)
    await private_iq(client, "set", "<a xmlns='urn:example:a'>1</a><a xmlns='urn:example:a'>2</a>")
    await private_iq(client, "set", "<b xmlns='urn:example:b'>keep</b>")
    stored_a = await private_iq(client, "get", "<a xmlns='urn:example:a'/>")
    assert texts(stored_a, "urn:example:a", "a") == ["1", "2"]  # §2.3: several per namespace
    await private_iq(client, "set", "<a xmlns='urn:example:a'>3</a>")
    stored_a = await private_iq(client, "get", "<a xmlns='urn:example:a'/>")
    assert texts(stored_a, "urn:example:a", "a") == ["3"]
    stored_b = await private_iq(client, "get", "<b xmlns='urn:example:b'/>")
    assert texts(stored_b, "urn:example:b", "b") == ["keep"]
    await client.disconnect()


@pytest.mark.parametrize("iq_type", ["get", "set"])
async def test_query_without_a_child_is_not_acceptable(server: RunningServer, iq_type: str) -> None:
    client = await connect(server)
    assert await error_of(private_iq(client, iq_type, "")) == "not-acceptable"
    await client.disconnect()


@pytest.mark.parametrize(
    "inner",
    [
        "<body xmlns='jabber:client'>x</body>",
        "<db xmlns='jabber:server'/>",
        "<nested>inherits jabber:iq:private</nested>",
        f"<query xmlns='{NS_PRIVATE}'/>",
        "<plain xmlns=''/>",
    ],
)
@pytest.mark.parametrize("iq_type", ["get", "set"])
async def test_reserved_namespace_is_not_acceptable(
    server: RunningServer, iq_type: str, inner: str
) -> None:
    client = await connect(server)
    assert await error_of(private_iq(client, iq_type, inner)) == "not-acceptable"
    await client.disconnect()


async def test_reserved_fragment_makes_the_whole_set_fail(server: RunningServer) -> None:
    client = await connect(server)
    inner = "<a xmlns='urn:example:a'>lost</a><body xmlns='jabber:client'/>"
    assert await error_of(private_iq(client, "set", inner)) == "not-acceptable"
    stored = await private_iq(client, "get", "<a xmlns='urn:example:a'/>")
    assert texts(stored, "urn:example:a", "a") == [""]  # nothing was stored
    await client.disconnect()


async def test_get_of_two_namespaces_is_bad_request(server: RunningServer) -> None:
    # XEP-0049 §2.3: a client MUST NOT query for more than one namespace in one get.
    client = await connect(server)
    inner = "<a xmlns='urn:example:a'/><b xmlns='urn:example:b'/>"
    assert await error_of(private_iq(client, "get", inner)) == "bad-request"
    await client.disconnect()


@pytest.mark.parametrize("iq_type", ["get", "set"])
async def test_another_users_storage_is_forbidden(server: RunningServer, iq_type: str) -> None:
    owner = await connect(server)
    owner_jid = owner.xmpp.boundjid.bare
    await private_iq(owner, "set", "<a xmlns='urn:example:a'>secret</a>")
    intruder = await connect(server)
    inner = "<a xmlns='urn:example:a'>overwritten</a>"
    assert await error_of(private_iq(intruder, iq_type, inner, to=owner_jid)) == "forbidden"
    stored = await private_iq(owner, "get", "<a xmlns='urn:example:a'/>")
    assert texts(stored, "urn:example:a", "a") == ["secret"]
    await owner.disconnect()
    await intruder.disconnect()


async def test_own_bare_jid_as_to_is_the_users_storage(server: RunningServer) -> None:
    client = await connect(server)
    own = client.xmpp.boundjid.bare
    await private_iq(client, "set", "<a xmlns='urn:example:a'>mine</a>", to=own)
    stored = await private_iq(client, "get", "<a xmlns='urn:example:a'/>")
    assert texts(stored, "urn:example:a", "a") == ["mine"]
    await client.disconnect()


async def test_storage_over_the_size_limit_is_not_acceptable(
    server_factory: ServerFactory,
) -> None:
    server = await server_factory(modules=MODULES, module_options={"private": {"max_bytes": 1024}})
    client = await connect(server)
    await private_iq(client, "set", "<a xmlns='urn:example:a'>small</a>")
    big = f"<b xmlns='urn:example:b'>{'x' * 1024}</b>"
    assert await error_of(private_iq(client, "set", big)) == "not-acceptable"
    stored = await private_iq(client, "get", "<a xmlns='urn:example:a'/>")
    assert texts(stored, "urn:example:a", "a") == ["small"]
    await client.disconnect()


async def test_private_storage_is_advertised_in_disco(server: RunningServer) -> None:
    client = await connect(server)
    client.xmpp.register_plugin("xep_0030")
    info = await client.xmpp.plugin["xep_0030"].get_info(jid=server.domain)
    assert NS_PRIVATE in info["disco_info"]["features"]
    await client.disconnect()
