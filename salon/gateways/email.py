"""The e-mail gateway: XMPP ↔ SMTP, run as an XEP-0114 component (``salon gateway email``).

XMPP → e-mail: a message to ``bob\\40example.org@email.<domain>`` (the address escaped with
XEP-0106) goes out over SMTP (aiosmtplib) to ``bob@example.org``, From the address the user
registered, Subject from ``<subject/>``; a new Message-ID on the gateway's domain, and
``<thread/>`` (when it names a mail) as In-Reply-To and References.

E-mail → XMPP: the gateway's own SMTP listener (aiosmtpd) accepts mail for registered
addresses only (550 for others) and passes it on as a message from the sender's escaped JID
with the subject, the text (HTML converted to text when there is no plain part) and
``<thread/>`` = the conversation's first Message-ID (References, else In-Reply-To, else its
own), so a reply to a mail the user sent carries that mail's Message-ID.

Why a separate process rather than a module: mail is slow and hostile (remote servers that
stall, MIME from anybody); out of the server's process a stuck SMTP exchange or a parser
bomb cannot touch the XMPP service, the gateway can run on the mail host, and it uses only
the public XEP-0114 interface that third-party gateways use.
"""

from __future__ import annotations

import asyncio
import email.policy
import logging
import re
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import make_msgid, parseaddr
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import aiosmtplib
from aiosmtpd.smtp import SMTP, Envelope, Session
from pydantic import Field

from salon.errors import StanzaError, StanzaErrorCondition
from salon.gateways.base import Gateway, Registrations
from salon.gateways.runner import ComponentConfig, ConfigSection, GatewayRunner
from salon.xml.element import Element

log = logging.getLogger(__name__)

_ADDRESS = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")


class SmtpOut(ConfigSection):
    """``[smtp]``: the mail server outgoing mail is handed to."""

    host: str = Field("localhost", description="SMTP server (a smarthost or the local MTA).")
    port: int = Field(25, ge=1, le=65535, description="Its port (587 for submission).")
    username: str = Field("", description="Login, if the server wants one.")
    password: str = Field("", description="Password for 'username'.")
    starttls: bool = Field(False, description="Upgrade to TLS with STARTTLS.")
    tls: bool = Field(False, description="Connect with TLS directly (port 465).")
    timeout: float = Field(30.0, gt=0, description="Seconds before a stalled SMTP exchange fails.")


class SmtpIn(ConfigSection):
    """``[listen]``: the gateway's own SMTP listener for mail to registered addresses."""

    interface: str = Field("127.0.0.1", description="Address to listen on.")
    port: int = Field(2525, ge=0, le=65535, description="Port (point the MX or MTA here).")
    max_message_size: int = Field(
        10485760, ge=1024, description="Largest mail accepted, in bytes (552 above it)."
    )


class EmailConfig(ConfigSection):
    component: ComponentConfig
    smtp: SmtpOut = Field(default_factory=lambda: SmtpOut.model_validate({}))
    listen: SmtpIn = Field(default_factory=lambda: SmtpIn.model_validate({}))
    max_text: int = Field(
        65536,
        ge=1,
        description="Longest text carried either way, in characters: longer XMPP messages "
        "get not-acceptable, longer mails get 552.",
    )


class _HtmlText(HTMLParser):
    """HTML → plain text: block elements become line breaks, scripts and styles vanish."""

    BLOCKS = frozenset(("p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "blockquote"))

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style", "head"):
            self.hidden += 1
        elif tag in self.BLOCKS:
            self.parts.append("\n")
        if tag == "li":
            self.parts.append("- ")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style", "head"):
            self.hidden = max(0, self.hidden - 1)
        elif tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.hidden:
            self.parts.append(re.sub(r"\s+", " ", data))


def html_to_text(html: str) -> str:
    parser = _HtmlText()
    parser.feed(html)
    parser.close()
    lines = [line.strip() for line in "".join(parser.parts).splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def mail_text(message: EmailMessage) -> str:
    """The readable text of a mail, and a line naming each attachment left behind."""
    body = message.get_body(preferencelist=("plain", "html"))
    text = ""
    if isinstance(body, EmailMessage):
        content = body.get_content()
        text = html_to_text(content) if body.get_content_type() == "text/html" else content
    names = [part.get_filename() or "unnamed" for part in message.iter_attachments()]
    if names:
        text += "\n\n[attachments not forwarded: " + ", ".join(names) + "]"
    return text.replace("\r\n", "\n").strip()


def mail_thread(message: EmailMessage) -> str | None:
    """The conversation's first Message-ID, without angle brackets."""
    references = str(message.get("References", "")).split()
    for candidate in (
        references[0] if references else "",
        str(message.get("In-Reply-To", "")),
        str(message.get("Message-ID", "")),
    ):
        if candidate.strip():
            return candidate.strip().strip("<>")
    return None


class EmailGateway(Gateway):
    identity_type = "smtp"
    field = "email"
    prompt = "e-mail address"

    def __init__(self, config: EmailConfig, registrations: Registrations) -> None:
        super().__init__(config.component.domain, config.component.user_domains(), registrations)
        self.config = config

    def normalise_address(self, text: str) -> str | None:
        text = text.strip()
        if len(text) > 254 or not _ADDRESS.match(text):
            return None
        local, domain = text.rsplit("@", 1)
        return f"{local}@{domain.lower()}"

    # ------------------------------------------------------------------ XMPP → SMTP
    async def deliver(self, user: str, address: str, to: str, message: Element) -> None:
        body = message.find_text("body", message.ns) or ""
        if len(body) > self.config.max_text:
            raise StanzaError(
                StanzaErrorCondition.NOT_ACCEPTABLE,
                f"the message is longer than {self.config.max_text} characters",
            )
        mail = EmailMessage()
        mail["From"] = Address(addr_spec=address)
        mail["To"] = Address(addr_spec=to)
        mail["Subject"] = message.find_text("subject", message.ns) or ""
        mail["Message-ID"] = make_msgid(domain=self.domain)
        thread = (message.find_text("thread", message.ns) or "").strip()
        if "@" in thread and not any(c in thread for c in "<> \r\n"):
            mail["In-Reply-To"] = f"<{thread}>"
            mail["References"] = f"<{thread}>"
        mail.set_content(body)
        smtp = self.config.smtp
        try:
            await aiosmtplib.send(
                mail,
                hostname=smtp.host,
                port=smtp.port,
                username=smtp.username or None,
                password=smtp.password or None,
                start_tls=smtp.starttls,
                use_tls=smtp.tls,
                timeout=smtp.timeout,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            raise StanzaError(
                StanzaErrorCondition.ITEM_NOT_FOUND, f"the mail server refused {to}: {exc}"
            ) from None
        except aiosmtplib.SMTPSenderRefused as exc:
            raise StanzaError(
                StanzaErrorCondition.NOT_ALLOWED, f"the mail server refused {address}: {exc}"
            ) from None
        except (aiosmtplib.SMTPConnectError, aiosmtplib.SMTPTimeoutError, OSError) as exc:
            raise StanzaError(
                StanzaErrorCondition.REMOTE_SERVER_TIMEOUT, f"the mail server is unreachable: {exc}"
            ) from None
        except aiosmtplib.SMTPException as exc:
            raise StanzaError(
                StanzaErrorCondition.SERVICE_UNAVAILABLE, f"the mail server said: {exc}", "wait"
            ) from None

    # ------------------------------------------------------------------ SMTP → XMPP
    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        normal = self.normalise_address(address)
        if normal is None or self.registrations.user_of(normal) is None:
            return "550 5.1.1 No such user here"
        envelope.rcpt_tos.append(normal)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content
        if not isinstance(raw, bytes):
            return "554 5.6.0 Unreadable message"
        try:
            mail = email.message_from_bytes(raw, policy=email.policy.default)
            assert isinstance(mail, EmailMessage)
            text = mail_text(mail)
            sender = parseaddr(str(mail.get("From", "")))[1] or (envelope.mail_from or "")
            subject = str(mail.get("Subject", "")) or None
        except Exception:
            log.info("unreadable mail", exc_info=True)
            return "554 5.6.0 Unreadable message"
        if len(text) > self.config.max_text:
            return f"552 5.3.4 Text longer than {self.config.max_text} characters"
        from_address = self.normalise_address(sender)
        if from_address is None:
            return "553 5.1.7 The sender address is not usable"
        try:
            for rcpt in envelope.rcpt_tos:
                user = self.registrations.user_of(rcpt)
                if user is not None:
                    await self.message_to_user(
                        user, from_address, text, subject=subject, thread=mail_thread(mail)
                    )
        except Exception:
            log.warning("cannot pass mail on to XMPP", exc_info=True)
            return "451 4.3.0 The XMPP side is unavailable; try again later"
        return "250 Message accepted for delivery"


class EmailService:
    """The running gateway: the component link and the SMTP listener."""

    def __init__(self, config: EmailConfig, base_dir: Path) -> None:
        path = base_dir / config.component.data_dir / f"{config.component.domain}.json"
        self.gateway = EmailGateway(config, Registrations(path))
        self.runner = GatewayRunner(self.gateway, config.component)
        self.config = config
        self.smtp_server: asyncio.Server | None = None

    async def start(self) -> None:
        await self.runner.start()
        listen = self.config.listen
        self.smtp_server = await asyncio.get_running_loop().create_server(
            lambda: SMTP(
                self.gateway,
                data_size_limit=listen.max_message_size,
                enable_SMTPUTF8=True,
                hostname=self.config.component.domain,
            ),
            listen.interface,
            listen.port,
        )

    @property
    def smtp_port(self) -> int:
        assert self.smtp_server is not None
        return int(self.smtp_server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self.smtp_server is not None:
            self.smtp_server.close()
        await self.runner.stop()
