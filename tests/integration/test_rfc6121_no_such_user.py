"""RFC 6121 §8.5.1: stanzas to the bare JID of an account that does not exist.

An iq get/set gets <service-unavailable/> whatever its payload, whether a handler would have
answered it for an existing account (ping, vCard, disco, last activity, private XML, roster)
or not, and whether it comes from a local client or over federation. A message is bounced with
<service-unavailable/> (choice (b) of §8.5.1); a presence is silently ignored.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from salon.namespaces import (
    NS_CARBONS,
    NS_DISCO_INFO,
    NS_DISCO_ITEMS,
    NS_LAST,
    NS_PING,
    NS_PRIVATE,
    NS_ROSTER,
    NS_VCARD,
)
from tests.integration.harness import RunningServer, raw_session, stanza_error_condition
from tests.integration.test_federation import MONTAGUE, Federation, expect, federation, login
from tests.integration.test_rfc6120_stanza_errors import expect_error, still_up

__all__ = ["federation"]  # the fixture, used by the federated test below

NOBODY = "nosuchuser@localhost"

PAYLOADS = {
    "ping": ("get", f"<ping xmlns='{NS_PING}'/>"),
    "vcard-get": ("get", f"<vCard xmlns='{NS_VCARD}'/>"),
    "vcard-set": ("set", f"<vCard xmlns='{NS_VCARD}'><FN>Nobody</FN></vCard>"),
    "disco-info": ("get", f"<query xmlns='{NS_DISCO_INFO}'/>"),
    "disco-items": ("get", f"<query xmlns='{NS_DISCO_ITEMS}'/>"),
    "last": ("get", f"<query xmlns='{NS_LAST}'/>"),
    "private-get": ("get", f"<query xmlns='{NS_PRIVATE}'><x xmlns='urn:example:x'/></query>"),
    "roster-get": ("get", f"<query xmlns='{NS_ROSTER}'/>"),
    "carbons-enable": ("set", f"<enable xmlns='{NS_CARBONS}'/>"),
}


@pytest.mark.parametrize("kind", list(PAYLOADS))
async def test_iq_to_nonexistent_account_gets_service_unavailable(
    server: RunningServer, kind: str
) -> None:
    client, full = await raw_session(server)
    iq_type, payload = PAYLOADS[kind]
    await client.send(f"<iq type='{iq_type}' id='n1' to='{NOBODY}'>{payload}</iq>")
    reply = await expect_error(client, "iq", "service-unavailable", "cancel", "n1")
    assert reply.get("from") == NOBODY and reply.get("to") == full, ET.tostring(reply)
    await still_up(client)


async def test_ping_to_existing_offline_account_still_answered(server: RunningServer) -> None:
    """The check must not turn away accounts that exist but have no session."""
    client, _ = await raw_session(server)
    offline = await server.add_user()
    await client.ping(to=offline, iq_id="p-offline")


async def test_deleted_account_gets_service_unavailable(server: RunningServer) -> None:
    client, full = await raw_session(server)
    gone = await server.add_user()
    await client.ping(to=gone, iq_id="p-before")
    await server.server.core.storage.accounts.delete("localhost", gone.split("@", 1)[0])
    await client.send(f"<iq type='get' id='p-after' to='{gone}'><ping xmlns='{NS_PING}'/></iq>")
    reply = await expect_error(client, "iq", "service-unavailable", "cancel", "p-after")
    assert reply.get("from") == gone and reply.get("to") == full, ET.tostring(reply)


async def test_presence_to_nonexistent_account_is_ignored(server: RunningServer) -> None:
    client, _ = await raw_session(server)
    for stype in ("", " type='subscribe'", " type='probe'", " type='unavailable'"):
        await client.send(f"<presence to='{NOBODY}'{stype}/>")
    await client.expect_nothing(within=0.5)
    await still_up(client)


async def test_ping_from_remote_server_to_nonexistent_account(federation: Federation) -> None:
    """The same answer over federation: capulet's user pings a montague account that does
    not exist and gets service-unavailable from that address."""
    pair = await federation()
    juliet = await login(pair.capulet, "juliet")
    await login(pair.montague, "romeo")  # montague has accounts; just not this one
    target = f"nobody@{MONTAGUE}"
    await juliet.send(f"<iq type='get' id='r1' to='{target}'><ping xmlns='{NS_PING}'/></iq>")
    reply = await expect(juliet, "iq", lambda e: e.get("id") == "r1")
    assert reply.get("type") == "error", ET.tostring(reply)
    assert stanza_error_condition(reply) == "service-unavailable", ET.tostring(reply)
    assert reply.get("from") == target, ET.tostring(reply)
    await juliet.send(
        f"<iq type='get' id='r2' to='romeo@{MONTAGUE}'><ping xmlns='{NS_PING}'/></iq>"
    )
    reply = await expect(juliet, "iq", lambda e: e.get("id") == "r2")
    assert reply.get("type") == "result", ET.tostring(reply)


@pytest.mark.parametrize("stype", ["chat", "normal", "groupchat"])
@pytest.mark.parametrize("to", [NOBODY, f"{NOBODY}/phone"], ids=["bare", "full"])
async def test_message_to_nonexistent_account_bounces(
    server: RunningServer, stype: str, to: str
) -> None:
    client, full = await raw_session(server)
    await client.send(f"<message to='{to}' type='{stype}' id='m1'><body>hi</body></message>")
    reply = await expect_error(client, "message", "service-unavailable", "cancel", "m1")
    assert reply.get("from") == to and reply.get("to") == full, ET.tostring(reply)


async def test_headline_to_nonexistent_account_is_ignored(server: RunningServer) -> None:
    client, _ = await raw_session(server)
    await client.send(f"<message to='{NOBODY}' type='headline' id='h1'><body>hi</body></message>")
    await client.expect_nothing(within=0.5)
    await still_up(client)
