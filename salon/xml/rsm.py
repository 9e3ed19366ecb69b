"""XEP-0059 Result Set Management: the request ``<set/>`` parsed, the answer built.

Generic: MAM, MUC room lists and PubSub item lists page the same way. A malformed request
raises :class:`RsmError`; the caller answers bad-request.
"""

from __future__ import annotations

from dataclasses import dataclass

from salon.namespaces import NS_RSM
from salon.xml.element import Element

__all__ = ["RsmError", "RsmRequest", "RsmResult", "parse_rsm", "rsm_element"]

_MAX_UID = 1024


class RsmError(ValueError):
    """The ``<set/>`` is malformed."""


@dataclass(frozen=True, slots=True)
class RsmRequest:
    max: int | None = None
    after: str | None = None
    before: str | None = None
    """``""`` for an empty ``<before/>``: the last page (XEP-0059 §2.5)."""
    index: int | None = None


@dataclass(frozen=True, slots=True)
class RsmResult:
    first: str | None = None
    last: str | None = None
    index: int | None = None
    """Position of ``first`` in the full set."""
    count: int | None = None


def _non_negative(text: str, what: str) -> int:
    value = text.strip()
    if not (value.isascii() and value.isdigit()) or len(value) > 18:  # "²" passes isdigit()
        raise RsmError(f"<{what}/> must be a non-negative integer")
    return int(value)


def parse_rsm(element: Element) -> RsmRequest:
    """Read a request ``<set xmlns='http://jabber.org/protocol/rsm'/>``."""
    if element.tag != "set" or element.ns != NS_RSM:
        raise RsmError("not an RSM set")
    max_text = element.find_text("max", NS_RSM)
    index_text = element.find_text("index", NS_RSM)
    after = element.find_text("after", NS_RSM)
    before = element.find_text("before", NS_RSM)
    if after is not None and not after:
        raise RsmError("<after/> must name an item")
    for uid in (after, before):
        if uid is not None and len(uid) > _MAX_UID:
            raise RsmError("item id too long")
    return RsmRequest(
        max=None if max_text is None else _non_negative(max_text, "max"),
        after=after,
        before=before,
        index=None if index_text is None else _non_negative(index_text, "index"),
    )


def rsm_element(result: RsmResult) -> Element:
    """The answer ``<set/>``: first (with index) and last only for a non-empty page
    (XEP-0059 §2.1), count when known."""
    rsm = Element("set", NS_RSM)
    if result.first is not None and result.last is not None:
        first = rsm.add("first", text=result.first)
        if result.index is not None:
            first.set("index", str(result.index))
        rsm.add("last", text=result.last)
    if result.count is not None:
        rsm.add("count", text=str(result.count))
    return rsm
