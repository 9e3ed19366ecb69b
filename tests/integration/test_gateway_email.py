"""The e-mail gateway end to end: Salon, the gateway as a real XEP-0114 component over TCP,
a local aiosmtpd server standing in for the outside world's mail, and slixmpp users.

XMPP → SMTP → a reply mail → XMPP, registration (XEP-0100/XEP-0077), the gateway in the
roster with presence, and the errors and limits."""

from __future__ import annotations

import asyncio
import email.policy
from collections.abc import AsyncIterator
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest
import slixmpp
import trustme
from aiosmtpd.smtp import SMTP, Envelope, Session
from slixmpp.xmlstream import ET

from salon.app import App
from salon.config import settings_from_dict
from salon.gateways.base import escape_localpart, unescape_localpart
from salon.gateways.component import ComponentError
from salon.gateways.email import EmailConfig, EmailService, html_to_text
from tests.integration.harness import (
    DOMAINS,
    RunningServer,
    SlixClient,
    connect_slixmpp,
    issue_host_certs,
    server_settings,
    stanza_error_condition,
)

GW = "email.localhost"
SECRET = "gateway-secret"
TIMEOUT = 5.0
NS_REGISTER = "jabber:iq:register"


class OutsideWorld:
    """The world's mail servers: records every mail; refuses 'nobody@example.org'."""

    def __init__(self) -> None:
        self.mails: asyncio.Queue[EmailMessage] = asyncio.Queue()

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        if address.startswith("nobody@"):
            return "550 5.1.1 User unknown"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.content, bytes)
        mail = BytesParser(policy=email.policy.default).parsebytes(envelope.content)
        assert isinstance(mail, EmailMessage)
        self.mails.put_nowait(mail)
        return "250 OK"


class Setup:
    def __init__(self, srv: RunningServer, service: EmailService, world: OutsideWorld) -> None:
        self.srv = srv
        self.service = service
        self.world = world


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
    srv = RunningServer(app, ca, ca_path, data_dir)
    world = OutsideWorld()
    loop = asyncio.get_running_loop()
    outside = await loop.create_server(lambda: SMTP(world), "127.0.0.1", 0)
    config = EmailConfig.model_validate(
        {
            "component": {
                "domain": GW,
                "secret": SECRET,
                "port": app.port("component"),
                "data_dir": "gw",
            },
            "smtp": {"host": "127.0.0.1", "port": outside.sockets[0].getsockname()[1]},
            "listen": {"port": 0, "max_message_size": 20000},
            "max_text": 5000,
        }
    )
    service = EmailService(config, tmp_path)
    await service.start()
    yield Setup(srv, service, world)
    await service.stop()
    outside.close()
    await app.stop()


async def login(srv: RunningServer) -> SlixClient:
    def plugins(xmpp: slixmpp.ClientXMPP) -> None:
        xmpp.register_plugin("xep_0030")

    client = await connect_slixmpp(srv, await srv.add_user(), configure=plugins)
    await client.xmpp.get_roster(timeout=TIMEOUT)  # an interested resource (RFC 6121 §2.1.6)
    client.xmpp.send_presence()  # available: messages to the bare JID reach it
    return client


def register_iq(client: SlixClient, address: str | None) -> Any:
    iq = client.xmpp.make_iq_set(ito=GW)
    query = ET.SubElement(iq.xml, f"{{{NS_REGISTER}}}query")
    if address is None:
        ET.SubElement(query, f"{{{NS_REGISTER}}}remove")
    else:
        ET.SubElement(query, f"{{{NS_REGISTER}}}email").text = address
    return iq


async def register(client: SlixClient, address: str) -> None:
    await register_iq(client, address).send(timeout=TIMEOUT)


async def iq_error(iq: Any) -> str | None:
    with pytest.raises(slixmpp.exceptions.IqError) as info:
        await iq.send(timeout=TIMEOUT)
    return stanza_error_condition(info.value.iq.xml)


def is_message_error(stanza: Any) -> bool:
    return stanza.name == "message" and stanza["type"] == "error"


async def send_mail(service: EmailService, mail: EmailMessage) -> None:
    await aiosmtplib.send(mail, hostname="127.0.0.1", port=service.smtp_port, timeout=TIMEOUT)


# ------------------------------------------------------------------ the round trip
async def test_xmpp_to_smtp_and_a_reply_mail_back_to_xmpp(setup: Setup) -> None:
    alice = await login(setup.srv)
    await register(alice, "alice@mail.test")
    bob = f"{escape_localpart('bob@example.org')}@{GW}"
    assert bob == "bob\\40example.org@email.localhost"

    msg = alice.xmpp.make_message(mto=bob, mbody="Hello Bob,\nlunch?", msubject="Lunch")
    msg.send()
    mail = await asyncio.wait_for(setup.world.mails.get(), TIMEOUT)
    assert mail["From"] == "alice@mail.test"
    assert mail["To"] == "bob@example.org"
    assert mail["Subject"] == "Lunch"
    assert mail.get_content().replace("\r\n", "\n").strip() == "Hello Bob,\nlunch?"
    message_id = str(mail["Message-ID"])
    assert message_id.startswith("<") and message_id.endswith(f"@{GW}>")
    assert mail["In-Reply-To"] is None

    reply = EmailMessage()
    reply["From"] = "Bob <bob@example.org>"
    reply["To"] = "alice@mail.test"
    reply["Subject"] = "Re: Lunch"
    reply["Message-ID"] = "<reply-1@example.org>"
    reply["In-Reply-To"] = message_id
    reply["References"] = message_id
    reply.set_content("<html><body><p>Yes, <b>noon</b>.</p><p>Bob</p></body></html>", "html")
    await send_mail(setup.service, reply)
    got = await alice.expect(lambda s: s.name == "message" and s["body"])
    assert str(got["from"]) == bob
    assert got["subject"] == "Re: Lunch"
    assert got["body"] == "Yes, noon.\n\nBob"
    assert got["thread"] == message_id.strip("<>")

    answer = alice.xmpp.make_message(mto=bob, mbody="See you.", msubject="Re: Lunch")
    answer["thread"] = got["thread"]
    answer.send()
    second = await asyncio.wait_for(setup.world.mails.get(), TIMEOUT)
    assert second["In-Reply-To"] == message_id
    assert second["References"] == message_id
    assert second["Message-ID"] != message_id
    await alice.disconnect()


async def test_registration_puts_the_gateway_in_the_roster_with_presence(setup: Setup) -> None:
    alice = await login(setup.srv)
    await register(alice, "alice2@mail.test")
    # XEP-0100 §4.1: the gateway asks to subscribe; slixmpp approves and subscribes back.
    await alice.expect(lambda s: s.name == "presence" and s["type"] == "subscribe")
    online = await alice.expect(
        lambda s: s.name == "presence" and str(s["from"]) == GW and s["type"] == "available"
    )
    assert online is not None
    roster = setup.srv.server.core.storage.roster
    local = alice.xmpp.boundjid.user
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TIMEOUT
    while True:
        item = await roster.get_item("localhost", local, GW)
        if item is not None and item.subscription == "both":
            break
        assert loop.time() < deadline, f"roster item: {item}"
        await asyncio.sleep(0.02)

    iq = alice.xmpp.make_iq_get(ito=GW)
    ET.SubElement(iq.xml, f"{{{NS_REGISTER}}}query")
    form = await iq.send(timeout=TIMEOUT)
    query = form.xml.find(f"{{{NS_REGISTER}}}query")
    assert query.find(f"{{{NS_REGISTER}}}registered") is not None
    assert query.findtext(f"{{{NS_REGISTER}}}email") == "alice2@mail.test"

    await register_iq(alice, None).send(timeout=TIMEOUT)
    await alice.expect(
        lambda s: s.name == "presence" and str(s["from"]) == GW and s["type"] == "unavailable"
    )
    assert "alice2@mail.test" not in setup.service.gateway.registrations.by_user.values()
    await alice.disconnect()


async def test_disco_shows_a_smtp_gateway(setup: Setup) -> None:
    alice = await login(setup.srv)
    info = await alice.xmpp.plugin["xep_0030"].get_info(GW, timeout=TIMEOUT)
    assert ("gateway", "smtp") in {i[:2] for i in info["disco_info"]["identities"]}
    assert NS_REGISTER in info["disco_info"]["features"]
    await alice.disconnect()


# ------------------------------------------------------------------ errors and limits
async def test_registration_errors(setup: Setup) -> None:
    alice, carol = await login(setup.srv), await login(setup.srv)
    assert await iq_error(register_iq(alice, "not an address")) == "not-acceptable"
    assert await iq_error(register_iq(alice, None)) == "registration-required"
    await register(alice, "shared@mail.test")
    assert await iq_error(register_iq(carol, "shared@mail.test")) == "conflict"
    await alice.disconnect()
    await carol.disconnect()


async def test_unregistered_users_get_registration_required(setup: Setup) -> None:
    alice = await login(setup.srv)
    alice.xmpp.send_message(mto=f"bob\\40example.org@{GW}", mbody="hi")
    error = await alice.expect(is_message_error)
    assert stanza_error_condition(error.xml) == "registration-required"
    assert setup.world.mails.empty()
    await alice.disconnect()


async def test_bad_contact_address_and_too_long_text_are_refused(setup: Setup) -> None:
    alice = await login(setup.srv)
    await register(alice, "alice3@mail.test")
    alice.xmpp.send_message(mto=f"no-at-sign@{GW}", mbody="hi")
    error = await alice.expect(is_message_error)
    assert stanza_error_condition(error.xml) == "jid-malformed"
    alice.xmpp.send_message(mto=f"bob\\40example.org@{GW}", mbody="x" * 5001)
    error = await alice.expect(is_message_error)
    assert stanza_error_condition(error.xml) == "not-acceptable"
    assert setup.world.mails.empty()
    await alice.disconnect()


async def test_a_recipient_the_mail_server_refuses_is_item_not_found(setup: Setup) -> None:
    alice = await login(setup.srv)
    await register(alice, "alice4@mail.test")
    alice.xmpp.send_message(mto=f"nobody\\40example.org@{GW}", mbody="hi")
    error = await alice.expect(is_message_error)
    assert stanza_error_condition(error.xml) == "item-not-found"
    await alice.disconnect()


async def test_mail_for_unknown_addresses_and_oversized_mail_are_refused(setup: Setup) -> None:
    alice = await login(setup.srv)
    await register(alice, "alice5@mail.test")
    mail = EmailMessage()
    mail["From"] = "bob@example.org"
    mail["To"] = "stranger@mail.test"
    mail.set_content("hi")
    with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as refused:
        await send_mail(setup.service, mail)
    assert refused.value.recipients[0].code == 550
    big = EmailMessage()
    big["From"] = "bob@example.org"
    big["To"] = "alice5@mail.test"
    big.set_content("y" * 30000)  # over max_message_size (20000 bytes)
    with pytest.raises(aiosmtplib.SMTPResponseException) as too_big:
        await send_mail(setup.service, big)
    assert too_big.value.code == 552
    long_text = EmailMessage()
    long_text["From"] = "bob@example.org"
    long_text["To"] = "alice5@mail.test"
    long_text.set_content("z " * 3000)  # under the byte limit, over max_text (5000)
    with pytest.raises(aiosmtplib.SMTPResponseException) as too_long:
        await send_mail(setup.service, long_text)
    assert too_long.value.code == 552
    await alice.expect_nothing(lambda s: s.name == "message" and s["body"], within=0.3)
    await alice.disconnect()


async def test_a_wrong_secret_is_refused(setup: Setup) -> None:
    config = setup.service.config.model_copy(deep=True)
    config.component.secret = "wrong"
    other = EmailService(config, setup.srv.data_dir / "other")
    with pytest.raises(ComponentError, match="not-authorized"):
        await other.start()


def test_xep0106_escaping_round_trips() -> None:
    for address in ("bob@example.org", "d'artagnan@musketeers.lit", "c:\\5cnet@host"):
        assert unescape_localpart(escape_localpart(address)) == address
    assert escape_localpart("space cadet@example.org") == "space\\20cadet\\40example.org"


def test_html_becomes_text() -> None:
    html = "<style>p{}</style><p>One &amp; two</p><ul><li>a</li><li>b</li></ul>x<br>y"
    assert html_to_text(html) == "One & two\n\n- a\n\n- b\nx\ny"
