"""Read back one element that :func:`salon.xml.serializer.serialize_str` wrote (stored XML).

Stored documents and stanzas (vCards, private XML, offline messages, waiting subscription
requests) are parsed with the same hardened stream parser as the network, inside a synthetic
stream root, so stored data gets no laxer treatment than live input.
"""

from __future__ import annotations

from salon.errors import StreamError
from salon.namespaces import NS_CLIENT, NS_STREAM
from salon.xml.element import Element
from salon.xml.parser import XmlStreamParser

__all__ = ["parse_element"]

_ROOT = f"<stream:stream xmlns='{NS_CLIENT}' xmlns:stream='{NS_STREAM}'>".encode()
_MAX_DEPTH = 64


def parse_element(text: str) -> Element:
    """The single element ``text`` holds; ValueError when it is not exactly one element."""
    data = text.encode()
    parser = XmlStreamParser(max_stanza_bytes=len(data) + 1, max_depth=_MAX_DEPTH)
    try:
        events = parser.feed(_ROOT + data)
    except StreamError as exc:
        raise ValueError(str(exc)) from exc
    elements = [event for event in events if isinstance(event, Element)]
    if len(elements) != 1:
        raise ValueError(f"{len(elements)} elements where one was stored")
    return elements[0]
