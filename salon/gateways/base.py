"""What every gateway shipped with Salon shares: the XMPP side of a legacy-network gateway.

A gateway is an XEP-0114 component (``salon.gateways.component``). This class answers what
XEP-0100 asks of it whatever the legacy network is:

- service discovery: identity ``gateway/<type>``, ``jabber:iq:register``, ``jabber:iq:gateway``;
- registration (XEP-0077 on the gateway, XEP-0100 §4.1): which legacy address (an e-mail
  address, a phone number) belongs to the user; ``<remove/>`` unregisters;
- presence (XEP-0100 §4.1.1): after registering, the gateway asks to be in the user's roster,
  accepts the user's subscription and shows itself available; it answers probes, and on
  start it tells every registered user it is online;
- legacy contacts as JIDs on the gateway's domain (the address escaped with XEP-0106) and
  ``jabber:iq:gateway`` to translate an address into such a JID.

Subclasses say how to check a legacy address, and send and receive on the legacy network.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

from salon.errors import StanzaError, StanzaErrorCondition
from salon.jid import JID, JIDError
from salon.namespaces import (
    NS_COMPONENT,
    NS_DISCO_INFO,
    NS_DISCO_ITEMS,
    NS_REGISTER,
)
from salon.xml.element import Element
from salon.xml.stanza import error_reply, iq_result

log = logging.getLogger(__name__)

NS_GATEWAY = "jabber:iq:gateway"  # XEP-0100 §6

# XEP-0106 §4.2: the characters escaped in a localpart, "\" first when escaping.
_ESCAPES = [
    (" ", "\\20"),
    ('"', "\\22"),
    ("&", "\\26"),
    ("'", "\\27"),
    ("/", "\\2f"),
    (":", "\\3a"),
    ("<", "\\3c"),
    (">", "\\3e"),
    ("@", "\\40"),
]


def escape_localpart(text: str) -> str:
    """XEP-0106: ``bob@example.org`` → ``bob\\40example.org``."""
    out = []
    for i, char in enumerate(text):
        if char == "\\" and text[i + 1 : i + 3].lower() in {e[1][1:] for e in _ESCAPES} | {"5c"}:
            out.append("\\5c")
            continue
        out.append(dict(_ESCAPES).get(char, char))
    return "".join(out)


def unescape_localpart(text: str) -> str:
    """XEP-0106: ``bob\\40example.org`` → ``bob@example.org``."""
    table = {code[1:]: char for char, code in _ESCAPES} | {"5c": "\\"}
    out = []
    i = 0
    while i < len(text):
        code = text[i + 1 : i + 3].lower()
        if text[i] == "\\" and code in table:
            out.append(table[code])
            i += 3
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


class Registrations:
    """User bare JID → legacy address, kept in a JSON file written atomically; bounded."""

    def __init__(self, path: Path, limit: int = 100000) -> None:
        self.path = path
        self.limit = limit
        self.by_user: dict[str, str] = {}
        if path.exists():
            self.by_user = dict(json.loads(path.read_text()))

    def user_of(self, address: str) -> str | None:
        for user, registered in self.by_user.items():
            if registered == address:
                return user
        return None

    def set(self, user: str, address: str) -> None:
        owner = self.user_of(address)
        if owner is not None and owner != user:
            raise StanzaError(StanzaErrorCondition.CONFLICT, f"{address} belongs to someone else")
        if user not in self.by_user and len(self.by_user) >= self.limit:
            raise StanzaError(
                StanzaErrorCondition.RESOURCE_CONSTRAINT, "the gateway is full", "wait"
            )
        self.by_user[user] = address
        self._save()

    def remove(self, user: str) -> None:
        self.by_user.pop(user, None)
        self._save()

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.by_user, indent=1, sort_keys=True))
        os.replace(tmp, self.path)


Send = Callable[[Element], Awaitable[None]]


class Gateway:
    """The XMPP side of a gateway; subclasses fill in the legacy network."""

    identity_type = ""  # XEP-0100 gateway identity type: "smtp", "sms"
    field = ""  # the registration field holding the legacy address: "email", "phone"
    prompt = ""  # jabber:iq:gateway prompt

    def __init__(self, domain: str, users_domains: list[str], registrations: Registrations) -> None:
        self.domain = domain
        self.users_domains = set(users_domains)
        self.registrations = registrations
        self.send: Send = _not_connected

    # ------------------------------------------------------------------ legacy side (override)
    def normalise_address(self, text: str) -> str | None:
        """The canonical legacy address for ``text``, or None when it is not one."""
        raise NotImplementedError

    async def deliver(self, user: str, address: str, to: str, message: Element) -> None:
        """Send ``message`` from ``user`` (registered as ``address``) to legacy ``to``;
        raise ``StanzaError`` with a condition that says why it could not go."""
        raise NotImplementedError

    # ------------------------------------------------------------------ helpers
    def contact_jid(self, address: str) -> str:
        return f"{escape_localpart(address)}@{self.domain}"

    async def announce(self) -> None:
        """On connect: show the gateway online to every registered user."""
        for user in list(self.registrations.by_user):
            await self.send(self._presence(user))

    async def message_to_user(
        self,
        user: str,
        from_address: str,
        body: str,
        *,
        subject: str | None = None,
        thread: str | None = None,
    ) -> None:
        message = Element(
            "message",
            NS_COMPONENT,
            {"from": self.contact_jid(from_address), "to": user, "type": "normal"},
        )
        if subject:
            message.add("subject", NS_COMPONENT, text=subject)
        message.add("body", NS_COMPONENT, text=body)
        if thread:
            message.add("thread", NS_COMPONENT, text=thread)
        await self.send(message)

    def _presence(self, to: str, type_: str | None = None, from_: str | None = None) -> Element:
        presence = Element("presence", NS_COMPONENT, {"from": from_ or self.domain, "to": to})
        presence.set("type", type_)
        return presence

    # ------------------------------------------------------------------ dispatch
    async def receive(self, stanza: Element) -> None:
        """A stanza from the server; errors go back to the sender as error stanzas."""
        try:
            sender = JID.parse(stanza.get("from") or "")
            to = JID.parse(stanza.get("to") or "")
        except JIDError:
            return  # the server stamps both; nothing sensible to answer
        try:
            if stanza.tag == "iq":
                await self._iq(stanza, sender, to)
            elif stanza.tag == "presence":
                await self._presence_in(stanza, sender, to)
            elif stanza.tag == "message":
                await self._message(stanza, sender, to)
        except StanzaError as err:
            if stanza.get("type") not in ("error", "result"):
                await self.send(error_reply(stanza, err))

    async def _iq(self, stanza: Element, sender: JID, to: JID) -> None:
        iq_type = stanza.get("type")
        payload = stanza.first_child
        if iq_type in ("result", "error"):
            return
        if payload is None:
            raise StanzaError(StanzaErrorCondition.BAD_REQUEST)
        key = (iq_type, payload.ns, payload.tag)
        if to.local is not None:
            raise StanzaError(StanzaErrorCondition.SERVICE_UNAVAILABLE)
        if key == ("get", NS_DISCO_INFO, "query"):
            reply = iq_result(stanza, self._disco_info())
        elif key == ("get", NS_DISCO_ITEMS, "query"):
            reply = iq_result(stanza, Element("query", NS_DISCO_ITEMS))
        elif key == ("get", NS_REGISTER, "query"):
            reply = iq_result(stanza, self._register_form(sender))
        elif key == ("set", NS_REGISTER, "query"):
            await self._register(payload, sender)
            reply = iq_result(stanza)
        elif key == ("get", NS_GATEWAY, "query"):
            query = Element("query", NS_GATEWAY)
            query.add("desc", text=f"Enter the {self.prompt} of the contact")
            query.add("prompt", text=self.prompt)
            reply = iq_result(stanza, query)
        elif key == ("set", NS_GATEWAY, "query"):
            address = self.normalise_address(payload.find_text("prompt", NS_GATEWAY) or "")
            if address is None:
                raise StanzaError(StanzaErrorCondition.BAD_REQUEST, f"not a {self.prompt}")
            query = Element("query", NS_GATEWAY)
            query.add("jid", text=self.contact_jid(address))
            reply = iq_result(stanza, query)
        else:
            raise StanzaError(StanzaErrorCondition.SERVICE_UNAVAILABLE)
        await self.send(reply)

    def _disco_info(self) -> Element:
        query = Element("query", NS_DISCO_INFO)
        query.add("identity", attrs={"category": "gateway", "type": self.identity_type})
        for feature in (NS_DISCO_INFO, NS_DISCO_ITEMS, NS_GATEWAY, NS_REGISTER):
            query.add("feature", attrs={"var": feature})
        return query

    def _check_user(self, sender: JID) -> str:
        if sender.local is None or sender.domain not in self.users_domains:
            raise StanzaError(
                StanzaErrorCondition.FORBIDDEN, "only users of this server may use the gateway"
            )
        return str(sender.bare)

    def _register_form(self, sender: JID) -> Element:
        user = self._check_user(sender)
        query = Element("query", NS_REGISTER)
        query.add("instructions", text=f"Enter your {self.prompt}.")
        current = self.registrations.by_user.get(user)
        if current is not None:
            query.add("registered")
        query.add(self.field, text=current or "")
        return query

    async def _register(self, payload: Element, sender: JID) -> None:
        user = self._check_user(sender)
        if payload.find("remove", NS_REGISTER) is not None:
            if user not in self.registrations.by_user:
                raise StanzaError(StanzaErrorCondition.REGISTRATION_REQUIRED, "not registered")
            self.registrations.remove(user)
            for type_ in ("unsubscribe", "unsubscribed", "unavailable"):  # XEP-0100 §4.3
                await self.send(self._presence(user, type_))
            return
        address = self.normalise_address(payload.find_text(self.field, NS_REGISTER) or "")
        if address is None:
            raise StanzaError(
                StanzaErrorCondition.NOT_ACCEPTABLE, f"a valid {self.prompt} is needed"
            )
        was_registered = user in self.registrations.by_user
        self.registrations.set(user, address)
        if not was_registered:
            await self.send(self._presence(user, "subscribe"))  # XEP-0100 §4.1 step 5

    async def _presence_in(self, stanza: Element, sender: JID, to: JID) -> None:
        user = str(sender.bare)
        registered = user in self.registrations.by_user
        type_ = stanza.get("type")
        contact = str(to) if to.local is not None else None
        if type_ == "subscribe":
            await self.send(
                self._presence(user, "subscribed" if registered else "unsubscribed", contact)
            )
            if registered and contact is None:
                await self.send(self._presence(user))
        elif type_ in ("subscribed", "probe") and registered and contact is None:
            await self.send(self._presence(user))
        elif type_ is None and registered and contact is None:
            await self.send(self._presence(str(sender)))  # the user came online

    async def _message(self, stanza: Element, sender: JID, to: JID) -> None:
        if stanza.get("type") == "error":
            return
        body = stanza.find_text("body", stanza.ns)
        if body is None:
            return  # chat states, receipts: nothing to carry to the legacy network
        if to.local is None:
            raise StanzaError(StanzaErrorCondition.SERVICE_UNAVAILABLE, "write to a contact")
        user = self._check_user(sender)
        address = self.registrations.by_user.get(user)
        if address is None:
            raise StanzaError(
                StanzaErrorCondition.REGISTRATION_REQUIRED, "register with the gateway first"
            )
        legacy = self.normalise_address(unescape_localpart(to.local))
        if legacy is None:
            raise StanzaError(
                StanzaErrorCondition.JID_MALFORMED, f"{to.local} does not name a {self.prompt}"
            )
        await self.deliver(user, address, legacy, stanza)


async def _not_connected(_stanza: Element) -> None:
    raise RuntimeError("the gateway is not connected")
