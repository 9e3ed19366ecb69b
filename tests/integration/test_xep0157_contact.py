"""XEP-0157: contact addresses in the server's disco#info (XEP-0128 extended info)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable

import pytest
from pydantic import ValidationError

from salon.modules.contact import ContactAddresses
from tests.integration.harness import RunningServer, SlixClient, connect_slixmpp

NS_DATA = "jabber:x:data"
SERVERINFO = "http://jabber.org/network/serverinfo"
MODULES = ["disco", "presence", "message", "contact"]
ADDRESSES = {
    "admin": ["mailto:xmpp@shakespeare.lit", "xmpp:admins@shakespeare.lit"],
    "abuse": ["mailto:abuse@shakespeare.lit"],
    "security": ["xmpp:security@shakespeare.lit"],
    "status": ["https://status.shakespeare.lit/"],
    "support": ["https://shakespeare.lit/support.php", "xmpp:support@shakespeare.lit"],
}
ServerFactory = Callable[..., Awaitable[RunningServer]]


async def connect(server: RunningServer) -> SlixClient:
    client = await connect_slixmpp(server, await server.add_user())
    client.xmpp.register_plugin("xep_0030")
    return client


async def forms(client: SlixClient, jid: str) -> list[ET.Element]:
    reply = await client.xmpp.plugin["xep_0030"].get_info(jid=jid)
    query = reply["disco_info"].xml
    return query.findall(f"{{{NS_DATA}}}x")


def form_type(form: ET.Element) -> tuple[str | None, str | None]:
    for field in form.findall(f"{{{NS_DATA}}}field"):
        if field.get("var") == "FORM_TYPE":
            return field.get("type"), field.findtext(f"{{{NS_DATA}}}value")
    return None, None


def fields(form: ET.Element) -> dict[str, list[str]]:
    return {
        field.get("var") or "": [v.text or "" for v in field.findall(f"{{{NS_DATA}}}value")]
        for field in form.findall(f"{{{NS_DATA}}}field")
        if field.get("var") != "FORM_TYPE"
    }


async def test_configured_addresses_are_in_the_serverinfo_form(
    server_factory: ServerFactory,
) -> None:
    server = await server_factory(modules=MODULES, module_options={"contact": ADDRESSES})
    client = await connect(server)
    found = await forms(client, server.domain)
    assert len(found) == 1
    form = found[0]
    assert form.get("type") == "result"
    assert form_type(form) == ("hidden", SERVERINFO)
    assert fields(form) == {f"{role}-addresses": uris for role, uris in ADDRESSES.items()}
    await client.disconnect()


async def test_no_configured_addresses_means_no_form(server_factory: ServerFactory) -> None:
    server = await server_factory(modules=MODULES)
    client = await connect(server)
    assert await forms(client, server.domain) == []
    await client.disconnect()


async def test_accounts_do_not_carry_the_servers_form(server_factory: ServerFactory) -> None:
    server = await server_factory(modules=MODULES, module_options={"contact": ADDRESSES})
    client = await connect(server)
    assert await forms(client, client.xmpp.boundjid.bare) == []
    await client.disconnect()


@pytest.mark.parametrize("bad", ["admin@example.org", "", "mailto:"])
def test_an_address_that_is_not_a_uri_is_a_config_error(bad: str) -> None:
    with pytest.raises(ValidationError):
        ContactAddresses.Options.model_validate({"admin": ["xmpp:ok@example.org", bad]})


def test_unknown_role_is_a_config_error() -> None:
    with pytest.raises(ValidationError):
        ContactAddresses.Options.model_validate({"admins": ["mailto:a@example.org"]})
