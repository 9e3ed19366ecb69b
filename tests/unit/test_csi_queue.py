"""XEP-0352 holding rules, pure: what waits while a client is inactive, and in what order."""

from __future__ import annotations

from salon.modules.csi import CsiQueue, hold_key
from salon.namespaces import NS_CARBONS, NS_CHATSTATES, NS_CLIENT, NS_FORWARD
from salon.xml.element import Element


def presence(sender: str, stype: str | None = None, show: str | None = None) -> Element:
    el = Element("presence", NS_CLIENT, {"from": sender, "to": "me@localhost/phone"})
    if stype:
        el.set("type", stype)
    if show:
        el.add("show", NS_CLIENT, text=show)
    return el


def chat_state(sender: str, state: str = "composing") -> Element:
    el = Element("message", NS_CLIENT, {"from": sender, "type": "chat"})
    el.add(state, NS_CHATSTATES)
    return el


def chat(sender: str, body: str) -> Element:
    el = Element("message", NS_CLIENT, {"from": sender, "type": "chat"})
    el.add("body", NS_CLIENT, text=body)
    el.add("active", NS_CHATSTATES)
    return el


def carbon(inner: Element) -> Element:
    el = Element("message", NS_CLIENT, {"from": "me@localhost", "type": "chat"})
    el.add("received", NS_CARBONS).add("forwarded", NS_FORWARD).append(inner)
    return el


def test_what_waits_and_what_is_urgent() -> None:
    assert hold_key(presence("a@x/1")) is not None
    assert hold_key(presence("a@x/1", "unavailable")) is not None
    assert hold_key(chat_state("a@x/1")) is not None
    assert hold_key(carbon(chat_state("a@x/1"))) is not None
    for stype in ("subscribe", "subscribed", "unsubscribe", "unsubscribed", "error"):
        assert hold_key(presence("a@x", stype)) is None
    assert hold_key(chat("a@x/1", "hi")) is None
    assert hold_key(carbon(chat("a@x/1", "hi"))) is None
    assert hold_key(Element("iq", NS_CLIENT, {"type": "get", "id": "1"})) is None
    error = chat_state("a@x/1")
    error.set("type", "error")
    assert hold_key(error) is None
    receipt = Element("message", NS_CLIENT, {"from": "a@x/1"})
    receipt.add("received", "urn:xmpp:receipts")
    assert hold_key(receipt) is None  # only chat states are known to be unimportant


def test_only_the_latest_presence_per_full_jid_is_kept() -> None:
    queue = CsiQueue(max_held=100)
    first = presence("a@x/1", show="away")
    assert queue.offer(first) == []
    assert queue.offer(presence("b@x/1")) == []
    latest = presence("a@x/1", show="xa")
    assert queue.offer(latest) == []
    assert queue.offer(presence("a@x/2")) == []  # another resource: its own entry
    assert len(queue) == 3
    flushed = queue.flush()
    assert [p.get("from") for p in flushed] == ["b@x/1", "a@x/1", "a@x/2"]
    assert flushed[1] is latest
    assert len(queue) == 0


def test_unavailable_supersedes_available() -> None:
    queue = CsiQueue(max_held=100)
    queue.offer(presence("a@x/1"))
    gone = presence("a@x/1", "unavailable")
    queue.offer(gone)
    assert queue.flush() == [gone]


def test_chat_states_keep_the_latest_per_sender() -> None:
    queue = CsiQueue(max_held=100)
    queue.offer(chat_state("a@x/1", "composing"))
    paused = chat_state("a@x/1", "paused")
    queue.offer(paused)
    assert queue.flush() == [paused]


def test_an_urgent_stanza_goes_at_once_after_what_was_held() -> None:
    queue = CsiQueue(max_held=100)
    held = [presence("b@x/1"), chat_state("a@x/1")]
    for stanza in held:
        assert queue.offer(stanza) == []
    message = chat("a@x/1", "hello")
    assert queue.offer(message) == [*held, message]
    assert len(queue) == 0
    request = presence("c@x", "subscribe")
    assert queue.offer(request) == [request]


def test_the_queue_is_bounded() -> None:
    queue = CsiQueue(max_held=3)
    sent = [queue.offer(presence(f"c{n}@x/1")) for n in range(3)]
    assert sent == [[], [], []]
    out = queue.offer(presence("c3@x/1"))
    assert [p.get("from") for p in out] == ["c0@x/1", "c1@x/1", "c2@x/1", "c3@x/1"]
    assert len(queue) == 0
