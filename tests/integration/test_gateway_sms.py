"""The SMS gateway end to end: Salon, the gateway as an XEP-0114 component over TCP, and a
local aiohttp server standing in for the SMS provider (REST for outgoing SMS; the test calls
the gateway's webhook as the provider would for incoming SMS)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import slixmpp
import trustme
from aiohttp import web
from slixmpp.xmlstream import ET

from salon.app import App
from salon.config import settings_from_dict
from salon.gateways.sms import SmsConfig, SmsService
from tests.integration.harness import (
    DOMAINS,
    RunningServer,
    SlixClient,
    connect_slixmpp,
    issue_host_certs,
    server_settings,
    stanza_error_condition,
)

GW = "sms.localhost"
SECRET = "sms-secret"
TOKEN = "webhook-token-0123456789"
API_TOKEN = "provider-api-token"
TIMEOUT = 5.0
NS_REGISTER = "jabber:iq:register"


class Provider:
    """The SMS provider: accepts POST /send; a number ending in 0000 is refused."""

    def __init__(self) -> None:
        self.sent: asyncio.Queue[tuple[dict[str, Any], str]] = asyncio.Queue()

    async def send(self, request: web.Request) -> web.Response:
        data = await request.json()
        if data["to"].endswith("0000"):
            return web.json_response({"error": "invalid destination"}, status=400)
        self.sent.put_nowait((data, request.headers.get("Authorization", "")))
        return web.json_response({"id": "sms-1"})


class Setup:
    def __init__(self, srv: RunningServer, service: SmsService, provider: Provider) -> None:
        self.srv, self.service, self.provider = srv, service, provider

    def webhook(self) -> str:
        return f"http://127.0.0.1:{self.service.webhook_port}/sms/incoming"


@pytest.fixture
async def setup(tmp_path: Path, ca: trustme.CA) -> AsyncIterator[Setup]:
    data_dir = tmp_path / "server"
    data_dir.mkdir()
    data = server_settings(data_dir, issue_host_certs(ca, data_dir, DOMAINS))
    data["components"] = {"port": 0, GW: {"secret": SECRET}}
    app = App(settings_from_dict(data))
    await app.start()
    ca_path = data_dir / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    provider = Provider()
    provider_app = web.Application()
    provider_app.router.add_post("/send", provider.send)
    runner = web.AppRunner(provider_app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    provider_port = runner.addresses[0][1]
    config = SmsConfig.model_validate(
        {
            "component": {"domain": GW, "secret": SECRET, "port": app.port("component")},
            "provider": {
                "send_url": f"http://127.0.0.1:{provider_port}/send",
                "api_token": API_TOKEN,
            },
            "webhook": {"port": 0, "token": TOKEN},
            "max_text": 300,
        }
    )
    service = SmsService(config, tmp_path)
    await service.start()
    yield Setup(RunningServer(app, ca, ca_path, data_dir), service, provider)
    await service.stop()
    await runner.cleanup()
    await app.stop()


async def login(srv: RunningServer) -> SlixClient:
    client = await connect_slixmpp(srv, await srv.add_user())
    await client.xmpp.get_roster(timeout=TIMEOUT)
    client.xmpp.send_presence()
    return client


async def register(client: SlixClient, number: str) -> None:
    iq = client.xmpp.make_iq_set(ito=GW)
    query = ET.SubElement(iq.xml, f"{{{NS_REGISTER}}}query")
    ET.SubElement(query, f"{{{NS_REGISTER}}}phone").text = number
    await iq.send(timeout=TIMEOUT)


def is_error(stanza: Any) -> bool:
    return stanza.name == "message" and stanza["type"] == "error"


async def test_sms_round_trip(setup: Setup) -> None:
    alice = await login(setup.srv)
    await register(alice, "+1 (555) 000-1111")  # stored normalised as +15550001111
    alice.xmpp.send_message(mto=f"+15551234567@{GW}", mbody="Running late", mtype="chat")
    data, auth = await asyncio.wait_for(setup.provider.sent.get(), TIMEOUT)
    assert data == {"from": "+15550001111", "to": "+15551234567", "body": "Running late"}
    assert auth == f"Bearer {API_TOKEN}"

    async with aiohttp.ClientSession() as http:
        payload = {"from": "+15551234567", "to": "+15550001111", "body": "No problem"}
        async with http.post(
            setup.webhook(), json=payload, headers={"X-Gateway-Token": TOKEN}
        ) as response:
            assert response.status == 200
        got = await alice.expect(lambda s: s.name == "message" and s["body"])
        assert str(got["from"]) == f"+15551234567@{GW}"
        assert got["body"] == "No problem"
        # the Twilio-style form shape, token in the query
        form = {"From": "+15551234567", "To": "+15550001111", "Body": "Form shape"}
        async with http.post(f"{setup.webhook()}?token={TOKEN}", data=form) as response:
            assert response.status == 200
        got = await alice.expect(lambda s: s.name == "message" and s["body"])
        assert got["body"] == "Form shape"
    await alice.disconnect()


async def test_webhook_errors(setup: Setup) -> None:
    alice = await login(setup.srv)
    await register(alice, "+15550002222")
    good = {"from": "+15551234567", "to": "+15550002222", "body": "hi"}
    cases = [
        ({"X-Gateway-Token": "wrong-token-wrong-token"}, good, 403),
        ({"X-Gateway-Token": TOKEN}, {**good, "to": "+15559999999"}, 404),
        ({"X-Gateway-Token": TOKEN}, {**good, "body": "x" * 301}, 413),
        ({"X-Gateway-Token": TOKEN}, {**good, "from": "not a number"}, 400),
        ({"X-Gateway-Token": TOKEN}, {"from": "+15551234567"}, 400),
    ]
    async with aiohttp.ClientSession() as http:
        for headers, payload, status in cases:
            async with http.post(setup.webhook(), json=payload, headers=headers) as response:
                assert response.status == status, payload
    await alice.expect_nothing(lambda s: s.name == "message" and s["body"], within=0.3)
    await alice.disconnect()


async def test_outgoing_errors(setup: Setup) -> None:
    alice = await login(setup.srv)
    alice.xmpp.send_message(mto=f"+15551234567@{GW}", mbody="before registering")
    assert stanza_error_condition((await alice.expect(is_error)).xml) == "registration-required"
    await register(alice, "+15550003333")
    alice.xmpp.send_message(mto=f"12345@{GW}", mbody="not E.164")
    assert stanza_error_condition((await alice.expect(is_error)).xml) == "jid-malformed"
    alice.xmpp.send_message(mto=f"+15551230000@{GW}", mbody="refused by the provider")
    assert stanza_error_condition((await alice.expect(is_error)).xml) == "not-acceptable"
    alice.xmpp.send_message(mto=f"+15551234567@{GW}", mbody="y" * 301)
    assert stanza_error_condition((await alice.expect(is_error)).xml) == "not-acceptable"
    assert setup.provider.sent.empty()
    await alice.disconnect()


async def test_invalid_phone_registration_is_not_acceptable(setup: Setup) -> None:
    alice = await login(setup.srv)
    with pytest.raises(slixmpp.exceptions.IqError) as err:
        await register(alice, "call me maybe")
    assert stanza_error_condition(err.value.iq.xml) == "not-acceptable"
    await alice.disconnect()
