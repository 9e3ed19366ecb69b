"""XEP-0215: External Service Discovery. The server tells its own users which STUN and TURN
servers to use (audio and video calls), from the ``[modules.extdisco]`` configuration.

TURN credentials are short-lived, in the shared-secret scheme of the TURN REST API that
coturn implements (``use-auth-secret``): the username is ``<expiry unix time>:<bare JID>``,
the password ``base64(HMAC-SHA1(secret, username))``, so the TURN server checks them
without asking Salon. They come with every ``<services/>`` answer (with ``expires``) and
alone on a ``<credentials/>`` request.

Only the server's own users are answered (others get <forbidden/>); a ``<credentials/>``
without a ``<service/>`` naming host and type is <bad-request/>; one that matches no
configured service is <item-not-found/> (§3.3).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, Field

from salon.core.iq import IqRequest, Target
from salon.core.module import Module, ModuleOptions, Spec
from salon.errors import StanzaError, StanzaErrorCondition
from salon.jid import JID
from salon.namespaces import NS_EXTDISCO
from salon.xml.element import Element


class ExternalService(BaseModel):
    type: str = Field(min_length=1, description="Registered service type: stun, turn, turns")
    host: str = Field(min_length=1, description="Host name or IP address")
    port: int | None = Field(None, ge=1, le=65535, description="Port")
    transport: Literal["udp", "tcp"] | None = Field(None, description="udp or tcp")
    name: str | None = Field(None, description="A human-readable name")
    credentials: bool | None = Field(
        None, description="Give time-limited credentials (default: for turn/turns with a secret)"
    )


class ExtDiscoOptions(ModuleOptions):
    services: list[ExternalService] = Field(
        default_factory=list, description="STUN/TURN servers offered to users"
    )
    secret: str | None = Field(
        None, description="Secret shared with the TURN server (coturn static-auth-secret)"
    )
    ttl: int = Field(86400, ge=60, description="Seconds TURN credentials stay valid")


def turn_credentials(secret: str, user: JID, expiry: int) -> tuple[str, str]:
    """The TURN REST API username and password for ``user`` until ``expiry``."""
    username = f"{expiry}:{user.bare}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


def xep0082(timestamp: int) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ExternalServiceDiscovery(Module[ExtDiscoOptions]):
    name = "extdisco"
    specs = (Spec("XEP-0215", "1.0.0"),)
    depends = ("disco",)

    def setup(self) -> None:
        self.add_feature(NS_EXTDISCO)
        self.on_iq("get", NS_EXTDISCO, "services", self.services, to=Target.HOST)
        self.on_iq("get", NS_EXTDISCO, "credentials", self.credentials, to=Target.HOST)

    def _with_credentials(self, service: ExternalService) -> bool:
        if self.options.secret is None:
            return False
        if service.credentials is not None:
            return service.credentials
        return service.type in ("turn", "turns")

    def _element(self, service: ExternalService, user: JID) -> Element:
        element = Element("service", NS_EXTDISCO, {"type": service.type, "host": service.host})
        if service.port is not None:
            element.set("port", str(service.port))
        if service.transport is not None:
            element.set("transport", service.transport)
        if service.name is not None:
            element.set("name", service.name)
        if self._with_credentials(service):
            assert self.options.secret is not None
            expiry = int(self.clock.time()) + self.options.ttl
            username, password = turn_credentials(self.options.secret, user, expiry)
            element.attrs.update(
                {
                    "restricted": "1",
                    "username": username,
                    "password": password,
                    "expires": xep0082(expiry),
                }
            )
        return element

    def _local_user(self, request: IqRequest) -> JID:
        sender = request.sender
        if sender.local is None or not self.host.is_local(sender.domain):
            raise StanzaError(StanzaErrorCondition.FORBIDDEN, "for this server's users")
        return sender

    def services(self, request: IqRequest) -> Element:
        user = self._local_user(request)
        wanted = request.payload.get("type")
        result = Element("services", NS_EXTDISCO)
        if wanted:
            result.set("type", wanted)
        for service in self.options.services:
            if wanted is None or wanted == "" or service.type == wanted:
                result.append(self._element(service, user))
        return request.result(result)

    def credentials(self, request: IqRequest) -> Element:
        user = self._local_user(request)
        asked = request.payload.find("service", NS_EXTDISCO)
        host = None if asked is None else asked.get("host")
        stype = None if asked is None else asked.get("type")
        if asked is None or not host or not stype:
            raise StanzaError(StanzaErrorCondition.BAD_REQUEST, "name a service's host and type")
        port = asked.get("port")
        result = Element("credentials", NS_EXTDISCO)
        for service in self.options.services:
            if service.host != host or service.type != stype:
                continue
            if port and str(service.port) != port:
                continue
            result.append(self._element(service, user))
        if not list(result.elements()):
            raise StanzaError(StanzaErrorCondition.ITEM_NOT_FOUND, "no such service")
        return request.result(result)
