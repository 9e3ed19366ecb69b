"""Element → bytes. Default namespaces (``xmlns='…'``) only, never generated element prefixes."""

from __future__ import annotations

import re

from salon.namespaces import NS_STREAM, NS_XML
from salon.xml.element import Element

# \r would be read back as \n, and tab/newline in attributes as spaces: write them as references.
_TEXT_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#13;"})
_ATTR_ESCAPES = str.maketrans(
    {
        "&": "&amp;",
        "<": "&lt;",
        ">": "&gt;",
        "'": "&apos;",
        '"': "&quot;",
        "\t": "&#9;",
        "\n": "&#10;",
        "\r": "&#13;",
    }
)


# str.translate with a table looks every character up in a dict (about 2 us for a 36-character
# address): most values need no escaping, which one regular-expression search tells.
_TEXT_SPECIAL = re.compile("[&<>\r]").search
_ATTR_SPECIAL = re.compile("[&<>'\"\t\n\r]").search


def escape_text(text: str) -> str:
    return text if _TEXT_SPECIAL(text) is None else text.translate(_TEXT_ESCAPES)


def escape_attr(value: str) -> str:
    return value if _ATTR_SPECIAL(value) is None else value.translate(_ATTR_ESCAPES)


def _attr_name(name: str, out: list[str], declared: dict[str, str]) -> str:
    if name[0] != "{":
        return name
    ns, local = name[1:].split("}", 1)
    if ns == NS_XML:
        return "xml:" + local
    prefix = declared.get(ns)
    if prefix is None:
        prefix = f"a{len(declared)}"
        declared[ns] = prefix
        out.append(f"xmlns:{prefix}='{escape_attr(ns)}' ")
    return f"{prefix}:{local}"


def _write(el: Element, parent_ns: str, out: list[str]) -> None:
    if el.ns == NS_STREAM:
        # stream-level elements use the ``stream:`` prefix declared on the stream header; the
        # default namespace inside them stays the parent's.
        tag = "stream:" + el.tag
        inner_ns = parent_ns
    else:
        tag = el.tag
        inner_ns = el.ns
    out.append("<")
    out.append(tag)
    if inner_ns != parent_ns:
        out.append(" xmlns='")
        out.append(escape_attr(el.ns))
        out.append("'")
    declared: dict[str, str] = {}
    for name, value in el.attrs.items():
        out.append(" ")
        out.append(_attr_name(name, out, declared))
        out.append("='")
        out.append(value if _ATTR_SPECIAL(value) is None else value.translate(_ATTR_ESCAPES))
        out.append("'")
    if not el.children:
        out.append("/>")
        return
    out.append(">")
    for child in el.children:
        if isinstance(child, str):
            out.append(child if _TEXT_SPECIAL(child) is None else child.translate(_TEXT_ESCAPES))
        else:
            _write(child, inner_ns, out)
    out.append("</")
    out.append(tag)
    out.append(">")


def serialize_str(el: Element, parent_ns: str = "") -> str:
    if el.__class__ is not Element:
        # A copy of a stanza sent to many (salon.xml.broadcast): written from shared text.
        wire_text = getattr(el, "wire_text", None)
        text = wire_text(parent_ns) if wire_text is not None else None
        if text is not None:
            return text  # type: ignore[no-any-return]
    out: list[str] = []
    _write(el, parent_ns, out)
    return "".join(out)


def serialize(el: Element, parent_ns: str = "") -> bytes:
    """Serialize ``el`` as it appears inside a parent whose default namespace is ``parent_ns``.

    Stanzas written on a stream pass the stream's content namespace (``jabber:client``), so the
    redundant ``xmlns`` is left out.
    """
    return serialize_str(el, parent_ns).encode()


def stream_header(
    content_ns: str,
    *,
    from_: str | None = None,
    to: str | None = None,
    stream_id: str | None = None,
    version: str | None = "1.0",
    lang: str | None = "en",
    extra_ns: dict[str, str] | None = None,
) -> bytes:
    """The opening ``<stream:stream>`` tag (RFC 6120 §4.7) preceded by the XML declaration."""
    parts = ["<?xml version='1.0'?><stream:stream"]
    for name, value in (("from", from_), ("to", to), ("id", stream_id), ("version", version)):
        if value is not None:
            parts.append(f" {name}='{escape_attr(value)}'")
    if lang is not None:
        parts.append(f" xml:lang='{escape_attr(lang)}'")
    parts.append(f" xmlns='{content_ns}' xmlns:stream='{NS_STREAM}'")
    for prefix, ns in (extra_ns or {}).items():
        parts.append(f" xmlns:{prefix}='{escape_attr(ns)}'")
    parts.append(">")
    return "".join(parts).encode()


STREAM_CLOSE = b"</stream:stream>"
