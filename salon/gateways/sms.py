"""The SMS gateway: XMPP ↔ an SMS provider's HTTP API, run as an XEP-0114 component.

Phone numbers are JIDs on the gateway's domain: ``+15551234567@sms.example.org`` (E.164).
A user registers the number the provider gave them (``<phone>`` in jabber:iq:register).

- Outgoing: a message to a number becomes a REST call, ``POST send_url`` with the JSON
  ``{"from": "<user's number>", "to": "<number>", "body": "<text>"}`` and, when configured,
  ``Authorization: Bearer <api_token>``. A 2xx answer means sent; a 4xx answer is
  ``not-acceptable`` (the provider refused this message), 5xx or no answer is
  ``remote-server-timeout``.
- Incoming: the provider calls the webhook, ``POST <webhook_path>`` with JSON
  ``{"from": ..., "to": ..., "body": ...}`` or a form with ``From``/``To``/``Body`` (the
  Twilio-style shape many providers use), carrying the shared ``webhook_token`` in the
  ``X-Gateway-Token`` header or a ``token`` query parameter. The text arrives as a message
  from ``<from>@sms.<domain>`` to the user who registered ``<to>``. Answers: 200, 403 for a
  wrong token, 404 for a number nobody registered, 413 for a text over ``max_text``, 400 for
  anything malformed.

A provider with another shape (JMP/Cheogram-style services, a self-hosted modem) needs only
a small adapter in front that translates to these two calls.
"""

from __future__ import annotations

import hmac
import logging
import re
from pathlib import Path

import aiohttp
from aiohttp import web
from pydantic import Field

from salon.errors import StanzaError, StanzaErrorCondition
from salon.gateways.base import Gateway, Registrations
from salon.gateways.runner import ComponentConfig, ConfigSection, GatewayRunner
from salon.xml.element import Element

log = logging.getLogger(__name__)

_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")


class Provider(ConfigSection):
    """``[provider]``: the SMS provider's HTTP side."""

    send_url: str = Field(min_length=1, description="URL the gateway POSTs outgoing SMS to.")
    api_token: str = Field("", description="Bearer token for send_url (empty: none).")
    timeout: float = Field(30.0, gt=0, description="Seconds before a send call fails.")


class Webhook(ConfigSection):
    """``[webhook]``: where the provider delivers incoming SMS."""

    interface: str = Field("127.0.0.1", description="Address to listen on.")
    port: int = Field(8088, ge=0, le=65535, description="Port to listen on.")
    path: str = Field("/sms/incoming", description="URL path the provider calls.")
    token: str = Field(min_length=16, description="Shared secret the provider sends along.")


class SmsConfig(ConfigSection):
    component: ComponentConfig
    provider: Provider
    webhook: Webhook
    max_text: int = Field(1600, ge=1, description="Longest SMS text either way, in characters.")


class SmsGateway(Gateway):
    identity_type = "sms"
    field = "phone"
    prompt = "phone number"

    def __init__(self, config: SmsConfig, registrations: Registrations) -> None:
        super().__init__(config.component.domain, config.component.user_domains(), registrations)
        self.config = config
        self.http: aiohttp.ClientSession | None = None

    def normalise_address(self, text: str) -> str | None:
        number = re.sub(r"[\s().-]", "", text)
        return number if _E164.match(number) else None

    # ------------------------------------------------------------------ XMPP → provider
    async def deliver(self, user: str, address: str, to: str, message: Element) -> None:
        body = message.find_text("body", message.ns) or ""
        if len(body) > self.config.max_text:
            raise StanzaError(
                StanzaErrorCondition.NOT_ACCEPTABLE,
                f"the text is longer than {self.config.max_text} characters",
            )
        provider = self.config.provider
        headers = {"Authorization": f"Bearer {provider.api_token}"} if provider.api_token else {}
        assert self.http is not None
        try:
            async with self.http.post(
                provider.send_url,
                json={"from": address, "to": to, "body": body},
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=provider.timeout),
            ) as response:
                status = response.status
                detail = (await response.text())[:200]
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise StanzaError(
                StanzaErrorCondition.REMOTE_SERVER_TIMEOUT,
                f"the SMS provider is unreachable: {exc}",
            ) from None
        if 400 <= status < 500:
            raise StanzaError(
                StanzaErrorCondition.NOT_ACCEPTABLE,
                f"the SMS provider refused it ({status}): {detail}",
            )
        if status >= 300:
            raise StanzaError(
                StanzaErrorCondition.REMOTE_SERVER_TIMEOUT, f"the SMS provider failed ({status})"
            )

    # ------------------------------------------------------------------ provider → XMPP
    async def webhook(self, request: web.Request) -> web.Response:
        token = request.headers.get("X-Gateway-Token") or request.query.get("token", "")
        if not hmac.compare_digest(token.encode(), self.config.webhook.token.encode()):
            return web.json_response({"error": "wrong token"}, status=403)
        try:
            if request.content_type == "application/json":
                data = await request.json()
                sender, to, body = data.get("from"), data.get("to"), data.get("body")
            else:
                form = await request.post()
                sender, to, body = form.get("From"), form.get("To"), form.get("Body")
        except (ValueError, AttributeError):
            return web.json_response({"error": "malformed request"}, status=400)
        if not all(isinstance(v, str) for v in (sender, to, body)):
            return web.json_response({"error": "from, to and body are needed"}, status=400)
        assert isinstance(sender, str) and isinstance(to, str) and isinstance(body, str)
        number, own = self.normalise_address(sender), self.normalise_address(to)
        if number is None or own is None:
            return web.json_response({"error": "not an E.164 number"}, status=400)
        if len(body) > self.config.max_text:
            return web.json_response({"error": "text too long"}, status=413)
        user = self.registrations.user_of(own)
        if user is None:
            return web.json_response({"error": "nobody has this number"}, status=404)
        try:
            await self.message_to_user(user, number, body)
        except Exception:
            log.warning("cannot pass an SMS on to XMPP", exc_info=True)
            return web.json_response({"error": "try again later"}, status=503)
        return web.json_response({"status": "delivered"})


class SmsService:
    """The running gateway: the component link, the HTTP client and the webhook listener."""

    def __init__(self, config: SmsConfig, base_dir: Path) -> None:
        path = base_dir / config.component.data_dir / f"{config.component.domain}.json"
        self.gateway = SmsGateway(config, Registrations(path))
        self.runner = GatewayRunner(self.gateway, config.component)
        self.config = config
        self.web: web.AppRunner | None = None
        self.site: web.TCPSite | None = None

    async def start(self) -> None:
        self.gateway.http = aiohttp.ClientSession()
        await self.runner.start()
        app = web.Application(client_max_size=64 * 1024)
        app.router.add_post(self.config.webhook.path, self.gateway.webhook)
        self.web = web.AppRunner(app, access_log=None)
        await self.web.setup()
        hook = self.config.webhook
        self.site = web.TCPSite(self.web, hook.interface, hook.port)
        await self.site.start()

    @property
    def webhook_port(self) -> int:
        assert self.web is not None
        return int(self.web.addresses[0][1])

    async def stop(self) -> None:
        if self.web is not None:
            await self.web.cleanup()
        await self.runner.stop()
        if self.gateway.http is not None:
            await self.gateway.http.close()
