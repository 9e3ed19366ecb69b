"""Small helpers over stanzas: replies and error replies (RFC 6120 §8.3)."""

from __future__ import annotations

from salon.errors import StanzaError, StanzaErrorCondition
from salon.namespaces import NS_CLIENT, NS_STANZAS, NS_XML
from salon.xml.element import Element

XML_LANG = f"{{{NS_XML}}}lang"  # the parser's (Clark) key for xml:lang


def error_element(err: StanzaError, ns: str = NS_CLIENT) -> Element:
    error = Element("error", ns, {"type": err.error_type})
    error.add(err.condition.value, NS_STANZAS)
    if err.text:
        error.add("text", NS_STANZAS, text=err.text)
    return error


def error_reply(stanza: Element, err: StanzaError | StanzaErrorCondition) -> Element:
    """The error stanza answering ``stanza``: addresses swapped, type='error', the original
    payload kept (RFC 6120 §8.3.1)."""
    if isinstance(err, StanzaErrorCondition):
        err = StanzaError(err)
    reply = Element(stanza.tag, stanza.ns, {"type": "error"})
    for name in ("id", XML_LANG):
        value = stanza.get(name)
        if value is not None:
            reply.set(name, value)
    to, from_ = stanza.get("from"), stanza.get("to")
    if to is not None:
        reply.set("to", to)
    if from_ is not None:
        reply.set("from", from_)
    for child in stanza.children:
        if isinstance(child, Element) and not (child.tag == "error" and child.ns == stanza.ns):
            reply.append(child)
    reply.append(error_element(err, stanza.ns))
    return reply


def iq_result(iq: Element, payload: Element | None = None) -> Element:
    reply = Element("iq", iq.ns, {"type": "result"})
    reply.set("id", iq.get("id"))
    if iq.get("from") is not None:
        reply.set("to", iq.get("from"))
    if iq.get("to") is not None:
        reply.set("from", iq.get("to"))
    if payload is not None:
        reply.append(payload)
    return reply
