"""XEP-0160: offline messages, stamped with XEP-0203 delayed delivery.

A chat or normal message that no resource can take (RFC 6121 §8.5.2.2) is stored, committed
before the router hears it was handled. When a resource of the user sends available presence
with a non-negative priority, every stored message goes to that resource, oldest first,
followed by an XEP-0199 ping; once the client answers it (so it has read what came before),
exactly the messages sent are deleted. Delivery is at least once: a connection that dies, a
client that never answers or a crash before the delete leave the messages stored, to be sent
again, rather than lost.

Choices, with the text they follow:

* Stored: ``normal`` and ``chat`` (XEP-0160 §3). Not stored: ``groupchat``, ``headline`` and
  ``error`` (the message module never offers them), a chat message carrying nothing but chat
  state notifications (XEP-0160 §3: discarded, a typing notice is stale by the time anyone
  reads it), and a message with the XEP-0334 ``<no-store/>`` hint (bounced, see below).
* A full queue, or a message we will not store, is answered with ``<service-unavailable/>``
  (XEP-0160 §2 step 3 names it for "the recipient's offline message queue is full"; RFC 6121
  §8.5.2.2.1 for "no offline storage").
* Delivery needs a non-negative priority (XEP-0160 §2 step 5: "when the recipient next sends
  non-negative available presence"). A resource that is available with a negative priority
  gets the messages when it raises its priority to zero or more.
* One user's deliveries and stores are serialised by a per-user lock: two resources becoming
  available together never both get a message, and a message is never stored while a
  delivery it would miss is running.
* Coming online costs a user with nothing stored no query. At start the module reads, in one
  query, which users hold messages (when there are at most ``known_holders`` of them); from
  then on a store adds its user before it writes, and a delivery that leaves nothing removes
  it, so a user outside that set has nothing to deliver. Beyond the bound, or until the read
  is done, users known to have nothing stored (a delivery found or left nothing, and no
  message was stored since) are remembered, a bounded number of them. A store forgets the
  user before it writes, so a delivery never skips a message. The holders set assumes that
  this process writes every offline message of its hosts, so a cluster node does without it;
  there a store on another node reaches this one as ``PeerDataChanged`` and ends the "nothing
  stored" memory of that user (and delivers to a resource that became available meanwhile).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from datetime import UTC, datetime

from pydantic import Field

from salon.core.events import (
    AvailablePresence,
    MessageUndeliverable,
    PeerDataChanged,
    PresenceBroadcast,
    ResourceUnbound,
)
from salon.core.hooks import HANDLED, Priority
from salon.core.locks import UserLocks
from salon.core.module import Module, ModuleOptions, Spec
from salon.core.session import C2SSession
from salon.core.sessions import delivery_targets
from salon.errors import StanzaError, StanzaErrorCondition
from salon.jid import JID
from salon.namespaces import (
    NS_CHATSTATES,
    NS_CLIENT,
    NS_DELAY,
    NS_HINTS,
    NS_MSGOFFLINE,
    NS_PING,
)
from salon.xml.element import Element
from salon.xml.fragment import parse_element
from salon.xml.serializer import serialize_str

_STORED_TYPES = frozenset(("normal", "chat"))


def delay_stamp(now: datetime) -> str:
    """An XEP-0082 DateTime in UTC with milliseconds, as XEP-0203 wants it."""
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def stamped(stanza: Element, domain: str, now: datetime) -> Element:
    """A copy of ``stanza`` with ``<delay from=domain stamp=now>`` (XEP-0203 §3, XEP-0160 §2)."""
    copy = stanza.shallow_copy()
    copy.add("delay", NS_DELAY, {"from": domain, "stamp": delay_stamp(now)}, "Offline Storage")
    return copy


def is_chat_state_only(stanza: Element) -> bool:
    """XEP-0160 §3: a chat message whose only content is XEP-0085 chat states."""
    contents = [c for c in stanza.elements() if not (c.tag == "thread" and c.ns == stanza.ns)]
    return bool(contents) and all(c.ns == NS_CHATSTATES for c in contents)


def announced_priority(stanza: Element) -> int | None:
    """The priority an available presence announces (RFC 6121 §4.7.2.3), None if invalid."""
    text = stanza.find_text("priority", NS_CLIENT)
    if text is None:
        return 0
    try:
        value = int(text.strip())
    except ValueError:
        return None
    return value if -128 <= value <= 127 else None


class OfflineMessagesOptions(ModuleOptions):
    quota: int = Field(1000, ge=1, description="Most messages held for one user; more are bounced.")
    ack_timeout: float = Field(
        30.0,
        gt=0,
        description="Seconds a client has to answer the ping that confirms it received "
        "its offline messages; unconfirmed messages stay stored.",
    )
    known_holders: int = Field(
        100_000,
        ge=0,
        description="Most users holding stored messages that are tracked, so that everyone "
        "else comes online without a query (0: not tracked; beyond it, known_empty alone).",
    )
    known_empty: int = Field(
        10_000,
        ge=0,
        description="Users remembered to have no stored message, so that they come online "
        "without a query.",
    )


class OfflineMessages(Module[OfflineMessagesOptions]):
    name = "offline"
    specs = (
        Spec("XEP-0160", "1.0.1", "offline messages for chat and normal types"),
        Spec("XEP-0203", "2.0", "delay stamp on offline messages"),
    )

    def setup(self) -> None:
        self.quota = self.options.quota
        self.ack_timeout = self.options.ack_timeout
        self.known_empty = self.options.known_empty
        self.locks = UserLocks()
        self.empty: OrderedDict[JID, None] = OrderedDict()  # nothing stored for these users
        # Every user with something stored, once read at start (None: not known).
        self.holders: set[JID] | None = None
        # Users stored for while that read runs, added to what it finds.
        self._stored_meanwhile: set[JID] | None = None
        self.acks: dict[C2SSession, asyncio.Future[Element]] = {}
        self.add_feature(NS_MSGOFFLINE)
        self.hook(MessageUndeliverable, self.store, Priority.DELIVER)
        self.hook(AvailablePresence, self.became_available)
        # Just before the presence module handles it: AvailablePresence does not fire when an
        # already available resource raises a negative priority, so watch for that here.
        self.hook(PresenceBroadcast, self.priority_raised, Priority.DELIVER + 1)
        self.hook(ResourceUnbound, self.session_ended)
        self.hook(PeerDataChanged, self.peer_stored)

    async def start(self) -> None:
        limit = self.options.known_holders
        if limit <= 0 or self.host.peers.is_clustered:
            return  # another node may store for anyone: only the per-user memory applies
        self._stored_meanwhile = set()
        try:
            names = await self.storage.offline.holders(self.domain, limit)
        finally:
            meanwhile, self._stored_meanwhile = self._stored_meanwhile, None
        if names is None:
            self.log.info("more than %d users hold offline messages: not tracked", limit)
            return
        holders = {JID(name, self.domain, None) for name in names}  # stored prepared
        holders.update(meanwhile)
        self.holders = holders

    def nothing_stored(self, user: JID) -> bool:
        """Whether ``user`` is known to have no stored message."""
        holders = self.holders
        return user in self.empty or (holders is not None and user not in holders)

    def _storing(self, user: JID) -> None:
        """Before a message for ``user`` is written: no delivery may skip it from now on."""
        self.empty.pop(user, None)
        if self._stored_meanwhile is not None:
            self._stored_meanwhile.add(user)
        holders = self.holders
        if holders is not None:
            holders.add(user)
            if len(holders) > self.options.known_holders:
                self.holders = None  # too many to track: known_empty alone from now on

    # ------------------------------------------------------------------ storing
    async def store(self, event: MessageUndeliverable) -> bool | None:
        stanza, stype = event.stanza, event.stanza_type
        if stype not in _STORED_TYPES:
            return None
        if stype == "chat" and is_chat_state_only(stanza):
            return HANDLED
        if stanza.find("no-store", NS_HINTS) is not None:
            return None  # XEP-0334 §4: must not be stored; the sender hears it was not taken
        user = event.to.bare
        async with self.locks.hold(user):
            # A resource may have become available while we waited: then it takes the message.
            targets = delivery_targets(self.sessions.resources(user), stype)
            for session in targets:
                session.send(stanza)
            if targets:
                return HANDLED
            # Before the write: a resource becoming available from now on looks for it.
            self._storing(user)
            text = serialize_str(stamped(stanza, self.domain, datetime.now(UTC)))
            is_stored = await self.storage.offline.push(
                self.domain, user.local or "", text, limit=self.quota
            )
        if is_stored:
            self.host.peers.changed("offline", user)  # a cluster node where the user is
        if not is_stored:
            # XEP-0160 §2 step 3: a full queue is answered with <service-unavailable/>.
            raise StanzaError(StanzaErrorCondition.SERVICE_UNAVAILABLE, "offline storage is full")
        return HANDLED

    def peer_stored(self, event: PeerDataChanged) -> None:
        """Another cluster node stored a message for the user. It saw no resource that could
        take it; one that became available here meanwhile gets it now."""
        if event.kind != "offline":
            return
        user = event.user
        self._storing(user)
        for session in self.sessions.available(user):
            if not session.is_remote and session.priority >= 0:
                self.spawn(self.deliver(session))
                break

    # ------------------------------------------------------------------ delivering
    def became_available(self, event: AvailablePresence) -> None:
        session = event.session
        if session.priority >= 0 and not self.nothing_stored(session.jid.bare):
            self.spawn(self.deliver(session))

    def priority_raised(self, event: PresenceBroadcast) -> None:
        session, stanza = event.origin, event.stanza
        if stanza.get("type") is not None or not session.is_available or session.priority >= 0:
            return
        priority = announced_priority(stanza)
        if priority is not None and priority >= 0 and not self.nothing_stored(session.jid.bare):
            self.spawn(self.deliver(session))

    def session_ended(self, event: ResourceUnbound) -> None:
        ack = self.acks.pop(event.session, None)
        if ack is not None:
            ack.cancel()

    async def deliver(self, session: C2SSession) -> None:
        """Send the user's stored messages to ``session`` in order; once it has answered a
        ping sent after them, delete exactly those."""
        user = session.jid.bare
        async with self.locks.hold(user):
            if self.nothing_stored(user):
                return  # delivered by a resource that held the lock before us
            stored = await self.storage.offline.list(self.domain, user.local or "")
            if not stored:
                self._known_empty(user)
                return
            sent: list[int] = []
            for message in stored:
                if session.is_closed:
                    break  # the rest stays for the next available resource
                try:
                    element = parse_element(message.stanza)
                except ValueError:
                    self.log.error("offline message %d of %s is unreadable", message.id, user)
                    continue
                session.send(element)
                sent.append(message.id)
            if sent and await self.acknowledged(session):
                await self.storage.offline.delete(self.domain, user.local or "", sent)
                if len(sent) == len(stored):
                    self._known_empty(user)

    def _known_empty(self, user: JID) -> None:
        """Remember that nothing is stored for ``user`` (called under the user's lock)."""
        if self.holders is not None:
            self.holders.discard(user)
        if self.known_empty <= 0:
            return
        self.empty[user] = None
        self.empty.move_to_end(user)
        while len(self.empty) > self.known_empty:
            self.empty.popitem(last=False)

    async def acknowledged(self, session: C2SSession) -> bool:
        """Whether the client read everything sent to it so far: it answered (result or
        error, RFC 6120 §8.2.3) an XEP-0199 ping sent after it. Without stream management
        this is the only way to know the bytes were not lost with a dying connection."""
        if session.is_closed:
            return False
        pending = self.pending_iqs
        iq_id = pending.new_id()
        reply = pending.expect(iq_id, peer=str(session.jid))
        self.acks[session] = reply
        ping = Element("iq", NS_CLIENT, {"type": "get", "id": iq_id})
        ping.set("from", self.domain)
        ping.set("to", str(session.jid))
        ping.add("ping", NS_PING)
        session.send(ping)
        try:
            await asyncio.wait({reply}, timeout=self.ack_timeout)
        finally:
            if self.acks.get(session) is reply:
                del self.acks[session]
        if reply.done() and not reply.cancelled():
            return True
        reply.cancel()
        return False
