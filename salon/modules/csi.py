"""XEP-0352: Client State Indication. While a client says it is ``<inactive/>`` (the app is
in the background), the server holds back what can wait, and sends it when the client says
``<active/>`` again: fewer radio wake-ups and bytes for a phone.

What waits (:class:`CsiQueue`, pure):

* Presence updates (available, and unavailable) from contacts: only the latest per sender's
  full JID is kept; an earlier one is superseded.
* Chat-state notifications (XEP-0085) with nothing else in the message, carbon copies of
  them included: only the latest per conversation is kept.

Everything else is urgent and goes out at once: messages with a body (or any other
payload), iqs, errors, subscription requests and answers. An urgent stanza takes what was
held with it, ahead of it: the order of the stream is kept, and the radio is awake anyway.
The held stanzas are bounded (``max_held``): past it they are all sent. ``<active/>``
sends them in order.

The state is not kept over an XEP-0198 resumption (XEP-0352 §5.2): a resumed session is
active until its client says otherwise. CSI nonzas are processed in order with stanzas
(§5.1): they travel in the connection's inbox like stanzas.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable

from pydantic import Field

from salon.core.events import ClientNonza, ResourceUnbound, SessionResumed
from salon.core.hooks import HANDLED
from salon.core.items import NONZA_NAMESPACE, STREAM_FEATURE
from salon.core.mobile import ClientStates
from salon.core.module import Module, ModuleOptions, Spec
from salon.core.session import C2SSession, SessionSlot
from salon.namespaces import NS_CARBONS, NS_CHATSTATES, NS_CSI, NS_FORWARD
from salon.xml.element import Element

__all__ = ["ClientStateIndication", "CsiQueue", "hold_key"]

_PRESENCE_UPDATES = (None, "unavailable")


def _is_chat_state_only(message: Element) -> bool:
    """Chat states (XEP-0085) and perhaps a thread: nothing a user waits for."""
    payload = [c for c in message.elements() if not (c.tag == "thread" and c.ns == message.ns)]
    return bool(payload) and all(c.ns == NS_CHATSTATES for c in payload)


def _carbon_inner(message: Element) -> Element | None:
    """The message a carbon copy (XEP-0280) carries, if ``message`` is one."""
    for child in message.elements():
        if child.ns == NS_CARBONS and child.tag in ("sent", "received"):
            forwarded = child.find("forwarded", NS_FORWARD)
            return None if forwarded is None else forwarded.find("message", message.ns)
    return None


def hold_key(stanza: Element) -> Hashable | None:
    """What a held ``stanza`` supersedes (an earlier stanza with the same key), or None when
    it is urgent and goes out now."""
    if stanza.tag == "presence":
        if stanza.get("type") in _PRESENCE_UPDATES:
            return ("presence", stanza.get("from"))
        return None  # subscription requests and answers, errors: urgent
    if stanza.tag == "message" and stanza.get("type") != "error":
        inner = _carbon_inner(stanza)
        if inner is not None:
            if _is_chat_state_only(inner):
                return ("carbon-state", inner.get("from"), inner.get("to"))
            return None
        if _is_chat_state_only(stanza):
            return ("state", stanza.get("from"))
    return None


class CsiQueue:
    """The stanzas held for one inactive session, in order, the latest per key."""

    __slots__ = ("_held", "max_held")

    def __init__(self, max_held: int) -> None:
        self.max_held = max_held
        self._held: OrderedDict[Hashable, Element] = OrderedDict()

    def __len__(self) -> int:
        return len(self._held)

    def offer(self, stanza: Element) -> list[Element]:
        """Hold ``stanza`` or not: returns what to send now, in order. Empty when it was
        held; ``[*held, stanza]`` when it is urgent; everything when the bound is passed."""
        key = hold_key(stanza)
        if key is None:
            out = self.flush()
            out.append(stanza)
            return out
        self._held.pop(key, None)  # superseded: the newer one takes the end of the line
        self._held[key] = stanza
        if len(self._held) > self.max_held:
            return self.flush()
        return []

    def flush(self) -> list[Element]:
        """Everything held, oldest first; the queue is left empty."""
        out = list(self._held.values())
        self._held.clear()
        return out


class CsiOptions(ModuleOptions):
    max_held: int = Field(
        500,
        ge=1,
        description="Stanzas held for an inactive client (presence and chat states, the "
        "latest per contact); past it they are sent.",
    )


QUEUE = SessionSlot[CsiQueue]("csi.queue")


class _States(ClientStates):
    def is_inactive(self, session: C2SSession) -> bool:
        return session.has(QUEUE)  # the queue exists while the client is inactive


class ClientStateIndication(Module[CsiOptions]):
    name = "csi"
    specs = (Spec("XEP-0352", "1.0.0"),)

    def setup(self) -> None:
        self.provide(ClientStates, _States())
        self.add_item(STREAM_FEATURE, Element("csi", NS_CSI))
        self.add_item(NONZA_NAMESPACE, NS_CSI)
        self.hook(ClientNonza, self.nonza)
        self.hook(SessionResumed, self.resumed)
        self.hook(ResourceUnbound, self.ended)

    def nonza(self, event: ClientNonza) -> bool | None:
        session, el = event.session, event.element
        if el.ns != NS_CSI or session is None or el.tag not in ("active", "inactive"):
            return None  # before bind, or unknown: the stream ends
        if el.tag == "inactive":
            self.inactive(session)
        else:
            self.active(session)
        return HANDLED

    def inactive(self, session: C2SSession) -> None:
        if session.get(QUEUE) is not None:
            return
        queue = CsiQueue(self.options.max_held)
        session.set(QUEUE, queue)

        def hold(stanza: Element) -> bool:
            out = queue.offer(stanza)
            if len(out) == 1 and out[0] is stanza:
                return False  # urgent, nothing was waiting: the session sends it as usual
            for item in out:
                session.write(item)
            return True

        session.outbound_hold = hold

    def active(self, session: C2SSession) -> None:
        queue = session.pop(QUEUE)
        if queue is None:
            return
        session.outbound_hold = None
        for stanza in queue.flush():
            session.write(stanza)

    def resumed(self, event: SessionResumed) -> None:
        self.active(event.session)  # XEP-0352 §5.2: a resumed stream starts active

    def ended(self, event: ResourceUnbound) -> None:
        # Presence and chat states for a session that is gone: nobody will read them.
        if event.session.pop(QUEUE) is not None:
            event.session.outbound_hold = None
