"""XEP-0077: In-Band Registration: new accounts, password changes, account removal.

Before authentication (§3.1.1 "Registration with a Server"), the c2s stream hands iqs in
``jabber:iq:register`` to this module through ``PreAuthIqRequest``; the stream feature
``<register xmlns='http://jabber.org/features/iq-register'/>`` is offered next to the SASL
mechanisms (§7) when registration is allowed. After authentication the same namespace
changes the password (§3.3) or removes the account (§3.2).

Choices, with the text they follow:

* Registration is off unless ``allow_registration`` is set; a request is then refused with
  ``<not-allowed/>`` (the module is there, the service policy forbids it; §3.1 keeps
  ``<service-unavailable/>`` for a host without the protocol, which is what a server without
  this module answers).
* Fields are the plain ``<username/>`` and ``<password/>`` (no data form). A missing or empty
  one, a username that is no valid localpart (RFC 7622 §3.3) or an unusable password gets
  ``<not-acceptable/>`` (§3.1); a username in use gets ``<conflict/>``.
* Too many new accounts from one IP address (``registrations_per_address`` per
  ``registration_window`` seconds) get ``<not-acceptable/>`` of type ``wait`` (§3.1.1 names
  not-acceptable for registering too many times; ``wait`` says to try later).
* A password change must name the user's own username, if it names one; an empty password
  keeps the old one and gets ``<bad-request/>`` (§3.3). Error replies here never echo the
  request back, so a password is never repeated (§3.3).
* Removal answers the iq, then ends every session of the account with the
  ``<not-authorized/>`` stream error and deletes the account with all its data (§3.2).
  A ``<remove/>`` before authentication gets ``<unexpected-request/>`` (§3.2 table).
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable

from pydantic import Field

from salon.auth.credentials import prepare_password, prepare_username
from salon.core.events import AccountDeleted, PreAuthIqRequest
from salon.core.hooks import HANDLED
from salon.core.iq import IqRequest, Target
from salon.core.items import PREAUTH_FEATURE, PREAUTH_IQ_NAMESPACE
from salon.core.module import Module, ModuleOptions, Spec
from salon.errors import StanzaError, StanzaErrorCondition, StreamErrorCondition
from salon.namespaces import NS_FEATURE_IQREGISTER, NS_REGISTER
from salon.storage.interfaces import AccountExists, AccountNotFound
from salon.xml.element import Element
from salon.xml.stanza import error_element, iq_result

INSTRUCTIONS = "Choose a username and password for use with this service."


class RateLimiter:
    """At most ``limit`` events per ``window`` seconds per key, for at most ``max_keys`` keys
    (the least recently used key is forgotten first)."""

    def __init__(
        self,
        limit: int,
        window: float,
        max_keys: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window = window
        self.max_keys = max_keys
        self.clock = clock
        self._events: OrderedDict[str, deque[float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._events)

    def acquire(self, key: str) -> bool:
        """Count one event for ``key``; False (and nothing counted) when over the limit."""
        now = self.clock()
        events = self._events.get(key)
        if events is None:
            events = self._events[key] = deque()
        self._events.move_to_end(key)
        while events and events[0] <= now - self.window:
            events.popleft()
        if len(events) >= self.limit:
            return False
        events.append(now)
        while len(self._events) > self.max_keys:
            self._events.popitem(last=False)
        return True

    def release(self, key: str) -> None:
        """Take back the last event counted for ``key`` (it did not happen after all)."""
        events = self._events.get(key)
        if events:
            events.pop()


class RegistrationOptions(ModuleOptions):
    allow_registration: bool = Field(
        False, description="Let anyone create an account in-band before logging in"
    )
    registrations_per_address: int = Field(
        5, ge=1, description="New accounts one IP address may create per window"
    )
    registration_window: float = Field(
        3600.0, gt=0, description="Seconds over which registrations_per_address counts"
    )
    tracked_addresses: int = Field(
        10000, ge=1, description="IP addresses the registration limit remembers"
    )


class Registration(Module[RegistrationOptions]):
    name = "register"
    specs = (Spec("XEP-0077", "2.5", "plain fields; no data forms"),)

    def setup(self) -> None:
        self.allow_registration = self.options.allow_registration
        self.limiter = RateLimiter(
            self.options.registrations_per_address,
            self.options.registration_window,
            self.options.tracked_addresses,
        )
        self.add_feature(NS_REGISTER)
        self.add_item(PREAUTH_IQ_NAMESPACE, NS_REGISTER)
        if self.allow_registration:
            self.add_item(PREAUTH_FEATURE, Element("register", NS_FEATURE_IQREGISTER))
        self.hook(PreAuthIqRequest, self.before_auth)
        self.on_iq(
            "get", NS_REGISTER, "query", self.registration_info, to=Target.HOST | Target.SELF
        )
        self.on_iq("set", NS_REGISTER, "query", self.change, to=Target.HOST | Target.SELF)

    # ------------------------------------------------------------------ before auth
    async def before_auth(self, event: PreAuthIqRequest) -> bool | None:
        stanza = event.stanza
        query = stanza.first_child
        if query is None or query.ns != NS_REGISTER or query.tag != "query":
            return None
        event.reply = await self._register(stanza, query, event.address)
        return HANDLED

    async def _register(self, stanza: Element, query: Element, address: str) -> Element:
        if not self.allow_registration:
            return _error(stanza, StanzaErrorCondition.NOT_ALLOWED, "registration is closed")
        if stanza.get("type") == "get":
            form = Element("query", NS_REGISTER)
            form.add("instructions", text=INSTRUCTIONS)
            form.add("username")
            form.add("password")
            return iq_result(stanza, form)
        if query.find("remove") is not None:
            return _error(stanza, StanzaErrorCondition.UNEXPECTED_REQUEST, "log in first")
        username = prepare_username((query.find_text("username") or "").strip())
        password = query.find_text("password") or ""
        if username is None or not _usable(password):
            return _error(stanza, StanzaErrorCondition.NOT_ACCEPTABLE, "username and password")
        if await self.storage.accounts.get(self.domain, username) is not None:
            return _error(stanza, StanzaErrorCondition.CONFLICT)
        if not self.limiter.acquire(address):
            return _error(
                stanza,
                StanzaErrorCondition.NOT_ACCEPTABLE,
                "too many registrations from this address; try again later",
                error_type="wait",
            )
        credentials = await self.host.passwords.make_credentials(password)
        try:
            await self.storage.accounts.create(self.domain, username, credentials)
        except AccountExists:
            self.limiter.release(address)
            return _error(stanza, StanzaErrorCondition.CONFLICT)
        self.log.info("registered %s@%s from %s", username, self.domain, address)
        return iq_result(stanza)

    # ------------------------------------------------------------------ after auth
    def registration_info(self, request: IqRequest) -> Element:
        """§3.1: a registered entity learns it is registered, and under which username."""
        query = Element("query", NS_REGISTER)
        query.add("registered")
        query.add("instructions", text="You are registered; send a new password to change it.")
        query.add("username", text=request.sender.local or "")
        query.add("password")
        return request.result(query)

    async def change(self, request: IqRequest) -> Element | None:
        query = request.payload
        if query.find("remove") is not None:
            return await self._remove(request)
        return await self._change_password(request)

    async def _change_password(self, request: IqRequest) -> Element | None:
        query, stanza, user = request.payload, request.stanza, request.sender
        username = query.find_text("username")
        if username is not None and prepare_username(username.strip()) != user.local:
            return _error(stanza, StanzaErrorCondition.BAD_REQUEST, "that is not your username")
        password = query.find_text("password") or ""
        if not password:
            return _error(stanza, StanzaErrorCondition.BAD_REQUEST, "the password is empty")
        if not _usable(password):
            return _error(stanza, StanzaErrorCondition.NOT_ACCEPTABLE, "unusable password")
        credentials = await self.host.passwords.make_credentials(password)
        try:
            await self.storage.accounts.set_credentials(self.domain, user.local or "", credentials)
        except AccountNotFound:
            return _error(stanza, StanzaErrorCondition.REGISTRATION_REQUIRED)
        self.log.info("%s changed its password", user.bare)
        return None

    async def _remove(self, request: IqRequest) -> Element | None:
        if len(list(request.payload.elements())) != 1:
            return _error(request.stanza, StanzaErrorCondition.BAD_REQUEST, "remove comes alone")
        user = request.sender.bare
        if not await self.storage.accounts.delete(self.domain, user.local or ""):
            return _error(request.stanza, StanzaErrorCondition.REGISTRATION_REQUIRED)
        self.log.info("%s removed its account", user)
        # The result first, then the stream errors: once its stream is closed, the
        # requesting session's copy of the router's reply is not written any more.
        self.router.deliver_reply(request.origin, request.result())
        for session in self.sessions.resources(user):
            session.close(StreamErrorCondition.NOT_AUTHORIZED, "the account was removed")
        await self.host.hooks.fire(AccountDeleted(user))
        return None


def _usable(password: str) -> bool:
    try:
        prepare_password(password)
    except ValueError:
        return False
    return True


def _error(
    stanza: Element,
    condition: StanzaErrorCondition,
    text: str | None = None,
    error_type: str | None = None,
) -> Element:
    """An iq error that does not repeat the request (it may hold a password)."""
    reply = Element("iq", stanza.ns, {"type": "error"})
    reply.set("id", stanza.get("id"))
    reply.set("to", stanza.get("from"))
    reply.set("from", stanza.get("to"))
    reply.append(error_element(StanzaError(condition, text, error_type), stanza.ns))
    return reply
