"""A stanza sent to many is serialized once: each copy's bytes are exactly what the ordinary
serializer writes for it, and a copy a hook changed is written the ordinary way."""

from __future__ import annotations

from salon.namespaces import NS_CLIENT, NS_SID
from salon.xml.broadcast import Broadcast
from salon.xml.element import Element
from salon.xml.serializer import _write, serialize, serialize_str


def plain(el: Element, parent_ns: str) -> str:
    out: list[str] = []
    _write(el, parent_ns, out)
    return "".join(out)


def message() -> Element:
    msg = Element("message", NS_CLIENT, {"type": "groupchat", "from": "room@muc.example/a&b"})
    msg.add("body", text="<hi> & 'bye'")
    msg.add("stanza-id", NS_SID, {"id": "x1", "by": "room@muc.example"})
    return msg


def test_copies_serialize_exactly_as_plain_elements() -> None:
    shared = Broadcast(message())
    for to in ("juliet@capulet.example/balcony", "o'hara@example.org/<r>"):
        copy = shared.to(to)
        assert copy.get("to") == to
        for ns in (NS_CLIENT, "jabber:server", ""):
            assert serialize_str(copy, ns) == plain(copy, ns)
        assert serialize(copy, NS_CLIENT) == plain(copy, NS_CLIENT).encode()


def test_a_changed_copy_is_serialized_the_ordinary_way() -> None:
    shared = Broadcast(message())
    first = shared.to("a@example.org/r")
    assert serialize_str(first, NS_CLIENT) == plain(first, NS_CLIENT)
    added = shared.to("b@example.org/r")
    added.add("x", "urn:example:extra")
    assert "urn:example:extra" in serialize_str(added, NS_CLIENT)
    removed = shared.to("c@example.org/r")
    removed.remove(removed.find("stanza-id", NS_SID))  # type: ignore[arg-type]
    assert "stanza-id" not in serialize_str(removed, NS_CLIENT)
    changed = shared.to("d@example.org/r")
    changed.set("id", "new")
    assert serialize_str(changed, NS_CLIENT) == plain(changed, NS_CLIENT)
    assert "id='new'" in serialize_str(changed, NS_CLIENT)
    # The others are unaffected.
    assert serialize_str(shared.to("e@example.org/r"), NS_CLIENT) == plain(
        shared.to("e@example.org/r"), NS_CLIENT
    )
