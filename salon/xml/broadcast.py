"""One stanza sent to many recipients, serialized once.

A chat room sends each groupchat message to every occupant: the copies differ only in
``to``. :class:`Broadcast` makes those copies as :class:`Addressed` elements, which the
serializer writes from the broadcast's text, split around ``to`` once per stream namespace,
instead of walking the element again for every recipient.

An addressed copy is an ordinary :class:`Element` to everything else: hooks may read it, and
if one changes its attributes or its list of children the copy no longer matches the shared
text and is serialized the ordinary way.
"""

from __future__ import annotations

from salon.xml.element import Element
from salon.xml.serializer import escape_attr, serialize_str

__all__ = ["Addressed", "Broadcast"]

_SENTINEL = "\x00"  # never in XML text, never escaped: marks where 'to' goes


class Broadcast:
    """``stanza`` (without ``to``) for many recipients."""

    __slots__ = ("_attrs", "_children", "_split", "stanza")

    def __init__(self, stanza: Element) -> None:
        self.stanza = stanza
        self._attrs = {k: v for k, v in stanza.attrs.items() if k != "to"}
        self._children = list(stanza.children)
        self._split: dict[str, tuple[str, str]] = {}

    def to(self, recipient: str) -> Addressed:
        s = self.stanza
        attrs = dict(self._attrs)
        attrs["to"] = recipient
        return Addressed(s.tag, s.ns, attrs, list(self._children), self)

    def split(self, parent_ns: str) -> tuple[str, str]:
        """The serialized stanza before and after the value of ``to``."""
        parts = self._split.get(parent_ns)
        if parts is None:
            attrs = dict(self._attrs)
            attrs["to"] = _SENTINEL
            probe = Element(self.stanza.tag, self.stanza.ns, attrs, self._children)
            before, _, after = serialize_str(probe, parent_ns).partition(_SENTINEL)
            parts = self._split[parent_ns] = (before, after)
        return parts

    def matches(self, copy: Addressed) -> bool:
        """Whether ``copy`` still has the broadcast's attributes (but 'to') and children
        (the same objects: elements compare by identity)."""
        attrs = copy.attrs
        return (
            len(attrs) == len(self._attrs) + 1
            and "to" in attrs
            and self._attrs.items() <= attrs.items()
            and copy.children == self._children
        )


class Addressed(Element):
    """A broadcast's copy for one recipient."""

    __slots__ = ("broadcast",)

    def __init__(
        self,
        tag: str,
        ns: str,
        attrs: dict[str, str],
        children: list[Element | str],
        broadcast: Broadcast,
    ) -> None:
        super().__init__(tag, ns, attrs, children)
        self.broadcast = broadcast

    def wire_text(self, parent_ns: str) -> str | None:
        """This copy serialized from the shared text; None if a hook changed it since."""
        shared = self.broadcast
        if not shared.matches(self):
            return None
        before, after = shared.split(parent_ns)
        return before + escape_attr(self.attrs["to"]) + after
