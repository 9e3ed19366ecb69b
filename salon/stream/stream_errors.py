"""The ``<stream:error/>`` element (RFC 6120 §4.9) and the bytes that end a stream with it."""

from __future__ import annotations

from salon.errors import StreamErrorCondition
from salon.namespaces import NS_STREAM, NS_STREAMS
from salon.xml.element import Element
from salon.xml.serializer import STREAM_CLOSE, serialize


def stream_error_element(
    condition: StreamErrorCondition, text: str | None = None, extra: Element | None = None
) -> Element:
    error = Element("error", NS_STREAM)
    error.add(condition.value, NS_STREAMS)
    if text:
        error.add("text", NS_STREAMS, text=text)
    if extra is not None:
        error.append(extra)
    return error


def closing_bytes(
    header: bytes | None,
    condition: StreamErrorCondition | None,
    text: str | None,
    content_ns: str,
) -> bytes:
    """What ends a stream: our header first when it was not sent yet (RFC 6120 §4.9.1.3),
    the stream error when there is one, then ``</stream:stream>``."""
    out = [header] if header is not None else []
    if condition is not None:
        out.append(serialize(stream_error_element(condition, text), content_ns))
    out.append(STREAM_CLOSE)
    return b"".join(out)
