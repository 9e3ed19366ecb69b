"""A lean XML element: what Salon routes, inspects and builds stanzas with."""

from __future__ import annotations

from collections.abc import Iterator

Child = "Element | str"


class Element:
    """One XML element with its namespace, attributes and children.

    Children are ``Element`` objects or ``str`` text nodes (mixed content is kept in order).
    Attribute keys are local names; attributes in a namespace use Clark notation
    (``{http://www.w3.org/XML/1998/namespace}lang``).
    """

    __slots__ = ("attrs", "children", "ns", "tag")

    def __init__(
        self,
        tag: str,
        ns: str,
        attrs: dict[str, str] | None = None,
        children: list[Element | str] | None = None,
    ) -> None:
        self.tag = tag
        self.ns = ns
        self.attrs: dict[str, str] = attrs if attrs is not None else {}
        self.children: list[Element | str] = children if children is not None else []

    # attributes -------------------------------------------------------------
    def get(self, name: str, default: str | None = None) -> str | None:
        return self.attrs.get(name, default)

    def set(self, name: str, value: str | None) -> None:
        """Set an attribute, or remove it when ``value`` is None."""
        if value is None:
            self.attrs.pop(name, None)
        else:
            self.attrs[name] = value

    # children ---------------------------------------------------------------
    def elements(self) -> Iterator[Element]:
        for child in self.children:
            if isinstance(child, Element):
                yield child

    @property
    def first_child(self) -> Element | None:
        for child in self.children:
            if isinstance(child, Element):
                return child
        return None

    def find(self, tag: str, ns: str | None = None) -> Element | None:
        """The first child element named ``tag`` in ``ns`` (default: this element's ns)."""
        want_ns = self.ns if ns is None else ns
        for child in self.children:
            if isinstance(child, Element) and child.tag == tag and child.ns == want_ns:
                return child
        return None

    def find_all(self, tag: str, ns: str | None = None) -> list[Element]:
        want_ns = self.ns if ns is None else ns
        return [
            c for c in self.children if isinstance(c, Element) and c.tag == tag and c.ns == want_ns
        ]

    def find_text(self, tag: str, ns: str | None = None) -> str | None:
        child = self.find(tag, ns)
        return None if child is None else child.text

    def append(self, child: Element | str) -> None:
        self.children.append(child)

    def add(
        self,
        tag: str,
        ns: str | None = None,
        attrs: dict[str, str] | None = None,
        text: str | None = None,
    ) -> Element:
        """Append a new child element (in this element's namespace by default) and return it."""
        child = Element(tag, self.ns if ns is None else ns, attrs)
        if text is not None:
            child.children.append(text)
        self.children.append(child)
        return child

    def remove(self, child: Element) -> None:
        self.children = [c for c in self.children if c is not child]

    # text -------------------------------------------------------------------
    @property
    def text(self) -> str:
        """The concatenated direct text children."""
        return "".join(c for c in self.children if isinstance(c, str))

    @text.setter
    def text(self, value: str) -> None:
        self.children = [c for c in self.children if not isinstance(c, str)]
        if value:
            self.children.insert(0, value)

    # copying and display ----------------------------------------------------
    def copy(self) -> Element:
        """A deep copy."""
        return Element(
            self.tag,
            self.ns,
            dict(self.attrs),
            [c.copy() if isinstance(c, Element) else c for c in self.children],
        )

    def shallow_copy(self) -> Element:
        """A copy with its own attribute dict and child list; children are shared."""
        return Element(self.tag, self.ns, dict(self.attrs), list(self.children))

    def __repr__(self) -> str:
        from salon.xml.serializer import serialize

        return f"<Element {serialize(self).decode()}>"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Element):
            return NotImplemented
        return (
            self.tag == other.tag
            and self.ns == other.ns
            and self.attrs == other.attrs
            and self.children == other.children
        )

    __hash__ = None  # type: ignore[assignment]
