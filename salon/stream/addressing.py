"""What server and component streams do alike with what a peer sends: read a domain from an
attribute, and bring a stanza into ``jabber:client``, where every stanza inside Salon lives."""

from __future__ import annotations

from salon.jid import JIDError, prepare_domain
from salon.namespaces import NS_CLIENT
from salon.xml.element import Element


def domain_or_none(text: str) -> str | None:
    """``text`` as a prepared domain, or None when it is empty or not a domain."""
    if not text:
        return None
    try:
        return prepare_domain(text)
    except JIDError:
        return None


def to_client_namespace(el: Element, stream_ns: str) -> None:
    """Move ``el`` and its descendants from the stream's content namespace (``jabber:server``
    or ``jabber:component:accept``) into ``jabber:client``."""
    if el.ns == stream_ns:
        el.ns = NS_CLIENT
    for child in el.children:
        if isinstance(child, Element):
            to_client_namespace(child, stream_ns)
