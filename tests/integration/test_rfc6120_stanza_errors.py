"""RFC 6120 stanza errors over a real socket (§8.3, §8.2.3, §10): the exact condition and
type, the original id, swapped addresses, no answer to an error, and the stream stays up."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from tests.integration.harness import (
    NS_CLIENT,
    NS_STANZAS,
    RawClient,
    RunningServer,
    q,
    raw_session,
    stanza_error_condition,
)

NS_PING = "urn:xmpp:ping"
NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
NS_VERSION = "jabber:iq:version"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"


def error_type(stanza: ET.Element) -> str | None:
    error = stanza.find(q(NS_CLIENT, "error"))
    return None if error is None else error.get("type")


async def expect_error(
    client: RawClient, tag: str, condition: str, kind: str, iq_id: str | None
) -> ET.Element:
    """The next element the client receives is a ``tag`` of type error carrying ``condition``
    with error type ``kind``, and the original ``id`` (``iq_id``, None when there was none)."""
    reply = await client.next()
    shown = ET.tostring(reply)
    assert reply.tag == q(NS_CLIENT, tag), shown
    assert reply.get("type") == "error", shown
    assert reply.get("id") == iq_id, shown
    assert stanza_error_condition(reply) == condition, shown
    assert error_type(reply) == kind, shown
    return reply


async def still_up(client: RawClient) -> None:
    """A stanza error never ends the stream: the connection still answers a ping."""
    await client.ping(iq_id="still-up")
    await client.expect_nothing(within=0.05)


# --------------------------------------------------------------------------- iq syntax
async def test_iq_without_id_gets_bad_request(server: RunningServer) -> None:
    client, full = await raw_session(server)
    await client.send(f"<iq type='get' to='localhost'><ping xmlns='{NS_PING}'/></iq>")
    reply = await expect_error(client, "iq", "bad-request", "modify", None)
    assert reply.get("to") == full, ET.tostring(reply)
    await still_up(client)


async def test_iq_with_unknown_type_gets_bad_request(server: RunningServer) -> None:
    client, _ = await raw_session(server)
    await client.send(f"<iq type='fetch' id='t1' to='localhost'><ping xmlns='{NS_PING}'/></iq>")
    await expect_error(client, "iq", "bad-request", "modify", "t1")
    await still_up(client)


@pytest.mark.parametrize(
    "payload",
    ["", f"<ping xmlns='{NS_PING}'/><query xmlns='{NS_VERSION}'/>"],
    ids=["no-child", "two-children"],
)
async def test_iq_get_without_exactly_one_child_gets_bad_request(
    server: RunningServer, payload: str
) -> None:
    client, _ = await raw_session(server)
    await client.send(f"<iq type='get' id='c1' to='localhost'>{payload}</iq>")
    await expect_error(client, "iq", "bad-request", "modify", "c1")
    await still_up(client)


@pytest.mark.parametrize("iq_type", ["get", "set"])
@pytest.mark.parametrize("addressee", ["server", "own-bare", "no-to", "other-bare", "no-account"])
async def test_iq_with_unknown_namespace_gets_service_unavailable(
    server: RunningServer, addressee: str, iq_type: str
) -> None:
    """RFC 6120 §8.4: an iq get/set nobody handles (the server answering for itself or on
    behalf of an account, §10.3.3, §10.5.3.1) gets service-unavailable of type cancel."""
    client, full = await raw_session(server)
    to = {
        "server": "localhost",
        "own-bare": full.split("/", 1)[0],
        "no-to": None,
        "other-bare": await server.add_user(),
        "no-account": "nobody@localhost",
    }[addressee]
    to_attr = "" if to is None else f" to='{to}'"
    await client.send(f"<iq type='{iq_type}' id='u1'{to_attr}><query xmlns='urn:example:x'/></iq>")
    reply = await expect_error(client, "iq", "service-unavailable", "cancel", "u1")
    assert reply.get("to") == full, ET.tostring(reply)
    assert reply.get("from") == to, ET.tostring(reply)
    await still_up(client)


@pytest.mark.parametrize(
    "iq",
    [
        "<iq type='result' id='r1' to='localhost'/>",
        f"<iq type='result' id='r2' to='localhost'><ping xmlns='{NS_PING}'/></iq>",
        "<iq type='error' id='e1' to='localhost'>"
        f"<error type='cancel'><bad-request xmlns='{NS_STANZAS}'/></error></iq>",
        "<iq type='error' id='e2'/>",
        "<iq type='result' id='r3'/>",
    ],
    ids=["result", "result-with-payload", "error", "error-no-to", "result-no-to"],
)
async def test_iq_result_or_error_to_the_server_is_not_answered(
    server: RunningServer, iq: str
) -> None:
    client, _ = await raw_session(server)
    await client.send(iq)
    await client.expect_nothing(within=0.3)
    await still_up(client)


@pytest.mark.parametrize("account_exists", [True, False], ids=["offline-account", "no-account"])
async def test_iq_to_full_jid_not_online_gets_service_unavailable(
    server: RunningServer, account_exists: bool
) -> None:
    client, full = await raw_session(server)
    bare = await server.add_user() if account_exists else "nobody@localhost"
    target = f"{bare}/phone"
    await client.send(f"<iq type='get' id='f1' to='{target}'><ping xmlns='{NS_PING}'/></iq>")
    reply = await expect_error(client, "iq", "service-unavailable", "cancel", "f1")
    assert reply.get("from") == target and reply.get("to") == full, ET.tostring(reply)
    await still_up(client)


async def test_iq_result_to_full_jid_not_online_is_not_answered(server: RunningServer) -> None:
    client, _ = await raw_session(server)
    await client.send("<iq type='result' id='f2' to='nobody@localhost/phone'/>")
    await client.expect_nothing(within=0.3)
    await still_up(client)


# --------------------------------------------------------------------------- messages
@pytest.mark.parametrize("to", ["@@", "a@@localhost", "user@/res", "user@localhost/"])
async def test_message_with_malformed_to_gets_jid_malformed(server: RunningServer, to: str) -> None:
    client, full = await raw_session(server)
    await client.send(f"<message to='{to}' type='chat' id='j1'><body>hi</body></message>")
    reply = await expect_error(client, "message", "jid-malformed", "modify", "j1")
    assert reply.get("to") == full, ET.tostring(reply)
    await still_up(client)


async def test_chat_to_unknown_local_account_gets_service_unavailable(
    server: RunningServer,
) -> None:
    client, full = await raw_session(server)
    await client.send(
        "<message to='nobody@localhost' type='chat' id='n1'><body>anyone?</body></message>"
    )
    reply = await expect_error(client, "message", "service-unavailable", "cancel", "n1")
    assert reply.get("from") == "nobody@localhost" and reply.get("to") == full
    await still_up(client)


async def test_message_to_unhosted_domain_gets_remote_server_not_found(
    server: RunningServer,
) -> None:
    client, full = await raw_session(server)
    await client.send(
        "<message to='juliet@capulet.example' type='chat' id='r1'><body>hi</body></message>"
    )
    reply = await expect_error(client, "message", "remote-server-not-found", "cancel", "r1")
    assert reply.get("from") == "juliet@capulet.example" and reply.get("to") == full
    await still_up(client)


@pytest.mark.parametrize(
    "to",
    ["nobody@localhost", "juliet@capulet.example", "@@", "nobody@localhost/res", "localhost"],
    ids=["unknown-account", "unhosted-domain", "malformed", "offline-full-jid", "server"],
)
async def test_message_of_type_error_is_never_answered(server: RunningServer, to: str) -> None:
    client, _ = await raw_session(server)
    await client.send(
        f"<message to='{to}' type='error' id='e1'>"
        f"<error type='cancel'><item-not-found xmlns='{NS_STANZAS}'/></error></message>"
    )
    await client.expect_nothing(within=0.3)
    await still_up(client)


async def test_error_message_between_users_is_delivered_not_answered(
    server: RunningServer,
) -> None:
    alice, _ = await raw_session(server)
    bob, bob_full = await raw_session(server)
    await alice.send(
        f"<message to='{bob_full}' type='error' id='e2'>"
        f"<error type='cancel'><item-not-found xmlns='{NS_STANZAS}'/></error></message>"
    )
    delivered = await bob.next()
    assert delivered.get("id") == "e2" and delivered.get("type") == "error"
    await alice.expect_nothing(within=0.2)
    await bob.expect_nothing(within=0.1)  # delivered once, nothing else


# --------------------------------------------------------------------------- presence
async def test_presence_with_unknown_type_gets_bad_request(server: RunningServer) -> None:
    client, full = await raw_session(server)
    await client.send("<presence type='dance' id='p1'/>")
    reply = await expect_error(client, "presence", "bad-request", "modify", "p1")
    assert reply.get("to") == full, ET.tostring(reply)
    await still_up(client)


async def test_presence_with_unknown_type_to_a_user_is_not_delivered(
    server: RunningServer,
) -> None:
    alice, _ = await raw_session(server)
    bob, bob_full = await raw_session(server)
    await alice.send(f"<presence to='{bob_full}' type='dance' id='p2'/>")
    await expect_error(alice, "presence", "bad-request", "modify", "p2")
    await bob.expect_nothing(within=0.2)


# --------------------------------------------------------------------------- reply addressing
async def test_error_reply_keeps_id_and_swaps_addresses(server: RunningServer) -> None:
    alice, alice_full = await raw_session(server)
    _bob, bob_full = await raw_session(server)
    offline = bob_full.split("/", 1)[0] + "/gone"
    await alice.send(
        f"<iq type='set' id='swap-1' to='{offline}'><query xmlns='urn:example:x'/></iq>"
    )
    reply = await expect_error(alice, "iq", "service-unavailable", "cancel", "swap-1")
    assert reply.get("from") == offline and reply.get("to") == alice_full, ET.tostring(reply)
    await alice.send(
        "<iq type='get' id='swap-2' to='localhost'><query xmlns='urn:example:y'/></iq>"
    )
    reply = await expect_error(alice, "iq", "service-unavailable", "cancel", "swap-2")
    assert reply.get("from") == "localhost" and reply.get("to") == alice_full, ET.tostring(reply)
    await alice.send(
        "<message to='ghost@localhost' type='chat' id='swap-3'><body>boo</body></message>"
    )
    reply = await expect_error(alice, "message", "service-unavailable", "cancel", "swap-3")
    assert reply.get("from") == "ghost@localhost" and reply.get("to") == alice_full


async def test_error_reply_keeps_xml_lang(server: RunningServer) -> None:
    client, _ = await raw_session(server)
    await client.send(
        "<message to='ghost@localhost' type='chat' id='fr1' xml:lang='fr'>"
        "<body>Allô</body></message>"
    )
    reply = await expect_error(client, "message", "service-unavailable", "cancel", "fr1")
    assert reply.get(XML_LANG) == "fr", ET.tostring(reply)


# --------------------------------------------------------------------------- server queries
async def test_ping_to_the_server_gets_an_empty_result(server: RunningServer) -> None:
    client, full = await raw_session(server)
    reply = await client.ping(iq_id="pong")
    assert list(reply) == [], ET.tostring(reply)
    assert reply.get("from") == "localhost" and reply.get("to") == full, ET.tostring(reply)


async def test_disco_info_of_the_server_lists_identity_and_features(
    server: RunningServer,
) -> None:
    client, full = await raw_session(server)
    await client.send(
        f"<iq type='get' id='d1' to='localhost'><query xmlns='{NS_DISCO_INFO}'/></iq>"
    )
    reply = await client.next()
    assert reply.get("type") == "result" and reply.get("id") == "d1", ET.tostring(reply)
    assert reply.get("from") == "localhost" and reply.get("to") == full
    query = reply.find(q(NS_DISCO_INFO, "query"))
    assert query is not None, ET.tostring(reply)
    identities = {
        (i.get("category"), i.get("type")) for i in query.findall(q(NS_DISCO_INFO, "identity"))
    }
    assert ("server", "im") in identities, identities
    features = {f.get("var") for f in query.findall(q(NS_DISCO_INFO, "feature"))}
    assert {NS_DISCO_INFO, NS_PING, NS_VERSION} <= features, features


async def test_software_version_of_the_server_is_salon(server: RunningServer) -> None:
    client, _ = await raw_session(server)
    await client.send(f"<iq type='get' id='v1' to='localhost'><query xmlns='{NS_VERSION}'/></iq>")
    reply = await client.next()
    assert reply.get("type") == "result" and reply.get("id") == "v1", ET.tostring(reply)
    assert reply.findtext(f"{q(NS_VERSION, 'query')}/{q(NS_VERSION, 'name')}") == "Salon"
    assert reply.findtext(f"{q(NS_VERSION, 'query')}/{q(NS_VERSION, 'version')}")
