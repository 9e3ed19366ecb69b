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

Invite-only registration (``invite_only``), XEP-0445 with tokens made by an admin's XEP-0401
``urn:xmpp:invite#create-account`` command (the ``admin`` module; :class:`Invites` here):

* The stream features offer ``<register xmlns='urn:xmpp:ibr-token:0'/>`` beside the
  iq-register feature.
* Before registering, the client sends ``<preauth xmlns='urn:xmpp:pars:0' token='…'/>`` in an
  iq set. An unknown, used or expired token gets ``<item-not-found/>`` (cancel), as the XEP's
  example; a missing token ``<bad-request/>``. An accepted token is remembered for that
  connection (bounded, ``preauth_ttl`` seconds); expiry is checked only then (the XEP: later
  steps of the session MUST NOT fail for expiry).
* A registration set without an accepted token is refused with ``<not-allowed/>`` (the
  service policy). A token is single-use and counts as used only once the account exists; a
  token another connection used in between gets ``<not-allowed/>`` too.
* Tokens live in the ``invites`` key-value store (host, token), so they survive a restart;
  expiry is on the host's clock.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable

from pydantic import Field

from salon.auth.credentials import prepare_password, prepare_username
from salon.core.clock import Clock
from salon.core.events import AccountDeleted, PreAuthIqRequest
from salon.core.hooks import HANDLED
from salon.core.iq import IqRequest, Target
from salon.core.items import PREAUTH_FEATURE, PREAUTH_IQ_NAMESPACE
from salon.core.module import Module, ModuleOptions, Spec
from salon.errors import StanzaError, StanzaErrorCondition, StreamErrorCondition
from salon.jid import JID
from salon.namespaces import NS_FEATURE_IQREGISTER, NS_IBR_TOKEN, NS_PARS, NS_REGISTER
from salon.storage.interfaces import AccountExists, AccountNotFound, KeyValueStore
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


class Invites:
    """Single-use registration tokens of one host (XEP-0401/XEP-0445), kept in a key-value
    store, with an expiry on the host's clock."""

    def __init__(self, store: KeyValueStore, domain: str, clock: Clock, lifetime: float) -> None:
        self.store = store
        self.domain = domain
        self.clock = clock
        self.lifetime = lifetime
        self._lock = asyncio.Lock()  # a token is taken by one registration only

    async def create(
        self, by: JID | str, lifetime: float | None = None, username: str | None = None
    ) -> tuple[str, float]:
        """A new token and when it expires (seconds since the epoch). With ``username`` (a
        prepared localpart) the token registers that account only (XEP-0445 §2.1)."""
        token = secrets.token_urlsafe(18)
        expires = self.clock.time() + (self.lifetime if lifetime is None else lifetime)
        record: dict[str, object] = {
            "expires": expires,
            "by": str(by.bare) if isinstance(by, JID) else by,
            "at": self.clock.time(),
        }
        if username is not None:
            record["username"] = username
        await self.store.set(self.domain, token, json.dumps(record))
        return token, expires

    async def valid(self, token: str) -> bool:
        """The token exists, is unused and has not expired."""
        stored = await self.store.get(self.domain, token) if token else None
        return stored is not None and json.loads(stored)["expires"] > self.clock.time()

    async def username_of(self, token: str) -> str | None:
        """The username a token was made for, if it names one."""
        stored = await self.store.get(self.domain, token) if token else None
        name = json.loads(stored).get("username") if stored is not None else None
        return name if isinstance(name, str) else None

    async def take(self, token: str) -> str | None:
        """Use the token up (no expiry check, the XEP checks it at preauth only); the stored
        record to :meth:`give_back` if the registration fails after all, None if it is gone."""
        async with self._lock:
            stored = await self.store.get(self.domain, token)
            if stored is not None:
                await self.store.set(self.domain, token, None)
            return stored

    async def give_back(self, token: str, record: str) -> None:
        await self.store.set(self.domain, token, record)

    def uri(self, token: str, username: str | None = None) -> str:
        """XEP-0401 §5: the registration URI an invitee opens (XEP-0445 §2.1: with the
        account's JID when the invitation is for one username)."""
        where = self.domain if username is None else f"{username}@{self.domain}"
        return f"xmpp:{where}?register;preauth={token}"


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
    invite_only: bool = Field(
        False,
        description="Registration needs a token (XEP-0445) an admin made with the "
        "urn:xmpp:invite#create-account command; allow_registration is then not needed",
    )
    invite_lifetime: float = Field(
        7 * 86400.0, gt=0, description="Seconds an invitation token stays valid"
    )
    preauth_ttl: float = Field(
        600.0, gt=0, description="Seconds an accepted token stays attached to its connection"
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
        self.invite_only = self.options.invite_only
        self.invites = Invites(
            self.storage.keyvalue("invites"), self.domain, self.clock, self.options.invite_lifetime
        )
        self.provide(Invites, self.invites)  # the admin command makes tokens here
        # connection -> (accepted token, until); holds the connection until expiry or eviction
        self.preauthed: OrderedDict[object, tuple[str, float]] = OrderedDict()
        self.add_feature(NS_REGISTER)
        self.add_item(PREAUTH_IQ_NAMESPACE, NS_REGISTER)
        if self.allow_registration or self.invite_only:
            self.add_item(PREAUTH_FEATURE, Element("register", NS_FEATURE_IQREGISTER))
        if self.invite_only:
            self.add_item(PREAUTH_FEATURE, Element("register", NS_IBR_TOKEN))
            self.add_item(PREAUTH_IQ_NAMESPACE, NS_PARS)
        self.hook(PreAuthIqRequest, self.before_auth)
        self.on_iq(
            "get", NS_REGISTER, "query", self.registration_info, to=Target.HOST | Target.SELF
        )
        self.on_iq("set", NS_REGISTER, "query", self.change, to=Target.HOST | Target.SELF)

    # ------------------------------------------------------------------ before auth
    async def before_auth(self, event: PreAuthIqRequest) -> bool | None:
        stanza = event.stanza
        query = stanza.first_child
        if query is not None and query.ns == NS_PARS and query.tag == "preauth":
            event.reply = await self._preauth(stanza, query, event.connection)
            return HANDLED
        if query is None or query.ns != NS_REGISTER or query.tag != "query":
            return None
        event.reply = await self._register(stanza, query, event.address, event.connection)
        return HANDLED

    # ------------------------------------------------------------------ XEP-0445
    async def _preauth(
        self, stanza: Element, preauth: Element, connection: object | None
    ) -> Element:
        if not self.invite_only or stanza.get("type") != "set":
            return _error(stanza, StanzaErrorCondition.BAD_REQUEST, "preauth is an iq set")
        token = preauth.get("token") or ""
        if not token:
            return _error(stanza, StanzaErrorCondition.BAD_REQUEST, "the token is missing")
        if not await self.invites.valid(token):
            return _error(
                stanza,
                StanzaErrorCondition.ITEM_NOT_FOUND,
                "The provided token is invalid or expired",
                error_type="cancel",
            )
        if connection is not None:
            self._forget_stale()
            self.preauthed[connection] = (token, self.clock.monotonic() + self.options.preauth_ttl)
            self.preauthed.move_to_end(connection)
            while len(self.preauthed) > self.options.tracked_addresses:
                self.preauthed.popitem(last=False)
        return iq_result(stanza)

    def _forget_stale(self) -> None:
        now = self.clock.monotonic()
        while self.preauthed:
            connection, (_token, until) = next(iter(self.preauthed.items()))
            if until > now:
                break
            del self.preauthed[connection]

    def _accepted_token(self, connection: object | None) -> str | None:
        self._forget_stale()
        entry = self.preauthed.get(connection) if connection is not None else None
        return entry[0] if entry is not None else None

    # ------------------------------------------------------------------ XEP-0077
    async def _register(
        self, stanza: Element, query: Element, address: str, connection: object | None = None
    ) -> Element:
        if not (self.allow_registration or self.invite_only):
            return _error(stanza, StanzaErrorCondition.NOT_ALLOWED, "registration is closed")
        if stanza.get("type") == "get":
            form = Element("query", NS_REGISTER)
            form.add("instructions", text=INSTRUCTIONS)
            form.add("username")
            form.add("password")
            return iq_result(stanza, form)
        if query.find("remove") is not None:
            return _error(stanza, StanzaErrorCondition.UNEXPECTED_REQUEST, "log in first")
        token = self._accepted_token(connection) if self.invite_only else None
        if self.invite_only and token is None:
            return _error(
                stanza,
                StanzaErrorCondition.NOT_ALLOWED,
                "registration needs an invitation: send its token first (XEP-0445)",
            )
        username = prepare_username((query.find_text("username") or "").strip())
        password = query.find_text("password") or ""
        if username is None or not _usable(password):
            return _error(stanza, StanzaErrorCondition.NOT_ACCEPTABLE, "username and password")
        if token is not None:
            reserved = await self.invites.username_of(token)
            if reserved is not None and reserved != username:
                # An invitation for one account (XEP-0445 §2.1) registers that one only.
                return _error(
                    stanza,
                    StanzaErrorCondition.FORBIDDEN,
                    f"this invitation is for the username '{reserved}'",
                )
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
        record = await self.invites.take(token) if token is not None else None
        if token is not None and record is None:
            self.limiter.release(address)
            self.preauthed.pop(connection, None)
            return _error(stanza, StanzaErrorCondition.NOT_ALLOWED, "the invitation was used")
        try:
            await self.storage.accounts.create(self.domain, username, credentials)
        except AccountExists:
            self.limiter.release(address)
            if token is not None and record is not None:
                await self.invites.give_back(token, record)
            return _error(stanza, StanzaErrorCondition.CONFLICT)
        if token is not None:
            self.preauthed.pop(connection, None)
        self.log.info(
            "registered %s@%s from %s%s",
            username,
            self.domain,
            address,
            " with an invitation" if token is not None else "",
        )
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
        self.host.peers.changed("account", user.bare)  # other nodes' account caches
        self.log.info("%s changed its password", user.bare)
        return None

    async def _remove(self, request: IqRequest) -> Element | None:
        if len(list(request.payload.elements())) != 1:
            return _error(request.stanza, StanzaErrorCondition.BAD_REQUEST, "remove comes alone")
        user = request.sender.bare
        if not await self.storage.accounts.delete(self.domain, user.local or ""):
            return _error(request.stanza, StanzaErrorCondition.REGISTRATION_REQUIRED)
        self.host.peers.changed("account", user)
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
