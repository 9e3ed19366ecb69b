"""XEP-0357: Push Notifications. A phone whose app is asleep learns, through its vendor's
push service, that something waits for it on the server.

Registration (XEP-0357 §5, §6): a client sends ``<enable jid='app server' node='N'/>`` to
its own account, with an optional data form of pubsub publish-options (usually the secret
the app server checks). Registrations live in the key-value store ``push``, a JSON list per
user; enabling the same app server and node again replaces the publish-options, and past
``max_registrations`` the oldest is dropped (a reinstalled app registers anew and never
disables the old one). ``<disable jid='…'/>`` removes every node of that app server,
``<disable jid='…' node='N'/>`` just that one.

When a notification goes out: a message with a body (types chat and normal; groupchat to a
full JID when ``groupchat`` is on) or a subscription request arrives for a user (the router's
``InboundStanza``, after GUARD modules let it through) and none of the sessions that would
take it is reachable: there are none (it goes to offline storage), or every one is
hibernated by XEP-0198 (its connection dropped, it waits for a resume), or, with
``notify_inactive``, every connected one said it is in the background (XEP-0352). And when
a connection under XEP-0198 drops and its session hibernates, the messages it was sent but
never acknowledged count as arrived then: the phone may never have seen them.

What goes out (§7): a pubsub publish from the user's bare JID to the app server, on the
registered node, with ``<notification xmlns='urn:xmpp:push:0'/>`` holding the
``urn:xmpp:push:summary`` form: message-count and pending-subscription-count (what arrived
since the user last bound or resumed a session), last-message-sender (``include_sender``)
and last-message-body (only with ``include_body``, cut to ``max_body_length``), followed by
the stored publish-options.

Failures: one publish per registration is in flight at a time; what arrives meanwhile is
folded into the next one. A publish that gets no answer within ``timeout``, or an error of
type ``wait``, is retried after ``retry_delay`` seconds, doubling up to ``max_retry_delay``,
at most ``retries`` times; then the notification is given up, the registration kept. Any
other error from the app server disables the registration, as the XEP allows and Prosody and
ejabberd do: the token is gone or the secret is wrong, and retrying would only repeat it.
All waiting is on the host clock, so these rules are tested without sleeping.
"""

from __future__ import annotations

import asyncio
import json
from collections import OrderedDict
from collections.abc import Coroutine
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any

from pydantic import Field

from salon.core.clock import wait_for
from salon.core.events import (
    AccountDeleted,
    ConnectionLost,
    InboundStanza,
    ResourceBound,
    SessionResumed,
)
from salon.core.hooks import Priority
from salon.core.iq import IqRequest, Target
from salon.core.locks import UserLocks
from salon.core.mobile import ClientStates, Hibernation
from salon.core.module import Module, ModuleOptions, Spec
from salon.core.session import C2SSession
from salon.errors import StanzaError, StanzaErrorCondition
from salon.jid import JID, parse_jid
from salon.namespaces import (
    NS_CLIENT,
    NS_DATA_FORMS,
    NS_PUBSUB,
    NS_PUBSUB_PUBLISH_OPTIONS,
    NS_PUSH,
    NS_PUSH_SUMMARY,
)
from salon.xml.dataforms import DataForm, FormError, form_element, parse_form
from salon.xml.dataforms import Field as FormField
from salon.xml.element import Element
from salon.xml.fragment import parse_element
from salon.xml.serializer import serialize_str

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = [
    "Outcome",
    "Push",
    "PushOptions",
    "Registration",
    "Summary",
    "backoff",
    "classify",
    "decode_registrations",
    "encode_registrations",
    "outcome_of",
    "parse_disable",
    "parse_enable",
    "publish_iq",
    "summary_form",
]


# ---------------------------------------------------------------------- pure part
@dataclass(frozen=True, slots=True)
class Registration:
    """One ``<enable/>``: where to publish, and the publish-options form to send along."""

    jid: str  # the app server, normalised
    node: str
    options: Element | None = field(default=None, compare=False)

    @property
    def key(self) -> tuple[str, str]:
        return (self.jid, self.node)


def parse_enable(payload: Element) -> Registration:
    """An ``<enable/>`` (XEP-0357 §5): ``jid`` and ``node`` are required; a data form, if
    any, must be publish-options (XEP-0060 §7.1.5). StanzaError otherwise."""
    jid = _app_server(payload.get("jid"))
    node = payload.get("node")
    if not node:
        raise StanzaError(StanzaErrorCondition.BAD_REQUEST, "enable needs a 'node'")
    forms = payload.find_all("x", NS_DATA_FORMS)
    if len(forms) > 1:
        raise StanzaError(StanzaErrorCondition.BAD_REQUEST, "more than one data form")
    options = None
    if forms:
        try:
            form = parse_form(forms[0])
        except FormError as exc:
            raise StanzaError(StanzaErrorCondition.BAD_REQUEST, str(exc)) from None
        if form.type != "submit" or form.form_type != NS_PUBSUB_PUBLISH_OPTIONS:
            raise StanzaError(
                StanzaErrorCondition.BAD_REQUEST,
                f"the form must be a submitted {NS_PUBSUB_PUBLISH_OPTIONS} form",
            )
        options = form_element(form)
    return Registration(jid, node, options)


def parse_disable(payload: Element) -> tuple[str, str | None]:
    """A ``<disable/>`` (XEP-0357 §6): the app server, and the node or None for all."""
    return _app_server(payload.get("jid")), payload.get("node") or None


def _app_server(value: str | None) -> str:
    if not value:
        raise StanzaError(StanzaErrorCondition.BAD_REQUEST, "a 'jid' attribute is required")
    jid = parse_jid(value)
    if jid is None:
        raise StanzaError(StanzaErrorCondition.JID_MALFORMED, "the 'jid' is not a valid JID")
    return str(jid)


def encode_registrations(registrations: Iterable[Registration]) -> str:
    return json.dumps(
        [
            {
                "jid": r.jid,
                "node": r.node,
                "options": None if r.options is None else serialize_str(r.options),
            }
            for r in registrations
        ]
    )


def decode_registrations(text: str | None) -> tuple[Registration, ...]:
    if not text:
        return ()
    found: list[Registration] = []
    for entry in json.loads(text):
        options = entry.get("options")
        found.append(
            Registration(
                entry["jid"], entry["node"], None if options is None else parse_element(options)
            )
        )
    return tuple(found)


def classify(
    stanza: Element, stype: str, *, to_full: bool, session_exists: bool, groupchat: bool
) -> str | None:
    """Whether a stanza arriving for a user is worth waking the phone for: ``"message"``
    (a message with a body that will be delivered or stored), ``"subscription"`` (a
    subscription request), or None. ``to_full``: addressed to a full JID, whose session
    exists or not."""
    if stanza.tag == "presence":
        return "subscription" if stype == "subscribe" else None
    if stanza.tag != "message" or stanza.find("body", stanza.ns) is None:
        return None
    if stype == "chat":
        return "message"  # to an absent resource it goes to the bare JID (RFC 6121 §8.5.3.2.1)
    if stype == "normal":
        return None if to_full and not session_exists else "message"  # otherwise bounced
    if stype == "groupchat" and groupchat and to_full and session_exists:
        return "message"  # to a bare JID it is refused; to a full one it is a room's
    return None


@dataclass(slots=True)
class Summary:
    """What waits for a user since a session of theirs last came (back) online."""

    message_count: int = 0
    subscription_count: int = 0
    last_sender: str | None = None
    last_body: str | None = None

    def add(self, kind: str, sender: str, body: str | None) -> None:
        if kind == "subscription":
            self.subscription_count += 1
            return
        self.message_count += 1
        self.last_sender = sender
        self.last_body = body


def summary_form(
    summary: Summary, *, include_sender: bool, include_body: bool, max_body_length: int
) -> Element:
    """The ``urn:xmpp:push:summary`` form (XEP-0357 §7)."""
    fields = [
        FormField("FORM_TYPE", "hidden", (NS_PUSH_SUMMARY,)),
        FormField("message-count", None, (str(summary.message_count),)),
    ]
    if summary.subscription_count:
        fields.append(
            FormField("pending-subscription-count", None, (str(summary.subscription_count),))
        )
    if include_sender and summary.last_sender is not None:
        fields.append(FormField("last-message-sender", None, (summary.last_sender,)))
    if include_body and summary.last_body is not None:
        fields.append(FormField("last-message-body", None, (summary.last_body[:max_body_length],)))
    return form_element(DataForm("submit", tuple(fields)))


def publish_iq(iq_id: str, user: JID, registration: Registration, form: Element) -> Element:
    """The pubsub publish to the app server (XEP-0357 §7, XEP-0060 §7.1)."""
    iq = Element(
        "iq", NS_CLIENT, {"type": "set", "id": iq_id, "from": str(user), "to": registration.jid}
    )
    pubsub = iq.add("pubsub", NS_PUBSUB)
    item = pubsub.add("publish", attrs={"node": registration.node}).add("item")
    item.add("notification", NS_PUSH).append(form)
    if registration.options is not None:
        pubsub.add("publish-options").append(registration.options.copy())
    return iq


class Outcome(Enum):
    DELIVERED = "delivered"
    RETRY = "retry"  # no answer, or a temporary error
    DISABLE = "disable"  # the app server refused: the registration is dropped


def outcome_of(reply: Element | None) -> Outcome:
    """What an answer from the app server means (None: no answer in time)."""
    if reply is None:
        return Outcome.RETRY
    if reply.get("type") == "result":
        return Outcome.DELIVERED
    error = reply.find("error", reply.ns)
    if error is not None and error.get("type") == "wait":
        return Outcome.RETRY
    return Outcome.DISABLE


def backoff(attempt: int, first: float, cap: float) -> float:
    """Seconds to wait before retry number ``attempt`` (1-based): doubling, capped."""
    return float(min(cap, first * 2 ** (attempt - 1)))


# ---------------------------------------------------------------------- the module
class PushOptions(ModuleOptions):
    include_sender: bool = Field(
        True, description="Tell the app server who sent the last message (last-message-sender)."
    )
    include_body: bool = Field(
        False,
        description="Tell the app server the text of the last message (last-message-body). "
        "Off by default: the app server and the push vendor would read it.",
    )
    max_body_length: int = Field(256, ge=1, description="Characters of a body sent, at most.")
    notify_inactive: bool = Field(
        False,
        description="Also notify when every connected session of the user is inactive "
        "(XEP-0352), not only when all are offline or hibernated.",
    )
    groupchat: bool = Field(
        False, description="Notify for group chat messages to a hibernated session too."
    )
    max_registrations: int = Field(
        8, ge=1, description="Registrations kept per user; past it the oldest is dropped."
    )
    timeout: float = Field(30.0, gt=0, description="Seconds to wait for the app server's answer.")
    retries: int = Field(
        3, ge=0, description="Retries of a publish that got no answer or a 'wait' error."
    )
    retry_delay: float = Field(
        5.0, gt=0, description="Seconds before the first retry; doubles for each next one."
    )
    max_retry_delay: float = Field(300.0, gt=0, description="Longest wait between retries.")
    max_in_flight: int = Field(
        1000,
        ge=1,
        description="Registrations with a publish under way, at most; past it a notification "
        "for another registration is dropped (and logged).",
    )
    cache_size: int = Field(
        10_000, ge=0, description="Users whose registrations stay cached in memory."
    )


Key = tuple[JID, str, str]  # user, app server, node


class Push(Module[PushOptions]):
    name = "push"
    specs = (Spec("XEP-0357", "0.4.1", "summary form; disabled on app server errors"),)

    def setup(self) -> None:
        self.store = self.storage.keyvalue("push")
        self.locks = UserLocks()
        self.cache: OrderedDict[JID, tuple[Registration, ...]] = OrderedDict()
        self.summaries: OrderedDict[JID, Summary] = OrderedDict()
        self.workers: dict[Key, asyncio.Task[None]] = {}
        self.dirty: set[Key] = set()
        self.add_account_feature(NS_PUSH)
        self.on_iq("set", NS_PUSH, "enable", self.enable, to=Target.SELF)
        self.on_iq("set", NS_PUSH, "disable", self.disable, to=Target.SELF)
        self.hook(InboundStanza, self.inbound, Priority.FALLBACK)
        # Before stream management decides to keep the session (and stops the event).
        self.hook(ConnectionLost, self.hibernating, Priority.GUARD)
        self.hook(ResourceBound, self.back_online)
        self.hook(SessionResumed, self.back_online)
        self.hook(AccountDeleted, self.account_deleted)

    async def stop(self) -> None:
        self._cancel_workers()

    def unload(self) -> list[asyncio.Task[Any]]:
        return [*self._cancel_workers(), *super().unload()]

    def _cancel_workers(self) -> list[asyncio.Task[Any]]:
        workers = list(self.workers.values())
        for task in workers:
            task.cancel()
        self.workers.clear()
        self.dirty.clear()
        return workers

    # ------------------------------------------------------------------ registrations
    async def registrations(self, user: JID) -> tuple[Registration, ...]:
        cached = self.cache.get(user)
        if cached is not None:
            self.cache.move_to_end(user)
            return cached
        found = decode_registrations(await self.store.get(self.domain, user.local or ""))
        self._remember(user, found)
        return found

    def _remember(self, user: JID, registrations: tuple[Registration, ...]) -> None:
        if self.options.cache_size <= 0:
            return
        self.cache[user] = registrations
        self.cache.move_to_end(user)
        while len(self.cache) > self.options.cache_size:
            self.cache.popitem(last=False)

    async def _save(self, user: JID, registrations: tuple[Registration, ...]) -> None:
        """Store (called under the user's lock)."""
        text = encode_registrations(registrations) if registrations else None
        await self.store.set(self.domain, user.local or "", text)
        self._remember(user, registrations)

    async def enable(self, request: IqRequest) -> None:
        registration = parse_enable(request.payload)
        user = request.sender.bare
        async with self.locks.hold(user):
            kept = [r for r in await self.registrations(user) if r.key != registration.key]
            kept.append(registration)
            await self._save(user, tuple(kept[-self.options.max_registrations :]))

    async def disable(self, request: IqRequest) -> None:
        jid, node = parse_disable(request.payload)
        await self.remove(request.sender.bare, jid, node)

    async def remove(self, user: JID, jid: str, node: str | None) -> None:
        async with self.locks.hold(user):
            current = await self.registrations(user)
            kept = tuple(
                r for r in current if r.jid != jid or (node is not None and r.node != node)
            )
            if kept != current:
                await self._save(user, kept)

    def account_deleted(self, event: AccountDeleted) -> None:
        # The store's rows go with the account; forget what is in memory.
        user = event.jid.bare
        self.cache.pop(user, None)
        self.summaries.pop(user, None)
        for key, task in list(self.workers.items()):
            if key[0] == user:
                task.cancel()

    # ------------------------------------------------------------------ when to notify
    def back_online(self, event: ResourceBound | SessionResumed) -> None:
        self.summaries.pop(event.session.jid.bare, None)

    def inbound(self, event: InboundStanza) -> Coroutine[Any, Any, None] | None:
        """Only messages and subscription requests can wake a phone: anything else passes
        without a coroutine (every presence of a login storm comes here)."""
        stanza = event.stanza
        tag = stanza.tag
        if tag == "presence":
            if stanza.get("type") != "subscribe":
                return None
        elif tag != "message":
            return None
        return self._inbound(event)

    async def _inbound(self, event: InboundStanza) -> None:
        stanza = event.stanza
        to = event.to
        session = self.sessions.get(to) if to.resource is not None else None
        kind = classify(
            stanza,
            event.stanza_type,
            to_full=to.resource is not None,
            session_exists=session is not None,
            groupchat=self.options.groupchat,
        )
        if kind is None:
            return
        user = to.bare
        if event.sender.bare == user:
            return  # the user's own doing
        if session is not None:
            candidates: Iterable[C2SSession] = (session,)
        else:
            candidates = [s for s in self.sessions.resources(user) if s.is_available]
        if any(self._reachable(s) for s in candidates):
            return
        body = stanza.find_text("body", stanza.ns) if kind == "message" else None
        await self._record(user, kind, str(event.sender), body)

    async def hibernating(self, event: ConnectionLost) -> None:
        """A connection under XEP-0198 dropped without the client closing the stream: the
        session is about to hibernate. What it was sent and did not acknowledge may never
        have reached the phone, so those messages are pushed now."""
        session = event.session
        hibernation = self.optional(Hibernation)
        if hibernation is None or event.stream_ended:
            return
        unacked = hibernation.unacknowledged(session, event.connection)
        if unacked is None:
            return
        user = session.jid.bare
        waiting: list[tuple[str, Element]] = []
        for stanza in unacked:
            stype = stanza.get("type") or ("normal" if stanza.tag == "message" else "")
            kind = classify(
                stanza, stype, to_full=True, session_exists=True, groupchat=self.options.groupchat
            )
            sender = parse_jid(stanza.get("from") or "")
            if kind is not None and sender is not None and sender.bare != user:
                waiting.append((kind, stanza))
        if not waiting:
            return
        others = [s for s in self.sessions.resources(user) if s is not session and s.is_available]
        if any(self._reachable(s) for s in others):
            return
        for kind, stanza in waiting:
            body = stanza.find_text("body", stanza.ns) if kind == "message" else None
            await self._record(user, kind, stanza.get("from") or "", body)

    async def _record(self, user: JID, kind: str, sender: str, body: str | None) -> None:
        """Count what waits for ``user`` and notify each registration."""
        registrations = await self.registrations(user)
        if not registrations:
            return
        summary = self.summaries.get(user)
        if summary is None:
            summary = self.summaries[user] = Summary()
            # Users who never come back are forgotten, the longest waiting first.
            while len(self.summaries) > max(self.options.cache_size, self.options.max_in_flight):
                self.summaries.popitem(last=False)
        summary.add(kind, sender, body)
        for registration in registrations:
            self._notify((user, registration.jid, registration.node))

    def _reachable(self, session: C2SSession) -> bool:
        """A session that gets the stanza now: connected, and (with ``notify_inactive``) not
        in the background."""
        if session.is_closed:
            return False  # hibernated (XEP-0198): its connection is gone
        if not self.options.notify_inactive:
            return True
        states = self.optional(ClientStates)
        return states is None or not states.is_inactive(session)

    # ------------------------------------------------------------------ publishing
    def _notify(self, key: Key) -> None:
        if key in self.workers:
            self.dirty.add(key)  # folded into the next publish of the worker
            return
        if len(self.workers) >= self.options.max_in_flight:
            self.log.warning(
                "push for %s dropped: %d publishes under way", key[0], len(self.workers)
            )
            return
        self.workers[key] = asyncio.get_running_loop().create_task(self._work(key))

    async def _work(self, key: Key) -> None:
        user, jid, node = key
        attempt = 0
        try:
            while True:
                self.dirty.discard(key)
                registration = next(
                    (r for r in await self.registrations(user) if r.key == (jid, node)), None
                )
                if registration is None:
                    return  # disabled meanwhile
                outcome = await self._publish(user, registration)
                if outcome is Outcome.DISABLE:
                    self.log.info("push to %s node %s for %s disabled", jid, node, user)
                    await self.remove(user, jid, node)
                    return
                if outcome is Outcome.RETRY:
                    attempt += 1
                    if attempt > self.options.retries:
                        self.log.warning("push to %s for %s given up", jid, user)
                        return
                    await self.clock.sleep(
                        backoff(attempt, self.options.retry_delay, self.options.max_retry_delay)
                    )
                    continue
                attempt = 0
                if key not in self.dirty:
                    return
        except asyncio.CancelledError:
            raise
        except Exception:
            self.log.exception("push to %s for %s failed", jid, user)
        finally:
            if self.workers.get(key) is asyncio.current_task():
                del self.workers[key]
            self.dirty.discard(key)

    async def _publish(self, user: JID, registration: Registration) -> Outcome:
        summary = self.summaries.get(user) or Summary()
        form = summary_form(
            summary,
            include_sender=self.options.include_sender,
            include_body=self.options.include_body,
            max_body_length=self.options.max_body_length,
        )
        iq_id = self.pending_iqs.new_id()
        answer = self.pending_iqs.expect(iq_id, peer=registration.jid)
        to = parse_jid(registration.jid)
        assert to is not None  # normalised when it was enabled
        await self.router.route(publish_iq(iq_id, user, registration, form), None, user, to)
        try:
            reply = await wait_for(self.clock, answer, self.options.timeout)
        except TimeoutError:
            return Outcome.RETRY
        return outcome_of(reply)
